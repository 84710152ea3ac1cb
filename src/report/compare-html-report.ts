/**
 * `compare --html FILE`: the comparison as one self-contained page, in the
 * scenario report's shell (html-report.ts: the policy that forbids every
 * fetch, the style, the share bars with their 1/N line). Per phase the
 * figures of the `--json` document, per-worker bars, a latency histogram per
 * model, and the verdicts against the published figures.
 */
import {
  type HeavyFigures,
  histogramBinStartUs,
  type LightFigures,
  type OrderFigures,
  type SlowFigures,
  type StallFigures,
} from '../compare/analyze.js';
import type { CompareReport } from '../compare/compare.js';
import type { PhaseName } from '../compare/protocol.js';
import type { Verdict, VerdictStatus } from '../compare/verdicts.js';
import { ADVICE_HEADING, adviceItems, budgetLine, ms, pct, ratio2, times } from './compare-report.js';
import { CHART, htmlPage, type ShareBar, seconds, shareChart, text } from './html-report.js';

const STATUS_CLASS: Record<VerdictStatus, string> = {
  reproduced: 'reproduced',
  'not reproduced here': 'not-reproduced',
  unclear: 'unclear',
};

export function renderCompareHtml(report: CompareReport): string {
  const count = (status: VerdictStatus) => report.verdicts.filter((v) => v.status === status).length;
  const title = `reuseport compare: ${count('reproduced')} of ${report.verdicts.length} published claims reproduced here`;
  const phases = phaseSections(report);
  const body = `<header>
<h1>SO_REUSEPORT against shared listeners and dispatchers</h1>
<p class="summary">${report.verdicts.length} verdicts: <span class="tone-ok">${count('reproduced')} reproduced</span>, ${count('not reproduced here')} not reproduced here, ${count('unclear')} unclear</p>
<p class="meta">${text(report.kernel)} · ${report.cores} cores · Node ${text(report.node)} · ${report.workers} workers per model · ${seconds(report.durationMs)} of a ${seconds(report.budget.limitMs)} budget${report.interrupted ? ' · <strong>interrupted: the figures are partial</strong>' : ''}</p>
<nav><ul><li><a href="#machine">this machine</a></li>${phases.map((p) => `<li><a href="#${p.phase}">${p.phase}</a></li>`).join('')}<li><a href="#choosing">choosing a model</a></li></ul></nav>
</header>
<main>
${machineSection(report)}
${phases.map((p) => p.html).join('\n')}
${failuresSection(report)}
<section id="choosing"><h2>${text(ADVICE_HEADING)}</h2><ul>${adviceItems(report)
    .map((item) => `<li>${text(item)}</li>`)
    .join('')}</ul></section>
</main>`;
  return htmlPage(title, `reuseport compare (document version ${report.version})`, body, STYLE);
}

function machineSection(report: CompareReport): string {
  const { setup } = report;
  const rows: [string, string][] = [
    ['kernel', report.kernel],
    ['cores', String(report.cores)],
    ['Node', report.node],
    ['workers per model', String(report.workers)],
    ['models', report.models.join(', ')],
    ['isolation', report.isolation.note],
    ['heavy handler', `${setup.burnUs} µs of CPU per request, ${setup.heavyConcurrency} clients at once`],
    ['phase scale', `${setup.scale} of the default lengths`],
  ];
  const missing = report.nodeModels?.notAvailable ?? [];
  return `<section id="machine">
<h2>This machine</h2>
<table class="machine"><tbody>${rows.map(([k, v]) => `<tr><th scope="row">${text(k)}</th><td>${text(v)}</td></tr>`).join('')}</tbody></table>
<p class="regime">${text(report.regime)}</p>
${missing.map((m) => `<p class="note">${text(`${m.model}: ${m.reason}`)}</p>`).join('\n')}
<p class="caption">${text(budgetLine(report.budget))}</p>
</section>`;
}

