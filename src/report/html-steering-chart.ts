/**
 * The before/after pictures of the HTML report for `remap` and `sticky`
 * expectations: which source-port tuples stayed on their listener and which
 * moved, drawn from the sweeps' `owners` and the expectation's counts in the
 * --json document. A `remap` gets a transition matrix (rows: the listener
 * before, columns: after, square area ∝ tuples, the diagonal: stayed) and a
 * strip of every tuple's listener before and after; a `sticky` gets the strip
 * of one sweep with the ports that reached more than one listener marked.
 */

import { type Fraction, groupText, overlappingSlots, type RemapModelTally } from '../scenario/remap-model.js';
import { text, truncate } from './html-report.js';
import {
  type ExpectationDocument,
  MIXED_OWNER,
  type ScenarioDocument,
  type SweepOwners,
  type TrafficDocument,
} from './run-document.js';

/** One colour per listener, in the order the scenario started them, the same in every chart of a scenario. */
// Neither blue nor red: those mark moved tuples and moves against the model.
const PALETTE = ['#bf8700', '#8250df', '#1a7f37', '#e16f24', '#1b7c83', '#bf3989', '#4d2d00', '#6e7781'];
/** Chart size in SVG user units; `gap` is the distance from one strip row to the next. */
const GEOMETRY = { width: 720, top: 34, row: 22, gap: 28 } as const;

export const STEERING_CHART_STYLE = `
.steering-chart { width: 100%; height: auto; font-size: 12px; }
.steering-chart text { fill: var(--ink); } .steering-chart .muted { fill: var(--muted); font-size: 11px; }
.steering-chart .count { font-size: 11px; font-variant-numeric: tabular-nums; }
.steering-chart .cell { fill: #fff; stroke: var(--line); } .steering-chart .cell.allowed { fill: #ddf4ff; }
.steering-chart .stayed { fill: var(--bar); } .steering-chart .moved { fill: var(--expected); }
.steering-chart .against { fill: var(--bad); } .steering-chart .none { fill: #eaeef2; }
ul.steering-legend { list-style: none; padding: 0; margin: 0.3rem 0; font-size: 0.9rem; color: var(--muted); }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.3em; vertical-align: -0.05em; }
.swatch.allowed { background: #ddf4ff; border: 1px solid var(--line); } .swatch.stayed { background: var(--bar); }
.swatch.moved { background: var(--expected); } .swatch.against { background: var(--bad); } .swatch.none { background: #eaeef2; }
`;

/** The before/after charts of a scenario's `remap` and `sticky` expectations, where their sweeps reached the report. */
export function steeringCharts(scenario: ScenarioDocument): string[] {
  const colours = new Map<number, string>();
  for (const instance of scenario.servers) {
    if (!colours.has(instance.pid)) colours.set(instance.pid, PALETTE[colours.size % PALETTE.length]!);
  }
  const colourOf = (pid: number) => colours.get(pid) ?? '#afb8c1';
  const sweep = (id: string) => scenario.traffic.find((t) => t.id === id && t.owners);
  return scenario.expectations.flatMap((e) => {
    if (e.remap) {
      const before = sweep(e.remap.before);
      const after = sweep(e.remap.after);
      return before && after ? [remapFigure(e, before, after, colourOf)] : [];
    }
    if (e.sticky) {
      const traffic = sweep(e.sticky.traffic);
      return traffic ? [stickyFigure(e, traffic, colourOf)] : [];
    }
    return [];
  });
}

/** A tuple of a sweep: its source port and the pid of the one listener that answered it every round (null: none did). */
interface Tuple {
  sourcePort: number;
  pid: number | null;
  mixed: boolean;
}

function tuples(owners: SweepOwners): Tuple[] {
  return owners.owner.map((n, i) => ({
    sourcePort: owners.from + i,
    pid: n >= 0 ? owners.instances[n]!.pid : null,
    mixed: n === MIXED_OWNER,
  }));
}

