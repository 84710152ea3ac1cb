import wrapAnsi from 'wrap-ansi';
import { ANSI_CODE, visibleLength } from './table.js';

/**
 * Wrapping for every report, in one place. wrap-ansi (the wrapper behind
 * yargs, cliui and ink) is used rather than a hand loop because report text
 * carries colour codes and wide characters: it measures with string-width,
 * the same measure ora already uses, and re-opens a colour across the break.
 */

/** The narrowest column a report lays out for: below it, lines simply run long. */
export const MIN_COLUMNS = 40;

/**
 * Prose wrapped at word boundaries so that no line, `indent` included, is
 * wider than `columns`. A word longer than the line stays whole (a path or
 * an address must not be cut). Existing line breaks are kept.
 */
export function wrapProse(text: string, columns: number, indent = ''): string {
  return wrapTo(text, Math.max(MIN_COLUMNS, columns) - visibleLength(indent))
    .split('\n')
    .map((line) => (line === '' ? '' : indent + line))
    .join('\n');
}

/**
 * Like wrapProse, with a label on the first line (e.g. "Why: ") and the
 * following lines indented under the text, not under the label.
 */
export function wrapLabelled(label: string, text: string, columns: number, hang = '  '): string {
  const width = Math.max(MIN_COLUMNS, columns) - visibleLength(hang);
  // The label may be wider than the hang: stand-ins glued to the first word
  // take its extra room on the first line, so that line may use every column.
  const extra = Math.max(0, visibleLength(label) - visibleLength(hang));
  const [first = '', ...rest] = wrapTo(`${'x'.repeat(extra)}${text}`, width).split('\n');
  const head = extra > 0 ? `${label}${first.slice(extra)}` : `${label}${first}`;
  return [head, ...rest.map((line) => (line === '' ? '' : hang + line))].join('\n');
}

function wrapTo(text: string, width: number): string {
  return wrapAnsi(text, Math.max(10, width), { hard: false, trim: true });
}

/**
 * Hard-wrapped prose (a YAML block scalar, an editor's 78 columns) as one
 * line per paragraph, so that it can be wrapped again to the terminal;
 * blank lines between paragraphs stay.
 */
export function paragraphs(text: string): string {
  return text
    .trim()
    .split(/\n\s*\n/)
    .map((paragraph) => paragraph.replace(/\s+/g, ' ').trim())
    .join('\n\n');
}

const LEADING = new RegExp(`^((?:${ANSI_CODE})*)( *)`);

/**
 * Every line of a report that is wider than `columns`, wrapped at word
 * boundaries; its continuation lines hang two columns under its own indent.
 * Lines that fit are left exactly as they are (tables are already fitted by
 * renderTable), so a report can be assembled line by line and fitted once.
 */
export function fitLines(text: string, columns: number): string {
  return text
    .split('\n')
    .map((line) => {
      if (visibleLength(line) <= columns) return line;
      // The indent may sit inside a colour code (a dimmed, indented line): take it out.
      const [whole, codes = '', spaces = ''] = LEADING.exec(line) ?? [''];
      const hang = `${spaces}  `;
      const wrapped = wrapProse(codes + line.slice(whole.length), columns, hang);
      return spaces + wrapped.slice(hang.length);
    })
    .join('\n');
}