function phaseSections(report: CompareReport): { phase: PhaseName; html: string }[] {
  const { figures } = report;
  const sections: { phase: PhaseName; html: string }[] = [];
  const add = (phase: PhaseName, heading: string, note: string, parts: string[]) =>
    sections.push({
      phase,
      html: `<section class="phase" id="${phase}">
<h2>${text(heading)}</h2>
<p class="meta">${text(note)}</p>
${parts.join('\n')}
${verdictTable(report.verdicts.filter((v) => v.phase === phase))}
</section>`,
    });
  if (figures.order.length > 0) {
    add(
      'order',
      'order: who serves the next connection',
      `${figures.order[0]?.connections ?? 0} sequential connections per model; by chance the same worker serves two in a row 1/${report.workers} of the time.`,
      orderParts(figures.order, report.workers),
    );
  }
  if (figures.light.length > 0) {
    add(
      'light',
      'light: a two-byte reply, as fast as the clients go',
      `Closed loop, 8 clients; medians of ${report.setup.lightRounds} alternating rounds; per-worker counts are summed over the rounds. A rate the client or the whole machine limited is flagged: the servers were not the limit there.`,
      lightParts(figures.light),
    );
  }
  if (figures.heavy.length > 0) {
    add(
      'heavy',
      'heavy: a CPU-bound handler',
      `${report.setup.burnUs} µs of CPU per request, ${report.setup.heavyConcurrency} clients; figures are medians of ${figures.heavy[0]?.rounds.length ?? 0} alternating rounds, ratios are to shared-fifo in the same round, and each histogram pools every served request of its model${report.heavyRerun ? ' (reuseport and shared-fifo were rerun once and their rounds pooled: the first baseline was too noisy)' : ''}.`,
      heavyParts(figures.heavy),
    );
  }
  if (figures.stall.length > 0) {
    const first = figures.stall[0];
    add(
      'stall',
      'stall: one worker stopped',
      `Worker ${first?.stoppedWorker ?? 0} stopped (SIGSTOP) for about ${Math.round(first?.stoppedForMs ?? 0)} ms under an open-loop load; a connection slower than 100 ms counts as delayed.`,
      stallParts(figures.stall, report.workers),
    );
  }
  if (figures.slow.length > 0) {
    add(
      'slow',
      'slow: one worker sleeps now and then',
      `Worker 0 sleeps ${report.setup.slowSleepMs} ms on every ${report.setup.slowEvery}th request, 1000 connections/s, 300 ms timeout.`,
      [slowTable(figures.slow)],
    );
  }
  return sections;
}

interface Column<T> {
  head: string;
  /** The `--json` field this column shows, for a reader (and a test) to match. */
  figure?: string;
  cell: (row: T) => string | number;
  /** Words rather than a number: aligned left. */
  words?: true;
}

/** One row per model, the model first; each cell names the figure it shows. */
function figureTable<T extends { model: string }>(className: string, columns: Column<T>[], rows: readonly T[]): string {
  const head = `<tr><th>model</th>${columns.map((c) => `<th>${text(c.head)}</th>`).join('')}</tr>`;
  const body = rows.map(
    (row) =>
      `<tr data-model="${text(row.model)}"><th scope="row">${text(row.model)}</th>${columns
        .map(
          (c) =>
            `<td${c.words ? '' : ' class="num"'}${c.figure ? ` data-figure="${c.figure}"` : ''}>${text(String(c.cell(row)))}</td>`,
        )
        .join('')}</tr>`,
  );
  return `<div class="wide"><table class="figures ${className}"><thead>${head}</thead><tbody>${body.join('')}</tbody></table></div>`;
}

function figure(className: string, model: string | null, heading: string, chart: string, caption: string): string {
  return `<figure class="${className}"${model === null ? '' : ` data-model="${text(model)}"`}>
<figcaption><strong>${text(heading)}</strong></figcaption>
${chart}
${caption === '' ? '' : `<p class="caption">${text(caption)}</p>`}
</figure>`;
}

/** One bar per worker: its share of what the model served. */
function perWorkerFigure(model: string, perWorker: readonly number[], what: string): string {
  const total = perWorker.reduce((a, b) => a + b, 0);
  const rows: ShareBar[] = perWorker.map((count, worker) => ({
    label: `worker ${worker}`,
    count,
    of: total,
    kind: 'other',
  }));
  const heading = `${model}: ${total} ${what}, by worker`;
  return figure('per-worker', model, heading, shareChart(heading, rows, perWorker.length), '');
}

