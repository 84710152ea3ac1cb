// The before/after charts of `remap` and `sticky` (issue 9 §4): the counts
// in --json, checked against the expectation's own text and the sweeps'
// owners, and the charts as Chromium draws them.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { renderHtmlReport } from '../src/report/html-report.js';
import type { RunDocument, ScenarioDocument, SweepOwners, TrafficDocument } from '../src/report/run-document.js';
import type { RemapModelTally } from '../src/scenario/remap-model.js';
import { chromiumMissing, launchChromium, openPage } from './browser.js';
import { isRoot, runCli } from './helpers.js';

const canNamespace =
  spawnSync('unshare', isRoot ? ['--net', 'true'] : ['--net', '--map-root-user', 'true']).status === 0;
const noNamespace = !canNamespace && 'cannot create a network namespace here (unshare --net failed)';

interface RemapRun {
  scenario: ScenarioDocument;
  html: string;
}

let ran: Promise<RemapRun> | undefined;

/** One real run of the shipped group-change-remap scenario in a private namespace, with --json and --html. */
function remapRun(): Promise<RemapRun> {
  ran ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reuseport-remap-report-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    const html = join(dir, 'report.html');
    const result = await runCli(
      ['scenario', 'run', 'group-change-remap', '--isolation', 'netns', '--json', '--html', html],
      { timeoutMs: 120_000 },
    );
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const document = JSON.parse(result.stdout) as RunDocument;
    assert.equal(document.scenarios[0]?.isolation, 'netns');
    return { scenario: document.scenarios[0]!, html };
  })();
  return ran;
}

function kernelTally(e: ScenarioDocument['expectations'][number]): RemapModelTally {
  assert.ok(e.remap, `${e.description}: carries its counts`);
  assert.ok(!('cannot' in e.remap.kernel), 'swap-with-last judged the sweeps');
  return e.remap.kernel;
}

function ownersOf(scenario: ScenarioDocument, id: string): SweepOwners {
  const owners = scenario.traffic.find((t) => t.id === id)?.owners;
  assert.ok(owners, `traffic ${id} carries its owners`);
  return owners;
}

/** The pid that answered every round of each port, or null: read from the compact owners alone. */
function pidsOf(owners: SweepOwners): (number | null)[] {
  return owners.owner.map((n) => (n >= 0 ? owners.instances[n]!.pid : null));
}

test('--json: each remap carries stayed and moved counts that agree with its observed text and with the sweeps', {
  skip: noNamespace,
  timeout: 150_000,
}, async () => {
  const { scenario } = await remapRun();
  const remaps = scenario.expectations.filter((e) => e.kind === 'remap');
  assert.equal(remaps.length, 2);
  for (const e of remaps) {
    const kernel = kernelTally(e);
    const said =
      /^group (\[.*?\]) → (\[.*?\]); (\d+) ports judged: moved (\d+), predicted (\d+) certain \+ (\d+) near a slot boundary; (\d+) violations.*naive shift-down model: (\d+) violations/.exec(
        e.observed,
      );
    assert.ok(said, e.observed);
    const [, groupBefore, groupAfter, judged, moved, certain, possible, violations, naiveViolations] = said;
    assert.equal(`[${kernel.groupBefore.map((g) => g.label).join(', ')}]`, groupBefore);
    assert.equal(`[${kernel.groupAfter.map((g) => g.label).join(', ')}]`, groupAfter);
    assert.equal(kernel.judged, Number(judged));
    assert.equal(kernel.allowedMoves + kernel.forbiddenMoves, Number(moved));
    assert.equal(kernel.certainMoves, Number(certain));
    assert.equal(kernel.possibleMoves, Number(possible));
    assert.equal(kernel.forbiddenMoves + kernel.forbiddenStays, Number(violations));
    assert.equal(kernel.violatingPorts.length, Number(violations));
    assert.equal(kernel.judged, kernel.stayed + kernel.allowedMoves + kernel.forbiddenMoves);
    const naive = e.remap!.naive;
    assert.ok(!('cannot' in naive));
    assert.equal(naive.violatingPorts.length, Number(naiveViolations));
    assert.ok(naive.violatingPorts.length > 0, 'the naive model is contradicted by the same data');

    // The same counts again, from nothing but the two sweeps' compact owners.
    const before = pidsOf(ownersOf(scenario, e.remap!.before));
    const after = pidsOf(ownersOf(scenario, e.remap!.after));
    assert.equal(before.length, 400);
    const both = before.flatMap((was, i) => (was !== null && after[i] !== null ? [[was, after[i]] as const] : []));
    assert.equal(both.length, kernel.judged);
    assert.equal(both.filter(([was, now]) => was === now).length, kernel.stayed);
    assert.equal(both.filter(([was, now]) => was !== now).length, Number(moved));
  }
});

