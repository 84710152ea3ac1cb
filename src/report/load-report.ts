import type { LoadResult } from '../net/load-client.js';
import type { Style } from './style.js';
import { bar, percent, renderTable } from './table.js';

export function formatLoadResult(result: LoadResult, style: Style): string {
  const lines: string[] = [];
  const { host, port } = result.target;
  const target = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const noun = result.protocol === 'tcp' ? 'connections' : 'datagrams';
  lines.push(
    style.bold(
      `${result.protocol.toUpperCase()} load on ${target}: ${result.attempted} ${noun}, ${result.concurrency} at a time`,
    ),
  );
  const max = Math.max(0, ...result.perWorker.map((w) => w.count), result.unattributed);
  const rows = result.perWorker.map((w) => [
    String(w.workerId),
    String(w.pid),
    w.local,
    String(w.count),
    percent(w.count, result.attempted),
    style.cyan(bar(w.count, max)),
  ]);
  if (result.unattributed > 0) {
    rows.push([
      '-',
      '-',
      'no greeting',
      String(result.unattributed),
      percent(result.unattributed, result.attempted),
      style.yellow(bar(result.unattributed, max)),
    ]);
  }
  if (rows.length > 0) {
    lines.push(
      renderTable(['worker', 'pid', 'listener', noun, 'share', ''], rows, ['right', 'right', 'left', 'right', 'right']),
    );
  }
  if (result.failures.length > 0) {
    lines.push(style.red(`failed: ${result.failed}`));
    lines.push(
      renderTable(
        ['errno', 'count'],
        result.failures.map((f) => [f.code, String(f.count)]),
        ['left', 'right'],
      ),
    );
  }
  const summary = `${result.succeeded} ok, ${result.failed} failed in ${(result.elapsedMs / 1000).toFixed(2)} s (${result.ratePerSec} ${noun}/s)`;
  lines.push(result.failed > 0 ? style.yellow(summary) : style.green(summary));
  if (result.stoppedEarly === 'deadline')
    lines.push(style.yellow('stopped at the deadline before every connection was tried'));
  if (result.stoppedEarly === 'aborted') lines.push(style.yellow('interrupted before every connection was tried'));
  for (const hint of result.hints) lines.push(style.yellow(`hint: ${hint}`));
  return lines.join('\n');
}