function orderParts(order: readonly OrderFigures[], workers: number): string[] {
  const table = figureTable(
    'order',
    [
      { head: 'connections', figure: 'connections', cell: (f) => f.connections },
      { head: 'same worker as previous', figure: 'sameAsPrevious', cell: (f) => pct(f.sameAsPrevious) },
      { head: 'chance (1/N)', figure: 'expectedByChance', cell: (f) => pct(f.expectedByChance) },
      { head: 'same as N before', figure: 'samePeriodN', cell: (f) => pct(f.samePeriodN) },
      { head: 'busiest worker', figure: 'topShare', cell: (f) => pct(f.topShare) },
      { head: 'fingerprint', figure: 'classification', cell: (f) => f.classification, words: true },
      { head: 'failed', figure: 'failed', cell: (f) => f.failed },
      { head: 'listeners', figure: 'evidence.listeners', cell: (f) => f.evidence.listeners },
      { head: 'fds passed', figure: 'evidence.fdsPassed', cell: (f) => f.evidence.fdsPassed },
    ],
    order,
  );
  // Consecutive pairs: sameAsPrevious is an exact fraction of them.
  const pairs = (f: OrderFigures) => Math.max(0, f.connections - 1);
  const heading = 'Consecutive connections served by the same worker';
  const same = shareChart(
    heading,
    order.map((f) => ({
      label: f.model,
      count: Math.round(f.sameAsPrevious * pairs(f)),
      of: pairs(f),
      kind: 'other',
    })),
    workers,
  );
  return [
    table,
    figure(
      'same-as-previous',
      null,
      heading,
      same,
      `Of each model's consecutive pairs; the dashed line is what chance gives, 1/${workers}. Near 100% one worker takes everything (LIFO); near 0 the workers take turns (FIFO, round-robin).`,
    ),
    ...order.map((f) => perWorkerFigure(f.model, f.perWorker, 'connections')),
  ];
}

function lightParts(light: readonly LightFigures[]): string[] {
  const cost = figureTable(
    'light light-cost',
    [
      { head: 'connections/s', figure: 'connectionsPerSecond', cell: (f) => Math.round(f.connectionsPerSecond) },
      {
        head: 'limited by',
        figure: 'bound',
        cell: (f) => (f.bound === null ? 'servers' : `${f.bound} (flagged)`),
        words: true,
      },
      {
        head: 'server CPU µs/conn',
        figure: 'serverCpuUsPerConnection',
        cell: (f) => f.serverCpuUsPerConnection.toFixed(1),
      },
      {
        head: 'context switches/conn',
        figure: 'contextSwitchesPerConnection',
        cell: (f) => f.contextSwitchesPerConnection.toFixed(2),
      },
      {
        head: 'empty wakeups/conn',
        figure: 'emptyWakeupsPerConnection',
        cell: (f) => f.emptyWakeupsPerConnection.toFixed(2),
      },
      {
        head: 'rate vs reuseport',
        figure: 'ratioToReuseport.connectionsPerSecond',
        cell: (f) => ratio2(f.ratioToReuseport?.connectionsPerSecond),
      },
      {
        head: 'CPU vs reuseport',
        figure: 'ratioToReuseport.serverCpuPerConnection',
        cell: (f) => ratio2(f.ratioToReuseport?.serverCpuPerConnection),
      },
      { head: 'failed', figure: 'failed', cell: (f) => f.failed },
    ],
    light,
  );
  const balance = figureTable(
    'light light-balance',
    [
      { head: 'busiest:idlest', figure: 'maxOverMin', cell: (f) => times(f.maxOverMin).replace('×', ':1') },
      { head: 'top 2 workers', figure: 'topTwoShare', cell: (f) => pct(f.topTwoShare) },
      { head: 'distinct source ports', figure: 'distinctSourcePorts', cell: (f) => f.distinctSourcePorts },
      { head: 'χ² p over them', figure: 'chiSquare.pValue', cell: (f) => f.chiSquare.pValue.toFixed(3) },
      { head: 'latency stdev ms', figure: 'latency.stdevUs', cell: (f) => ms(f.latency.stdevUs) },
    ],
    light,
  );
  return [
    '<h3>Rate and cost</h3>',
    cost,
    '<h3>Balance</h3>',
    balance,
    ...light.map((f) => perWorkerFigure(f.model, f.perWorker, 'connections served')),
  ];
}

