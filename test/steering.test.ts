// Steering and determinism (issue 8): source-port sweeps, `sticky`, `remap`,
// and the scenarios built on them. Validation runs in memory with line
// numbers; runs use real sockets in the scenario's namespace.
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it, test } from 'node:test';
import { loadScenario } from '../src/scenario/scenario-file.js';
import { kernelTooOld, runnableHere } from '../src/scenario/steering-run.js';
import {
  assertIssue,
  privateNamespaceSkip,
  ROOT,
  runCli,
  runScenariosJson,
  scenarioFile,
  scenarioIssues,
} from './helpers.js';

// Lines 1-5 are name, title, article, lookFor, explanation (scenarioFile).
const SWEEP_SERVER = 'servers:\n  - { id: W, address: 127.0.0.1, port: 6000, replicas: 2 }\n'; // 6-7

describe('sourcePorts sweeps: validation', () => {
  it('accepts a sweep and fills connections with count × repeat', async (t) => {
    const file = scenarioFile(
      t,
      'sweep-ok',
      `${SWEEP_SERVER}steps:\n  - start: W\n  - traffic: { id: s, target: 127.0.0.1, port: 6000, sourcePorts: { from: 40000, count: 10, repeat: 3 } }\nexpect:\n  - { traffic: s, sticky: true }\n`,
    );
    const scenario = await loadScenario(file);
    const step = scenario.steps[1];
    assert.equal(step?.kind, 'traffic');
    if (step?.kind !== 'traffic') return;
    assert.deepEqual(step.traffic.sourcePorts, { from: 40000, count: 10, repeat: 3 });
    assert.equal(step.traffic.connections, 30);
    assert.deepEqual(scenario.expect[0], { kind: 'sticky', traffic: 's', line: 12 });
  });

  it('refuses connections beside a sweep, a sweep past port 65535, and an unknown key in it, each on its line', async (t) => {
    const file = scenarioFile(
      t,
      'sweep-bad',
      `${SWEEP_SERVER}steps:\n  - start: W\n` +
        '  - traffic: { id: a, target: 127.0.0.1, port: 6000, connections: 5, sourcePorts: { from: 40000, count: 5 } }\n' + // 10
        '  - traffic: { id: b, target: 127.0.0.1, port: 6000, sourcePorts: { from: 65500, count: 100 } }\n' + // 11
        '  - traffic: { id: c, target: 127.0.0.1, port: 6000, sourcePorts: { from: 40000, cuont: 5 } }\n' + // 12
        '  - traffic: { id: d, target: 127.0.0.1, port: 6000 }\n' + // 13
        'expect:\n  - { traffic: a, all: W }\n',
    );
    const issues = await scenarioIssues(file);
    assertIssue(issues, /^10: .*give connections or sourcePorts, not both/);
    assertIssue(issues, /^11: .*ends at port 65599/);
    assertIssue(issues, /^12: missing required key "count" in steps\[3\]\.traffic\.sourcePorts/);
    assertIssue(issues, /^13: .*needs connections \(or a sourcePorts sweep\)/);
  });
});

