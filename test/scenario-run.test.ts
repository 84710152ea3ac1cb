import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CliProcess,
  descendants,
  EXPECTED_BINDER,
  isRoot,
  namespacesOf,
  runAsNobody,
  runCli,
  runShipped,
  runtimeCopy,
  tempDir,
  waitGone,
  waitNamespacesGone,
  workerPids,
} from './helpers.js';

interface RunDocument {
  version: number;
  summary: { total: number; passed: number; failed: number; skipped: number; errors: number };
  scenarios: {
    name: string;
    status: string;
    reason: string | null;
    isolation: string | null;
    servers: { server: string; bind: string; binder: string | null }[];
    expectations: { kind: string; passed: boolean; description: string; observed: string }[];
  }[];
}

/** Every shipped scenario, in the order `scenario all` runs them. */
const SHIPPED = [
  'load-balance',
  'priority',
  'cross-user',
  'bindtodevice-order',
  'bound-not-listening',
  'cbpf-steering',
  'dual-stack',
  'group-change-remap',
  'incoming-cpu',
  'listener-close-migrates',
  'listener-close-resets',
  'netns-isolation',
  'reuseaddr-is-not-reuseport',
  'reuseport-after-bind',
  'stalled-worker',
  'sticky-4tuple',
  'udp-balance',
  'udp-connected-member',
  'udp-reuseaddr-only',
];

const canNamespace =
  spawnSync('unshare', isRoot ? ['--net', 'true'] : ['--net', '--map-root-user', 'true']).status === 0;
const noNamespace = !canNamespace && 'cannot create a network namespace here';

test('every shipped scenario passes in its own namespace, with well-formed JUnit', {
  skip: noNamespace || (!isRoot && 'cross-user needs root'),
}, async (t) => {
  const junit = join(tempDir(t), 'report.xml');
  const result = await runShipped(['scenario', 'all', '--json', '--strict', '--junit', junit]);
  const doc = JSON.parse(result.stdout) as RunDocument;
  const failures = doc.scenarios.flatMap((s) =>
    s.expectations.filter((e) => !e.passed).map((e) => `${s.name}: ${e.description}: ${e.observed}`),
  );
  assert.deepEqual(failures, []);
  assert.equal(result.code, 0, result.stderr);
  // The article's three first, in the article's order, then the ones beyond it.
  assert.deepEqual(
    doc.scenarios.map((s) => [s.name, s.status, s.isolation]),
    SHIPPED.map((name) => [name, 'passed', 'netns']),
  );
  if (EXPECTED_BINDER) {
    // The article's three bind with `auto`; lifecycle scenarios always drive the native helper's sockets.
    const binders = new Set(
      doc.scenarios
        .filter((s) => SHIPPED.indexOf(s.name) < 3)
        .flatMap((s) => s.servers.filter((i) => i.bind === 'ok').map((i) => i.binder)),
    );
    assert.deepEqual([...binders], [EXPECTED_BINDER], 'auto picked the binder this Node supports');
  }
  const xml = readFileSync(junit, 'utf8');
  const parsed = spawnSync(
    'python3',
    [
      '-c',
      'import sys, xml.dom.minidom as m; d = m.parse(sys.argv[1]); print(len(d.getElementsByTagName("testcase")))',
      junit,
    ],
    {
      encoding: 'utf8',
    },
  );
  if (parsed.error) {
    assert.match(xml, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<testsuites /);
  } else {
    assert.equal(parsed.status, 0, parsed.stderr);
    assert.ok(Number(parsed.stdout) >= 10, 'one testcase per expectation');
  }
  assert.match(xml, /<testsuite name="priority" tests="\d+" failures="0"/);
});

