// The scenario runner's verdicts through faults: failed traffic, dead and
// frozen workers, restarts, socket options, large plans, JUnit and host mode.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, lstatSync, openSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readCount } from '../src/net/counter-file.js';
import { noNamespaceMessage } from '../src/net/doctor.js';
import { loadNativeHelper } from '../src/net/native.js';
import { COUNTER_FD } from '../src/net/worker-protocol.js';
import { runScenarios } from '../src/scenario/runner.js';
import { loadScenario } from '../src/scenario/scenario-file.js';
import {
  CliProcess,
  commandLine,
  descendants,
  exitBeforeLastMessages,
  isRoot,
  namespacesOf,
  noNetnsVia,
  replicatedW,
  runCli,
  scenarioFile,
  tempDir,
  waitGone,
  waitNamespacesGone,
  workerPids,
} from './helpers.js';

interface Doc {
  version: number;
  scenarios: {
    name: string;
    status: string;
    reason: string | null;
    isolationNote: string | null;
    portRange: { low: number; high: number } | null;
    substitutions: { addresses: { from: string; to: string }[] };
    servers: {
      server: string;
      pid: number;
      uid: number | null;
      bind: string;
      startStep: number | null;
      options: { reuseAddr: boolean | null; reusePort: boolean | null } | null;
      fault: { kind: string; how: string; step: number; signal: string | null; description: string } | null;
    }[];
    traffic: TrafficDoc[];
    expectations: { kind: string; passed: boolean; observed: string }[];
  }[];
}

interface TrafficDoc {
  id: string;
  silent: number;
  perServer: { server: string; pid: number; count: number }[];
  workerCounters: {
    server: string;
    pid: number;
    accepted: number | null;
    attributed: number;
    notGreeted: number;
    overAttributed: number;
  }[];
  accounting: string[];
  explained: string[];
  reconciliation: {
    connectedWithoutGreeting: number;
    acceptedWithoutGreeting: number;
    neverAccepted: number;
    unexplained: number;
  };
}

const canNamespace =
  spawnSync('unshare', isRoot ? ['--net', 'true'] : ['--net', '--map-root-user', 'true']).status === 0;
const noNamespace = !canNamespace && 'cannot create a network namespace here';
/** Where a scenario of ours runs: a namespace when one can be made, else the host. */
const ISOLATION = canNamespace ? ['--isolation', 'netns'] : ['--isolation', 'host'];

function parse(stdout: string): Doc {
  return JSON.parse(stdout) as Doc;
}

/** One server, A on `address`:6000, started first; the steps that follow and `expect` are the caller's. */
const serverA = (address = '127.0.0.1') => `servers:
  - { id: A, address: ${address}, port: 6000 }
steps:
  - start: [A]
`;
const SERVER_A = serverA();
/** A binds; nothing more is said. */
const A_BINDS = `expect:
  - bind: A
    outcome: ok
`;

const REFUSED = `${SERVER_A}  - traffic: { id: nowhere, target: 127.0.0.1, port: 6001, connections: 50 }
${A_BINDS}`;

test('refused connections fail the scenario: exit 1, a JUnit failure, counts by errno', async (t) => {
  const junit = join(tempDir(t), 'report.xml');
  const file = scenarioFile(t, 'refused', REFUSED);
  const result = await runCli(['scenario', 'run', file, ...ISOLATION, '--junit', junit]);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(result.stdout, /✘ nowhere: every connection answered \(no expectation allows failures\)/);
  assert.match(result.stdout, /observed: 0\/50 answered; ECONNREFUSED 50/);
  assert.match(result.stdout, /FAILED/);
  assert.match(readFileSync(junit, 'utf8'), /<testsuites [^>]*failures="1"/);
});

test('refused UDP datagrams fail the scenario too', async (t) => {
  const file = scenarioFile(
    t,
    'refused-udp',
    REFUSED.replace('port: 6000 }', 'port: 6000, protocol: udp }').replace(
      'connections: 50 }',
      'protocol: udp, connections: 50 }',
    ),
  );
  const result = await runCli(['scenario', 'run', file, ...ISOLATION, '--json']);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  const traffic = parse(result.stdout).scenarios[0]!.expectations.find((e) => e.kind === 'implicit-traffic');
  assert.equal(traffic?.passed, false);
  assert.match(traffic?.observed ?? '', /^0\/50 answered; /);
});

