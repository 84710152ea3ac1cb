import type { TimeBudget } from '../compare/budget.js';
import type { CompareReport } from '../compare/compare.js';
import { isNodeModel } from '../compare/protocol.js';
import type { Verdict } from '../compare/verdicts.js';
import type { Style } from './style.js';
import { renderTable } from './table.js';
import { fitLines } from './wrap.js';

export const ms = (us: number) => (us / 1000).toFixed(2);
export const pct = (value: number) => `${(value * 100).toFixed(0)}%`;
export const times = (value: number | undefined) =>
  value === undefined ? '-' : Number.isFinite(value) ? `${value.toFixed(1)}×` : '∞';

function verdictLine(v: Verdict, style: Style): string {
  const mark =
    v.status === 'reproduced'
      ? style.green('reproduced')
      : v.status === 'unclear'
        ? style.yellow('unclear')
        : style.yellow('not reproduced here');
  const lines = [`  ${style.bold(v.source)}: ${v.published}.`, `    here: ${v.measured} → ${mark}`];
  if (v.reason) lines.push(style.dim(`    why: ${v.reason}`));
  return lines.join('\n');
}

function section(title: string, body: string, verdicts: Verdict[], style: Style): string {
  return [style.bold(title), body, ...verdicts.map((v) => verdictLine(v, style))].join('\n');
}

export const ADVICE_HEADING = 'What this means for choosing a model';

/** The choosing-a-model advice, one item per kind of workload, from what this run showed. */
export function adviceItems(report: CompareReport): string[] {
  const said = (id: string) => report.verdicts.find((v) => v.id === id)?.status === 'reproduced';
  return [
    'Short, even requests: reuseport, blocking shared accept and the dispatchers all spread connections evenly; reuseport spends the least server CPU per connection, a dispatcher the most.',
    said('heavy.cloudflare')
      ? 'Uneven or CPU-heavy requests: a shared queue (blocking accept) or a least-loaded dispatcher keeps tail latency low; reuseport queues behind busy workers.'
      : 'Uneven or CPU-heavy requests: prefer a shared queue or a least-loaded dispatcher for tail latency (this run could not show the gap clearly; see the heavy verdict).',
    said('stall.reuseport')
      ? 'Workers that can stall (GC, blocking I/O): reuseport keeps sending them 1/N of new connections; load-aware models do not.'
      : 'Workers that can stall: load-aware models route around them; check the stall verdict for reuseport here.',
    'epoll with EPOLLEXCLUSIVE on a shared socket concentrates connections on one worker: good for cache warmth at low load, bad for balance.',
  ];
}

function advice(report: CompareReport): string {
  return [`${ADVICE_HEADING}:`, ...adviceItems(report).map((item) => `- ${item}`)].join('\n');
}

export const ratio2 = (value: number | undefined) => (value === undefined ? '-' : `${value.toFixed(2)}×`);
const seconds = (value: number) => `${(value / 1000).toFixed(1)} s`;

/** Where the time went, against the budget. */
export function budgetLine(budget: TimeBudget): string {
  const parts = Object.entries(budget.phases).map(([phase, t]) => `${phase} ${seconds(t.usedMs)}`);
  const rerun = budget.heavyRerun;
  if (rerun?.time) parts.push(`heavy rerun ${seconds(rerun.time.usedMs)}`);
  parts.push(`other ${seconds(budget.otherMs)}`);
  const verdict = budget.withinLimit ? 'within' : 'OVER';
  const skipped = rerun?.skipped ? `; heavy rerun skipped: ${rerun.skipped}` : '';
  return `time: ${parts.join(', ')}; ${seconds(budget.totalMs)}, ${verdict} the ${seconds(budget.limitMs)} budget${skipped}`;
}

