import { type LoadOptions, runLoad } from '../net/load-client.js';
import type { EngineChoice } from '../net/native.js';
import { formatLoadResult } from '../report/load-report.js';
import { interruptSignal, openTerminal, statusLine } from './terminal.js';

export async function loadCommand(options: LoadOptions & { json: boolean; engine?: EngineChoice }): Promise<number> {
  const terminal = await openTerminal(options);
  const interrupt = interruptSignal();
  const progress = await statusLine(terminal, `connecting to ${options.host}:${options.port}`);
  try {
    const result = await runLoad(options, {
      signal: interrupt.signal,
      ...(options.engine ? { engine: options.engine } : {}),
      onProgress: (done, total) => progress.update(`${progressBar(done, total)} ${done}/${total}`),
    });
    progress.stop();
    terminal.out(options.json ? JSON.stringify(result, null, 2) : formatLoadResult(result, terminal.style));
    return result.failed === 0 && result.stoppedEarly === null ? 0 : 1;
  } finally {
    progress.stop();
    interrupt.release();
  }
}

function progressBar(done: number, total: number, width = 24): string {
  const filled = total > 0 ? Math.round((done / total) * width) : 0;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}