/** Two traffic steps; the second is long enough for a test to act while it runs. */
const TWO_STEPS = (connections: number, second = connections) =>
  replicatedW(
    '127.0.0.1',
    2,
    `  - traffic: { id: first, target: 127.0.0.1, port: 6000, connections: ${connections}, concurrency: 8 }
  - traffic: { id: second, target: 127.0.0.1, port: 6000, connections: ${second}, concurrency: 8 }
expect:
  - bind: W
    outcome: ok
`,
  );

test('a worker killed between traffic steps is named with its signal and step, and fails the run', {
  skip: noNamespace,
}, async (t) => {
  const file = scenarioFile(t, 'killed-between', TWO_STEPS(200, 5000));
  const run = new CliProcess(['scenario', 'run', file, '--isolation', 'netns']);
  t.after(() => run.child.kill('SIGKILL'));
  await run.waitForStderr(/first\)? → /);
  const [victim] = workerPids(run.child.pid!);
  assert.ok(victim, 'a worker is running');
  process.kill(victim, 'SIGKILL');
  const { code } = await run.finish();
  assert.equal(code, 1, run.stdout + run.stderr);
  assert.match(
    run.stdout,
    new RegExp(`W#\\d \\(pid ${victim}\\) was killed by SIGKILL (after step 2|during step 3) \\(`),
    run.stdout,
  );
  assert.match(run.stdout, /ok, then died/, 'the servers table does not list it as simply running');
  assert.match(run.stdout, /✘ every worker ran and answered until it was told to stop/);
});

/** Polls `probe` until it gives a value (every 20 ms, at most `timeoutMs`): for states no event announces. */
async function until<T>(probe: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * A worker's own counter file, opened through /proc while it runs (fd 4, COUNTER_FD): the same inode the
 * runner reads, kept open here so the test can read the final count after the worker is gone.
 */
function openCounter(t: { after(fn: () => void): void }, pid: number): number {
  const fd = openSync(`/proc/${pid}/fd/${COUNTER_FD}`, 'r');
  t.after(() => closeSync(fd));
  return fd;
}

test('a worker SIGKILLed mid-traffic keeps its exact count, and the difference from the client is explained', {
  skip: noNamespace,
}, async (t) => {
  const file = scenarioFile(
    t,
    'killed-during',
    replicatedW(
      '127.0.0.1',
      2,
      `  - traffic: { id: long, target: 127.0.0.1, port: 6000, connections: 20000, concurrency: 8 }
expect:
  - bind: W
    outcome: ok
`,
    ),
  );
  const run = new CliProcess(['scenario', 'run', file, '--isolation', 'netns', '--json']);
  t.after(() => run.child.kill('SIGKILL'));
  const [victim] = await until(
    () => {
      const pids = workerPids(run.child.pid!);
      return pids.length === 2 ? pids : undefined;
    },
    60_000,
    'two workers',
  );
  const counter = openCounter(t, victim!);
  // Its first accept: the traffic step is under way.
  await until(() => (readCount(counter) > 0 ? true : undefined), 60_000, 'the first accept');
  process.kill(victim!, 'SIGKILL');
  const { code } = await run.finish();
  assert.equal(code, 1, run.stdout);
  const scenario = parse(run.stdout).scenarios[0]!;
  const fault = scenario.servers.find((s) => s.pid === victim)?.fault;
  assert.equal(fault?.signal, 'SIGKILL');
  assert.match(
    fault?.description ?? '',
    new RegExp(`^W#\\d \\(pid ${victim}\\) was killed by SIGKILL during step 2 \\(`),
  );
  const traffic = scenario.traffic[0]!;
  const row = traffic.workerCounters.find((w) => w.pid === victim)!;
  assert.equal(row.accepted, readCount(counter), 'what its counter file says after its death');
  assert.equal(row.attributed, traffic.perServer.find((p) => p.pid === victim)!.count);
  assert.equal(row.attributed + row.notGreeted, row.accepted, 'attributed + accepted without a greeting');
  assert.equal(row.overAttributed, 0);
  const { reconciliation } = traffic;
  assert.equal(reconciliation.unexplained, 0);
  assert.equal(
    reconciliation.acceptedWithoutGreeting + reconciliation.neverAccepted,
    reconciliation.connectedWithoutGreeting,
  );
  assert.deepEqual(traffic.accounting, [], 'no count wrong or unknown');
  const accounting = scenario.expectations.find((e) => e.kind === 'accounting')!;
  assert.equal(accounting.passed, true, accounting.observed);
  if (row.notGreeted > 0)
    assert.match(accounting.observed, new RegExp(`W#\\d \\(pid ${victim}\\) ${row.notGreeted}\\b`));
  const workers = scenario.expectations.find((e) => e.kind === 'implicit-workers')!;
  assert.equal(workers.passed, false, 'the dead worker fails the run');
});

/** SIGSTOPs a worker; should the runner not kill it as it must, the test does (by pid) at its end. */
function freeze(t: { after(fn: () => void): void }, pid: number): void {
  process.kill(pid, 'SIGSTOP');
  t.after(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Killed by the runner, as it should be.
    }
  });
}

