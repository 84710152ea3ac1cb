// `reuseport reconcile serve.json load.json`: serve's exact final counts
// against a load's tally, after both ended, from the files a user keeps.
// Real serve and load processes on loopback, kernel-chosen ports.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import type { LoadResult } from '../src/net/load-client.js';
import type { Reconciliation } from '../src/net/reconcile.js';
import { runCli, ServeProcess, tempDir } from './helpers.js';

type ReconcileDoc = Reconciliation & { version: number };

/** `serve` on a kernel-chosen loopback port, stopped after the test. */
async function startServe(t: TestContext, workers: number) {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', String(workers)]);
  t.after(() => serve.stop());
  return { serve, ...(await serve.listening(workers)) };
}

/** `load --json` into a file, as a user would keep it; its document parsed too. */
async function loadInto(file: string, port: number, args: string[]) {
  const result = await runCli(['load', '--json', '--host', '127.0.0.1', '--port', String(port), ...args]);
  assert.equal(result.stderr, '', 'load wrote to stderr');
  writeFileSync(file, result.stdout);
  return JSON.parse(result.stdout) as LoadResult;
}

async function reconcile(serveFile: string, loadFile: string) {
  const result = await runCli(['reconcile', '--json', serveFile, loadFile]);
  assert.equal(result.stderr, '', 'reconcile wrote to stderr');
  return { code: result.code, doc: JSON.parse(result.stdout) as ReconcileDoc };
}

/** The numbers of the explanation agree with each other exactly. */
function assertExact(doc: ReconcileDoc, load: LoadResult): void {
  const surplus = doc.workers.reduce((sum, w) => sum + (w.accepted ?? 0) - w.attributed, 0);
  assert.equal(surplus, doc.acceptedWithoutGreeting, 'Σ (accepted − attributed) = accepted without a greeting');
  assert.equal(doc.connectedWithoutGreeting, load.silent + load.inFlight, 'no other outcome here');
  assert.equal(doc.acceptedWithoutGreeting + doc.neverAccepted, doc.connectedWithoutGreeting);
  assert.equal(doc.unexplained, 0);
}