function remapFigure(
  expectation: ExpectationDocument,
  before: TrafficDocument,
  after: TrafficDocument,
  colourOf: (pid: number) => string,
): string {
  const remap = expectation.remap!;
  const kernel = 'cannot' in remap.kernel ? null : remap.kernel;
  const naive = 'cannot' in remap.naive ? null : remap.naive;
  const was = tuples(before.owners!);
  const now = new Map(tuples(after.owners!).map((t) => [t.sourcePort, t.pid]));
  const against = new Set(kernel?.violatingPorts ?? []);
  const labels = new Map<number, string>();
  for (const i of [...before.owners!.instances, ...after.owners!.instances]) labels.set(i.pid, i.label);
  const labelOf = (pid: number) => labels.get(pid) ?? `pid ${pid}`;

  // Rows and columns: the group's slots in order (so the swap is visible), then any other listener that answered.
  const pairs = was.flatMap((t) => {
    const to = now.get(t.sourcePort) ?? null;
    return t.pid !== null && to !== null ? [{ ...t, from: t.pid, to, against: against.has(t.sourcePort) }] : [];
  });
  const rows = unique([...(kernel?.groupBefore.map((g) => g.pid) ?? []), ...pairs.map((p) => p.from)]);
  const cols = unique([...(kernel?.groupAfter.map((g) => g.pid) ?? []), ...pairs.map((p) => p.to)]);
  const allowed = kernel ? allowedMoves(kernel) : new Map<number, Set<number>>();
  const cell = Math.min(40, 240 / Math.max(rows.length, cols.length, 1));
  const mx = 96;
  const my = GEOMETRY.top + 36;
  const counts = new Map<string, { all: number; against: number }>();
  for (const p of pairs) {
    const key = `${p.from}>${p.to}`;
    const c = counts.get(key) ?? { all: 0, against: 0 };
    c.all++;
    if (p.against) c.against++;
    counts.set(key, c);
  }
  const largest = Math.max(1, ...[...counts.values()].map((c) => c.all));
  const matrix: string[] = [
    `<text class="muted" x="${mx}" y="${my - 26}">after →</text>`,
    `<text class="muted" x="${mx - 6}" y="${my - 8}" text-anchor="end">before ↓ · slot</text>`,
  ];
  cols.forEach((pid, c) => {
    matrix.push(
      `<text x="${mx + c * cell + cell / 2}" y="${my - 8}" text-anchor="middle">${text(truncate(labelOf(pid), Math.max(2, Math.floor(cell / 7))))}</text>`,
    );
  });
  rows.forEach((from, r) => {
    const y = my + r * cell;
    const slot = kernel?.groupBefore.findIndex((g) => g.pid === from) ?? -1;
    matrix.push(
      `<text x="${mx - 6}" y="${y + cell / 2 + 4}" text-anchor="end">${text(truncate(labelOf(from), 9))}${slot >= 0 ? ` · ${slot}` : ''}</text>`,
    );
    cols.forEach((to, c) => {
      const x = mx + c * cell;
      const n = counts.get(`${from}>${to}`) ?? { all: 0, against: 0 };
      const ok = allowed.get(from)?.has(to) === true;
      const what = `${labelOf(from)} → ${labelOf(to)}: ${n.all} tuple${n.all === 1 ? '' : 's'}${n.against > 0 ? `, ${n.against} against swap-with-last` : ''}${ok ? ' (swap-with-last allows this)' : ''}`;
      matrix.push(
        `<rect class="cell${ok ? ' allowed' : ''}" x="${x}" y="${y}" width="${cell}" height="${cell}"><title>${text(what)}</title></rect>`,
      );
      if (n.all === 0) return;
      const side = (cell - 4) * Math.sqrt(n.all / largest);
      const kind = n.against > 0 ? 'against' : from === to ? 'stayed' : 'moved';
      matrix.push(
        `<rect class="${kind}" x="${(x + (cell - side) / 2).toFixed(1)}" y="${(y + (cell - side) / 2).toFixed(1)}" width="${side.toFixed(1)}" height="${side.toFixed(1)}"><title>${text(what)}</title></rect>`,
        cell >= 28
          ? `<text class="count" x="${x + cell - 3}" y="${y + cell - 4}" text-anchor="end">${n.all}</text>`
          : '',
      );
    });
  });

  const moved = kernel ? kernel.allowedMoves + kernel.forbiddenMoves : pairs.filter((p) => p.from !== p.to).length;
  const headline = kernel
    ? `${moved} of ${kernel.judged} tuples moved: ${kernel.allowedMoves} as swap-with-last allows, ${kernel.forbiddenMoves} against it; ${kernel.stayed} stayed`
    : `${moved} of ${pairs.length} tuples moved; swap-with-last cannot judge them`;
  const y0 = my;
  // The strip groups the tuples by their listener before, then after: each block's split is what moved where.
  const position = (list: number[], pid: number | null) => (pid === null ? list.length : list.indexOf(pid));
  const afterOf = (t: Tuple) => now.get(t.sourcePort) ?? null;
  const ordered = [...was].sort(
    (x, y) =>
      position(rows, x.pid) - position(rows, y.pid) ||
      position(cols, afterOf(x)) - position(cols, afterOf(y)) ||
      x.sourcePort - y.sourcePort,
  );
  const movedKind = (t: Tuple) => {
    if (against.has(t.sourcePort)) return 'against';
    const to = afterOf(t);
    return t.pid !== null && to !== null && to !== t.pid ? 'moved' : null;
  };
  const strip = [
    stripRow(REMAP_STRIP, 'before', ordered, y0, colourOf, labelOf),
    stripRow(
      REMAP_STRIP,
      'after',
      ordered.map((t) => ({ ...t, pid: afterOf(t) })),
      y0 + GEOMETRY.gap,
      colourOf,
      labelOf,
    ),
    marksRow(REMAP_STRIP, 'moved', ordered, y0 + 2 * GEOMETRY.gap, movedKind),
  ];
  const height = Math.max(my + rows.length * cell, y0 + 3 * GEOMETRY.gap + 24) + 10;
  const portsText = portRange(was);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" class="steering-chart remap-chart" viewBox="0 0 ${GEOMETRY.width} ${height}" role="img" aria-label="${text(headline)}"><title>${text(headline)}</title>
<text class="moved-count" x="0" y="16">${text(headline)}</text>
${matrix.join('')}
<text class="muted" x="${REMAP_STRIP.x}" y="${y0 - 8}">each tuple (source port ${text(portsText)}), by listener before</text>
${strip.join('\n')}
<text class="muted" x="${REMAP_STRIP.x}" y="${y0 + 3 * GEOMETRY.gap + 14}">${blankNote(was.length - pairs.length)}</text>
</svg>`;

  const legend = [
    `<li><span class="swatch allowed"></span>shaded cells: the moves swap-with-last allows${kernel ? `, ${predictionText(kernel, labelOf)}` : ''}</li>`,
    `<li><span class="swatch stayed"></span>stayed <span class="swatch moved"></span>moved as the model allows <span class="swatch against"></span>against swap-with-last</li>`,
    naive
      ? `<li>The naive shift-down model (${text(groupText(naive.groupBefore))} → ${text(groupText(naive.groupAfter))}) allows ${naive.allowedMoves} of these moves and forbids ${naive.forbiddenMoves}${naive.forbiddenStays > 0 ? `, and ${naive.forbiddenStays} of the stays` : ''}.</li>`
      : `<li>The naive shift-down model cannot judge these sweeps.</li>`,
    `<li>${listenerKey(rows.concat(cols), colourOf, labelOf)}</li>`,
  ];
  const heading = `Which tuples moved: ${remap.before} → ${remap.after}`;
  return `<figure class="steering">
<figcaption><strong>${text(heading)}</strong>${kernel ? ` <span class="muted">group ${text(groupText(kernel.groupBefore))} → ${text(groupText(kernel.groupAfter))}</span>` : ''}</figcaption>
${svg}
<ul class="steering-legend">${legend.join('')}</ul>
</figure>`;
}

function stickyFigure(
  expectation: ExpectationDocument,
  traffic: TrafficDocument,
  colourOf: (pid: number) => string,
): string {
  const sticky = expectation.sticky!;
  const owners = traffic.owners!;
  const all = tuples(owners);
  const labelOf = (pid: number) => owners.instances.find((i) => i.pid === pid)?.label ?? `pid ${pid}`;
  const headline = `${sticky.answered} of ${sticky.ports} ports answered, ${sticky.unstable} reached more than one listener in ${owners.repeat} round${owners.repeat === 1 ? '' : 's'}`;
  const y0 = GEOMETRY.top + 16;
  const height = y0 + 2 * GEOMETRY.gap + 4;
  const pids = owners.instances.map((i) => i.pid);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" class="steering-chart sticky-chart" viewBox="0 0 ${GEOMETRY.width} ${height}" role="img" aria-label="${text(headline)}"><title>${text(headline)}</title>
<text class="unstable-count" x="0" y="16">${text(headline)}</text>
<text class="muted" x="${STICKY_STRIP.x}" y="${y0 - 8}">each source port, ${text(portRange(all))}, in port order</text>
${stripRow(STICKY_STRIP, 'listener', all, y0, colourOf, labelOf)}
${marksRow(STICKY_STRIP, 'unstable', all, y0 + GEOMETRY.gap, (t) => (t.mixed ? 'against' : null))}
</svg>`;
  const heading = `Who answered each source port: ${sticky.traffic}`;
  return `<figure class="steering">
<figcaption><strong>${text(heading)}</strong></figcaption>
${svg}
<ul class="steering-legend"><li>${listenerKey(pids, colourOf, labelOf)}; <span class="swatch none"></span>no single answer; <span class="swatch against"></span>answered by more than one listener</li></ul>
</figure>`;
}

