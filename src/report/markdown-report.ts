/**
 * `--markdown FILE` and $GITHUB_STEP_SUMMARY: one table a pipeline shows on
 * the run's page, with the failures spelled out.
 */

import { safeText } from '../untrusted-text.js';
import type { RunDocument, ScenarioDocument } from './run-document.js';

const VERDICT: Record<string, string> = {
  passed: '✅ passed',
  failed: '❌ failed',
  skipped: '⏭️ skipped',
  error: '⚠️ could not run',
};

export function renderMarkdownSummary(document: RunDocument): string {
  const { summary } = document;
  const lines = [
    `### reuseport: ${summary.passed} of ${summary.total} scenario${summary.total === 1 ? '' : 's'} passed${document.interrupted ? ' (interrupted)' : ''}`,
    '',
  ];
  if (document.errors && document.errors.length > 0) {
    lines.push('Scenario files with mistakes:', '');
    for (const e of document.errors) lines.push(`- \`${code(`${e.file}:${e.line}:${e.column}`)}\` ${cell(e.message)}`);
    lines.push('');
  }
  if (document.scenarios.length > 0) {
    lines.push('| Scenario | Verdict | Time | Failed expectations |', '| --- | --- | ---: | --- |');
    for (const scenario of document.scenarios) {
      lines.push(
        `| \`${code(scenario.name)}\` ${cell(scenario.title)} | ${VERDICT[scenario.status] ?? cell(scenario.status)} | ${(scenario.durationMs / 1000).toFixed(1)} s | ${failures(scenario)} |`,
      );
    }
    lines.push('');
  }
  const counts = [
    `${summary.passed} passed`,
    `${summary.failed} failed`,
    ...(summary.errors > 0 ? [`${summary.errors} could not run`] : []),
    `${summary.skipped} skipped`,
  ];
  lines.push(
    `${counts.join(', ')} in ${(document.durationMs / 1000).toFixed(1)} s on ${cell(document.kernel)}, Node ${cell(document.node)}.`,
    '',
  );
  return lines.join('\n');
}

function failures(scenario: ScenarioDocument): string {
  if (scenario.status === 'skipped' || scenario.status === 'error') return cell(scenario.reason ?? '');
  const broken = scenario.expectations.filter((e) => !e.passed);
  return broken
    .map(
      (e) =>
        `${cell(e.description)}${e.line > 0 ? ` (\`${code(`${scenario.file}:${e.line}`)}\`)` : ''}: expected ${cell(e.expected)}, observed ${cell(e.observed)}`,
    )
    .join('<br>');
}

/**
 * Text for a table cell: no line break, no pipe, and none of the characters
 * that would start a link, an image, an HTML tag or emphasis.
 */
function cell(value: string): string {
  return safeText(value.replace(/\s*\n\s*/g, ' '))
    .replace(/[\\`*_[\]<>|!#~]/g, (char) => `\\${char}`)
    .replace(/&/g, '&amp;');
}

/** Text inside an inline code span: only the backtick and the pipe matter there. */
function code(value: string): string {
  return safeText(value).replace(/`/g, "'").replace(/\|/g, '\\|');
}