test('--json: a sweep is one instance index per source port, and sticky carries its counts', {
  skip: noNamespace,
  timeout: 150_000,
}, async () => {
  const { scenario } = await remapRun();
  const owners = ownersOf(scenario, 'four');
  assert.equal(owners.from, 41000);
  assert.equal(owners.owner.length, 400);
  assert.ok(owners.owner.every((n) => Number.isInteger(n) && n >= -2 && n < owners.instances.length));
  assert.deepEqual(
    owners.instances.map((i) => i.label),
    ['A#1', 'B#1', 'C#1', 'D#1'],
  );
  const sticky = scenario.expectations.find((e) => e.kind === 'sticky');
  assert.ok(sticky?.sticky, 'the sticky expectation carries its counts');
  const said = /^(\d+) ports × (\d+): (\d+) of \d+ ports answered, (\d+) unstable/.exec(sticky.observed);
  assert.ok(said, sticky.observed);
  assert.deepEqual(
    [sticky.sticky.ports, sticky.sticky.answered, sticky.sticky.unstable],
    [Number(said[1]), Number(said[3]), Number(said[4])],
  );
  assert.equal(owners.mixed.length, sticky.sticky.unstable, 'an unstable port is a mixed one');
  assert.equal(owners.owner.filter((n) => n >= 0).length, sticky.sticky.answered - sticky.sticky.unstable);
});

test('--html: Chromium draws a before/after chart per remap and a port strip for sticky, labelled with the JSON counts', {
  skip: noNamespace || chromiumMissing() || false,
  timeout: 180_000,
}, async () => {
  const { scenario, html } = await remapRun();
  const remaps = scenario.expectations.filter((e) => e.kind === 'remap');
  const browser = await launchChromium();
  try {
    const url = pathToFileURL(html).href;
    const { page, requests, problems } = await openPage(browser.context, url);
    const charts = page.locator('svg.remap-chart');
    assert.equal(await charts.count(), remaps.length, 'one chart per remap');
    for (const [i, e] of remaps.entries()) {
      const kernel = kernelTally(e);
      const chart = charts.nth(i);
      const box = await chart.boundingBox();
      assert.ok(box && box.width > 300 && box.height > 100, `the chart is drawn (${JSON.stringify(box)})`);
      const label = await chart.locator('text.moved-count').textContent();
      assert.equal(
        label,
        `${kernel.allowedMoves + kernel.forbiddenMoves} of ${kernel.judged} tuples moved: ${kernel.allowedMoves} as swap-with-last allows, ${kernel.forbiddenMoves} against it; ${kernel.stayed} stayed`,
      );
      const cells = await chart.locator('text.count').allTextContents();
      assert.equal(
        cells.reduce((sum, c) => sum + Number(c), 0),
        kernel.judged,
        'the matrix holds every judged tuple once',
      );
      assert.equal(
        await chart.locator('rect.cell').count(),
        kernel.groupBefore.length * kernel.groupAfter.length,
        'one cell per (slot before, slot after)',
      );
      assert.ok((await chart.locator('rect.moved').count()) > 0, 'the moved tuples are drawn');
      assert.equal(await chart.locator('rect.against').count(), 0, 'nothing moved against swap-with-last');
      const stripWidth = await chart
        .locator('g.strip')
        .first()
        .evaluate((g) => g.getBoundingClientRect().width);
      assert.ok(stripWidth > 150, `the strip of tuples is drawn (${stripWidth}px)`);
    }
    const sticky = scenario.expectations.find((e) => e.kind === 'sticky')!.sticky!;
    const stickyChart = page.locator('svg.sticky-chart');
    assert.equal(await stickyChart.count(), 1);
    assert.match(
      (await stickyChart.locator('text.unstable-count').textContent()) ?? '',
      new RegExp(`^${sticky.answered} of ${sticky.ports} ports answered, ${sticky.unstable} reached more than one`),
    );
    assert.deepEqual(problems, [], 'no console error or warning');
    assert.deepEqual(requests, [url], 'the page itself is the only request');
  } finally {
    await browser.close();
  }
});