/** Where a strip is drawn: its rows' labels end at `x`, each tuple gets `width / count`. */
interface StripFrame {
  x: number;
  width: number;
}

const REMAP_STRIP: StripFrame = { x: 400, width: 310 };
const STICKY_STRIP: StripFrame = { x: 90, width: 620 };

/** One row of the strip: each tuple coloured by its listener, runs of one colour drawn as one rectangle. */
function stripRow(
  frame: StripFrame,
  name: string,
  row: Tuple[],
  y: number,
  colourOf: (pid: number) => string,
  labelOf: (pid: number) => string,
): string {
  const step = frame.width / Math.max(row.length, 1);
  const out: string[] = [`<text x="${frame.x - 6}" y="${y + 15}" text-anchor="end">${text(name)}</text>`];
  for (let i = 0; i < row.length; ) {
    let j = i;
    while (j + 1 < row.length && row[j + 1]!.pid === row[i]!.pid) j++;
    const pid = row[i]!.pid;
    const ports = i === j ? `port ${row[i]!.sourcePort}` : `ports ${row[i]!.sourcePort}–${row[j]!.sourcePort}`;
    out.push(
      `<rect${pid === null ? ' class="none"' : ` fill="${colourOf(pid)}"`} x="${(frame.x + i * step).toFixed(2)}" y="${y}" width="${((j - i + 1) * step).toFixed(2)}" height="${GEOMETRY.row}"><title>${text(`${ports}: ${pid === null ? 'no single answer' : labelOf(pid)}`)}</title></rect>`,
    );
    i = j + 1;
  }
  return `<g class="strip">${out.join('')}</g>`;
}