test('the host fallback runs load-balance on loopback, and refuses priority, whose wildcard would not be one', async () => {
  const result = await runShipped(['scenario', 'run', 'load-balance', 'priority', '--isolation', 'host', '--json']);
  const doc = JSON.parse(result.stdout) as RunDocument & {
    scenarios: {
      substitutions: { addresses: { from: string; to: string }[]; ports: { from: number; to: number }[] };
    }[];
  };
  assert.equal(result.code, 0, result.stdout);
  assert.deepEqual(
    doc.scenarios.map((s) => [s.name, s.status, s.isolation]),
    [
      ['load-balance', 'passed', 'host'],
      ['priority', 'skipped', null],
    ],
  );
  const loadBalance = doc.scenarios[0]!;
  assert.deepEqual(loadBalance.substitutions.addresses, [{ from: '0.0.0.0', to: '127.0.0.1' }]);
  assert.notEqual(loadBalance.substitutions.ports[0]?.to, 6000, 'a free port stands in for 6000');
  assert.match(doc.scenarios[1]!.reason ?? '', /B's wildcard 0\.0\.0\.0 would be bound as 127\.0\.0\.1/);
});

test('run as nobody, cross-user is skipped with a reason, and --strict makes skips fail', {
  skip: !isRoot && 'needs root to switch to nobody',
}, async (t) => {
  // The checkout may sit where nobody cannot read (e.g. /root): run a readable copy of what the CLI needs.
  const copy = await runtimeCopy(0o755);
  t.after(() => copy.remove());
  const asNobody = (args: string[]) => runAsNobody(copy.dir, args);
  const plain = await runShipped(['scenario', 'run', 'cross-user', 'load-balance', '--json'], asNobody);
  const doc = JSON.parse(plain.stdout) as RunDocument;
  const crossUser = doc.scenarios.find((s) => s.name === 'cross-user')!;
  assert.equal(crossUser.status, 'skipped');
  assert.match(crossUser.reason ?? '', /needs real root/);
  assert.equal(doc.scenarios.find((s) => s.name === 'load-balance')?.status, 'passed', plain.stdout);
  assert.equal(plain.code, 0, plain.stderr);
  const strict = await asNobody(['scenario', 'run', 'cross-user', '--strict']);
  assert.equal(strict.code, 1);
  assert.match(strict.stdout, /SKIPPED: needs real root/);
});

const WRONG = `name: wrong
title: A deliberately wrong expectation
article: Connections to 127.0.0.1 reach the wildcard listener.
lookFor: The report must say what was expected and what was seen.
explanation: The exact-address listener wins, so the expectation is wrong.
servers:
  - { id: exact, address: 127.0.0.1, port: 6000 }
  - { id: wild, address: 0.0.0.0, port: 6000 }
steps:
  - start: [exact, wild]
  - traffic: { id: local, target: 127.0.0.1, port: 6000, connections: 20 }
expect:
  - traffic: local
    all: wild
`;

test('a wrong expectation gives exit 1 and says expected versus observed', async (t) => {
  const file = join(tempDir(t), 'wrong.yaml');
  writeFileSync(file, WRONG);
  const result = await runCli(['scenario', 'run', file, ...(canNamespace ? [] : ['--isolation', 'host'])]);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(result.stdout, /✘ local: every connection to 127\.0\.0\.1:\d+ reaches wild \(line 13\)/);
  assert.match(result.stdout, /expected: wild 20\/20 \(100%\)/);
  assert.match(result.stdout, /observed: exact 20\/20 \(100%\)/);
  assert.match(result.stdout, /FAILED/);
});

test('a bad scenario file gives exit 2 with file, line and a plain message', async (t) => {
  const file = join(tempDir(t), 'wrong.yaml');
  writeFileSync(file, WRONG.replace('connections: 20', 'connections: 20, conections: 5'));
  const result = await runCli(['scenario', 'run', file]);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /wrong\.yaml:11:\d+: .*unknown key "conections".*connections/);
  assert.doesNotMatch(result.stderr, /\n\s+at /);
});

test('Ctrl-C in the middle of a run leaves no process and no namespace behind', { skip: noNamespace }, async (t) => {
  // Its own process group, so the SIGINT reaches every process as a terminal's Ctrl-C would.
  const run = new CliProcess(['scenario', 'run', 'load-balance', 'priority'], { detached: true });
  t.after(() => run.child.kill('SIGKILL'));
  // Workers are up once the first start step is done.
  await run.waitForStderr(/start W/);
  const seen = descendants(run.child.pid!);
  // Only the namespaces this run created: other runs on the machine come and go meanwhile.
  const created = namespacesOf(seen);
  created.delete(readlinkSync('/proc/self/ns/net'));
  assert.ok(seen.length >= 5, `workers were running: ${seen.length}`);
  assert.ok(created.size >= 1, 'the run made a namespace');
  process.kill(-run.child.pid!, 'SIGINT');
  const { code } = await run.finish(30_000);
  assert.equal(code, 130, run.stdout + run.stderr);
  assert.deepEqual(await waitGone(seen), [], 'every process the run started is gone');
  assert.deepEqual(await waitNamespacesGone(created), [], 'no network namespace it made is left');
});

test('a worker that crashes mid-run fails the scenario and leaves nothing behind', { skip: noNamespace }, async (t) => {
  const run = new CliProcess(['scenario', 'run', 'load-balance', '--json']);
  t.after(() => run.child.kill('SIGKILL'));
  // Find a worker as soon as one exists, and kill it.
  let all: number[] = [];
  let killed = false;
  for (let tries = 0; tries < 3000 && !killed; tries++) {
    all = descendants(run.child.pid!);
    const [worker] = workerPids(run.child.pid!);
    if (worker) {
      process.kill(worker, 'SIGKILL');
      killed = true;
    } else {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
  assert.ok(killed, 'a worker appeared');
  const { code } = await run.finish();
  assert.equal(code, 1, run.stdout);
  const doc = JSON.parse(run.stdout) as RunDocument;
  assert.equal(doc.scenarios[0]?.status === 'failed' || doc.scenarios[0]?.status === 'error', true);
  assert.deepEqual(await waitGone(all), []);
});

test('two `scenario all` runs at the same time do not disturb each other', {
  skip: noNamespace || (!isRoot && 'cross-user needs root'),
}, async () => {
  // Thirteen scenarios, twice at once, on two shared cores: more than runCli's default minute.
  const slow = (args: string[]) => runCli(args, { timeoutMs: 180_000 });
  const [a, b] = await Promise.all([
    runShipped(['scenario', 'all', '--json'], slow),
    runShipped(['scenario', 'all', '--json'], slow),
  ]);
  assert.equal(a.code, 0, a.stdout);
  assert.equal(b.code, 0, b.stdout);
});

test('--binder forces one binder on every server', { skip: noNamespace }, async () => {
  const result = await runShipped(['scenario', 'run', 'load-balance', '--binder', 'native', '--json']);
  assert.equal(result.code, 0, result.stdout);
  const doc = JSON.parse(result.stdout) as RunDocument;
  assert.deepEqual([...new Set(doc.scenarios[0]!.servers.map((s) => s.binder))], ['native']);
});

test("scenario list names the article's three experiments first, then the ones beyond it", async () => {
  const result = await runCli(['scenario', 'list', '--json']);
  assert.equal(result.code, 0);
  const doc = JSON.parse(result.stdout) as { version: number; scenarios: { name: string }[] };
  assert.equal(doc.version, 1);
  assert.deepEqual(
    doc.scenarios.map((s) => s.name),
    SHIPPED,
  );
});
