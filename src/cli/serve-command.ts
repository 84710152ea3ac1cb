import { type ServeOptions, serve } from '../net/serve.js';
import type { WorkerEvent } from '../net/worker-pool.js';
import { acceptLine, startLine } from '../report/serve-report.js';
import { interruptSignal, openTerminal, statusLine } from './terminal.js';

const LIVE_REFRESH_MS = 200;

export async function serveCommand(options: ServeOptions & { json: boolean }): Promise<number> {
  const terminal = await openTerminal(options);
  const interrupt = interruptSignal();
  const counters = new Map<number, number>();
  let live = await statusLine(terminal, 'starting workers');
  // Redrawn on a timer, not per event, so the line always ends on the latest counts.
  const renderLive = () => {
    if (counters.size === 0) return;
    const parts = [...counters].sort((a, b) => a[0] - b[0]).map(([id, n]) => `w${id} ${n}`);
    const total = [...counters.values()].reduce((a, b) => a + b, 0);
    live.update(`accepted ${total}  (${parts.join(' · ')})  Ctrl-C to stop`);
  };
  const refresh = terminal.interactive ? setInterval(renderLive, LIVE_REFRESH_MS) : undefined;
  refresh?.unref();
  const onEvent = (event: WorkerEvent) => {
    if (options.json) {
      terminal.out(JSON.stringify(event));
      return;
    }
    switch (event.event) {
      case 'listening':
        counters.set(event.workerId, 0);
        live.stop();
        terminal.out(startLine(event.address, event.port, event.pid));
        void statusLine(terminal, 'waiting for connections').then((line) => {
          live = line;
        });
        break;
      case 'stats':
        counters.set(event.workerId, event.accepted);
        break;
      case 'error':
        // The summary says it once, at the end.
        live.stop();
        break;
      case 'exit':
        counters.set(event.workerId, event.accepted);
        break;
    }
  };
  try {
    const summary = await serve(options, onEvent, interrupt.signal);
    live.stop();
    if (options.json) {
      terminal.out(JSON.stringify({ event: 'stopped', ...summary }));
    } else {
      for (const worker of summary.workers) {
        if (worker.reason !== 'bind-failed') {
          terminal.out(acceptLine(summary.address, summary.port, worker.pid, worker.accepted));
        }
      }
    }
    if (summary.failure) terminal.err(terminal.style.red(`reuseport: ${summary.failure}`));
    return summary.exitCode;
  } finally {
    clearInterval(refresh);
    live.stop();
    interrupt.release();
  }
}
