import { type CompareOptions, runCompare } from '../compare/compare.js';
import { scaleFromEnv } from '../compare/run.js';
import { formatCompareReport } from '../report/compare-report.js';
import { interruptSignal, openTerminal, statusLine } from './terminal.js';

export async function compareCommand(options: Omit<CompareOptions, 'scale'> & { json: boolean }): Promise<number> {
  const scale = scaleFromEnv();
  const terminal = await openTerminal(options);
  const interrupt = interruptSignal();
  const progress = await statusLine(terminal, 'starting the models');
  try {
    const report = await runCompare(
      { ...options, scale },
      {
        signal: interrupt.signal,
        onRun: (run) =>
          progress.update(
            `${run.phase}: ${run.model}${run.phase === 'heavy' || run.phase === 'light' ? ` (round ${run.round + 1})` : ''}`,
          ),
      },
    );
    progress.stop();
    terminal.out(
      options.json ? JSON.stringify(report, null, 2) : formatCompareReport(report, terminal.style, terminal.columns),
    );
    if (report.interrupted) return 130;
    return report.failures.length > 0 ? 1 : 0;
  } finally {
    progress.stop();
    interrupt.release();
  }
}