const noLifecycle = !loadNativeHelper().helper && 'lifecycle steps (pause) need the native helper';

/** A, paused before its traffic: the kernel queues its connections and nobody greets them. */
const PAUSED = (allow = '') => `${SERVER_A}  - pause: A
  - traffic: { id: queued, target: 127.0.0.1, port: 6000, connections: 20, concurrency: 20 }
${A_BINDS}${allow}`;

test('connections queued at a paused worker are silent: the scenario fails, with the count and where they were', {
  skip: noLifecycle,
}, async (t) => {
  const result = await runCli(['scenario', 'run', scenarioFile(t, 'paused', PAUSED()), ...ISOLATION, '--json']);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  const scenario = parse(result.stdout).scenarios[0]!;
  const answered = scenario.expectations.find((e) => e.kind === 'implicit-traffic')!;
  assert.deepEqual([answered.passed, answered.observed], [false, '0/20 answered; silent (no greeting) 20']);
  const traffic = scenario.traffic[0]!;
  assert.equal(traffic.silent, 20);
  assert.deepEqual(
    traffic.workerCounters.map((w) => [w.accepted, w.attributed, w.notGreeted]),
    [[0, 0, 0]],
    'the paused worker accepted none of them',
  );
  assert.equal(traffic.reconciliation.neverAccepted, 20);
  assert.match(traffic.explained.join('\n'), /^20 connections the client saw connected .* never accepted by a worker/m);
});

test('a fails: silent expectation allows the connections a paused worker never greets', {
  skip: noLifecycle,
}, async (t) => {
  const allow = '  - { traffic: queued, fails: { with: silent, exactly: 20 } }\n';
  const result = await runCli(['scenario', 'run', scenarioFile(t, 'paused-allowed', PAUSED(allow)), ...ISOLATION]);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /PASSED/);
});

/**
 * A paused listener with backlog 1 whose accept queue the hold fills: the queue is full past backlog + 1
 * (sk_acceptq_is_full()), so tcp_conn_request() drops every SYN of the traffic, retransmissions too, and no
 * connect() completes before the load client's reply timeout. Resuming serves the held two, so the traffic's
 * ETIMEDOUTs are the only failures.
 */
const SYNS_DROPPED = (allow = '') => `servers:
  - { id: A, address: 127.0.0.1, port: 6000, backlog: 1 }
steps:
  - start: [A]
  - pause: A
  - hold: { id: full, target: 127.0.0.1, port: 6000, connections: 2 }
  - traffic: { id: dropped, target: 127.0.0.1, port: 6000, connections: 20, concurrency: 20 }
  - resume: A
  - settle: full
expect:
  - { bind: A, outcome: ok }
  - { step: dropped, counters: { ListenOverflows: { min: 20 } } }
${allow}`;