/** A row of thin marks under the strip, at the tuples `kindOf` names a kind for (a class: moved, against). */
function marksRow(
  frame: StripFrame,
  name: string,
  row: Tuple[],
  y: number,
  kindOf: (t: Tuple) => string | null,
): string {
  const step = frame.width / Math.max(row.length, 1);
  const marks: string[] = [];
  for (let i = 0; i < row.length; ) {
    const kind = kindOf(row[i]!);
    let j = i;
    while (j + 1 < row.length && kindOf(row[j + 1]!) === kind) j++;
    if (kind !== null) {
      marks.push(
        `<rect class="${kind}" x="${(frame.x + i * step).toFixed(2)}" y="${y}" width="${Math.max((j - i + 1) * step, 1).toFixed(2)}" height="${GEOMETRY.row - 8}"/>`,
      );
    }
    i = j + 1;
  }
  return `<g class="marks"><text x="${frame.x - 6}" y="${y + 11}" text-anchor="end">${text(name)}</text><rect class="none" x="${frame.x}" y="${y + GEOMETRY.row - 9}" width="${frame.width}" height="1"/>${marks.join('')}</g>`;
}

/**
 * Where swap-with-last sends each listener's tuples, knowing only its slot s
 * of n before: the slots of the new size m that [s/n, (s+1)/n) overlaps (the
 * runner narrows each tuple further with every earlier sweep).
 */
function allowedMoves(kernel: RemapModelTally): Map<number, Set<number>> {
  const n = kernel.groupBefore.length;
  const m = kernel.groupAfter.length;
  const allowed = new Map<number, Set<number>>();
  kernel.groupBefore.forEach((g, s) => {
    const lo: Fraction = [s, n];
    const hi: Fraction = [s + 1, n];
    const [low, high] = overlappingSlots(lo, hi, m);
    allowed.set(g.pid, new Set(kernel.groupAfter.slice(low, high + 1).map((a) => a.pid)));
  });
  return allowed;
}

function predictionText(kernel: RemapModelTally, labelOf: (pid: number) => string): string {
  const allowed = allowedMoves(kernel);
  const n = kernel.groupBefore.length;
  return kernel.groupBefore
    .map(
      (g, s) =>
        `${text(labelOf(g.pid))} (slot ${s} of ${n}) → ${[...(allowed.get(g.pid) ?? [])].map((pid) => text(labelOf(pid))).join(' or ')}`,
    )
    .join('; ');
}

function listenerKey(pids: number[], colourOf: (pid: number) => string, labelOf: (pid: number) => string): string {
  return unique(pids)
    .map((pid) => `<span class="swatch" style="background:${colourOf(pid)}"></span>${text(labelOf(pid))}`)
    .join(' ');
}

function blankNote(blank: number): string {
  if (blank === 0) return 'every tuple had one answer in each sweep';
  return `${blank} tuple${blank === 1 ? '' : 's'} without one answer in each sweep ${blank === 1 ? 'is' : 'are'} left blank`;
}

function portRange(row: Tuple[]): string {
  if (row.length === 0) return 'none';
  return row.length === 1 ? `${row[0]!.sourcePort}` : `${row[0]!.sourcePort}–${row[row.length - 1]!.sourcePort}`;
}

function unique(values: number[]): number[] {
  return [...new Set(values)];
}
