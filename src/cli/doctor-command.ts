import { runDoctor } from '../net/doctor.js';
import { formatDoctorReport } from '../report/doctor-report.js';
import { openTerminal } from './terminal.js';

export async function doctorCommand(options: { json: boolean }): Promise<number> {
  const terminal = await openTerminal(options);
  const report = await runDoctor();
  terminal.out(
    options.json
      ? JSON.stringify({ version: 1, ...report }, null, 2)
      : formatDoctorReport(report, terminal.style, terminal.columns),
  );
  return report.ready ? 0 : 1;
}
