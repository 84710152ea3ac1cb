/** One ANSI colour code (SGR), the only escapes reports carry. */
export const ANSI_CODE = '\u001b\\[[0-9;]*m';
const ANSI = new RegExp(ANSI_CODE, 'g');

export function visibleLength(text: string): number {
  return stripAnsi(text).length;
}

export function stripAnsi(text: string): string {
  return text.replace(ANSI, '');
}

export type Align = 'left' | 'right';

/**
 * A bar that takes whatever room its table has left, up to `width` cells:
 * `before` and `after` (a figure, a note) stay whole, `mark` puts a │ where
 * that value would end (e.g. a perfectly even 1/N share), `paint` colours
 * the bar itself.
 */
export interface BarCell {
  value: number;
  max: number;
  width: number;
  mark?: number;
  before?: string;
  after?: string;
  paint?: (bar: string) => string;
}

export type Cell = string | BarCell;

/** Bars narrower than this say nothing: the table stacks its rows instead. */
const MIN_BAR_WIDTH = 8;
const GAP = '  ';
/** How far a stacked row's `label: value` lines are indented under its first line. */
const STACKED_INDENT = '  ';

/**
 * A plain-text table: a header row, then rows, columns padded to fit. Given
 * `columns`, it fits them: bars shrink first, then the columns close up to
 * one space, and when even that is too wide each row becomes a block of
 * `label: value` lines (the layout of narrow terminals, 40 columns and up).
 * Without `columns` it is as wide as it needs.
 */
export function renderTable(header: string[], rows: Cell[][], align: Align[] = [], columns?: number): string {
  const preferred = header.map((_, i) => Math.max(0, ...rows.map((row) => barWidth(row[i]))));
  const render = (barCells: number[]) => rows.map((row) => header.map((_, i) => cellText(row[i], barCells[i] ?? 0)));
  const widthOf = (texts: string[][], gap: string) =>
    header.reduce(
      (sum, cell, i) => sum + Math.max(visibleLength(cell), ...texts.map((row) => visibleLength(row[i] ?? ''))),
      gap.length * (header.length - 1),
    );
  // Bars give up their room a cell at a time, down to MIN_BAR_WIDTH; then the
  // columns close up to one space; then the rows stack.
  const fitted = ((): { texts: string[][]; gap: string } | null => {
    if (columns === undefined) return { texts: render(preferred), gap: GAP };
    for (const gap of [GAP, ' ']) {
      for (let cut = 0; ; cut++) {
        const barCells = preferred.map((w) => (w > 0 ? w - cut : 0));
        if (barCells.some((w, i) => preferred[i]! > 0 && w < Math.min(MIN_BAR_WIDTH, preferred[i]!))) break;
        const texts = render(barCells);
        if (widthOf(texts, gap) <= columns) return { texts, gap };
        if (preferred.every((w) => w === 0)) break;
      }
    }
    return null;
  })();
  if (fitted === null) return stackedTable(header, rows, columns ?? 0);
  const { texts, gap } = fitted;
  const widths = header.map((cell, i) =>
    Math.max(visibleLength(cell), ...texts.map((row) => visibleLength(row[i] ?? ''))),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => {
        const pad = ' '.repeat(Math.max(0, (widths[i] ?? 0) - visibleLength(cell)));
        return align[i] === 'right' ? pad + cell : cell + pad;
      })
      .join(gap)
      .trimEnd();
  return [line(header), ...texts.map(line)].join('\n');
}

/**
 * Each row as a block: `first header: first cell`, then one indented
 * `header: value` line per other cell that has a value, labels aligned, bars
 * as wide as the rest of the line allows.
 */
function stackedTable(header: string[], rows: Cell[][], columns: number): string {
  const labelWidth = Math.max(...header.slice(1).map((h) => visibleLength(h)));
  const label = (text: string) => (text === '' ? ' '.repeat(labelWidth + 2) : `${text}:`.padEnd(labelWidth + 2));
  const room = columns - STACKED_INDENT.length - labelWidth - 2;
  return rows
    .map((row) => {
      const [first = '', ...rest] = header.map((_, i) => cellText(row[i], room - fixedLength(row[i])));
      const lines = [`${header[0]}: ${first}`];
      rest.forEach((text, i) => {
        if (text !== '') lines.push(`${STACKED_INDENT}${label(header[i + 1] ?? '')}${text}`.trimEnd());
      });
      return lines.join('\n');
    })
    .join('\n');
}

function isBar(cell: Cell | undefined): cell is BarCell {
  return typeof cell === 'object';
}

/** The part of a cell that never shrinks: all of a text, or a bar's before and after. */
function fixedLength(cell: Cell | undefined): number {
  if (cell === undefined) return 0;
  if (!isBar(cell)) return visibleLength(cell);
  return visibleLength(cell.before ?? '') + visibleLength(cell.after ?? '');
}

function barWidth(cell: Cell | undefined): number {
  return isBar(cell) ? cell.width : 0;
}

function cellText(cell: Cell | undefined, barWidth: number): string {
  if (cell === undefined) return '';
  if (!isBar(cell)) return cell;
  const width = Math.max(1, Math.min(cell.width, barWidth));
  const drawn = cell.mark === undefined ? bar(cell.value, cell.max, width) : markedBar(cell, width);
  const painted = drawn && cell.paint ? cell.paint(drawn) : drawn;
  return `${cell.before ?? ''}${painted}${cell.after ?? ''}`;
}

/** A bar with a │ where `mark` would end. */
function markedBar(cell: BarCell, width: number): string {
  const cells = [...bar(cell.value, cell.max, width)];
  const mark =
    cell.mark !== undefined && cell.max > 0 ? Math.min(width - 1, Math.round((cell.mark / cell.max) * width)) : -1;
  if (mark < 0) return cells.join('');
  while (cells.length <= mark) cells.push(' ');
  cells[mark] = '│';
  return cells.join('').trimEnd();
}

/** A horizontal bar of `width` cells for value/max, in eighths for a smooth edge. */
export function bar(value: number, max: number, width = 30): string {
  if (max <= 0 || value <= 0) return '';
  const eighths = Math.round((value / max) * width * 8);
  const full = Math.floor(eighths / 8);
  const rest = eighths % 8;
  return '█'.repeat(full) + (rest > 0 ? ' ▏▎▍▌▋▊▉'[rest] : '');
}

export function percent(part: number, whole: number): string {
  return whole > 0 ? `${((part / whole) * 100).toFixed(1)}%` : '-';
}