function nodeSection(report: CompareReport, style: Style, columns: number): string[] {
  const node = report.nodeModels;
  if (node === null) return [];
  const rows = report.figures.light
    .filter((f) => isNodeModel(f.model))
    .map((f) => [
      f.model,
      String(Math.round(f.connectionsPerSecond)),
      f.serverCpuUsPerConnection.toFixed(1),
      ratio2(f.ratioToReuseport?.connectionsPerSecond),
      ratio2(f.ratioToReuseport?.serverCpuPerConnection),
      pct(f.topTwoShare),
      String(f.evidence.listeners),
    ]);
  const out = [
    style.bold(
      `node: Node ${node.version} cluster models against C reuseport under light load (heavy and stall: in their tables below)`,
    ),
  ];
  if (rows.length > 0) {
    out.push(
      renderTable(
        ['model', 'connections/s', 'server µs/conn', 'rate vs reuseport', 'CPU vs reuseport', 'top 2', 'listeners'],
        rows,
        ['left', 'right', 'right', 'right', 'right', 'right', 'right'],
        columns,
      ),
      style.dim(
        '  server CPU counts the primary and every worker; ratios are medians of per-round ratios to C reuseport in the same round',
      ),
    );
  }
  for (const missing of node.notAvailable) out.push(`  ${missing.model}: ${missing.reason}`);
  return [...out, ''];
}