describe('sticky and remap: validation', () => {
  const steps =
    'steps:\n' + // 8
    '  - start: W\n' + // 9
    '  - traffic: { id: plain, target: 127.0.0.1, port: 6000, connections: 10 }\n' + // 10
    '  - traffic: { id: s1, target: 127.0.0.1, port: 6000, sourcePorts: { from: 40000, count: 10 } }\n' + // 11
    '  - traffic: { id: s2, target: 127.0.0.1, port: 6000, sourcePorts: { from: 40000, count: 10 } }\n' + // 12
    '  - stop: W\n' + // 13
    '  - start: W\n' + // 14
    '  - traffic: { id: s3, target: 127.0.0.1, port: 6000, sourcePorts: { from: 40001, count: 10 } }\n'; // 15

  it('accepts remap between two sweeps of the same tuples with a group change between', async (t) => {
    const file = scenarioFile(
      t,
      'remap-ok',
      `${SWEEP_SERVER}steps:\n` + // 8
        '  - start: W\n' + // 9
        '  - traffic: { id: s1, target: 127.0.0.1, port: 6000, sourcePorts: { from: 40000, count: 10 } }\n' + // 10
        '  - stop: W\n' + // 11
        '  - start: W\n' + // 12
        '  - traffic: { id: s2, target: 127.0.0.1, port: 6000, sourcePorts: { from: 40000, count: 10 } }\n' + // 13
        'expect:\n  - remap: { before: s1, after: s2 }\n', // 14-15
    );
    const scenario = await loadScenario(file);
    assert.deepEqual(scenario.expect[0], { kind: 'remap', before: 's1', after: 's2', line: 15 });
  });

  it('refuses sticky on a plain step, remap out of order, over other tuples, or with no change between', async (t) => {
    const file = scenarioFile(
      t,
      'remap-bad',
      `${SWEEP_SERVER}${steps}expect:\n` + // 16
        '  - { traffic: plain, sticky: true }\n' + // 17
        '  - remap: { before: s2, after: s1 }\n' + // 18
        '  - remap: { before: s2, after: s3 }\n' + // 19
        '  - remap: { before: s1, after: s2 }\n' + // 20
        '  - remap: { before: s1, aftr: s2 }\n' + // 21
        '  - { traffic: s1, sticky: false }\n', // 22
    );
    const issues = await scenarioIssues(file);
    const has = (re: RegExp) => assertIssue(issues, re);
    has(/^17: traffic "plain" \(line 10\) is not a sweep/);
    has(/^18: .*must be a sweep sent after "s2"/);
    has(/^19: .*same source ports to the same target/);
    has(/^20: .*no start or stop step between lines 11 and 12/);
    has(/^21: missing required key "after" in expect\[4\]\.remap/);
    has(/^22: .*must be true \(every source port of the sweep lands on one instance\)/);
  });
});

