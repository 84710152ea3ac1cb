/**
 * `scenario run --html FILE`: one self-contained page. No script, no font, no
 * image and no stylesheet is fetched: the charts are inline SVG and the
 * Content-Security-Policy forbids every fetch, so the page shows the same
 * offline, attached to a CI run, or years later.
 */
import { formatHostPort } from '../errors.js';
import { safeProse, safeText } from '../untrusted-text.js';
import { STEERING_CHART_STYLE, steeringCharts } from './html-steering-chart.js';
import type {
  ExpectationDocument,
  RunDocument,
  ScenarioDocument,
  ServerInstanceDocument,
  SetupDocument,
  TrafficDocument,
} from './run-document.js';
import { percent } from './table.js';

const STATUS_WORD: Record<string, string> = {
  passed: 'PASSED',
  failed: 'FAILED',
  skipped: 'SKIPPED',
  error: 'COULD NOT RUN',
};

export function renderHtmlReport(document: RunDocument): string {
  const { summary } = document;
  const title = `reuseport: ${summary.passed} of ${summary.total} scenarios passed`;
  return htmlPage(
    title,
    `reuseport (document version ${document.version})`,
    `<header>
<h1>SO_REUSEPORT scenarios</h1>
<p class="summary">${summaryLine(document)}</p>
<p class="meta">${text(document.kernel)} · Node ${text(document.node)} · ${seconds(document.durationMs)}${document.interrupted ? ' · <strong>interrupted</strong>' : ''}</p>
${fileErrors(document)}
<nav><ul>${document.scenarios.map((s) => `<li><a href="#${anchor(s.name)}">${statusBadge(s.status)} ${text(s.name)}</a></li>`).join('')}</ul></nav>
</header>
<main>
${document.scenarios.map(scenarioSection).join('\n')}
</main>`,
    STEERING_CHART_STYLE,
  );
}

