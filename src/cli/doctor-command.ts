import { runDoctor } from '../net/doctor.js';
import { formatDoctorReport } from '../report/doctor-report.js';
import { runnableHere } from '../scenario/steering-run.js';
import { SCENARIOS_DIR } from './scenario-command.js';
import { openTerminal } from './terminal.js';

export async function doctorCommand(options: { json: boolean }): Promise<number> {
  const terminal = await openTerminal(options);
  const report = await runDoctor();
  const fit = await runnableHere(SCENARIOS_DIR);
  const total = fit.runnable.length + fit.skipped.length;
  report.checks.push({
    id: 'scenarios.kernel',
    label: 'Shipped scenarios',
    status: fit.skipped.length === 0 ? 'ok' : 'info',
    value: `${fit.runnable.length} of ${total} run on this kernel and CPUs`,
    meaning:
      fit.skipped.length === 0
        ? `every shipped scenario's kernel and CPU requirements are met (${fit.runnable.join(', ')})`
        : `runs ${fit.runnable.join(', ') || 'none'}; skips ${fit.skipped.map((s) => `${s.name} (${s.reason})`).join('; ')}`,
  });
  terminal.out(
    options.json
      ? JSON.stringify({ version: 1, ...report }, null, 2)
      : formatDoctorReport(report, terminal.style, terminal.columns),
  );
  return report.ready ? 0 : 1;
}