function heavyParts(heavy: readonly HeavyFigures[]): string[] {
  const table = figureTable(
    'heavy',
    [
      { head: 'requests per round', figure: 'median.count', cell: (f) => f.median.count },
      { head: 'mean ms', figure: 'median.meanUs', cell: (f) => ms(f.median.meanUs) },
      { head: 'p50 ms', figure: 'median.p50Us', cell: (f) => ms(f.median.p50Us) },
      { head: 'p99 ms', figure: 'median.p99Us', cell: (f) => ms(f.median.p99Us) },
      { head: 'max ms', figure: 'median.maxUs', cell: (f) => ms(f.median.maxUs) },
      { head: 'stdev ms', figure: 'median.stdevUs', cell: (f) => ms(f.median.stdevUs) },
      { head: 'stdev vs fifo', figure: 'ratioToSharedFifo.stdev', cell: (f) => ratio2(f.ratioToSharedFifo?.stdev) },
      { head: 'max vs fifo', figure: 'ratioToSharedFifo.max', cell: (f) => ratio2(f.ratioToSharedFifo?.max) },
      { head: 'p99 vs fifo', figure: 'ratioToSharedFifo.p99', cell: (f) => ratio2(f.ratioToSharedFifo?.p99) },
      { head: 'mean vs fifo', figure: 'ratioToSharedFifo.mean', cell: (f) => ratio2(f.ratioToSharedFifo?.mean) },
    ],
    heavy,
  );
  return [table, ...histograms(heavy)];
}

// Histogram geometry, in SVG user units, on the scenario charts' width.
const HIST = { left: 56, right: 16, top: 18, plot: 120, bottom: 30 } as const;

