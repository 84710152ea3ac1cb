import { decideEngine, type EngineRequest, requestedEngine } from '../net/engine.js';
import { type LoadOptions, runLoad } from '../net/load-client.js';
import { engineAvailability } from '../net/native.js';
import { formatLoadResult, loadJson } from '../report/load-report.js';
import { interruptSignal, openTerminal, statusLine } from './terminal.js';

export async function loadCommand(options: LoadOptions & { json: boolean; engine?: EngineRequest }): Promise<number> {
  const engine = decideEngine({
    requested: requestedEngine(options.engine),
    protocol: options.protocol,
    ...engineAvailability(),
  });
  const terminal = await openTerminal(options);
  const interrupt = interruptSignal();
  const progress = await statusLine(terminal, `connecting to ${options.host}:${options.port}`);
  try {
    const result = await runLoad(options, {
      signal: interrupt.signal,
      engine,
      onProgress: (done, total) => progress.update(`${progressBar(done, total)} ${done}/${total}`),
    });
    progress.stop();
    terminal.out(options.json ? loadJson(result) : formatLoadResult(result, terminal.style, terminal.columns));
    // Anything but a greeting on every connection is a failed run.
    return result.attributed === result.connections ? 0 : 1;
  } finally {
    progress.stop();
    interrupt.release();
  }
}

function progressBar(done: number, total: number, width = 24): string {
  const filled = total > 0 ? Math.round((done / total) * width) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}
