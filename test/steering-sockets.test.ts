// Steering by the kernel's other rules (issue 8 §4-5): classic BPF programs,
// SO_INCOMING_CPU, SO_BINDTODEVICE and second namespaces. Validation runs in
// memory with line numbers; runs use real sockets, CPUs and namespaces.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { describe, it, test } from 'node:test';
import { loadScenario } from '../src/scenario/scenario-file.js';
import {
  assertIssue,
  CliProcess,
  descendants,
  namespacesOf,
  privateNamespaceSkip,
  runCli,
  runScenariosJson,
  scenarioFile,
  scenarioIssues,
  waitGone,
  waitNamespacesGone,
} from './helpers.js';

// Lines 1-5 are name, title, article, lookFor, explanation (scenarioFile).
describe('programs, CPUs, devices and namespaces: validation', () => {
  it('accepts every new key and fills in the program and the expectation kinds', async (t) => {
    const file = scenarioFile(
      t,
      'steer-ok',
      'servers:\n' + // 6
        '  - { id: A, address: 127.0.0.1, port: 6000, protocol: udp, replicas: 2, cbpf: { replica: 2, program: { payloadModulo: 3 } } }\n' + // 7
        '  - { id: C, address: 127.0.0.1, port: 6001, incomingCpu: replica-modulo, device: lo }\n' + // 8
        '  - { id: R, address: 127.0.0.1, port: 6002, protocol: udp, cbpf: { program: { instructions: [{ code: 6, jt: 0, jf: 0, k: 0 }] } } }\n' + // 9
        '  - { id: N, address: 0.0.0.0, port: 6003, namespace: other }\n' + // 10
        'steps:\n  - start: [A, C, R, N]\n' + // 11-12
        '  - traffic: { id: p, target: 127.0.0.1, port: 6000, protocol: udp, payload: index, sourcePorts: { from: 40000, count: 6 } }\n' + // 13
        '  - traffic: { id: c, target: 127.0.0.1, port: 6001, cpu: 0, sourcePorts: { from: 41000, count: 4 } }\n' + // 14
        '  - traffic: { id: n, target: 127.0.0.1, port: 6003, connections: 2, namespace: other }\n' + // 15
        'expect:\n' + // 16
        '  - { traffic: p, payloads: { modulo: 3, to: [A#1, A#2, any] } }\n' + // 17
        '  - { traffic: c, sameCpu: true }\n' + // 18
        '  - { traffic: n, all: N }\n',
    );
    const scenario = await loadScenario(file);
    assert.deepEqual(scenario.servers[0]?.cbpf, { replica: 2, program: { name: 'payload-modulo', modulo: 3 } });
    assert.equal(scenario.servers[1]?.incomingCpu, 'replica-modulo');
    assert.deepEqual(scenario.servers[2]?.cbpf?.program, { instructions: [{ code: 6, jt: 0, jf: 0, k: 0 }] });
    assert.deepEqual(scenario.expect[0], {
      kind: 'payloads',
      traffic: 'p',
      modulo: 3,
      to: ['A#1', 'A#2', 'any'],
      line: 17,
    });
    assert.deepEqual(scenario.expect[1], { kind: 'sameCpu', traffic: 'c', line: 18 });
    assert.deepEqual(scenario.requires, ['netns'], 'a second namespace needs the private one');
  });

  it('refuses each misuse on its line', async (t) => {
    const file = scenarioFile(
      t,
      'steer-bad',
      'servers:\n' + // 6
        '  - { id: A, address: 127.0.0.1, port: 6000, protocol: udp, replicas: 2, cbpf: { replica: 3, program: cpu } }\n' + // 7
        '  - { id: T, address: 127.0.0.1, port: 6001, cbpf: { program: { payloadModulo: 2 } } }\n' + // 8
        '  - { id: N, address: 10.1.2.3, port: 6002, namespace: other }\n' + // 9
        '  - { id: B, address: 127.0.0.1, port: 6003, incomingCpu: -1, device: "a very long name" }\n' + // 10
        'steps:\n  - start: [A, T]\n' + // 11-12
        '  - traffic: { id: p, target: 127.0.0.1, port: 6001, payload: index, sourcePorts: { from: 40000, count: 2 } }\n' + // 13
        '  - traffic: { id: c, target: 127.0.0.1, port: 6001, connections: 3, cpu: 1 }\n' + // 14
        '  - traffic: { id: u, target: 127.0.0.1, port: 6000, protocol: udp, sourcePorts: { from: 41000, count: 2 } }\n' + // 15
        'expect:\n' + // 16
        '  - { traffic: u, payloads: { modulo: 3, to: [A#1, A#5] } }\n' + // 17
        '  - { traffic: u, sameCpu: true }\n' + // 18
        '  - { traffic: nope, sameCpu: true }\n' + // 19
        '  - { traffic: u, payloads: { modulo: 1, to: [Z#1] } }\n', // 20
    );
    const issues = await scenarioIssues(file);
    assertIssue(issues, /^7: .*cbpf\.replica is 3, but "A" has 2 replicas/);
    assertIssue(issues, /^8: .*payloadModulo reads the payload, and a TCP SYN carries none/);
    assertIssue(issues, /^9: .*a second namespace only has lo/);
    assertIssue(issues, /^10: .*incomingCpu must be an integer from 0 to 1023, got -1/);
    assertIssue(issues, /^10: .*an interface name like lo/);
    assertIssue(issues, /^13: .*payload is for UDP sweeps/);
    assertIssue(issues, /^14: .*cpu pins a sweep's thread: give the step sourcePorts/);
    assertIssue(issues, /^17: traffic "u" \(line 15\) does not send its index/);
    assertIssue(issues, /^17: .*needs one entry per residue: 3, got 2/);
    assertIssue(issues, /^17: .*"A" has replicas 1 to 2, not 5/);
    assertIssue(issues, /^18: traffic "u" \(line 15\) has no cpu/);
    assertIssue(issues, /^19: unknown traffic id "nope"/);
    assertIssue(issues, /^20: .*unknown server "Z"/);
  });
});

const twoCpus = os.availableParallelism() >= 2;

test('the four shipped scenarios pass on this kernel, with the numbers in --json', {
  skip: privateNamespaceSkip() || (!twoCpus && 'incoming-cpu needs 2 CPUs'),
}, async () => {
  const { code, stdout, stderr, doc } = await runScenariosJson([
    'cbpf-steering',
    'incoming-cpu',
    'bindtodevice-order',
    'netns-isolation',
  ]);
  assert.equal(code, 0, stdout + stderr);
  assert.deepEqual(
    doc.scenarios.map((s) => [s.name, s.status]),
    [
      ['cbpf-steering', 'passed'],
      ['incoming-cpu', 'passed'],
      ['bindtodevice-order', 'passed'],
      ['netns-isolation', 'passed'],
    ],
  );
  const observed = (name: string, kind: string) =>
    doc.scenarios
      .find((s) => s.name === name)!
      .expectations.filter((e) => e.kind === kind)
      .map((e) => e.observed);
  assert.match(observed('cbpf-steering', 'payloads')[0]!, /^0→A#1 10; 1→A#2 10; 2→A#3 10; 3→A#4 10; 4→.*; 5→/);
  assert.deepEqual(observed('cbpf-steering', 'bind'), ['EINVAL']);
  assert.deepEqual(observed('incoming-cpu', 'sameCpu'), [
    "C#1 20; accepted sockets' SO_INCOMING_CPU: 0 ×20",
    "C#2 20; accepted sockets' SO_INCOMING_CPU: 1 ×20",
  ]);
  // Only Node's accept hands the worker each socket to read SO_INCOMING_CPU from: chooseEngine says so.
  const servers = doc.scenarios.find((s) => s.name === 'incoming-cpu')!.servers.filter((i) => i.server === 'C');
  assert.deepEqual(
    servers.map((i) => i.engine),
    ['builtin', 'builtin'],
  );
  for (const i of servers) assert.match(i.engineReason ?? '', /reports each accepted socket's SO_INCOMING_CPU/);
});

const taskset = spawnSync('taskset', ['--version']).status === 0;

test('under taskset -c 0, incoming-cpu is SKIPPED with the reason; exit 0, and 1 with --strict', {
  skip: !taskset && 'needs taskset (util-linux) to narrow the CPU affinity mask',
}, async () => {
  const reason =
    /^needs 2 usable CPUs \(its traffic is pinned to CPU 1\), but this process's CPU affinity mask allows 1: /;
  const { code, stdout, stderr, doc } = await runScenariosJson(['incoming-cpu'], { via: ['taskset', '-c', '0'] });
  assert.equal(code, 0, stdout + stderr);
  assert.deepEqual(
    doc.scenarios.map((s) => [s.name, s.status]),
    [['incoming-cpu', 'skipped']],
  );
  assert.match(doc.scenarios[0]!.reason ?? '', reason);
  const strict = await runCli(['scenario', 'run', '--strict', 'incoming-cpu'], { via: ['taskset', '-c', '0'] });
  assert.equal(strict.code, 1, strict.stdout + strict.stderr);
  assert.match(strict.stdout, /needs 2 usable CPUs/);
});

test('wrong program and CPU expectations fail with exit 1, naming what happened', {
  skip: privateNamespaceSkip() || (!twoCpus && 'needs 2 CPUs'),
}, async (t) => {
  const file = scenarioFile(
    t,
    'steer-wrong',
    'servers:\n' +
      '  - { id: A, address: 127.0.0.1, port: 6000, protocol: udp, replicas: 2, cbpf: { replica: 2, program: { payloadModulo: 2 } } }\n' +
      '  - { id: C, address: 127.0.0.1, port: 6001, incomingCpu: 1 }\n' +
      '  - { id: P, address: 127.0.0.1, port: 6001 }\n' +
      'steps:\n  - start: [A, C, P]\n' +
      '  - traffic: { id: p, target: 127.0.0.1, port: 6000, protocol: udp, payload: index, sourcePorts: { from: 40000, count: 4 } }\n' +
      '  - traffic: { id: c, target: 127.0.0.1, port: 6001, cpu: 0, sourcePorts: { from: 41000, count: 4 } }\n' +
      'expect:\n' +
      '  - { traffic: p, payloads: { modulo: 2, to: [A#2, A#1] } }\n' +
      '  - { traffic: c, sameCpu: true }\n',
  );
  const result = await runCli(['scenario', 'run', file]);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(
    result.stdout,
    /✘ p: datagram k reaches .*\n\s+expected: 0→A#2, 1→A#1\n\s+observed: 4 off \(#0 → A#1; #1 → A#2; #2 → A#1\); 0→A#1 2; 1→A#2 2/,
  );
  assert.match(result.stdout, /✘ c: connections from CPU 0 reach the socket with SO_INCOMING_CPU 0/);
});

test('wrong device-order and namespace expectations fail with exit 1', {
  skip: privateNamespaceSkip(),
}, async (t) => {
  const file = scenarioFile(
    t,
    'place-wrong',
    'servers:\n' +
      '  - { id: plain, address: 0.0.0.0, port: 6000 }\n' +
      '  - { id: onlo, address: 0.0.0.0, port: 6000, device: lo }\n' +
      '  - { id: there, address: 127.0.0.1, port: 6000, namespace: other }\n' +
      'steps:\n  - start: [onlo, plain, there]\n' +
      '  - traffic: { id: here, target: 127.0.0.1, port: 6000, connections: 5 }\n' +
      '  - traffic: { id: in-other, target: 127.0.0.1, port: 6000, connections: 5, namespace: other }\n' +
      'expect:\n  - { traffic: here, all: onlo }\n  - { traffic: in-other, all: plain }\n',
  );
  const result = await runCli(['scenario', 'run', file]);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(
    result.stdout,
    /✘ here: every connection to 127\.0\.0\.1:6000 reaches onlo.*\n.*\n\s+observed: plain 5\/5/,
  );
  assert.match(
    result.stdout,
    /✘ in-other: every connection to 127\.0\.0\.1:6000 reaches plain.*\n.*\n\s+observed: there 5\/5/,
  );
});

test('SIGKILL of the runner leaves no process and no namespace of a second namespace behind', {
  skip: privateNamespaceSkip(),
}, async (t) => {
  const file = scenarioFile(
    t,
    'ns-kill',
    'servers:\n  - { id: there, address: 127.0.0.1, port: 6000, replicas: 2, namespace: other }\n' +
      'steps:\n  - start: there\n' +
      '  - traffic: { id: long, target: 127.0.0.1, port: 6000, connections: 100000, concurrency: 4, namespace: other }\n' +
      'expect:\n  - { traffic: long, all: there }\n',
  );
  const cli = new CliProcess(['scenario', 'run', file]);
  await cli.waitForStderr(/start there → there ok/);
  const pids = descendants(cli.child.pid!);
  const namespaces = namespacesOf(pids);
  assert.ok(pids.length >= 4, `inner runner, agent and two workers: ${pids.join(', ')}`);
  assert.ok(namespaces.size >= 2, 'the scenario namespace and the second one');
  cli.child.kill('SIGKILL');
  await cli.finish();
  assert.deepEqual(await waitGone(pids, 15_000), [], 'every process of the run ended');
  assert.deepEqual(await waitNamespacesGone(namespaces, 15_000), [], 'both namespaces ended');
});