/** The page around a report: the policy that forbids every fetch, and the shared style (plus `style`, a page's own). */
export function htmlPage(title: string, generator: string, body: string, style = ''): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="${text(generator)}">
<title>${text(title)}</title>
<style>${STYLE}${style}</style>
</head>
<body>
${body}
</body>
</html>
`;
}

function summaryLine(document: RunDocument): string {
  const { summary } = document;
  const parts = [
    `<span class="tone-ok">${summary.passed} passed</span>`,
    `<span class="${summary.failed > 0 ? 'tone-bad' : ''}">${summary.failed} failed</span>`,
    ...(summary.errors > 0 ? [`<span class="tone-bad">${summary.errors} could not run</span>`] : []),
    `<span class="${summary.skipped > 0 ? 'tone-skip' : ''}">${summary.skipped} skipped</span>`,
  ];
  return `${summary.total} scenario${summary.total === 1 ? '' : 's'}: ${parts.join(', ')}`;
}

function fileErrors(document: RunDocument): string {
  if (!document.errors || document.errors.length === 0) return '';
  const items = document.errors.map(
    (e) => `<li><code>${text(`${e.file}:${e.line}:${e.column}`)}</code> ${text(e.message)}</li>`,
  );
  return `<section class="file-errors"><h2>Scenario files with mistakes</h2><ul>${items.join('')}</ul></section>`;
}

function scenarioSection(scenario: ScenarioDocument): string {
  const parts: string[] = [];
  parts.push(
    `<section class="scenario status-${statusClass(scenario.status)}" id="${anchor(scenario.name)}">`,
    `<h2>${statusBadge(scenario.status)} ${text(scenario.name)}: ${text(scenario.title)}</h2>`,
    `<p class="meta"><code>${text(scenario.file)}</code> · ${scenario.isolation ? `isolation ${text(scenario.isolation)}` : 'did not run'} · ${seconds(scenario.durationMs)}</p>`,
  );
  if (scenario.reason) parts.push(`<p class="reason">${text(scenario.reason)}</p>`);
  if (scenario.article) parts.push(`<h3>The article</h3>${prose(scenario.article)}`);
  if (scenario.lookFor) parts.push(`<h3>What to look for</h3>${prose(scenario.lookFor)}`);
  if (scenario.setup || scenario.servers.length > 0) parts.push(setupBlock(scenario));
  for (const traffic of scenario.traffic) parts.push(trafficBlock(traffic, scenario.setup ?? null));
  parts.push(...steeringCharts(scenario));
  if (scenario.expectations.length > 0) parts.push(expectationsBlock(scenario.expectations));
  if (scenario.explanation) parts.push(`<h3>Why</h3>${prose(scenario.explanation)}`);
  parts.push('</section>');
  return parts.join('\n');
}

function setupBlock(scenario: ScenarioDocument): string {
  const setup = scenario.setup ?? null;
  const out: string[] = ['<h3>Setup</h3>'];
  if (setup && setup.addresses.length > 0) {
    const where = scenario.isolation === 'netns' ? "on the namespace's lo" : 'on the host';
    out.push(`<p>Addresses ${where}: ${setup.addresses.map((a) => `<code>${text(a)}</code>`).join(', ')}</p>`);
  }
  const sysctls = Object.entries(setup?.sysctls ?? {});
  if (sysctls.length > 0) {
    out.push(
      `<p>Sysctls in the namespace: ${sysctls.map(([k, v]) => `<code>${text(k)} = ${text(v)}</code>`).join(', ')}</p>`,
    );
  }
  for (const a of scenario.substitutions?.addresses ?? []) {
    out.push(`<p class="note"><code>${text(a.from)}</code> stands as <code>${text(a.to)}</code> on the host</p>`);
  }
  for (const p of scenario.substitutions?.ports ?? []) {
    out.push(`<p class="note">port ${p.from} is ${p.to} on the host</p>`);
  }
  const ids = setup ? setup.servers.map((s) => s.id) : [...new Set(scenario.servers.map((i) => i.server))];
  const rows = ids.map((id) => {
    const spec = setup?.servers.find((s) => s.id === id);
    const instances = scenario.servers.filter((i) => i.server === id);
    return `<tr><th scope="row">${text(id)}</th><td>${spec ? `<code>${text(formatHostPort(spec.address, spec.port))}</code>` : ''}</td><td>${text(spec?.protocol ?? '')}</td><td>${spec ? options(spec) : ''}</td><td>${text(owner(spec, instances))}</td><td class="num">${spec ? `×${spec.replicas}` : instances.length}</td><td>${bindCell(instances)}</td><td>${text(uniqueText(instances.map((i) => i.binder ?? '')))}</td><td class="num">${instances.map((i) => i.pid).join(' ')}</td></tr>`;
  });
  out.push(
    `<table class="setup"><thead><tr><th>server</th><th>address</th><th>proto</th><th>options</th><th>owner</th><th>procs</th><th>bind</th><th>binder</th><th>pids</th></tr></thead><tbody>${rows.join('')}</tbody></table>`,
  );
  return out.join('\n');
}

function options(spec: SetupDocument['servers'][number]): string {
  const list = [spec.reuseport ? 'SO_REUSEPORT' : 'no SO_REUSEPORT'];
  if (spec.reuseaddr !== undefined) list.push(spec.reuseaddr ? 'SO_REUSEADDR' : 'no SO_REUSEADDR');
  if (spec.ipv6Only) list.push('IPV6_V6ONLY');
  return list.map((o) => text(o)).join('<br>');
}

function owner(spec: SetupDocument['servers'][number] | undefined, instances: ServerInstanceDocument[]): string {
  const uids = uniqueText(instances.map((i) => (i.uid === null || i.uid === undefined ? '' : String(i.uid))));
  if (spec?.user !== undefined) return `user ${spec.user}${uids ? ` (uid ${uids})` : ''}`;
  return uids ? `uid ${uids}` : 'the runner';
}

function bindCell(instances: ServerInstanceDocument[]): string {
  if (instances.length === 0) return '<span class="muted">not started</span>';
  const outcomes = [...new Set(instances.map((i) => i.bind))];
  return outcomes
    .map((o) => {
      const message = instances.find((i) => i.bind === o && i.message)?.message;
      return `<span class="${o === 'ok' ? 'tone-ok' : 'tone-bad'}"${message ? ` title="${text(message)}"` : ''}>${text(o)}</span>`;
    })
    .join(' ');
}

function uniqueText(values: string[]): string {
  return [...new Set(values.filter((v) => v !== ''))].join(', ');
}

// Chart geometry, in SVG user units (the chart scales with the page).
export const CHART = { width: 720, label: 150, bar: 420, row: 26, top: 22, bottom: 26 } as const;

/** One horizontal bar per instance, as a share of everything sent, with the 1/N line. */
function trafficBlock(traffic: TrafficDocument, setup: SetupDocument | null): string {
  const noun = traffic.protocol === 'udp' ? 'datagrams' : 'connections';
  const winners = setup?.expectedWinners.filter((w) => w.traffic === traffic.id) ?? [];
  const expected = new Set(winners.flatMap((w) => w.servers));
  const multi = (server: string) => traffic.perServer.filter((p) => p.server === server).length > 1;
  const rows: ShareBar[] = traffic.perServer.map((p) => ({
    label: `${p.server}${multi(p.server) ? `#${p.replica}` : ''} (pid ${p.pid})`,
    count: p.count,
    of: traffic.attempted,
    kind: expected.has(p.server) ? 'expected' : 'other',
  }));
  if (traffic.failed > 0) {
    rows.push({
      label: `failed: ${traffic.failures.map((f) => `${f.code} ${f.count}`).join(', ')}`,
      count: traffic.failed,
      of: traffic.attempted,
      kind: 'failed',
    });
  }
  const n = traffic.perServer.length;
  const total = traffic.attempted;
  const heading = `Traffic ${traffic.id}: ${total} ${noun} to ${formatHostPort(traffic.target, traffic.port)}`;
  const caption = [
    `${traffic.attributed} answered${traffic.unanswered.map((u) => `, ${u.count} ${u.what}`).join('')}, in ${Math.round(traffic.elapsedMs)} ms.`,
    winners.length > 0
      ? `Expected: ${winners.map((w) => `${w.kind === 'balanced' ? 'balanced over' : w.kind === 'all' ? 'all to' : 'a share for'} ${w.servers.join(', ')}`).join('; ')} (★).`
      : '',
    n > 1 ? `The dashed line is an even share, 1/${n} of the ${noun}.` : '',
  ]
    .filter((s) => s !== '')
    .join(' ');
  return `<figure class="traffic">
