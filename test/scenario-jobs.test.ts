import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import type { InnerEvent } from '../src/scenario/observations.js';
import { InOrderProgress } from '../src/scenario/runner.js';
import type { Scenario } from '../src/scenario/schema.js';
import { isRoot, runCli } from './helpers.js';

const canNamespace =
  spawnSync('unshare', isRoot ? ['--net', 'true'] : ['--net', '--map-root-user', 'true']).status === 0;
const noNamespace = !canNamespace && 'cannot create a network namespace here';

type StepEvent = Extract<InnerEvent, { type: 'step' }>;

function step(text: string): StepEvent {
  return { type: 'step', index: 0, total: 1, text, status: 'done' };
}

test('a later scenario’s progress waits for every earlier one, then comes out as it happened', () => {
  const seen: string[] = [];
  const progress = new InOrderProgress(3, {
    signal: new AbortController().signal,
    onScenario: (scenario) => seen.push(`${scenario.name} running`),
    onStep: (scenario, event) => seen.push(`${scenario.name} ${event.text}`),
  });
  const [a, b, c] = ['a', 'b', 'c'].map((name) => ({ name }) as Scenario);
  const [first, second, third] = [0, 1, 2].map((index) => progress.hooksFor(index));
  third!.onScenario?.(c!, 'netns');
  third!.onStep?.(c!, step('c1'));
  second!.onScenario?.(b!, 'netns');
  first!.onScenario?.(a!, 'netns');
  assert.deepEqual(seen, ['a running'], 'the first scenario reports live, the others are held');
  second!.onStep?.(b!, step('b1'));
  progress.finished(2);
  assert.deepEqual(seen, ['a running'], 'a finished later scenario still waits for the earlier ones');
  first!.onStep?.(a!, step('a1'));
  progress.finished(0);
  assert.deepEqual(seen, ['a running', 'a a1', 'b running', 'b b1']);
  second!.onStep?.(b!, step('b2'));
  assert.deepEqual(seen.at(-1), 'b b2', 'the new head reports live');
  progress.finished(1);
  assert.deepEqual(seen, ['a running', 'a a1', 'b running', 'b b1', 'b b2', 'c running', 'c c1']);
});

test('scenarios run together report and print in the order given, as one at a time would', {
  skip: noNamespace,
}, async () => {
  const names = ['priority', 'udp-reuseaddr-only', 'dual-stack'];
  const json = await runCli(['scenario', 'run', ...names, '--jobs', '3', '--json']);
  assert.equal(json.code, 0, json.stdout + json.stderr);
  const doc = JSON.parse(json.stdout) as { scenarios: { name: string; status: string }[] };
  assert.deepEqual(
    doc.scenarios.map((s) => [s.name, s.status]),
    names.map((name) => [name, 'passed']),
  );

  const text = await runCli(['scenario', 'run', ...names, '--jobs', '3']);
  assert.equal(text.code, 0, text.stdout + text.stderr);
  // Every progress line names its scenario; in order, the names form one block per scenario.
  const blocks = text.stderr
    .split('\n')
    .map((line) => /^(?:\s+• )?([a-z0-9-]+): /.exec(line)?.[1])
    .filter((name): name is string => name !== undefined && names.includes(name))
    .filter((name, i, all) => name !== all[i - 1]);
  assert.deepEqual(blocks, names, text.stderr);
  const reported = names.map((name) => text.stdout.indexOf(name));
  assert.deepEqual(
    reported,
    [...reported].sort((x, y) => x - y),
    'the report lists them in the order given',
  );
});