test('connections whose SYNs a full accept queue drops time out: the scenario fails with ETIMEDOUT and its count', {
  skip: noLifecycle,
}, async (t) => {
  const file = scenarioFile(t, 'syns-dropped', SYNS_DROPPED());
  // Both load engines: each must call a connect() that never completed ETIMEDOUT, not silence. The native engine
  // serves only sockets the native helper opened, so that run names its binder (CI also runs with
  // REUSEPORT_BINDER=builtin).
  for (const [engine, binder] of [
    ['builtin', []],
    ['native', ['--binder', 'native']],
  ] as const) {
    const result = await runCli(['scenario', 'run', file, ...ISOLATION, ...binder], {
      env: { REUSEPORT_ENGINE: engine },
    });
    assert.equal(result.code, 1, `${engine}: ${result.stdout}${result.stderr}`);
    assert.match(result.stdout, /✘ dropped: every connection answered \(no expectation allows failures\)/, engine);
    assert.match(result.stdout, /observed: 0\/20 answered; ETIMEDOUT 20\n/, engine);
    assert.match(result.stdout, /✔ step dropped: ListenOverflows \+at least 20/, 'the accept queue dropped the SYNs');
    assert.match(
      result.stdout,
      /✔ full: every held connection served/,
      'the held two filled the queue, and were served',
    );
  }
});

test('a fails: ETIMEDOUT expectation allows the connections a full accept queue never let in', {
  skip: noLifecycle,
}, async (t) => {
  const allow = '  - { traffic: dropped, fails: { with: ETIMEDOUT, exactly: 20 } }\n';
  const result = await runCli([
    'scenario',
    'run',
    scenarioFile(t, 'syns-dropped-allowed', SYNS_DROPPED(allow)),
    ...ISOLATION,
  ]);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /✔ dropped: exactly 20 ETIMEDOUT .*\n +observed: ETIMEDOUT 20\/20 \(100%\)/);
  assert.match(result.stdout, /✔ dropped: every connection answered, but for the failures expectations allow/);
  assert.match(result.stdout, /PASSED/);
});

test('datagrams to a frozen UDP worker are lost: the scenario fails, with the lost count', {
  skip: noNamespace || noLifecycle,
  timeout: 90_000,
}, async (t) => {
  // T, paused, holds one connection that its settle step waits out (5 s): a window in which the test freezes U
  // before U's traffic step, whatever the machine's load.
  const file = scenarioFile(
    t,
    'frozen-udp',
    `servers:
  - { id: U, address: 127.0.0.1, port: 6000, protocol: udp }
  - { id: T, address: 127.0.0.1, port: 6001 }
steps:
  - start: [U, T]
  - pause: T
  - hold: { id: window, target: 127.0.0.1, port: T, connections: 1 }
  - { settle: window, waitMs: 5000 }
  - traffic: { id: lost, target: 127.0.0.1, port: 6000, protocol: udp, connections: 20, concurrency: 20 }
expect:
  - { hold: window, state: waiting, exactly: 1 }
`,
  );
  const run = new CliProcess(['scenario', 'run', file, '--isolation', 'netns']);
  t.after(() => run.child.kill('SIGKILL'));
  await run.waitForStderr(/\(window\) → /);
  const udp = workerPids(run.child.pid!).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(':6000'));
  assert.ok(udp, "U's worker is running");
  freeze(t, udp);
  const { code } = await run.finish(60_000);
  assert.equal(code, 1, run.stdout + run.stderr);
  const report = run.stdout.replace(/\n +/g, ' ');
  assert.match(report, /✘ lost: every datagram answered \(no expectation allows failures\)/);
  assert.match(report, /observed: 0\/20 answered; lost \(no reply\) 20/);
  assert.match(report, /20 datagrams without a reply were never read by a worker/);
  assert.match(report, new RegExp(`U#1 \\(pid ${udp}\\) did not answer a ping .*stopped by a signal\\) during step 5`));
});