/** One histogram per model, on one logarithmic latency axis and one share scale, so that shapes compare. */
function histograms(heavy: readonly HeavyFigures[]): string[] {
  const filled = heavy.filter((h) => h.histogram.counts.length > 0);
  const empty = (h: HeavyFigures) =>
    figure('histogram', h.model, `${h.model}: no request was served`, '<p class="note">no latency to draw</p>', '');
  if (filled.length === 0) return heavy.map(empty);
  const binsPerOctave = filled[0]?.histogram.binsPerOctave ?? 1;
  const lo = Math.min(...filled.map((h) => h.histogram.firstBin));
  const hi = Math.max(...filled.map((h) => h.histogram.firstBin + h.histogram.counts.length));
  const total = (h: HeavyFigures) => h.histogram.counts.reduce((a, b) => a + b, 0);
  const top = Math.max(...filled.map((h) => Math.max(...h.histogram.counts) / total(h)), 0);
  const width = CHART.width - HIST.left - HIST.right;
  const x = (bin: number) => HIST.left + ((bin - lo) / Math.max(1, hi - lo)) * width;
  const xOfUs = (us: number) => x(Math.min(hi, Math.max(lo, Math.log2(Math.max(us, 1)) * binsPerOctave)));
  const axisY = HIST.top + HIST.plot;
  const ticks = latencyTicks(histogramBinStartUs(lo, binsPerOctave), histogramBinStartUs(hi, binsPerOctave)).map(
    (us) =>
      `<line class="axis" x1="${xOfUs(us).toFixed(1)}" y1="${axisY}" x2="${xOfUs(us).toFixed(1)}" y2="${axisY + 4}"/><text class="tick" x="${xOfUs(us).toFixed(1)}" y="${axisY + 16}" text-anchor="middle">${text(latencyText(us))}</text>`,
  );
  return heavy.map((h) => {
    const n = total(h);
    if (n === 0) return empty(h);
    const heading = `${h.model}: latency of ${n} requests`;
    const bars = h.histogram.counts.flatMap((count, i) => {
      if (count === 0) return [];
      const bin = h.histogram.firstBin + i;
      const height = top > 0 ? (count / n / top) * HIST.plot : 0;
      const from = histogramBinStartUs(bin, binsPerOctave);
      const to = histogramBinStartUs(bin + 1, binsPerOctave);
      return [
        `<rect class="hist" data-count="${count}" x="${x(bin).toFixed(1)}" y="${(axisY - height).toFixed(1)}" width="${Math.max(1, x(bin + 1) - x(bin) - 1).toFixed(1)}" height="${height.toFixed(1)}"><title>${text(`${latencyText(from)} to ${latencyText(to)}: ${count} requests (${pct(count / n)})`)}</title></rect>`,
      ];
    });
    // p50's label above the plot, p99's inside it to the right of its line: they stay apart when the lines are close.
    const marker = (name: 'p50' | 'p99', us: number) => {
      const at = xOfUs(us);
      const label =
        name === 'p50'
          ? `x="${at.toFixed(1)}" y="${HIST.top - 7}" text-anchor="middle"`
          : `x="${(at + 3).toFixed(1)}" y="${HIST.top + 8}"`;
      return `<line class="marker ${name}" x1="${at.toFixed(1)}" y1="${HIST.top - 4}" x2="${at.toFixed(1)}" y2="${axisY}"/><text class="marker-label ${name}" ${label}>${name}</text>`;
    };
    const marks = [
      `<line class="axis" x1="${HIST.left}" y1="${HIST.top - 4}" x2="${HIST.left}" y2="${axisY}"/>`,
      `<line class="axis" x1="${HIST.left}" y1="${axisY}" x2="${HIST.left + width}" y2="${axisY}"/>`,
      `<text class="tick" x="${HIST.left - 6}" y="${axisY}" text-anchor="end">0</text>`,
      `<text class="tick" x="${HIST.left - 6}" y="${HIST.top + 8}" text-anchor="end">${pct(top)}</text>`,
      ...ticks,
      marker('p50', h.median.p50Us),
      marker('p99', h.median.p99Us),
    ];
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" class="chart histogram" viewBox="0 0 ${CHART.width} ${axisY + HIST.bottom}" role="img" aria-label="${text(heading)}"><title>${text(heading)}</title>${marks.join('')}${bars.join('')}</svg>`;
    const m = h.median;
    const ratio = h.ratioToSharedFifo;
    const caption = `Medians of ${h.rounds.length} rounds: mean ${ms(m.meanUs)} ms, p50 ${ms(m.p50Us)} ms, p99 ${ms(m.p99Us)} ms, max ${ms(m.maxUs)} ms, stdev ${ms(m.stdevUs)} ms${ratio ? `; against shared-fifo: stdev ${ratio2(ratio.stdev)}, max ${ratio2(ratio.max)}, mean ${ratio2(ratio.mean)}` : ''}. Bars: share of this model's requests in each quarter-octave of latency (one scale for every model); lines: p50 and p99.`;
    return figure('histogram', h.model, heading, svg, caption);
  });
}

/** 1-2-5 steps between `fromUs` and `toUs`; the two ends when no step falls between. */
function latencyTicks(fromUs: number, toUs: number): number[] {
  const ticks: number[] = [];
  for (let decade = 10 ** Math.floor(Math.log10(fromUs)); decade <= toUs; decade *= 10) {
    for (const step of [1, 2, 5]) if (decade * step >= fromUs && decade * step <= toUs) ticks.push(decade * step);
  }
  return ticks.length >= 2 ? ticks : [fromUs, toUs];
}

function latencyText(us: number): string {
  const round = (v: number) => String(Number(v.toPrecision(3)));
  if (us >= 1e6) return `${round(us / 1e6)} s`;
  return us >= 1000 ? `${round(us / 1000)} ms` : `${round(us)} µs`;
}

