import type { DoctorReport } from '../net/doctor.js';
import type { Style } from './style.js';
import { wrapLabelled, wrapProse } from './wrap.js';

/** Room the aligned layout needs for the explanation beside the labels; narrower terminals stack instead. */
const ALIGNED_MEANING_COLUMNS = 40;

export function formatDoctorReport(report: DoctorReport, style: Style, columns = 80): string {
  const mark = { ok: style.green('✔'), warn: style.yellow('!'), fail: style.red('✘'), info: style.cyan('i') };
  const width = Math.max(...report.checks.map((c) => c.label.length));
  const aligned = columns - (width + 4) >= ALIGNED_MEANING_COLUMNS;
  const meaningIndent = ' '.repeat(aligned ? width + 4 : 4);
  const lines = report.checks.map((check) => {
    const head = aligned
      ? wrapLabelled(
          `${mark[check.status]} ${check.label.padEnd(width)}  `,
          style.bold(check.value),
          columns,
          meaningIndent,
        )
      : wrapLabelled(`${mark[check.status]} ${check.label}: `, style.bold(check.value), columns, '    ');
    return `${head}\n${style.dim(wrapProse(check.meaning, columns, meaningIndent))}`;
  });
  lines.push(
    report.ready
      ? style.green(wrapProse('Ready: serve and load can bind with SO_REUSEPORT.', columns))
      : style.red(wrapProse('Not ready: fix the ✘ items above.', columns)),
  );
  return lines.join('\n');
}