<figcaption><strong>${text(heading)}</strong></figcaption>
${shareChart(heading, rows, n)}
<p class="caption">${text(caption)}</p>
</figure>`;
}

/** A bar of a share chart: `count` of `of`, drawn as that share of the full width. */
export interface ShareBar {
  label: string;
  count: number;
  of: number;
  /** The bar's class: other, expected (marked ★ expected), failed, or one a page styles itself. */
  kind: string;
}

/** One horizontal bar per row, each as a share of its own whole, with the 1/N line when n > 1. */
export function shareChart(heading: string, rows: readonly ShareBar[], n: number): string {
  const height = CHART.top + rows.length * CHART.row + CHART.bottom;
  const x0 = CHART.label;
  const scale = (row: ShareBar) => (row.of > 0 ? (row.count / row.of) * CHART.bar : 0);
  const bars = rows.map((row, i) => {
    const y = CHART.top + i * CHART.row;
    const w = scale(row);
    return [
      `<text class="label" x="${x0 - 8}" y="${y + 17}" text-anchor="end">${text(truncate(row.label, 24))}</text>`,
      `<rect class="bar ${row.kind}" x="${x0}" y="${y + 4}" width="${w.toFixed(1)}" height="${CHART.row - 8}"><title>${text(`${row.label}: ${row.count} of ${row.of}`)}</title></rect>`,
      `<text class="value" x="${x0 + w + 6}" y="${y + 17}">${row.count} (${percent(row.count, row.of)})${row.kind === 'expected' ? ' ★ expected' : ''}</text>`,
    ].join('');
  });
  const axisY = CHART.top + rows.length * CHART.row;
  const marks: string[] = [
    `<line class="axis" x1="${x0}" y1="${CHART.top - 4}" x2="${x0}" y2="${axisY}"/>`,
    `<line class="axis" x1="${x0}" y1="${axisY}" x2="${x0 + CHART.bar}" y2="${axisY}"/>`,
    `<text class="tick" x="${x0}" y="${axisY + 16}" text-anchor="middle">0</text>`,
    `<text class="tick" x="${x0 + CHART.bar}" y="${axisY + 16}" text-anchor="middle">100%</text>`,
  ];
  if (n > 1) {
    const x = (x0 + CHART.bar / n).toFixed(1);
    marks.push(
      `<line class="fair" x1="${x}" y1="${CHART.top - 6}" x2="${x}" y2="${axisY}"/>`,
      `<text class="fair-label" x="${x}" y="${CHART.top - 9}" text-anchor="middle">1/N = 1/${n}</text>`,
    );
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 ${CHART.width} ${height}" role="img" aria-label="${text(heading)}"><title>${text(heading)}</title>${marks.join('')}${bars.join('')}</svg>`;
}