test('reconcile: connections queued at a SIGSTOPped worker were silent, and accepted after SIGCONT without a greeting', {
  timeout: 60_000,
}, async (t) => {
  const dir = tempDir(t);
  const { serve, port, pids } = await startServe(t, 2);
  const frozen = pids[1]!;
  process.kill(frozen, 'SIGSTOP');
  let resumed = false;
  t.after(() => !resumed && process.kill(frozen, 'SIGCONT'));
  const load = await loadInto(join(dir, 'load.json'), port, ['-n', '100', '-c', '100', '--timeout', '300']);
  assert.ok(load.silent > 0, 'some connections hashed to the frozen worker');
  process.kill(frozen, 'SIGCONT');
  resumed = true;
  // Once awake it accepts what queued at it, long after the client gave up (inet_csk_accept takes the queue's
  // head whatever state the connection is in): its count says when it has.
  await serve.waitFor((e) => e.event === 'stats' && e.pid === frozen && e.accepted === load.silent);
  assert.equal((await serve.stop('SIGTERM')).code, 0);
  writeFileSync(join(dir, 'serve.json'), serve.stdout);

  const { code, doc } = await reconcile(join(dir, 'serve.json'), join(dir, 'load.json'));
  assert.equal(code, 0, doc.findings.join('; '));
  assert.equal(doc.consistent, true);
  assert.equal(doc.version, 1);
  assertExact(doc, load);
  assert.deepEqual([doc.acceptedWithoutGreeting, doc.neverAccepted], [load.silent, 0]);
  const text = await runCli(['reconcile', join(dir, 'serve.json'), join(dir, 'load.json')]);
  assert.equal(text.code, 0);
  assert.match(
    text.stdout.replace(/\s+/g, ' '),
    new RegExp(`${load.silent} connections were accepted without a greeting reaching the client`),
  );
  assert.match(text.stdout.replace(/\s+/g, ' '), /assumes the load was serve's only client/);
});

test('reconcile: connections a --deadline cut off at a frozen worker are in flight, and were never accepted', {
  timeout: 60_000,
}, async (t) => {
  const dir = tempDir(t);
  const { serve, port, pids } = await startServe(t, 2);
  const frozen = pids[1]!;
  process.kill(frozen, 'SIGSTOP');
  // serve kills a worker that does not stop; this one stays frozen until then, so it never accepts.
  const load = await loadInto(join(dir, 'load.json'), port, [
    '-n',
    '100',
    '-c',
    '100',
    '--timeout',
    '60000',
    '--deadline',
    '1',
  ]);
  assert.equal(load.stoppedEarly, 'deadline');
  assert.ok(load.inFlight > 0, 'some connections hashed to the frozen worker');
  assert.equal(load.silent, 0);
  const stopped = await serve.stop('SIGTERM');
  assert.equal(stopped.code, 1, 'the frozen worker had to be killed');
  writeFileSync(join(dir, 'serve.json'), serve.stdout);

  const { code, doc } = await reconcile(join(dir, 'serve.json'), join(dir, 'load.json'));
  assert.equal(code, 0, doc.findings.join('; '));
  assertExact(doc, load);
  assert.deepEqual([doc.acceptedWithoutGreeting, doc.neverAccepted], [0, load.inFlight]);
  assert.match(doc.explanations.join('\n'), new RegExp(`^${load.inFlight} connections .* were never accepted`, 'm'));
});

test("reconcile exits 1 naming the problem: another client's connections, or a load from another serve run", {
  timeout: 60_000,
}, async (t) => {
  const dir = tempDir(t);
  const first = await startServe(t, 1);
  const other = await startServe(t, 1);
  await loadInto(join(dir, 'load.json'), first.port, ['-n', '10']);
  await loadInto(join(dir, 'stranger.json'), first.port, ['-n', '5']);
  for (const { serve } of [first, other]) assert.equal((await serve.stop('SIGTERM')).code, 0);
  writeFileSync(join(dir, 'first.json'), first.serve.stdout);
  writeFileSync(join(dir, 'other.json'), other.serve.stdout);

  const shared = await reconcile(join(dir, 'first.json'), join(dir, 'load.json'));
  assert.equal(shared.code, 1);
  assert.deepEqual(shared.doc.problems, [
    '5 connections counted by workers match no client outcome (5 accepted without a greeting, only 0 connected without one)',
  ]);
  const elsewhere = await reconcile(join(dir, 'other.json'), join(dir, 'load.json'));
  assert.equal(elsewhere.code, 1);
  assert.match(elsewhere.doc.problems.join('\n'), /the load went to port \d+ but serve listened on port \d+/);
  assert.match(elsewhere.doc.problems.join('\n'), /10 connections were answered by processes that are not among/);
});

test('reconcile refuses bad input in one line naming the file, with a remedy and without its content, exit 2', async (t) => {
  const dir = tempDir(t);
  const secret = `reuseport-secret-${process.pid}`;
  const file = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };
  const load = file('load.json', JSON.stringify({ version: 1, attributed: 0, perWorker: [], secret }, null, 2));
  const listening = `${JSON.stringify({ version: 1, event: 'listening', secret })}\n`;
  const partial = file('partial.json', listening);
  const stopped = { version: 1, event: 'stopped', port: 1, protocol: 'tcp', workers: [] };
  const serve = file('serve.json', `${listening}${JSON.stringify(stopped)}\n`);
  const cases: [string[], RegExp][] = [
    [
      [join(dir, 'missing.json'), load],
      /missing\.json cannot be read \(no such file or directory\); expected the output of `reuseport serve --json`/,
    ],
    [[file('text', `${secret}\n`), load], /text is not JSON; expected the output of `reuseport serve --json`/],
    [
      [load, load],
      /load\.json is the output of `reuseport load --json`; expected .*serve --json.*: give `reuseport reconcile` the serve file first, then the load file/,
    ],
    [
      [serve, serve],
      /serve\.json is the output of `reuseport serve --json`; expected .*load --json.*: give `reuseport reconcile` the serve file first/,
    ],
    [[serve, '/proc/self/environ'], /environ is not a text file .*; expected the output of `reuseport load --json`/],
    [[partial, load], /partial\.json has no "stopped" event .*: stop serve with Ctrl-C or SIGTERM/],
    [
      [file('scenario.json', JSON.stringify({ scenarios: [secret] })), load],
      /is JSON, but not from reuseport serve or load/,
    ],
  ];
  for (const [args, pattern] of cases) {
    const result = await runCli(['reconcile', ...args], { env: { REUSEPORT_TEST_SECRET: secret } });
    assert.equal(result.code, 2, `${args}: ${result.stdout}${result.stderr}`);
    assert.equal(result.stdout, '');
    assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
    assert.match(result.stderr, pattern);
    assert.doesNotMatch(result.stderr, new RegExp(secret), 'nothing the file holds is echoed');
  }
});