test('a worker frozen mid-traffic is named, measured results are kept, and nothing is left behind', {
  skip: noNamespace,
  timeout: 100_000,
}, async (t) => {
  // Wide concurrency: the connections queued to the frozen worker each wait out the client's reply timeout.
  const file = scenarioFile(t, 'frozen', TWO_STEPS(300).replaceAll('concurrency: 8', 'concurrency: 64'));
  // Once the start step's line is out, the runner is in the first traffic step; the freeze lands in it, or, on a
  // busy machine, in the second (each step's check after its traffic names the worker). The test cannot hold the
  // runner there, so when a busy machine let the run finish before the test could look, it runs again (at most 3).
  let run: CliProcess | undefined;
  let workers: number[] = [];
  for (let attempt = 1; attempt <= 3 && workers.length === 0; attempt++) {
    const candidate = new CliProcess(['scenario', 'run', file, '--isolation', 'netns']);
    t.after(() => candidate.child.kill('SIGKILL'));
    await candidate.waitForStderr(/start W → /);
    workers = workerPids(candidate.child.pid!);
    if (workers.length > 0) freeze(t, workers[0]!);
    if (workers.length > 0 && candidate.child.exitCode === null) run = candidate;
    else {
      workers = [];
      await candidate.finish(90_000);
    }
  }
  assert.ok(run, 'a worker was running when the test looked, in one of 3 runs');
  const namespaces = namespacesOf(workers);
  const [victim] = workers;
  const startedAt = Date.now();
  const { code } = await run.finish(90_000);
  assert.ok(Date.now() - startedAt < 60_000, 'well before the 120 s scenario limit');
  assert.equal(code, 1, run.stdout + run.stderr);
  assert.match(
    run.stdout.replace(/\n +/g, ' '),
    new RegExp(
      // Step 2 when the stop lands while the first step runs; step 3 when a busy machine let that step end first.
      `W#\\d \\(pid ${victim}\\) did not answer a ping within \\d+ s \\(process state: stopped by a signal\\) during step [23]`,
    ),
  );
  assert.match(run.stdout, /Traffic first: 300 connections/, 'the first step is still reported');
  assert.match(run.stdout, /Traffic second: 300 connections/, 'so is the step it froze in');
  assert.deepEqual(await waitGone([...workers, run.child.pid!]), [], 'the frozen worker was killed');
  assert.deepEqual(await waitNamespacesGone(namespaces), [], 'its namespace is gone');
});

test('a server started again after stop binds a fresh socket and takes traffic', async (t) => {
  const file = scenarioFile(
    t,
    'restart',
    `${SERVER_A}  - stop: [A]
  - start: [A]
  - traffic: { id: again, target: 127.0.0.1, port: 6000, connections: 40 }
expect:
  - bind: A
    outcome: ok
  - traffic: again
    all: A
`,
  );
  const result = await runCli(['scenario', 'run', file, ...ISOLATION, '--json']);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const servers = parse(result.stdout).scenarios[0]!.servers;
  assert.deepEqual(
    servers.map((s) => [s.server, s.bind, s.startStep]),
    [
      ['A', 'ok', 1],
      ['A', 'ok', 3],
    ],
  );
  assert.notEqual(servers[0]!.pid, servers[1]!.pid, 'a fresh worker');
});

test('UDP reuseaddr: false holds after adoption: a later SO_REUSEADDR-only socket gets EADDRINUSE', {
  skip: !loadNativeHelper().helper && 'needs the native helper',
}, async (t) => {
  const file = scenarioFile(
    t,
    'udp-reuseaddr',
    `servers:
  - { id: first, address: 127.0.0.1, port: 6000, protocol: udp, reuseport: false, reuseaddr: false }
  - { id: second, address: 127.0.0.1, port: 6000, protocol: udp, reuseport: false, reuseaddr: true }
steps:
  - start: [first]
  - start: [second]
expect:
  - bind: first
    outcome: ok
  - bind: second
    outcome: EADDRINUSE
`,
  );
  const result = await runCli(['scenario', 'run', file, ...ISOLATION, '--binder', 'native', '--json']);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const doc = parse(result.stdout);
  const first = doc.scenarios[0]!.servers.find((s) => s.server === 'first');
  assert.deepEqual(first?.options, { reuseAddr: false, reusePort: false, ipv6Only: null });
});