test('sticky-4tuple and group-change-remap pass, with per-port results in --json', async () => {
  const { code, stdout, stderr, doc } = await runScenariosJson<{
    scenarios: {
      name: string;
      traffic: { id: string; sweep?: { ports: { sourcePort: number; answers: number[] }[] } }[];
      expectations: { kind: string; observed: string; passed: boolean }[];
    }[];
  }>(['sticky-4tuple', 'group-change-remap']);
  assert.equal(code, 0, stdout + stderr);
  const sticky = doc.scenarios.find((r) => r.name === 'sticky-4tuple')!;
  const sweep = sticky.traffic[0]!.sweep!;
  assert.equal(sweep.ports.length, 400);
  assert.ok(sweep.ports.every((p) => p.answers.length === 3 && p.answers.every((a) => a === p.answers[0])));
  const remap = doc.scenarios.find((r) => r.name === 'group-change-remap')!;
  const first = remap.expectations.find((e) => e.kind === 'remap')!;
  assert.match(first.observed, /group \[A#1, B#1, C#1, D#1\] → \[A#1, D#1, C#1\]/);
  assert.match(first.observed, /; 0 violations; naive shift-down model: [1-9]\d* violations/);
});

test('a remap whose second sweep is refused fails with exit 1 and says why', {
  skip: privateNamespaceSkip(),
}, async (t) => {
  const file = scenarioFile(
    t,
    'remap-refused',
    'servers:\n  - { id: A, address: 127.0.0.1, port: 6000 }\n  - { id: B, address: 127.0.0.1, port: 6000 }\n' +
      'steps:\n  - start: [A, B]\n' +
      '  - traffic: { id: s1, target: 127.0.0.1, port: 6000, sourcePorts: { from: 40000, count: 20 } }\n' +
      '  - stop: [A, B]\n' +
      '  - traffic: { id: s2, target: 127.0.0.1, port: 6000, sourcePorts: { from: 40000, count: 20 } }\n' +
      'expect:\n  - remap: { before: s1, after: s2 }\n  - { traffic: s2, sticky: true }\n',
  );
  // Wide enough that no expectation line wraps: the checks below read line by line.
  const result = await runCli(['scenario', 'run', file], { env: { COLUMNS: '200' } });
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(result.stdout, /✘ s1 → s2: .*\n\s+expected: 0 violations of swap-with-last\n\s+observed: cannot judge/);
  assert.match(
    result.stdout,
    /✘ s2: every connection from one source port reaches one instance.*\n.*\n\s+observed: 20 ports × 1: 0 of 20 ports answered, 0 unstable/,
  );
});

describe('connect and kernel: validation', () => {
  it('accepts a connected UDP replica and a kernel requirement', async (t) => {
    const file = scenarioFile(
      t,
      'connect-ok',
      'kernel: { version: ">=6.13", reason: connected sockets leave the group }\n' + // 6
        'servers:\n  - { id: P, address: 127.0.0.1, port: 6000, protocol: udp, connect: { address: 127.0.0.1, port: 45000 } }\n' +
        'steps:\n  - start: P\n  - traffic: { id: d, target: 127.0.0.1, port: 6000, protocol: udp, connections: 1 }\n' +
        'expect:\n  - { traffic: d, all: P }\n',
    );
    const scenario = await loadScenario(file);
    assert.deepEqual(scenario.kernel, { version: '>=6.13', reason: 'connected sockets leave the group' });
    assert.deepEqual(scenario.servers[0]?.connect, { address: '127.0.0.1', port: 45000 });
  });

  it('refuses connect on TCP, a peer off loopback, and a malformed kernel version, each on its line', async (t) => {
    const file = scenarioFile(
      t,
      'connect-bad',
      'kernel: { version: "6.13", reason: x }\n' + // 6
        'servers:\n' + // 7
        '  - { id: T, address: 127.0.0.1, port: 6000, connect: { address: 127.0.0.1, port: 45000 } }\n' + // 8
        '  - { id: U, address: 127.0.0.1, port: 6001, protocol: udp, connect: { address: 10.0.0.9, port: 45000 } }\n' + // 9
        'steps:\n  - start: [T, U]\n  - traffic: { id: d, target: 127.0.0.1, port: 6000, connections: 1 }\n' +
        'expect:\n  - { traffic: d, all: T }\n',
    );
    const issues = await scenarioIssues(file);
    const has = (re: RegExp) => assertIssue(issues, re);
    has(/^6: .*a minimum version like ">=6.13"/);
    has(/^8: .*only a UDP socket can connect\(\)/);
    has(/^9: .*must be a loopback address/);
  });
});

test('kernelTooOld skips an older kernel with the reason and what older kernels do', () => {
  const need = { version: '>=6.13', reason: 'connected UDP sockets leave their group', older: 'they stay' };
  assert.equal(kernelTooOld(need, '6.13.0'), null);
  assert.equal(kernelTooOld(need, '7.0.1-custom'), null);
  assert.equal(
    kernelTooOld(need, '6.12.9'),
    'needs Linux 6.13 or later (connected UDP sockets leave their group); this is Linux 6.12.9. Older kernels: they stay',
  );
});

test('the UDP and dual-stack scenarios pass on this kernel', {
  skip: privateNamespaceSkip(),
}, async () => {
  const result = await runCli(
    ['scenario', 'run', 'udp-balance', 'udp-reuseaddr-only', 'udp-connected-member', 'dual-stack'],
    { env: { COLUMNS: '200' } },
  );
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /4 scenarios: 4 passed/);
  // The connected member is served by Node's socket, and the report says why.
  assert.match(result.stdout, /Engine: .*builtin for P \(its worker connect\(\)s its UDP socket to one peer/);
});

test('doctor says which shipped scenarios this kernel runs, and runnableHere skips by kernel: on an old one', async () => {
  const result = await runCli(['doctor', '--json']);
  const report = JSON.parse(result.stdout) as { checks: { id: string; value: string }[] };
  const check = report.checks.find((c) => c.id === 'scenarios.kernel');
  assert.match(check?.value ?? '', /^\d+ of \d+ run on this kernel and CPUs$/);
  const old = await runnableHere(path.join(ROOT, 'scenarios'), '6.1.0', 2);
  assert.ok(old.skipped.some((s) => s.name === 'udp-connected-member' && /needs Linux 6.13/.test(s.reason)));
  assert.ok(old.runnable.includes('sticky-4tuple'));
});

test('runnableHere skips incoming-cpu with one usable CPU, saying which CPU its traffic is pinned to', async () => {
  const scenarios = path.join(ROOT, 'scenarios');
  const one = await runnableHere(scenarios, '6.18.0', 1);
  assert.deepEqual(
    one.skipped.map((s) => s.name),
    ['incoming-cpu'],
  );
  assert.match(
    one.skipped[0]!.reason,
    /^needs 2 usable CPUs \(its traffic is pinned to CPU 1\), but this process's CPU affinity mask allows 1: /,
  );
  const two = await runnableHere(scenarios, '6.18.0', 2);
  assert.deepEqual(two.skipped, []);
  assert.ok(two.runnable.includes('incoming-cpu'));
});
