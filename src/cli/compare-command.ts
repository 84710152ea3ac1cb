import { type CompareOptions, runCompare } from '../compare/compare.js';
import { scaleFromEnv } from '../compare/run.js';
import { renderCompareHtml } from '../report/compare-html-report.js';
import { formatCompareReport } from '../report/compare-report.js';
import { checkWritable, writeFileAtomic } from './report-files.js';
import { interruptSignal, openTerminal, statusLine } from './terminal.js';

export async function compareCommand(
  options: Omit<CompareOptions, 'scale'> & { json: boolean; html?: string },
): Promise<number> {
  const scale = scaleFromEnv();
  // Before the run: a path that cannot be written should not cost a whole run to find out.
  if (options.html !== undefined) await checkWritable(options.html, '--html');
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
    if (options.html !== undefined) await writeFileAtomic(options.html, renderCompareHtml(report), '--html');
    if (report.interrupted) return 130;
    return report.failures.length > 0 ? 1 : 0;
  } finally {
    progress.stop();
    interrupt.release();
  }
}