/** `columns`: the width to fit (the terminal's; 80 when output is not a terminal). */
export function formatCompareReport(report: CompareReport, style: Style, columns = 80): string {
  const { figures } = report;
  const of = (phase: Verdict['phase']) => report.verdicts.filter((v) => v.phase === phase);
  const out: string[] = [
    style.bold(
      `reuseport compare: ${report.kernel}, ${report.cores} cores, ${report.workers} workers per model, ${seconds(report.durationMs)} of a ${seconds(report.budget.limitMs)} budget`,
    ),
    style.dim(`ran in ${report.isolation.note}`),
    '',
  ];
  if (figures.order.length > 0) {
    const rows = figures.order.map((f) => [
      f.model,
      { before: `${pct(f.sameAsPrevious).padStart(4)} `, value: f.sameAsPrevious, max: 1, width: 20 },
      pct(f.expectedByChance),
      f.classification,
      String(f.evidence.listeners),
      String(f.evidence.fdsPassed),
    ]);
    out.push(
      section(
        `order: ${figures.order[0]?.connections ?? 0} sequential connections, who serves the next one`,
        renderTable(
          ['model', 'same worker as previous', 'chance', 'fingerprint', 'listeners', 'fds passed'],
          rows,
          ['left', 'left', 'right', 'left', 'right', 'right'],
          columns,
        ),
        of('order'),
        style,
      ),
      '',
    );
  }
  if (figures.light.length > 0) {
    const top = Math.max(...figures.light.map((f) => f.connectionsPerSecond));
    const rows = figures.light.map((f) => [
      f.model,
      {
        before: `${Math.round(f.connectionsPerSecond).toString().padStart(6)} `,
        value: f.connectionsPerSecond,
        max: top,
        width: 16,
        after: f.bound ? style.dim(` ${f.bound}-bound`) : '',
      },
      f.serverCpuUsPerConnection.toFixed(1),
      f.contextSwitchesPerConnection.toFixed(2),
      f.emptyWakeupsPerConnection.toFixed(2),
      times(f.maxOverMin).replace('×', ':1'),
      pct(f.topTwoShare),
      f.chiSquare.pValue.toFixed(3),
      ms(f.latency.stdevUs),
    ]);
    out.push(
      section(
        `light: closed loop, 8 clients, a two-byte reply; medians of ${report.setup.lightRounds} alternating rounds`,
        renderTable(
          [
            'model',
            'connections/s',
            'server µs/conn',
            'switches/conn',
            'empty wakeups',
            'max:min',
            'top 2',
            'χ² p (ports)',
            'stdev ms',
          ],
          rows,
          ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
          columns,
        ),
        of('light'),
        style,
      ),
      '',
    );
  }
  out.push(...nodeSection(report, style, columns));
  if (figures.heavy.length > 0) {
    const top = Math.max(...figures.heavy.map((f) => f.ratioToSharedFifo?.stdev ?? 0));
    const rows = figures.heavy.map((f) => [
      f.model,
      ms(f.median.meanUs),
      ms(f.median.p50Us),
      ms(f.median.p99Us),
      ms(f.median.maxUs),
      ms(f.median.stdevUs),
      {
        before: `${times(f.ratioToSharedFifo?.stdev).padStart(6)} `,
        value: f.ratioToSharedFifo?.stdev ?? 0,
        max: top,
        width: 16,
      },
      times(f.ratioToSharedFifo?.max),
      times(f.ratioToSharedFifo?.mean),
    ]);
    out.push(
      section(
        `heavy: ${report.setup.burnUs} µs of CPU per request (Node workers: the same C loop through the addon), ${report.setup.heavyConcurrency} clients, medians of ${figures.heavy[0]?.rounds.length ?? 0} alternating rounds${report.heavyRerun ? ' (reuseport and shared-fifo rerun once, rounds pooled: the first baseline was too noisy)' : ''}`,
        renderTable(
          ['model', 'mean ms', 'p50', 'p99', 'max', 'stdev', 'stdev vs fifo', 'max vs fifo', 'mean vs fifo'],
          rows,
          ['left', 'right', 'right', 'right', 'right', 'right', 'left', 'right', 'right'],
          columns,
        ),
        of('heavy'),
        style,
      ),
      '',
    );
  }
  if (figures.stall.length > 0) {
    const top = Math.max(...figures.stall.map((f) => f.landedOnStopped), 1);
    const first = figures.stall[0];
    const rows = figures.stall.map((f) => [
      f.model,
      {
        before: `${`${f.landedOnStopped}/${f.startedWhileStopped}`.padStart(9)} `,
        value: f.landedOnStopped,
        max: top,
        width: 16,
      },
      times(f.ofExpected),
      String(f.delayed),
      String(f.timedOut),
      String(f.failed),
      ms(f.maxLatencyUs),
      f.resumed ? 'yes' : style.red('NO'),
    ]);
    out.push(
      section(
        `stall: worker ${first?.stoppedWorker ?? 0} stopped (SIGSTOP) for ${Math.round(first?.stoppedForMs ?? 0)} ms under 2000 connections/s`,
        [
          renderTable(
            [
              'model',
              'landed on stopped',
              'of 1/N share',
              'delayed >100ms',
              'timed out',
              'failed',
              'max ms',
              'resumed',
            ],
            rows,
            ['left', 'left', 'right', 'right', 'right', 'right', 'right', 'left'],
            columns,
          ),
          ...figures.stall
            .filter((f) => f.overloaded)
            .map((f) =>
              style.dim(
                `  ${f.model}: ${f.delayedOnOtherWorkers} of its delayed connections were served by workers that were never stopped: it could not keep up with 2000 connections/s here, so not every delay is the stall's`,
              ),
            ),
        ].join('\n'),
        of('stall'),
        style,
      ),
      '',
    );
  }
  if (figures.slow.length > 0) {
    const top = Math.max(...figures.slow.map((f) => f.timedOut), 1);
    const rows = figures.slow.map((f) => [
      f.model,
      { before: `${`${f.timedOut}/${f.connections}`.padStart(9)} `, value: f.timedOut, max: top, width: 16 },
      pct(f.timedOutShare),
      String(f.delayed),
      String(f.servedBySlow),
      String(f.failed),
      ms(f.p99Us),
    ]);
    out.push(
      section(
        `slow: worker 0 sleeps ${report.setup.slowSleepMs} ms on every ${report.setup.slowEvery}th request, 1000 connections/s, 300 ms timeout`,
        renderTable(
          ['model', 'timed out', 'share', 'delayed >100ms', 'served by slow', 'failed', 'p99 ms'],
          rows,
          ['left', 'left', 'right', 'right', 'right', 'right', 'right'],
          columns,
        ),
        of('slow'),
        style,
      ),
      '',
    );
  }
  for (const failure of report.failures) {
    out.push(style.red(`${failure.phase} ${failure.model}: ${failure.syscall} failed (errno ${failure.errno})`));
  }
  out.push(style.bold('This machine'), report.regime, style.dim(budgetLine(report.budget)), '', advice(report));
  if (report.interrupted) out.push('', style.yellow('interrupted: the figures above are partial'));
  return fitLines(out.join('\n'), columns);
}