/** Two listeners, four tuples: one stayed, one moved as allowed, one moved against the model, one unanswered. */
function hostileRemap(): RunDocument {
  const evil = '<script>x</script>';
  const sweep = (id: string, owner: number[]): TrafficDocument => ({
    id,
    target: '127.0.0.1',
    port: 1,
    attempted: 4,
    attributed: 3,
    silent: 1,
    inFlight: 0,
    failed: 0,
    failures: [],
    unanswered: [],
    perServer: [],
    elapsedMs: 1,
    owners: {
      from: 100,
      repeat: 1,
      instances: [
        { label: `${evil}#1`, pid: 11 },
        { label: 'B#1', pid: 12 },
      ],
      owner,
      mixed: [],
    },
  });
  const group = [
    { label: `${evil}#1`, pid: 11 },
    { label: 'B#1', pid: 12 },
  ];
  const tally: RemapModelTally = {
    groupBefore: group,
    groupAfter: group,
    judged: 3,
    unjudged: 1,
    stayed: 1,
    allowedMoves: 1,
    forbiddenMoves: 1,
    forbiddenStays: 0,
    certainMoves: 0,
    possibleMoves: 0,
    violatingPorts: [102],
  };
  return {
    version: 1,
    kernel: 'Linux test',
    node: 'v0',
    durationMs: 1,
    interrupted: false,
    summary: { total: 1, passed: 0, failed: 1, skipped: 0, errors: 0 },
    scenarios: [
      {
        name: 'r',
        title: 't',
        file: 'r.yaml',
        status: 'failed',
        reason: null,
        isolation: 'netns',
        durationMs: 1,
        servers: [
          { server: evil, replica: 1, pid: 11, bind: 'ok' },
          { server: 'B', replica: 1, pid: 12, bind: 'ok' },
        ],
        traffic: [sweep(`${evil}before`, [0, 0, 1, -1]), sweep('after', [0, 1, 0, 0])],
        expectations: [
          {
            kind: 'remap',
            line: 1,
            description: 'd',
            passed: false,
            expected: 'e',
            observed: 'o',
            remap: { before: `${evil}before`, after: 'after', kernel: tally, naive: { cannot: `${evil}` } },
          },
        ],
      },
    ],
  };
}

test('HTML: a move against swap-with-last is drawn red, and scenario text in the chart is escaped', () => {
  const page = renderHtmlReport(hostileRemap());
  assert.doesNotMatch(page, /<script/);
  const chart = /<svg [^>]*class="steering-chart remap-chart"[\s\S]*?<\/svg>/.exec(page)?.[0];
  assert.ok(chart, 'the remap chart is on the page');
  assert.match(
    chart,
    /<text class="moved-count"[^>]*>2 of 3 tuples moved: 1 as swap-with-last allows, 1 against it; 1 stayed</,
  );
  assert.equal(
    chart.match(/<rect class="against"/g)?.length,
    2,
    'the red square in the matrix and the mark under the strip',
  );
  assert.match(chart, /&lt;script&gt;x&lt;\/script&gt;/);
  assert.match(chart, /1 tuple without one answer in each sweep is left blank/);
});
