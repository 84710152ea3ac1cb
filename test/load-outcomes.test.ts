// What `load` reports happened to each connection, told apart: attributed,
// connected but silent, unrecognized, failed by errno, cut off in flight, not
// started; the source ports behind the balance verdict; and the reconciliation
// with the workers' own counters. Loopback and kernel-chosen ports only.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import { once } from 'node:events';
import net from 'node:net';
import test, { type TestContext } from 'node:test';
import { UsageError } from '../src/errors.js';
import { chooseEngine, decideEngine, ENGINE_ENV, type EngineName, requestedEngine } from '../src/net/engine.js';
import { type LoadResult, runLoad } from '../src/net/load-client.js';
import { loadNativeHelper } from '../src/net/native.js';
import { reconcileWithWorkers } from '../src/net/reconcile.js';
import { CLI, childClosed, cleanups, closedPort, ROOT, runCli, ServeProcess } from './helpers.js';

const helper = loadNativeHelper().helper;
const ENGINES: EngineName[] = helper?.engines ? ['builtin', 'native'] : ['builtin'];

async function cliLoad(args: string[], env: NodeJS.ProcessEnv = {}) {
  const result = await runCli(['load', '--json', '--host', '127.0.0.1', ...args], { env });
  assert.equal(result.stderr, '', 'load wrote to stderr');
  return { code: result.code, doc: JSON.parse(result.stdout) as LoadResult & { version: number } };
}

/** `serve` on a kernel-chosen loopback port, stopped after the test. */
async function startServe(t: TestContext, workers: number) {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', String(workers)]);
  t.after(() => serve.stop());
  return { serve, ...(await serve.listening(workers)) };
}

/** A TCP server that accepts and never says a word; its connections are destroyed afterwards. */
async function quietServer(t: TestContext, onAccept: () => void = () => {}): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    onAccept();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return (server.address() as net.AddressInfo).port;
}

