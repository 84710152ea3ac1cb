import type { LoadResult } from '../net/load-client.js';
import { formatPValue } from '../stats/chi-square.js';
import type { Style } from './style.js';
import { percent, renderTable } from './table.js';
import { fitLines } from './wrap.js';

/** The --json document's version: bumped when a field changes meaning or goes away. */
export const LOAD_JSON_VERSION = 1;

const BAR_WIDTH = 24;

export function loadJson(result: LoadResult): string {
  return JSON.stringify({ version: LOAD_JSON_VERSION, ...result }, null, 2);
}

/** `columns`: the width to fit (the terminal's; 80 when output is not a terminal). */
export function formatLoadResult(result: LoadResult, style: Style, columns = 80): string {
  const lines: string[] = [];
  const { host, port } = result.target;
  const target = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const noun = result.protocol === 'tcp' ? 'connections' : 'datagrams';
  lines.push(
    style.bold(
      `${result.protocol.toUpperCase()} load on ${target}: ${result.attempted} ${noun}, ${result.concurrency} at a time`,
    ),
  );
  const { balance } = result;
  if (result.perWorker.length > 0 && balance) {
    const byPorts = balance.basis === 'distinctSourcePorts';
    const counts = result.perWorker.map((w) => (byPorts ? w.distinctSourcePorts : w.count));
    const total = balance.counts.reduce((a, b) => a + b, 0);
    const even = total / balance.counts.length;
    const max = Math.max(even, ...counts);
    const rows = result.perWorker.map((w, i) => [
      String(w.workerId),
      String(w.pid),
      w.local,
      String(w.count),
      String(w.distinctSourcePorts),
      percent(counts[i]!, total),
      // The │ marks where a perfectly even share would end.
      { value: counts[i]!, max, width: BAR_WIDTH, mark: even, paint: style.cyan },
    ]);
    lines.push(
      renderTable(
        ['worker', 'pid', 'listener', noun, 'ports', 'share', `│ = 1/${balance.counts.length}`],
        rows,
        ['right', 'right', 'left', 'right', 'right', 'right'],
        columns,
      ),
    );
  }
  const outcomes = [`${result.attributed} attributed`];
  if (result.silent > 0)
    outcomes.push(
      result.protocol === 'tcp' ? `${result.silent} connected but silent` : `${result.silent} without reply`,
    );
  if (result.unrecognized > 0) outcomes.push(`${result.unrecognized} answered without a greeting`);
  outcomes.push(`${result.failed} failed`);
  if (result.inFlight > 0) outcomes.push(`${result.inFlight} cut off in flight`);
  if (result.notStarted > 0) outcomes.push(`${result.notStarted} not started`);
  const summary = `${outcomes.join(', ')} in ${(result.elapsedMs / 1000).toFixed(2)} s (${result.ratePerSec} ${noun}/s)`;
  lines.push(result.attributed === result.connections ? style.green(summary) : style.yellow(summary));
  if (result.failures.length > 0) {
    lines.push(
      renderTable(
        ['errno', 'count'],
        result.failures.map((f) => [f.code, String(f.count)]),
        ['left', 'right'],
        columns,
      ),
    );
  }
  if (balance) {
    const over =
      balance.basis === 'distinctSourcePorts'
        ? `over ${result.distinctSourcePorts} distinct source ports (ports repeated; a 4-tuple always lands on the same socket)`
        : `over ${result.attributed} ${noun}`;
    const verdict = balance.even ? `even spread (p ≥ ${balance.alpha})` : `uneven spread (p < ${balance.alpha})`;
    const used =
      balance.everyWorkerUsed === null
        ? 'pass --workers N to check that every worker was used'
        : balance.everyWorkerUsed
          ? `all ${balance.workersExpected} workers used`
          : `only ${balance.counts.filter((n) => n > 0).length} of ${balance.workersExpected} workers used`;
    const line = `balance ${over}: chi-square ${balance.chiSquare.toFixed(2)}, df ${balance.df}, p ${formatPValue(balance.pValue)}: ${verdict}; ${used}`;
    lines.push(balance.even && balance.everyWorkerUsed !== false ? line : style.yellow(line));
  }
  if (result.stoppedEarly === 'deadline')
    lines.push(style.yellow(`stopped at the deadline before every ${noun.slice(0, -1)} ended`));
  if (result.stoppedEarly === 'aborted')
    lines.push(style.yellow(`interrupted before every ${noun.slice(0, -1)} ended`));
  for (const hint of result.hints) lines.push(style.yellow(`hint: ${hint}`));
  return fitLines(lines.join('\n'), columns);
}
