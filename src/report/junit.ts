import type { ExpectationResult } from '../scenario/expect.js';
import type { RunReport, ScenarioResult } from '../scenario/runner.js';
import { displayPath } from './scenario-report.js';

/** JUnit XML: one testsuite per scenario, one testcase per expectation. */
export function toJUnit(report: RunReport): string {
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  const { summary } = report;
  out.push(
    `<testsuites name="reuseport scenarios" tests="${countCases(report)}" failures="${countFailures(report)}" errors="${summary.errors}" skipped="${summary.skipped}" time="${seconds(report.durationMs)}">`,
  );
  for (const result of report.results) {
    const cases = result.expectations;
    const failures = cases.filter((c) => !c.passed).length;
    const tests = Math.max(cases.length, 1);
    out.push(
      `  <testsuite name="${xml(result.name)}" tests="${tests}" failures="${failures}" errors="${result.status === 'error' ? 1 : 0}" skipped="${result.status === 'skipped' ? 1 : 0}" time="${seconds(result.durationMs)}" file="${xml(result.file)}">`,
    );
    out.push('    <properties>');
    out.push(`      <property name="kernel" value="${xml(report.kernel)}"/>`);
    out.push(`      <property name="isolation" value="${xml(result.isolation ?? 'none')}"/>`);
    out.push('    </properties>');
    if (result.status === 'skipped' || (result.status === 'error' && cases.length === 0)) {
      out.push(
        `    <testcase classname="${xml(result.name)}" name="${xml(result.title)}" file="${xml(displayPath(result.file))}" time="${seconds(result.durationMs)}">`,
      );
      out.push(
        result.status === 'skipped'
          ? `      <skipped message="${xml(result.reason ?? '')}"/>`
          : `      <error message="${xml(result.reason ?? 'could not run')}"/>`,
      );
      out.push('    </testcase>');
    }
    for (const c of cases) {
      out.push(`    <testcase classname="${xml(result.name)}" name="${xml(c.description)}"${where(result, c)}>`);
      if (!c.passed) {
        out.push(
          `      <failure message="${xml(`expected ${c.expected}; observed ${c.observed}`)}" type="${xml(c.kind)}">${xml(`expected: ${c.expected}\nobserved: ${c.observed}${c.line > 0 ? `\n${result.file}:${c.line}` : ''}`)}</failure>`,
        );
      }
      out.push('    </testcase>');
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return `${out.join('\n')}\n`;
}

/**
 * The file and line a case judges (the step that started or sent, for the
 * checks every run makes) and, for traffic, the real time that traffic took.
 * A bind check has no time of its own, so it carries none rather than a 0.
 */
function where(result: ScenarioResult, c: ExpectationResult): string {
  const steps = result.observations?.steps ?? [];
  const traffic = steps.find((s) => s.kind === 'traffic' && c.description.startsWith(`${s.traffic.id}: `));
  const start = steps.find((s) => s.kind === 'start' && s.servers.some((id) => c.description.startsWith(`${id} `)));
  // A check of the whole run (every worker stayed alive) points at the first step.
  const line = c.line > 0 ? c.line : (traffic?.line ?? start?.line ?? steps[0]?.line ?? 0);
  const time = traffic?.kind === 'traffic' ? ` time="${seconds(traffic.traffic.load.elapsedMs)}"` : '';
  return ` file="${xml(displayPath(result.file))}"${line > 0 ? ` line="${line}"` : ''}${time}`;
}

function countCases(report: RunReport): number {
  return report.results.reduce((sum, r) => sum + Math.max(r.expectations.length, 1), 0);
}

function countFailures(report: RunReport): number {
  return report.results.reduce((sum, r) => sum + r.expectations.filter((e) => !e.passed).length, 0);
}

/**
 * A run that never started because its scenario files have mistakes: one
 * testsuite per file, one errored testcase per mistake, so a pipeline's JUnit
 * view shows them where it shows everything else.
 */
export function toJUnitFileErrors(
  issues: readonly { file: string; line: number; column: number; message: string }[],
): string {
  const byFile = new Map<string, typeof issues>();
  for (const issue of issues) byFile.set(issue.file, [...(byFile.get(issue.file) ?? []), issue]);
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  out.push(
    `<testsuites name="reuseport scenarios" tests="${issues.length}" failures="0" errors="${issues.length}" skipped="0" time="0.000">`,
  );
  for (const [file, mistakes] of byFile) {
    out.push(
      `  <testsuite name="${xml(file)}" tests="${mistakes.length}" failures="0" errors="${mistakes.length}" skipped="0" time="0.000" file="${xml(file)}">`,
    );
    for (const m of mistakes) {
      const where = `${file}:${m.line}:${m.column}`;
      out.push(
        `    <testcase name="${xml(`${where}: ${m.message}`)}" classname="scenario file" file="${xml(file)}" line="${m.line}">`,
      );
      out.push(`      <error message="${xml(m.message)}" type="scenario file">${xml(where)}</error>`);
      out.push('    </testcase>');
    }
    out.push('  </testsuite>');
  }
  out.push('</testsuites>');
  return `${out.join('\n')}\n`;
}

function seconds(ms: number): string {
  return (ms / 1000).toFixed(3);
}

function xml(text: string): string {
  return (
    text
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      // biome-ignore lint/suspicious/noControlCharactersInRegex: XML 1.0 forbids these characters
      .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f]/g, '')
  );
}
