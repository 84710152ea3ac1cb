import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { renderHtmlReport } from '../src/report/html-report.js';
import { renderMarkdownSummary } from '../src/report/markdown-report.js';
import type { RunDocument } from '../src/report/run-document.js';
import { formatScenario } from '../src/report/scenario-report.js';
import { plainStyle } from '../src/report/style.js';
import { runScenarios } from '../src/scenario/runner.js';
import { loadScenario } from '../src/scenario/scenario-file.js';
import { chromiumMissing, launchChromium, openPage } from './browser.js';
import { type CliResult, ROOT, runCli, runShipped } from './helpers.js';

interface ShippedRun {
  dir: string;
  result: CliResult;
  document: RunDocument;
  html: string;
  markdown: string;
  junit: string;
  stepSummary: string;
}

const PREVIOUS_STEP = '### an earlier step\n\n';
let shipped: Promise<ShippedRun> | undefined;

/** What failed in a `--json` run, so that an assertion on its exit code says why. */
function failedExpectations(stdout: string): string {
  try {
    const doc = JSON.parse(stdout) as RunDocument;
    return doc.scenarios
      .flatMap((s) => s.expectations.filter((e) => !e.passed).map((e) => `${s.name}: ${e.description}: ${e.observed}`))
      .join('\n');
  } catch {
    return stdout.slice(0, 2000);
  }
}

/** One run of the shipped scenarios, writing every report; the tests below each check one of them. */
function shippedRun(): Promise<ShippedRun> {
  shipped ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reuseport-reports-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    const stepSummary = join(dir, 'step-summary.md');
    const files = { html: join(dir, 'report.html'), markdown: join(dir, 'summary.md'), junit: join(dir, 'junit.xml') };
    const result = await runShipped(
      ['scenario', 'all', '--json', '--html', files.html, '--markdown', files.markdown, '--junit', files.junit],
      (args) => {
        // A rerun starts from the same step summary, as a fresh pipeline step would.
        writeFileSync(stepSummary, PREVIOUS_STEP);
        return runCli(args, { env: { GITHUB_STEP_SUMMARY: stepSummary }, timeoutMs: 240_000 });
      },
    );
    assert.equal(result.code, 0, `${result.stderr}\n${failedExpectations(result.stdout)}`);
    return { dir, result, document: JSON.parse(result.stdout) as RunDocument, ...files, stepSummary };
  })();
  return shipped;
}

test('--html: the page renders in headless Chromium with one chart per traffic step, no console error and no fetch', {
  skip: chromiumMissing() ?? false,
  timeout: 300_000,
}, async () => {
  const run = await shippedRun();
  const ran = run.document.scenarios.filter((s) => s.traffic.length > 0);
  const steps = ran.reduce((sum, s) => sum + s.traffic.length, 0);
  assert.ok(steps > 0, 'the shipped scenarios send traffic');
  const browser = await launchChromium();
  try {
    const url = pathToFileURL(run.html).href;
    const { page, problems, requests } = await openPage(browser.context, url);
    assert.equal(await page.locator('section.scenario').count(), run.document.scenarios.length);
    assert.equal(await page.locator('svg.chart').count(), steps, 'one chart per traffic step');
    const box = await page.locator('svg.chart').first().boundingBox();
    assert.ok(box && box.width > 300 && box.height > 40, `the chart is drawn (${JSON.stringify(box)})`);
    const widest = await page
      .locator('svg.chart rect.bar')
      .evaluateAll((bars) => Math.max(...bars.map((b) => b.getBoundingClientRect().width)));
    assert.ok(widest > 50, 'the bars have a visible length');
    assert.ok((await page.locator('svg.chart rect.bar.expected').count()) > 0, 'the expected winner is marked');
    const multi = ran.flatMap((s) => s.traffic).filter((t) => t.perServer.length > 1).length;
    assert.equal(await page.locator('svg.chart line.fair').count(), multi, 'a 1/N line wherever several share');
    assert.ok((await page.locator('table.expectations tr.held').count()) > 0, 'the expectations are listed');
    assert.deepEqual(problems, [], 'no console error or warning (a blocked fetch would be one)');
    assert.deepEqual(requests, [url], 'the page itself is the only request');
  } finally {
    await browser.close();
  }
});

