// `balanced` is a valid test at every size the validator accepts: it judges
// distinct 4-tuples, and says plainly when it cannot.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { evaluate } from '../src/scenario/expect.js';
import type { Observations, TrafficObservation } from '../src/scenario/observations.js';
import type { Scenario } from '../src/scenario/schema.js';
import { isRoot, replicatedW, runCli, scenarioFile } from './helpers.js';

const SOCKETS = 64;

/** A small seeded generator, so that the 1000-run check gives the same answer every time. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `draws` independent picks among the sockets, with the given weights (uniform when omitted). */
function spread(random: () => number, draws: number, weights?: number[]): number[] {
  const counts = new Array<number>(weights?.length ?? SOCKETS).fill(0);
  if (!weights) {
    for (let i = 0; i < draws; i++) counts[Math.floor(random() * SOCKETS)]!++;
    return counts;
  }
  const total = weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < draws; i++) {
    let r = random() * total;
    let bin = 0;
    while (bin < weights.length - 1 && r >= weights[bin]!) r -= weights[bin++]!;
    counts[bin]!++;
  }
  return counts;
}

const SCENARIO = {
  steps: [],
  expect: [{ kind: 'balanced', traffic: 'lb', over: ['W'], pValue: 0.001, everyMember: true, line: 1 }],
} as unknown as Scenario;

/** Observations of one traffic step with these per-socket counts (and distinct source ports, when given). */
function observed(
  counts: number[],
  options: { distinct?: number[]; range?: { low: number; high: number } } = {},
): Observations {
  const total = counts.reduce((a, b) => a + b, 0);
  const traffic = {
    id: 'lb',
    target: '127.0.0.1',
    port: 6000,
    load: {
      protocol: 'tcp',
      connections: total,
      attempted: total,
      attributed: total,
      unattributed: 0,
      failures: [],
    } as unknown as TrafficObservation['load'],
    perInstance: counts.map((count, i) => ({
      server: 'W',
      replica: i + 1,
      pid: 1000 + i,
      count,
      ...(options.distinct ? { distinctSourcePorts: options.distinct[i]! } : {}),
    })),
    workerDeltas: [],
    strangers: 0,
    accounting: [],
    explained: [],
    reconciliation: { connectedWithoutGreeting: 0, acceptedWithoutGreeting: 0, neverAccepted: 0, unexplained: 0 },
  } satisfies TrafficObservation;
  return {
    kernel: 'Linux',
    isolation: 'netns',
    instances: [],
    steps: [],
    traffic: [traffic],
    portRange: options.range ?? { low: 1024, high: 65535 },
    durationMs: 0,
  };
}

function verdict(observations: Observations) {
  return evaluate(SCENARIO, observations).find((e) => e.kind === 'balanced')!;
}

test('balanced over distinct source ports: at least 999 of 1000 honest runs pass, at 30,000 and 100,000', () => {
  const random = mulberry32(6);
  for (const connections of [30_000, 100_000]) {
    // What a client with a 64,512-port range sees: each distinct port is one draw, repeats land with it.
    const distinctPorts = Math.min(connections, 32_256);
    let passed = 0;
    for (let run = 0; run < 1000; run++) {
      const distinct = spread(random, distinctPorts);
      const counts = distinct.map((d) => Math.round((d * connections) / distinctPorts));
      if (verdict(observed(counts, { distinct })).passed) passed++;
    }
    assert.ok(passed >= 999, `${connections}: ${passed}/1000 honest runs passed`);
  }
});

test('balanced over distinct source ports still fails a truly skewed spread', () => {
  const random = mulberry32(7);
  // One socket in 64 gets a quarter more than its share: what a broken hash would look like.
  const weights = Array.from({ length: SOCKETS }, (_, i) => (i === 0 ? 1.25 : 1));
  const distinct = spread(random, 32_256, weights);
  const result = verdict(observed(distinct, { distinct }));
  assert.equal(result.passed, false, result.observed);
  assert.match(result.observed, /^distinct source ports .* p \S+ < 0\.001/);
});

test('without distinct source ports, a step large enough to repeat 4-tuples is not judged on raw counts', () => {
  const counts = spread(mulberry32(8), 30_000);
  const result = verdict(observed(counts));
  assert.equal(result.passed, false);
  assert.match(result.observed, /^cannot judge: 30000 connections from the source port range 1024-65535 can repeat/);
});

test('without distinct source ports, a step that cannot wrap the port range is judged on counts', () => {
  const counts = spread(mulberry32(9), 1000);
  const result = verdict(observed(counts));
  assert.match(result.observed, /^counts /);
});

const canNamespace =
  spawnSync('unshare', isRoot ? ['--net', 'true'] : ['--net', '--map-root-user', 'true']).status === 0;

// The validator's largest step, for real: 100,000 connections wrap any port range several times, so this is the
// size at which plain counts failed every run. Judged at the default threshold, as a user's scenario would be.
test('64 replicas and 100,000 connections in a namespace pass balanced, judged on distinct source ports', {
  timeout: 170_000,
}, async (t) => {
  if (!canNamespace) return t.skip('cannot create a network namespace here');
  const file = scenarioFile(
    t,
    'widest',
    replicatedW(
      '0.0.0.0',
      64,
      `  - traffic: { id: lb, target: 127.0.0.1, port: 6000, connections: 100000, concurrency: 64 }
expect:
  - traffic: lb
    balanced: { over: [W], everyMember: true }
`,
    ),
  );
  const result = await runCli(['scenario', 'run', file, '--isolation', 'netns', '--json'], { timeoutMs: 160_000 });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const balanced = JSON.parse(result.stdout).scenarios[0].expectations.find(
    (e: { kind: string }) => e.kind === 'balanced',
  );
  assert.match(balanced.observed, /^distinct source ports /);
  assert.match(balanced.expected, /^chi-square p >= 0\.000001 /);
});
