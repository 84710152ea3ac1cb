import type { DoctorReport } from '../net/doctor.js';
import type { Style } from './style.js';

export function formatDoctorReport(report: DoctorReport, style: Style): string {
  const mark = { ok: style.green('✔'), warn: style.yellow('!'), fail: style.red('✘'), info: style.cyan('i') };
  const width = Math.max(...report.checks.map((c) => c.label.length));
  const lines = report.checks.map(
    (check) =>
      `${mark[check.status]} ${check.label.padEnd(width)}  ${style.bold(check.value)}\n  ${' '.repeat(width)}  ${style.dim(check.meaning)}`,
  );
  lines.push(
    report.ready
      ? style.green('Ready: serve and load can bind with SO_REUSEPORT.')
      : style.red('Not ready: fix the ✘ items above.'),
  );
  return lines.join('\n');
}