test('--html: the file is self-contained: no script, no external URL, a policy that forbids fetching', async () => {
  const { html } = await shippedRun();
  const page = readFileSync(html, 'utf8');
  assert.match(page, /<meta http-equiv="Content-Security-Policy" content="default-src 'none';/);
  assert.doesNotMatch(page, /<script|<link|<img|@import|url\(/i);
  const urls = page.match(/\b(?:https?:)?\/\/[^\s"'<)]+/g) ?? [];
  assert.deepEqual(
    urls.filter((u) => u !== 'http://www.w3.org/2000/svg'),
    [],
    'only the SVG namespace, which is a name, not a fetch',
  );
});

test('--html: setup, explanation and expectations of each scenario that ran are on the page', async () => {
  const { html, document } = await shippedRun();
  const page = readFileSync(html, 'utf8');
  for (const scenario of document.scenarios.filter((s) => s.status === 'passed')) {
    assert.ok(page.includes(`id="scenario-${scenario.name}"`), scenario.name);
    for (const server of scenario.setup?.servers ?? []) assert.ok(page.includes(`<th scope="row">${server.id}</th>`));
  }
  assert.match(page, /<h3>Why<\/h3>/);
  assert.match(page, /SO_REUSEPORT/);
});

test('report files are written whole: no temporary file is left beside them', async () => {
  const { dir } = await shippedRun();
  assert.deepEqual(readdirSync(dir).sort(), ['junit.xml', 'report.html', 'step-summary.md', 'summary.md']);
});

test('--markdown: a table with one row per scenario, its verdict and time', async () => {
  const { markdown, document } = await shippedRun();
  const text = readFileSync(markdown, 'utf8');
  assert.match(text, /^\| Scenario \| Verdict \| Time \| Failed expectations \|$/m);
  for (const scenario of document.scenarios) {
    assert.match(text, new RegExp(`^\\| \`${scenario.name}\` .* \\| ✅ passed \\| \\d+\\.\\d s \\|`, 'm'));
  }
});

test('GITHUB_STEP_SUMMARY: the summary is appended after what earlier steps wrote', async () => {
  const { stepSummary, markdown } = await shippedRun();
  assert.equal(readFileSync(stepSummary, 'utf8'), PREVIOUS_STEP + readFileSync(markdown, 'utf8'));
});

test('--junit: a JUnit parser reads every case with its file, line and time', async () => {
  const { junit, document } = await shippedRun();
  const xml = readFileSync(junit, 'utf8');
  assert.equal(XMLValidator.validate(xml), true, 'well-formed XML');
  const parsed = new XMLParser({
    ignoreAttributes: false,
    attributeNamePrefix: '',
    isArray: (name) => ['testsuite', 'testcase', 'property'].includes(name),
  }).parse(xml) as {
    testsuites: { tests: string; testsuite: { name: string; time: string; testcase: Record<string, string>[] }[] };
  };
  const suites = parsed.testsuites.testsuite;
  assert.equal(suites.length, document.scenarios.length);
  for (const suite of suites) {
    const scenario = document.scenarios.find((s) => s.name === suite.name);
    assert.ok(scenario, suite.name);
    assert.equal(suite.time, (scenario.durationMs / 1000).toFixed(3), 'the scenario took this long');
    const lines = readFileSync(join(ROOT, scenario.file), 'utf8').split('\n').length;
    for (const testcase of suite.testcase) {
      assert.equal(testcase.file, scenario.file, 'the file, relative to where the run started');
      const line = Number(testcase.line);
      assert.ok(line >= 1 && line <= lines, `${testcase.name}: line ${testcase.line} is in the file`);
    }
    const timed = suite.testcase.filter((c) => c.time !== undefined);
    for (const traffic of scenario.traffic) {
      const checks = suite.testcase.filter((c) => String(c.name).startsWith(`${traffic.id}: `));
      assert.ok(checks.length >= 2, `${traffic.id}: at least the accounting and answered checks`);
      for (const c of checks) assert.ok(c.time !== undefined, `${c.name} carries the time of its traffic`);
    }
    assert.equal(
      timed.length,
      suite.testcase.filter((c) => scenario.traffic.some((t) => String(c.name).startsWith(`${t.id}: `))).length,
      'only traffic checks carry a time',
    );
    // Five refused connections can take less than the half millisecond JUnit's three decimals show.
    for (const c of timed) assert.ok(Number(c.time) >= 0 && Number(c.time) <= Number(suite.time), c.name);
  }
  assert.equal(
    Number(parsed.testsuites.tests),
    suites.reduce((sum, s) => sum + s.testcase.length, 0),
  );
});

test('--html and --markdown are checked before the run: a missing folder is exit 2 at once', async () => {
  const result = await runCli(['scenario', 'all', '--html', '/nonexistent-reuseport/report.html']);
  assert.equal(result.code, 2);
  assert.equal(result.stdout, '', 'nothing ran');
  assert.match(result.stderr, /^reuseport: cannot write --html \/nonexistent-reuseport\/report\.html: its folder/);
  const dir = mkdtempSync(join(tmpdir(), 'reuseport-md-'));
  try {
    const folder = await runCli(['scenario', 'all', '--markdown', dir]);
    assert.equal(folder.code, 2);
    assert.match(folder.stderr, /--markdown .* is a directory/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a bad scenario file: each mistake as file:line:col: message, without the reuseport: prefix', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'reuseport-bad-'));
  try {
    writeFileSync(join(dir, 'bad.yaml'), 'name: bad\ntitle: t\nservers:\n  - id: A\n    port: 99999\n');
    const result = await runCli(['scenario', 'run', 'bad.yaml'], { cwd: dir });
    assert.equal(result.code, 2);
    const lines = result.stderr.trimEnd().split('\n');
    const summary = lines.pop() ?? '';
    assert.match(summary, /^reuseport: \d+ mistakes in the scenario file; fix them/);
    assert.ok(lines.length >= 2, result.stderr);
    // GitHub's and VS Code's usual matcher: ^(.+):(\d+):(\d+): (.+)$
    for (const line of lines) assert.match(line, /^bad\.yaml:\d+:\d+: \S.*$/);
    assert.ok(lines.includes('bad.yaml:5:11: servers[0].port must be an integer from 0 to 65535, got 99999'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

const hostile: RunDocument = {
  version: 1,
  kernel: 'Linux test',
  node: 'v0',
  durationMs: 10,
  interrupted: false,
  summary: { total: 1, passed: 0, failed: 1, skipped: 0, errors: 0 },
  scenarios: [
    {
      name: 'x"><script>alert(1)</script>',
      title: '<img src=https://example.invalid/x.png> | pipe ` tick \u202e',
      file: 'labs/x.yaml',
      status: 'failed',
      reason: null,
      isolation: 'host',
      durationMs: 10,
      servers: [{ server: 'A', replica: 1, pid: 1, bind: 'ok' }],
      traffic: [
        {
          id: 't',
          target: '127.0.0.1',
          port: 1,
          attempted: 2,
          attributed: 2,
          silent: 0,
          inFlight: 0,
          failed: 0,
          failures: [],
          unanswered: [],
          perServer: [{ server: 'A', replica: 1, pid: 1, count: 2 }],
          elapsedMs: 1,
        },
      ],
      expectations: [
        {
          kind: 'all',
          line: 3,
          description: '<b>t</b>',
          passed: false,
          expected: 'A 2/2',
          observed: '[x](javascript:1)',
        },
      ],
    },
  ],
};

test('HTML: text from a scenario file is escaped, and a document without article, lookFor, explanation or setup renders', () => {
  const page = renderHtmlReport(hostile);
  assert.doesNotMatch(page, /<script|<img|<b>/);
  assert.match(page, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  assert.match(page, /\\u202e/, 'a bidi override is shown, not obeyed');
  assert.doesNotMatch(page, /<h3>(The article|What to look for|Why)<\/h3>/);
  assert.equal(page.match(/<svg /g)?.length, 1);
});

test('Markdown: a scenario cannot break the table or inject a link or HTML', () => {
  const text = renderMarkdownSummary(hostile);
  const row = text.split('\n').find((l) => l.startsWith('| `x'));
  assert.ok(row, text);
  assert.equal(row.split(/(?<!\\)\|/).length, 6, 'four cells: no unescaped pipe from the scenario');
  assert.doesNotMatch(text, /(?<!\\)<(img|b)\b|(?<!\\)\]\(javascript/);
});

// A counter read that fails (read(2) on the fd the parent holds; no real run can be made to fail it) gives a null
// count. The report says so in words, where it would otherwise print a number.
test('a worker count that cannot be known is printed as unknown, in words, not as a number', async () => {
  const scenario = await loadScenario(join(ROOT, 'scenarios', 'load-balance.yaml'));
  const report = await runScenarios([scenario], { isolation: 'auto' }, { signal: new AbortController().signal });
  const result = report.results[0]!;
  const deltas = result.observations?.traffic[0]?.workerDeltas;
  assert.ok(deltas && deltas.length === 5, `the run measured its five workers: ${result.status} ${result.reason}`);
  const known = formatScenario(result, plainStyle, 200);
  assert.match(known, new RegExp(`\\(${deltas[0]!.pid}\\) accept success: ${deltas[0]!.accepted}$`, 'm'));
  deltas[0]!.accepted = null;
  const text = formatScenario(result, plainStyle, 200);
  assert.match(
    text,
    new RegExp(`\\(${deltas[0]!.pid}\\) accept success: unknown \\(its counter file could not be read\\)$`, 'm'),
  );
  assert.doesNotMatch(text, /accept success: (null|NaN|undefined)/);
});