test('--json: version, and each server with its uid', async () => {
  const result = await runCli(['scenario', 'run', 'load-balance', ...ISOLATION, '--json']);
  const doc = parse(result.stdout);
  assert.equal(doc.version, 1);
  const uids = new Set(doc.scenarios[0]!.servers.map((s) => s.uid));
  assert.deepEqual([...uids], [process.getuid?.() === 0 || !canNamespace ? process.getuid?.() : 0]);
});

test('the namespace widens its ephemeral port range', { skip: noNamespace }, async () => {
  const result = await runCli(['scenario', 'run', 'load-balance', '--isolation', 'netns', '--json']);
  assert.deepEqual(parse(result.stdout).scenarios[0]!.portRange, { low: 1024, high: 65535 });
});

test('a scenario whose plan is over 128 KiB runs (the plan goes over IPC, not argv)', async (t) => {
  // Three prose fields (article, lookFor, explanation): a plan over 128 KiB in a file under the 256 KiB limit.
  const prose = 'The kernel spreads connections over the group. '.repeat(1000);
  assert.ok(prose.length * 3 > 128 * 1024 && prose.length * 3 < 256 * 1024);
  const file = scenarioFile(t, 'large', SERVER_A + A_BINDS, prose);
  const result = await runCli(['scenario', 'run', file, ...ISOLATION, '--json']);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(parse(result.stdout).scenarios[0]!.status, 'passed');
  assert.doesNotMatch(result.stderr, /E2BIG/);
});

test('a scenario’s result counts even when the runner’s exit is seen before its last message', async (t) => {
  const file = scenarioFile(
    t,
    'last-message',
    'servers:\n  - { id: A, address: 127.0.0.1, port: 6000 }\nsteps:\n  - start: A\nexpect:\n  - { bind: A, outcome: ok }\n',
  );
  const scenario = await loadScenario(file);
  let raced: Promise<void> | undefined;
  const report = await runScenarios(
    [scenario],
    { isolation: 'host' },
    {
      signal: new AbortController().signal,
      // The runner is spawned right after this hook, so it has sent nothing yet:
      // its 'result' is the last of its messages, all read after its exit is seen.
      onScenario: () => {
        raced = exitBeforeLastMessages(() => {
          const runners = descendants(process.pid).filter((pid) => commandLine(pid).includes('inner-main'));
          assert.equal(runners.length, 1, `scenario runners below this test: ${runners.join(', ')}`);
          return runners[0]!;
        });
      },
    },
  );
  await raced;
  const [result] = report.results;
  assert.equal(result?.status, 'passed', result?.reason);
});

test("--junit '' is a usage error", async () => {
  const result = await runCli(['scenario', 'run', 'load-balance', '--junit', '']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /--junit needs a file name/);
  assert.equal(result.stdout, '', 'nothing ran');
});

test('--junit to a folder that does not exist fails before the run', async (t) => {
  const result = await runCli(['scenario', 'run', 'load-balance', '--junit', join(tempDir(t), 'no', 'r.xml')]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /cannot write --junit .* its folder does not exist/);
  assert.equal(result.stdout, '', 'nothing ran');
});

test('--junit replaces a planted symlink instead of writing through it', async (t) => {
  const dir = tempDir(t);
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'precious\n');
  const junit = join(dir, 'report.xml');
  symlinkSync(victim, junit);
  const result = await runCli(['scenario', 'run', 'load-balance', ...ISOLATION, '--junit', junit]);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.equal(readFileSync(victim, 'utf8'), 'precious\n');
  assert.ok(lstatSync(junit).isFile(), 'the link was replaced by a file');
  assert.match(readFileSync(junit, 'utf8'), /^<\?xml/);
  assert.deepEqual(readdirSync(dir).sort(), ['report.xml', 'victim'], 'no temporary file left');
});

test('--isolation host binds wildcards as 127.0.0.1 and says so', async () => {
  const result = await runCli(['scenario', 'run', 'load-balance', '--isolation', 'host', '--json']);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const scenario = parse(result.stdout).scenarios[0]!;
  assert.deepEqual(scenario.substitutions.addresses, [{ from: '0.0.0.0', to: '127.0.0.1' }]);
  assert.match(scenario.isolationNote ?? '', /wildcard addresses are bound as loopback/);
});