for (const engine of ENGINES) {
  test(`${engine} engine: connections queued at a SIGSTOPped worker are silent, and the counters reconcile`, {
    timeout: 60_000,
  }, async (t) => {
    const { serve, port, pids } = await startServe(t, 2);
    const [awake, frozen] = pids as [number, number];
    process.kill(frozen, 'SIGSTOP');
    let resumed = false;
    t.after(() => !resumed && process.kill(frozen, 'SIGCONT'));
    const { code, doc } = await cliLoad(
      ['--port', String(port), '-n', '100', '-c', '100', '--timeout', '300', '--engine', engine],
      { [ENGINE_ENV]: '' },
    );
    assert.equal(code, 1, 'silent connections fail the run');
    assert.deepEqual(
      doc.perWorker.map((w) => w.pid),
      [awake],
      'only the awake worker greets',
    );
    assert.equal(doc.attributed, doc.perWorker[0]!.count);
    assert.ok(doc.silent > 0, 'some connections hashed to the frozen worker');
    assert.equal(doc.attributed + doc.silent, 100);
    assert.deepEqual([doc.failed, doc.unrecognized, doc.inFlight, doc.notStarted], [0, 0, 0, 0]);
    assert.match(doc.hints.join('\n'), /connected but got no greeting within 300 ms: a worker may be frozen/);

    process.kill(frozen, 'SIGCONT');
    resumed = true;
    assert.equal((await serve.stop('SIGTERM')).code, 0);
    const exits = serve.events.filter((e) => e.event === 'exit');
    const reconciliation = reconcileWithWorkers(
      doc,
      exits.map((e) => ({ pid: e.pid!, workerId: e.workerId!, accepted: e.accepted! })),
    );
    assert.equal(reconciliation.consistent, true, reconciliation.findings.join('; '));
    assert.equal(reconciliation.unexplained, 0);
    assert.equal(reconciliation.connectedWithoutGreeting, doc.silent);
    assert.equal(reconciliation.acceptedWithoutGreeting + reconciliation.neverAccepted, doc.silent);
    const awakeRow = reconciliation.workers.find((w) => w.pid === awake)!;
    assert.deepEqual([awakeRow.notGreeted, awakeRow.overAttributed], [0, 0]);
  });

  test(`${engine} engine: Ctrl-C reports what was in flight and what never started`, { timeout: 30_000 }, async (t) => {
    let accepted = 0;
    let allAccepted: () => void = () => {};
    const port = await quietServer(t, () => {
      if (++accepted === 5) allAccepted();
    });
    const child = spawn(
      process.execPath,
      [
        CLI,
        'load',
        '--json',
        '--host',
        '127.0.0.1',
        '--port',
        String(port),
        '-n',
        '50',
        '-c',
        '5',
        '--timeout',
        '20000',
      ],
      { cwd: ROOT, env: { ...process.env, [ENGINE_ENV]: engine }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    t.after(() => child.exitCode === null && child.kill('SIGKILL'));
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    await new Promise<void>((resolve) => {
      allAccepted = resolve;
      if (accepted >= 5) resolve();
    });
    child.kill('SIGINT');
    const { code } = await childClosed(child, 'load to exit after Ctrl-C');
    assert.equal(code, 1);
    const doc = JSON.parse(stdout) as LoadResult;
    assert.equal(doc.stoppedEarly, 'aborted');
    assert.deepEqual(
      [doc.attempted, doc.inFlight, doc.notStarted, doc.attributed, doc.silent, doc.failed],
      [5, 5, 45, 0, 0, 0],
    );
  });

  test(`${engine} engine: a full listen queue gives ETIMEDOUT with a hint, and silence for the queued`, {
    skip: helper ? false : 'needs the native helper to hold a listener nobody accepts on',
    timeout: 30_000,
  }, async (t) => {
    const defer = cleanups(t);
    // Backlog 1, never accepted: the queue fills at once, later SYNs are dropped.
    const fd = helper!.openSocket({
      family: 4,
      type: 'tcp',
      address: '127.0.0.1',
      port: 0,
      reusePort: false,
      reuseAddr: false,
      backlog: 1,
    });
    defer(() => helper!.closeFd(fd));
    const port = helper!.engines!.getsockname(fd).port;
    const { code, doc } = await cliLoad(['--port', String(port), '-n', '10', '-c', '10', '--timeout', '300'], {
      [ENGINE_ENV]: engine,
    });
    assert.equal(code, 1);
    assert.deepEqual(
      doc.failures.map((f) => f.code),
      ['ETIMEDOUT'],
    );
    assert.ok(doc.silent >= 1, 'the queued ones connected');
    assert.equal(doc.silent + doc.failed, 10);
    assert.ok(
      doc.hints.some((h) => h.startsWith('no answer to the connection request within 300 ms (ETIMEDOUT)')),
      doc.hints.join('\n'),
    );
  });

  test(`${engine} engine: source ports per worker, the tuples, and a fixed --source-port as one draw`, {
    timeout: 60_000,
  }, async (t) => {
    const { port } = await startServe(t, 2);
    const result = await runLoad(
      { host: '127.0.0.1', port, protocol: 'tcp', connections: 200, concurrency: 20, recordTuples: true },
      { engine },
    );
    assert.equal(result.attributed, 200);
    const tuples = result.tuples ?? [];
    assert.equal(
      tuples.length,
      result.perWorker.reduce((sum, w) => sum + w.distinctSourcePorts, 0),
    );
    assert.equal(new Set(tuples.map((x) => x.sourcePort)).size, result.distinctSourcePorts);
    assert.equal(result.distinctSourcePorts, tuples.length, 'no port reached two workers');
    assert.ok(
      tuples.every((x) => x.sourcePort > 0 && result.perWorker.some((w) => `${w.pid}/${w.workerId}` === x.workerKey)),
    );

    const sourcePort = await closedPort();
    const { code, doc } = await cliLoad(['--port', String(port), '-n', '4', '--source-port', String(sourcePort)], {
      [ENGINE_ENV]: engine,
    });
    assert.equal(code, 0);
    assert.equal(doc.concurrency, 1, '--source-port implies -c 1');
    assert.equal(doc.perWorker.length, 1, 'one 4-tuple, one worker');
    assert.deepEqual(
      [doc.perWorker[0]!.count, doc.perWorker[0]!.distinctSourcePorts, doc.distinctSourcePorts],
      [4, 1, 1],
    );
    assert.equal(doc.balance?.basis, 'distinctSourcePorts');
    assert.deepEqual(doc.balance?.counts, [1]);
  });
}

test('UDP: a datagram with no reply is silent, a reply that is no greeting is unrecognized', {
  timeout: 30_000,
}, async (t) => {
  const defer = cleanups(t);
  const quiet = dgram.createSocket('udp4');
  const chatty = dgram.createSocket('udp4');
  chatty.on('message', (_message, from) => chatty.send('hello\n', from.port, from.address));
  for (const socket of [quiet, chatty]) {
    socket.bind(0, '127.0.0.1');
    await once(socket, 'listening');
    defer(() => socket.close());
  }
  const silent = await cliLoad([
    '--protocol',
    'udp',
    '--port',
    String(quiet.address().port),
    '-n',
    '5',
    '--timeout',
    '200',
  ]);
  assert.equal(silent.code, 1);
  assert.deepEqual([silent.doc.silent, silent.doc.failed, silent.doc.attributed], [5, 0, 0]);
  assert.match(silent.doc.hints.join('\n'), /5 datagrams got no reply within 200 ms/);
  const other = await cliLoad(['--protocol', 'udp', '--port', String(chatty.address().port), '-n', '5']);
  assert.deepEqual([other.doc.unrecognized, other.doc.silent, other.doc.failed], [5, 0, 0]);
});

const unshareWorks = spawnSync('unshare', ['--net', 'true']).status === 0;

test('UDP and TCP load in a namespace whose loopback is down count ENETUNREACH, with no stack trace', {
  skip: unshareWorks ? false : 'needs `unshare --net` (root or user namespaces)',
  timeout: 30_000,
}, () => {
  for (const protocol of ['udp', 'tcp']) {
    const run = spawnSync(
      'unshare',
      ['--net', process.execPath, CLI, 'load', '--json', '--protocol', protocol, '-n', '20'],
      {
        cwd: ROOT,
        encoding: 'utf8',
        env: { ...process.env, NO_COLOR: '1' },
        timeout: 30_000,
      },
    );
    assert.equal(run.status, 1, `${protocol}: ${run.stderr}`);
    assert.equal(run.stderr, '', protocol);
    const doc = JSON.parse(run.stdout) as LoadResult;
    assert.deepEqual(doc.failures, [{ code: 'ENETUNREACH', count: 20 }], protocol);
    assert.match(doc.hints.join('\n'), /ENETUNREACH\): in a fresh network namespace, bring loopback up/);
  }
});

test('decideEngine: one rule for serve and load, whether asked by flag or environment', () => {
  const available = { helperAvailable: true };
  const env = (value: string) => ({ [ENGINE_ENV]: value });
  assert.deepEqual(requestedEngine(undefined, {}), { engine: 'auto', from: null });
  assert.deepEqual(requestedEngine(undefined, env('node')), { engine: 'builtin', from: ENGINE_ENV });
  assert.deepEqual(requestedEngine('native', env('builtin')), { engine: 'native', from: '--engine' });
  assert.throws(
    () => requestedEngine('native', env('bogus')),
    UsageError,
    'a bad variable is an error even when overridden',
  );
  const auto = requestedEngine(undefined, {});
  assert.equal(decideEngine({ requested: auto, protocol: 'tcp', ...available }), 'native');
  assert.equal(decideEngine({ requested: auto, protocol: 'udp', ...available }), 'native', 'load: UDP too');
  assert.equal(decideEngine({ requested: auto, protocol: 'udp', binder: 'native', ...available }), 'native');
  assert.equal(decideEngine({ requested: auto, protocol: 'tcp', binder: 'builtin', ...available }), 'builtin');
  assert.equal(decideEngine({ requested: auto, protocol: 'tcp', helperAvailable: false }), 'builtin');
  for (const requested of [requestedEngine('native', {}), requestedEngine(undefined, env('native'))]) {
    assert.equal(decideEngine({ requested, protocol: 'udp', ...available }), 'native');
    assert.equal(decideEngine({ requested, protocol: 'udp', binder: 'native', ...available }), 'native');
    assert.throws(
      () => decideEngine({ requested, protocol: 'tcp', binder: 'builtin', ...available }),
      /add --binder native/,
    );
    assert.throws(
      () => decideEngine({ requested, protocol: 'tcp', helperAvailable: false, helperReason: 'not built' }),
      /needs the native helper, which is unavailable \(not built\)/,
    );
  }
});

test("chooseEngine: a worker that needs Node's socket gets builtin under auto, with the reason; asked native, a UsageError", () => {
  const available = { helperAvailable: true, binder: 'native' as const };
  const auto = requestedEngine(undefined, {});
  const cpu = chooseEngine({ requested: auto, protocol: 'tcp', incomingCpu: true, ...available });
  assert.equal(cpu.engine, 'builtin');
  assert.match(cpu.reason, /reports each accepted socket's SO_INCOMING_CPU/);
  assert.deepEqual(
    chooseEngine({ requested: auto, protocol: 'udp', incomingCpu: true, ...available }),
    { engine: 'native', reason: 'auto: the native helper is available' },
    'a UDP socket with SO_INCOMING_CPU reports nothing per datagram: native serves it',
  );
  const connected = chooseEngine({ requested: auto, protocol: 'udp', connectedUdp: true, ...available });
  assert.equal(connected.engine, 'builtin');
  assert.match(connected.reason, /connect\(\)s its UDP socket to one peer/);
  assert.deepEqual(chooseEngine({ requested: auto, protocol: 'tcp', binder: 'builtin', helperAvailable: true }), {
    engine: 'builtin',
    reason: "auto: the socket is Node's (binder builtin)",
  });
  assert.deepEqual(chooseEngine({ requested: auto, protocol: 'tcp', helperAvailable: false, helperReason: 'gone' }), {
    engine: 'builtin',
    reason: 'auto: the native helper is unavailable (gone)',
  });
  assert.deepEqual(
    chooseEngine({ requested: requestedEngine('builtin', {}), protocol: 'tcp', incomingCpu: true, ...available }),
    { engine: 'builtin', reason: 'asked for by --engine' },
  );
  assert.throws(
    () => chooseEngine({ requested: requestedEngine('native', {}), protocol: 'tcp', incomingCpu: true, ...available }),
    (err: unknown) =>
      err instanceof UsageError &&
      err.exitCode === 2 &&
      /^--engine native cannot serve this socket: .*SO_INCOMING_CPU.*; use --engine auto \(or builtin\)$/.test(
        err.message,
      ),
  );
  assert.throws(
    () =>
      chooseEngine({
        requested: requestedEngine(undefined, { [ENGINE_ENV]: 'native' }),
        protocol: 'udp',
        connectedUdp: true,
        ...available,
      }),
    /^UsageError: REUSEPORT_ENGINE=native cannot serve this socket: .*; set REUSEPORT_ENGINE=auto \(or builtin\)$/,
  );
});

test('a bad REUSEPORT_ENGINE is one exit-2 line for every command; --engine node is builtin', {
  timeout: 60_000,
}, async () => {
  const port = await closedPort();
  const runs = await Promise.all(
    [['serve', '--port', '0'], ['load', '--port', String(port)], ['doctor'], ['scenario', 'list']].map((args) =>
      runCli(args, { env: { [ENGINE_ENV]: 'bogus' } }),
    ),
  );
  for (const run of runs) {
    assert.equal(run.code, 2);
    assert.equal(run.stderr, 'reuseport: REUSEPORT_ENGINE must be auto, builtin or native, got "bogus"\n');
  }
  const alias = await runCli(['load', '--json', '--port', String(port), '-n', '2', '--engine', 'node']);
  assert.equal(alias.code, 1);
  assert.deepEqual((JSON.parse(alias.stdout) as LoadResult).failures, [{ code: 'ECONNREFUSED', count: 2 }]);
});

test('load --port 0 is a usage error', async () => {
  const run = await runCli(['load', '--port', '0']);
  assert.equal(run.code, 2);
  assert.match(run.stderr, /^reuseport: --port 0 means "any port" to a server, not a target/);
});

test('the balance verdict: chi-square fields in --json, unused workers named, a 1/N mark on the bars', {
  timeout: 60_000,
}, async (t) => {
  const { port } = await startServe(t, 2);
  const { code, doc } = await cliLoad(['--port', String(port), '-n', '400', '--workers', '3']);
  assert.equal(code, 0);
  assert.equal(doc.version, 1);
  const balance = doc.balance!;
  assert.equal(balance.basis, 'connections');
  assert.equal(balance.counts.length, 3);
  assert.equal(balance.counts[2], 0, 'the third worker, never heard from, counts as 0');
  assert.equal(balance.df, 2);
  assert.equal(balance.everyWorkerUsed, false);
  assert.ok(balance.chiSquare > 100 && balance.pValue < 1e-20 && !balance.even);
  const text = await runCli(['load', '--host', '127.0.0.1', '--port', String(port), '-n', '400', '-w', '2']);
  assert.equal(text.code, 0);
  assert.match(text.stdout, /│ = 1\/2/);
  // The verdict is prose, wrapped to 80 columns: read it with its continuation lines joined.
  assert.match(
    text.stdout.replace(/\n {2}(?=\S)/g, ' '),
    /^balance over 400 connections: chi-square \d+\.\d\d, df 1, p [\d.e-]+: .*; all 2 workers used$/m,
  );
});

test('reconcileWithWorkers flags a worker credited with more than it counted, and an unknown count', async (t) => {
  const { port, pids } = await startServe(t, 2);
  const result = await runLoad({ host: '127.0.0.1', port, protocol: 'tcp', connections: 50, concurrency: 10 });
  assert.equal(result.attributed, 50);
  const [first, second] = result.perWorker as [LoadResult['perWorker'][0], LoadResult['perWorker'][0]];
  const exact = reconcileWithWorkers(result, [
    { pid: first.pid, workerId: first.workerId, accepted: first.count },
    { pid: second.pid, workerId: second.workerId, accepted: second.count },
  ]);
  assert.deepEqual([exact.consistent, exact.findings], [true, []]);
  const wrong = reconcileWithWorkers(result, [
    { pid: first.pid, workerId: first.workerId, accepted: first.count - 1 },
    { pid: second.pid, accepted: null },
  ]);
  assert.equal(wrong.consistent, false);
  assert.equal(wrong.workers[0]!.overAttributed, 1);
  assert.match(wrong.findings[0]!, /impossible, a counter is wrong/);
  assert.match(wrong.findings[1]!, /its count cannot be known/);
  const partial = reconcileWithWorkers(result, [{ pid: first.pid, accepted: first.count }]);
  assert.equal(partial.strangers, second.count, 'attributed to a worker not in the list');
  assert.deepEqual(pids.sort(), [first.pid, second.pid].sort());
});
