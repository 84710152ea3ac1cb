import assert from 'node:assert/strict';
import {
  existsSync,
  lstatSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import type { Page } from 'playwright-core';
import type { CompareReport } from '../src/compare/compare.js';
import { COMPARE_EXECUTABLE_RELATIVE_PATH, COMPARE_SCALE_ENV } from '../src/compare/run.js';
import { chromiumMissing, launchChromium, openPage } from './browser.js';
import { ROOT, runCli, tempDir } from './helpers.js';

const built = existsSync(join(ROOT, COMPARE_EXECUTABLE_RELATIVE_PATH));
const notBuilt = !built && `${COMPARE_EXECUTABLE_RELATIVE_PATH} is not built (no C toolchain)`;
const skipBrowser = notBuilt || chromiumMissing() || false;
/** Short phases, two workers and the three models every section and verdict needs: a run of a second or two. */
const SHORT = { [COMPARE_SCALE_ENV]: '0.1' };
const SMALL = ['--workers', '2', '--models', 'reuseport,shared-fifo,shared-lifo'];

const dir = mkdtempSync(join(tmpdir(), 'reuseport-compare-html-'));
const htmlFile = join(dir, 'compare.html');
let report: CompareReport;
let exitCode: number | null;
let stderr: string;

before(async () => {
  if (!built) return;
  const result = await runCli(['compare', ...SMALL, '--json', '--html', htmlFile], { env: SHORT, timeoutMs: 60_000 });
  exitCode = result.code;
  stderr = result.stderr;
  report = JSON.parse(result.stdout) as CompareReport;
});

let browser: Promise<Awaited<ReturnType<typeof launchChromium>>> | undefined;
let opened: Promise<{ page: Page; problems: string[]; requests: string[] }> | undefined;

/** The page in Chromium, opened once for the tests that read it. */
function comparePage(): Promise<{ page: Page; problems: string[]; requests: string[] }> {
  opened ??= (async () => {
    browser = launchChromium();
    return openPage((await browser).context, pathToFileURL(htmlFile).href);
  })();
  return opened;
}

after(async () => {
  if (browser) await (await browser).close();
  rmSync(dir, { recursive: true, force: true });
});

test('compare --html with --json: both are written, and the page has a section for every phase that ran', {
  skip: notBuilt,
}, () => {
  assert.equal(exitCode, 0, stderr);
  assert.deepEqual(report.phases, ['order', 'light', 'heavy', 'stall']);
  const html = readFileSync(htmlFile, 'utf8');
  for (const phase of report.phases) assert.match(html, new RegExp(`<section class="phase" id="${phase}">`), phase);
  assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none';/);
  assert.doesNotMatch(html, /<script|<link|<img|@import|url\(/i);
  assert.deepEqual(readdirSync(dir), ['compare.html'], 'no temporary file is left beside it');
});

test('compare --html: Chromium renders the histograms and per-worker bars, with no console error and no fetch', {
  skip: skipBrowser,
  timeout: 120_000,
}, async () => {
  const { page, problems, requests } = await comparePage();
  const models = report.models;
  assert.equal(await page.locator('#heavy figure.histogram svg.chart.histogram').count(), models.length);
  assert.equal(await page.locator('#order figure.per-worker svg.chart').count(), models.length);
  assert.equal(await page.locator('#light figure.per-worker svg.chart').count(), models.length);
  assert.equal(
    await page.locator('figure.per-worker svg.chart line.fair').count(),
    2 * models.length,
    'each per-worker chart has its 1/N line',
  );
  const tallest = await page
    .locator('svg.chart.histogram rect.hist')
    .evaluateAll((bars) => Math.max(...bars.map((b) => b.getBoundingClientRect().height)));
  assert.ok(tallest > 20, `the histogram bars are drawn (${tallest} px)`);
  const box = await page.locator('#stall svg.chart').boundingBox();
  assert.ok(box && box.width > 300 && box.height > 40, `the stall chart is drawn (${JSON.stringify(box)})`);
  assert.deepEqual(problems, [], 'no console error or warning (a blocked fetch would be one)');
  assert.deepEqual(requests, [pathToFileURL(htmlFile).href], 'the page itself is the only request');
});

const pct = (v: number) => `${(v * 100).toFixed(0)}%`;
const ms = (us: number) => (us / 1000).toFixed(2);
const ratio = (v: number) => `${v.toFixed(2)}×`;
const count = (v: number) => String(v);
/** How the page writes each figure it names with data-figure. */
const FORMAT: Record<string, (value: never) => string> = {
  connections: count,
  failed: count,
  sameAsPrevious: pct,
  expectedByChance: pct,
  samePeriodN: pct,
  topShare: pct,
  classification: String,
  'evidence.listeners': count,
  'evidence.fdsPassed': count,
  connectionsPerSecond: (v: number) => String(Math.round(v)),
  bound: (v: string | null) => (v === null ? 'servers' : `${v} (flagged)`),
  serverCpuUsPerConnection: (v: number) => v.toFixed(1),
  contextSwitchesPerConnection: (v: number) => v.toFixed(2),
  emptyWakeupsPerConnection: (v: number) => v.toFixed(2),
  'ratioToReuseport.connectionsPerSecond': ratio,
  'ratioToReuseport.serverCpuPerConnection': ratio,
  maxOverMin: (v: number) => (Number.isFinite(v) ? `${v.toFixed(1)}:1` : '∞'),
  topTwoShare: pct,
  distinctSourcePorts: count,
  'chiSquare.pValue': (v: number) => v.toFixed(3),
  'latency.stdevUs': ms,
  'median.count': count,
  'median.meanUs': ms,
  'median.p50Us': ms,
  'median.p99Us': ms,
  'median.maxUs': ms,
  'median.stdevUs': ms,
  'ratioToSharedFifo.stdev': ratio,
  'ratioToSharedFifo.max': ratio,
  'ratioToSharedFifo.p99': ratio,
  'ratioToSharedFifo.mean': ratio,
  startedWhileStopped: count,
  landedOnStopped: count,
  ofExpected: (v: number) => `${v.toFixed(1)}×`,
  delayed: count,
  timedOut: count,
  maxLatencyUs: ms,
  resumed: (v: boolean) => (v ? 'yes' : 'NO'),
};

function figureAt(phase: keyof CompareReport['figures'], model: string, path: string): unknown {
  const row = (report.figures[phase] as { model: string }[]).find((f) => f.model === model);
  assert.ok(row, `${phase} ${model} is in --json`);
  return path.split('.').reduce<unknown>((value, key) => (value as Record<string, unknown>)[key], row);
}

test('compare --html: every figure in the tables is the --json figure', {
  skip: skipBrowser,
  timeout: 120_000,
}, async () => {
  const { page } = await comparePage();
  const cells = await page.locator('section.phase tr[data-model] td[data-figure]').evaluateAll((tds) =>
    tds.map((td) => ({
      phase: td.closest('section')?.id ?? '',
      model: td.closest('tr')?.getAttribute('data-model') ?? '',
      figure: td.getAttribute('data-figure') ?? '',
      text: td.textContent ?? '',
    })),
  );
  for (const phase of ['order', 'light', 'heavy', 'stall'] as const) {
    assert.ok(cells.filter((c) => c.phase === phase).length >= report.models.length * 5, `${phase} has its figures`);
  }
  for (const cell of cells) {
    const format = FORMAT[cell.figure];
    assert.ok(format, `the test knows how ${cell.figure} is written`);
    const value = figureAt(cell.phase as keyof CompareReport['figures'], cell.model, cell.figure);
    assert.equal(cell.text, format(value as never), `${cell.phase} ${cell.model} ${cell.figure}`);
  }
});

test('compare --html: each histogram counts every served request of its model, and the bars are the per-worker counts', {
  skip: skipBrowser,
  timeout: 120_000,
}, async () => {
  const { page } = await comparePage();
  for (const heavy of report.figures.heavy) {
    const served = heavy.rounds.reduce((sum, r) => sum + r.latency.count, 0);
    assert.equal(
      heavy.histogram.counts.reduce((a, b) => a + b, 0),
      served,
      `${heavy.model}: the --json histogram`,
    );
    const drawn = await page
      .locator(`#heavy figure.histogram[data-model="${heavy.model}"] rect.hist`)
      .evaluateAll((bars) => bars.map((b) => Number(b.getAttribute('data-count'))));
    assert.deepEqual(
      drawn,
      heavy.histogram.counts.filter((c) => c > 0),
      `${heavy.model}: one bar per non-empty bin`,
    );
  }
  for (const phase of ['order', 'light'] as const) {
    for (const f of report.figures[phase]) {
      const values = await page
        .locator(`#${phase} figure.per-worker[data-model="${f.model}"] text.value`)
        .evaluateAll((texts) => texts.map((t) => Number((t.textContent ?? '').split(' ')[0])));
      assert.deepEqual(values, f.perWorker, `${phase} ${f.model}`);
    }
  }
});

test('compare --html: each verdict is on the page with its state, published figure and measured value', {
  skip: skipBrowser,
  timeout: 120_000,
}, async () => {
  const { page } = await comparePage();
  assert.ok(report.verdicts.length >= 4);
  for (const verdict of report.verdicts) {
    const row = page.locator(`#${verdict.phase} tr[data-verdict="${verdict.id}"]`);
    assert.equal(await row.locator('.badge').textContent(), verdict.status, verdict.id);
    const text = (await row.textContent()) ?? '';
    for (const part of [verdict.source, verdict.published, verdict.measured, verdict.reason ?? '']) {
      assert.ok(text.includes(part), `${verdict.id}: "${part}"`);
    }
  }
  assert.equal(await page.locator('#choosing li').count(), 4, 'the choosing-a-model advice');
  assert.ok(((await page.locator('#machine').textContent()) ?? '').includes(report.regime), 'the regime note');
});

test('compare --html to a folder that does not exist is exit 2, before any model runs', async () => {
  const missing = join(dir, 'no-such-folder', 'compare.html');
  const result = await runCli(['compare', '--json', '--html', missing], { env: SHORT });
  assert.equal(result.code, 2);
  assert.equal(result.stdout, '', 'no run, so no document');
  assert.equal(
    result.stderr,
    `reuseport: cannot write --html ${missing}: its folder does not exist; give a path in a writable folder\n`,
  );
});

test('compare --html to a directory is exit 2, before any model runs', async (t) => {
  const folder = tempDir(t);
  const result = await runCli(['compare', '--json', '--html', folder], { env: SHORT });
  assert.equal(result.code, 2);
  assert.equal(result.stdout, '');
  assert.match(result.stderr, /^reuseport: --html .* is a directory; give a file name\n$/);
});

test('compare --html replaces a planted symlink instead of writing through it', { skip: notBuilt }, async (t) => {
  const folder = tempDir(t);
  const victim = join(folder, 'victim');
  writeFileSync(victim, 'precious\n');
  const html = join(folder, 'compare.html');
  symlinkSync(victim, html);
  const result = await runCli(['compare', ...SMALL, '--phases', 'order', '--html', html], { env: SHORT });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
  assert.ok(lstatSync(html).isFile(), 'the link was replaced by a file');
  assert.match(readFileSync(html, 'utf8'), /^<!DOCTYPE html>/);
  assert.deepEqual(readdirSync(folder).sort(), ['compare.html', 'victim'], 'no temporary file left');
});