function stallParts(stall: readonly StallFigures[], workers: number): string[] {
  const table = figureTable(
    'stall',
    [
      { head: 'started while stopped', figure: 'startedWhileStopped', cell: (f) => f.startedWhileStopped },
      { head: 'landed on stopped', figure: 'landedOnStopped', cell: (f) => f.landedOnStopped },
      { head: 'expected (1/N)', cell: (f) => (f.startedWhileStopped * f.expectedShare).toFixed(1) },
      { head: 'of 1/N share', figure: 'ofExpected', cell: (f) => times(f.ofExpected) },
      { head: 'delayed >100 ms', figure: 'delayed', cell: (f) => f.delayed },
      { head: 'timed out', figure: 'timedOut', cell: (f) => f.timedOut },
      { head: 'failed', figure: 'failed', cell: (f) => f.failed },
      { head: 'max ms', figure: 'maxLatencyUs', cell: (f) => ms(f.maxLatencyUs) },
      { head: 'resumed', figure: 'resumed', cell: (f) => (f.resumed ? 'yes' : 'NO'), words: true },
    ],
    stall,
  );
  const heading = 'Connections started during the stop that the stopped worker served';
  const chart = shareChart(
    heading,
    stall.map((f) => ({ label: f.model, count: f.landedOnStopped, of: f.startedWhileStopped, kind: 'stopped' })),
    workers,
  );
  return [
    table,
    figure(
      'stall-share',
      null,
      heading,
      chart,
      `A model that keeps its 1/${workers} share (the dashed line) kept sending new connections to a worker that could not serve them; a load-aware model sends none.`,
    ),
  ];
}

function slowTable(slow: readonly SlowFigures[]): string {
  return figureTable(
    'slow',
    [
      { head: 'connections', figure: 'connections', cell: (f) => f.connections },
      { head: 'timed out', figure: 'timedOut', cell: (f) => f.timedOut },
      { head: 'share', figure: 'timedOutShare', cell: (f) => pct(f.timedOutShare) },
      { head: 'delayed >100 ms', figure: 'delayed', cell: (f) => f.delayed },
      { head: 'served by slow', figure: 'servedBySlow', cell: (f) => f.servedBySlow },
      { head: 'failed', figure: 'failed', cell: (f) => f.failed },
      { head: 'p99 ms', figure: 'p99Us', cell: (f) => ms(f.p99Us) },
    ],
    slow,
  );
}

function verdictTable(verdicts: readonly Verdict[]): string {
  if (verdicts.length === 0) return '';
  const rows = verdicts.map(
    (v) =>
      `<tr data-verdict="${text(v.id)}"><td><span class="badge ${STATUS_CLASS[v.status]}">${text(v.status)}</span></td><td>${text(v.source)}</td><td>${text(v.published)}</td><td>${text(v.measured)}${v.reason ? `<br><span class="muted">why: ${text(v.reason)}</span>` : ''}</td></tr>`,
  );
  return `<h3>Verdicts</h3>
<table class="verdicts"><thead><tr><th>verdict</th><th>source</th><th>published</th><th>here</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function failuresSection(report: CompareReport): string {
  if (report.failures.length === 0) return '';
  const items = report.failures.map(
    (f) => `<li>${text(`${f.phase} ${f.model}: ${f.syscall} failed (errno ${f.errno})`)}</li>`,
  );
  return `<section id="failures"><h2>What could not run</h2><ul class="tone-bad">${items.join('')}</ul></section>`;
}

const STYLE = `
.badge.reproduced { background: var(--ok); } .badge.not-reproduced { background: var(--skip); }
.badge.unclear { background: var(--muted); } table.verdicts .badge { white-space: nowrap; }
.wide { overflow-x: auto; }
table.figures th[scope="row"] { white-space: nowrap; } table.machine th { width: 11rem; }
.regime { border-left: 3px solid var(--expected); padding-left: 0.7rem; }
.chart .bar.stopped { fill: var(--bad); } .chart .hist { fill: var(--expected); }
.chart .marker { stroke-width: 1.5; stroke-dasharray: 4 3; } .chart .marker.p50 { stroke: var(--ink); }
.chart .marker.p99 { stroke: var(--bad); } .chart .marker-label { font-size: 10px; }
.chart .marker-label.p50 { fill: var(--ink); } .chart .marker-label.p99 { fill: var(--bad); }
`;
