import { type ServeEvent, type ServeOptions, serve } from '../net/serve.js';
import { exitLine, SERVE_JSON_VERSION, startLine } from '../report/serve-report.js';
import { fitLines } from '../report/wrap.js';
import { interruptSignal, openTerminal, statusLine, watchClosedOutput } from './terminal.js';

const LIVE_REFRESH_MS = 200;

export async function serveCommand(options: ServeOptions & { json: boolean }): Promise<number> {
  const terminal = await openTerminal(options);
  const interrupt = interruptSignal();
  const output = watchClosedOutput();
  // Report lines are fitted to the terminal; NDJSON stays one event per line, and an error or
  // warning stays one line on stderr (the house form that scripts and problem matchers read).
  const out = (text: string) =>
    output.closed.stdout || terminal.out(options.json ? text : fitLines(text, terminal.columns));
  const err = (text: string) => output.closed.stderr || terminal.err(text);
  const counters = new Map<number, number>();
  let live = await statusLine(terminal, 'starting workers');
  // Redrawn on a timer, not per event, so the line always ends on the latest counts.
  const renderLive = () => {
    if (counters.size === 0 || output.closed.stderr) return;
    const parts = [...counters].sort((a, b) => a[0] - b[0]).map(([id, n]) => `w${id} ${n}`);
    const total = [...counters.values()].reduce((a, b) => a + b, 0);
    live.update(`accepted ${total}  (${parts.join(' · ')})  Ctrl-C to stop`);
  };
  const refresh = terminal.interactive ? setInterval(renderLive, LIVE_REFRESH_MS) : undefined;
  refresh?.unref();
  const onEvent = (event: ServeEvent) => {
    if (options.json) {
      out(JSON.stringify({ version: SERVE_JSON_VERSION, ...event }));
      if (event.event === 'warning') err(`reuseport: warning: ${event.message}`);
      return;
    }
    switch (event.event) {
      case 'warning':
        live.stop();
        err(terminal.style.yellow(`reuseport: warning: ${event.message}`));
        break;
      case 'listening':
        counters.set(event.workerId, 0);
        live.stop();
        out(startLine(event.address, event.port, event.pid));
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
    const summary = await serve(options, onEvent, AbortSignal.any([interrupt.signal, output.gone]));
    live.stop();
    if (options.json) {
      out(JSON.stringify({ version: SERVE_JSON_VERSION, event: 'stopped', ...summary }));
    } else {
      for (const worker of summary.workers) {
        const line = exitLine(summary.address, summary.port, worker);
        if (line !== null) out(line);
      }
    }
    if (summary.failure) err(terminal.style.red(`reuseport: ${summary.failure}`));
    return summary.exitCode;
  } finally {
    clearInterval(refresh);
    live.stop();
    interrupt.release();
  }
}