function expectationsBlock(expectations: ExpectationDocument[]): string {
  const rows = expectations.map(
    (e) =>
      `<tr class="${e.passed ? 'held' : 'broken'}"><td class="mark">${e.passed ? '✔' : '✘'}</td><td>${text(e.description)}${e.line > 0 ? ` <span class="muted">(line ${e.line})</span>` : ''}</td><td>${text(e.expected)}</td><td>${text(e.observed)}</td></tr>`,
  );
  return `<h3>Expectations</h3>
<table class="expectations"><thead><tr><th></th><th>expectation</th><th>expected</th><th>observed</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function statusBadge(status: string): string {
  return `<span class="badge ${statusClass(status)}">${text(STATUS_WORD[status] ?? status.toUpperCase())}</span>`;
}

function statusClass(status: string): string {
  return ['passed', 'failed', 'skipped', 'error'].includes(status) ? status : 'error';
}

/** Untrusted prose: paragraphs at blank lines, the file's own line breaks folded. */
function prose(value: string): string {
  return safeProse(value)
    .split(/\n\s*\n/)
    .map((para) => para.replace(/\s*\n\s*/g, ' ').trim())
    .filter((para) => para !== '')
    .map((para) => `<p>${escapeHtml(para)}</p>`)
    .join('\n');
}

/** One line of untrusted text, for an element or an attribute. */
export function text(value: string): string {
  return escapeHtml(safeText(value));
}

function escapeHtml(value: string): string {
  return value
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** An id attribute: scenario names are letters, digits and dashes, but a file may say otherwise. */
function anchor(name: string): string {
  return `scenario-${name.replace(/[^A-Za-z0-9_-]/g, '_')}`;
}

export function truncate(value: string, max: number): string {
  return value.length > max ? `${value.slice(0, max - 1)}…` : value;
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}

const STYLE = `
:root { --ok: #1a7f37; --bad: #cf222e; --skip: #9a6700; --ink: #1f2328; --muted: #59636e; --line: #d1d9e0;
  --bar: #8c959f; --expected: #0969da; font-family: system-ui, sans-serif; color: var(--ink); background: #fff; }
body { max-width: 60rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid var(--line); padding-bottom: 0.3rem; }
h3 { margin: 1.2rem 0 0.4rem; font-size: 1.05rem; }
code { font-family: ui-monospace, monospace; font-size: 0.92em; }
.meta, .muted, .note, .caption { color: var(--muted); } .caption { font-size: 0.9rem; margin-top: 0.2rem; }
.summary { font-size: 1.15rem; } .tone-ok { color: var(--ok); } .tone-bad { color: var(--bad); }
.tone-skip { color: var(--skip); }
nav ul { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 0.4rem 1.2rem; }
nav a { color: inherit; text-decoration: none; }
.badge { display: inline-block; font-size: 0.72rem; font-weight: 700; padding: 0.1rem 0.45rem; border-radius: 0.3rem;
  color: #fff; vertical-align: middle; }
.badge.passed { background: var(--ok); } .badge.failed, .badge.error { background: var(--bad); }
.badge.skipped { background: var(--skip); }
.reason { border-left: 3px solid var(--skip); padding-left: 0.7rem; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 0.25rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.broken td { background: #ffebe9; } td.mark { width: 1.2rem; } tr.held td.mark { color: var(--ok); }
tr.broken td.mark { color: var(--bad); font-weight: 700; }
figure { margin: 1rem 0; } .chart { width: 100%; height: auto; font-size: 12px; }
.chart .label, .chart .value, .chart .tick { fill: var(--ink); } .chart .tick { fill: var(--muted); font-size: 10px; }
.chart .bar.other { fill: var(--bar); } .chart .bar.expected { fill: var(--expected); } .chart .bar.failed { fill: var(--bad); }
.chart .axis { stroke: var(--muted); stroke-width: 1; }
.chart .fair { stroke: var(--skip); stroke-width: 1.5; stroke-dasharray: 5 4; } .chart .fair-label { fill: var(--skip); font-size: 11px; }
`;