test('--isolation host refuses a server on an address that is not loopback', async (t) => {
  const address = nonLoopbackAddress();
  if (!address) return t.skip('this machine has no non-loopback IPv4 address');
  const file = scenarioFile(t, 'outside', serverA(address) + A_BINDS);
  const result = await runCli(['scenario', 'run', file, '--isolation', 'host', '--json', '--strict']);
  const scenario = parse(result.stdout).scenarios[0];
  assert.equal(scenario?.status, 'skipped', result.stdout + result.stderr);
  assert.match(scenario?.reason ?? '', /not a loopback address/);
});

function nonLoopbackAddress(): string | undefined {
  // Only read the interface list: nothing is ever sent to it (the scenario is refused before any bind).
  return Object.values(networkInterfaces())
    .flat()
    .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
}

test('a namespace-only scenario skipped on the host does not tell root to run as root', {
  skip: !isRoot && 'needs root',
}, async (t) => {
  const file = scenarioFile(
    t,
    'sysctl',
    `network:
  sysctls: { net.ipv4.tcp_migrate_req: 1 }
${SERVER_A}${A_BINDS}`,
  );
  const result = await runCli(['scenario', 'run', file, '--isolation', 'host', '--json']);
  const scenario = parse(result.stdout).scenarios[0];
  assert.equal(scenario?.status, 'skipped', result.stdout + result.stderr);
  assert.match(scenario?.reason ?? '', /needs a private network namespace/);
  assert.doesNotMatch(scenario?.reason ?? '', /run as root/);
});

const canTrace = spawnSync('strace', ['-qq', '-o', '/dev/null', 'true']).status === 0;

test('--isolation host binds no wildcard address, not even to find a free port', {
  skip: !canTrace && 'strace is missing, or ptrace is not allowed here',
}, async (t) => {
  const trace = join(tempDir(t), 'bind.trace');
  const result = await runCli(['scenario', 'run', 'load-balance', '--isolation', 'host', '--json'], {
    via: ['strace', '-f', '-qq', '-e', 'trace=bind', '-e', 'signal=none', '-o', trace],
  });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  const binds = readFileSync(trace, 'utf8')
    .split('\n')
    .filter((line) => /\bbind\(/.test(line));
  assert.ok(binds.length >= 3, `the workers' binds are seen: ${binds.join('\n')}`);
  const wildcard = binds.filter((line) => /inet_addr\("0\.0\.0\.0"\)|inet_pton\(AF_INET6, "::"/.test(line));
  assert.deepEqual(wildcard, [], 'no bind to 0.0.0.0 or ::');
});

test('the no-namespace message tells root what is missing, and only others to run as root', () => {
  const reason = '`unshare --net` failed: unshare failed: No space left on device';
  const toRoot = noNamespaceMessage(reason, true);
  assert.doesNotMatch(toRoot, /run as root/);
  assert.match(
    toRoot,
    /^no private network namespace can be made here \(`unshare --net` failed: .*\); run it where `unshare --net` works .*, or use --isolation host$/,
  );
  assert.match(noNamespaceMessage(reason, false), /run as root, or where unprivileged user namespaces are allowed/);
});

const NO_NETNS = noNetnsVia();

test('compare --isolation netns where unshare is refused to root names the refusal, not "run as root"', {
  skip: !NO_NETNS && 'cannot make a user namespace to refuse network namespaces in',
}, async () => {
  // Root of a user namespace whose network-namespace limit is 0: the kernel really refuses unshare.
  const result = await runCli(['compare', '--isolation', 'netns'], { via: NO_NETNS ?? [] });
  assert.equal(result.code, 1, result.stdout + result.stderr);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, result.stderr);
  assert.match(
    lines[0]!,
    /no private network namespace can be made here \(`unshare --net` failed: .*No space left on device\)/,
  );
  assert.doesNotMatch(result.stderr, /run as root/);
});
