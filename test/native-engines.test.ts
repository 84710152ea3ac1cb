// The addon's two engines (the serve accept loop and the load client) against
// their JS fallbacks: both must give the same accounting. Loopback only,
// kernel-assigned ports only, no sleeps.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { closeSync, openSync, readdirSync, readFileSync } from 'node:fs';
import net from 'node:net';
import test, { type TestContext } from 'node:test';
import { KernelError } from '../src/errors.js';
import { ENGINE_ENV, type EngineName } from '../src/net/engine.js';
import { type LoadResult, runLoad } from '../src/net/load-client.js';
import { loadNativeHelper, type NativeEngines, type NativeHelper } from '../src/net/native.js';
import { cleanups, closedPort, runCli, ServeProcess, waitGone } from './helpers.js';

type Engine = EngineName;

const loaded = loadNativeHelper();
const skipReason: string | null =
  loaded.helper === null
    ? `native helper unavailable: ${loaded.reason}`
    : loaded.helper.engines === null
      ? 'the native helper was built without its engines: rebuild it'
      : null;

/** The helper and its engines, or skips the test (with the reason) when they are not built. */
function needEngines(t: TestContext): { helper: NativeHelper; engines: NativeEngines } | null {
  if (skipReason !== null || loaded.helper === null || loaded.helper.engines === null) {
    t.skip(skipReason ?? 'native engines unavailable');
    return null;
  }
  return { helper: loaded.helper, engines: loaded.helper.engines };
}

/**
 * `reuseport serve --json` with REUSEPORT_ENGINE set for it (and so for its
 * workers). ServeProcess passes process.env through as it is at spawn time,
 * which happens synchronously in the constructor: set it just for that call.
 */
function serveWith(engine: Engine, args: string[]): ServeProcess {
  const before = process.env[ENGINE_ENV];
  process.env[ENGINE_ENV] = engine;
  try {
    return new ServeProcess(args);
  } finally {
    if (before === undefined) delete process.env[ENGINE_ENV];
    else process.env[ENGINE_ENV] = before;
  }
}

/** Thread names of a process, from /proc. */
function threadNames(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => {
    try {
      return readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
    } catch {
      return '';
    }
  });
}

function peakRssKb(pid: number): number {
  const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(match, `VmHWM of ${pid}`);
  return Number(match[1]);
}

interface LoadDocument extends LoadResult {}

/** `load --json` with REUSEPORT_ENGINE set to `engine` ('' for auto). */
async function cliLoad(engine: Engine | '', args: string[]): Promise<{ code: number | null; doc: LoadDocument }> {
  const result = await runCli(['load', '--json', '--host', '127.0.0.1', ...args], { env: { [ENGINE_ENV]: engine } });
  assert.equal(result.stderr, '', `load (${engine}) wrote to stderr`);
  return { code: result.code, doc: JSON.parse(result.stdout) as LoadDocument };
}

/** The fields both engines must agree on, whatever the timing. */
function accounting(doc: LoadResult) {
  return {
    attempted: doc.attempted,
    notStarted: doc.notStarted,
    attributed: doc.attributed,
    unrecognized: doc.unrecognized,
    silent: doc.silent,
    failed: doc.failed,
    failures: doc.failures,
    inFlight: doc.inFlight,
    stoppedEarly: doc.stoppedEarly,
    hints: doc.hints,
  };
}

/** A loopback TCP server for the test; closed (with its connections) afterwards. */
async function tcpServer(
  defer: (fn: () => unknown) => void,
  onConnection: (socket: net.Socket) => void,
): Promise<{ port: number; server: net.Server }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    onConnection(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  defer(
    () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  );
  return { port: (server.address() as net.AddressInfo).port, server };
}

/** A loopback UDP socket for the test that answers each datagram with `reply(datagram)`, or not at all (null). */
async function udpServer(
  defer: (fn: () => unknown) => void,
  reply: (datagram: Buffer) => Buffer | null,
): Promise<{ port: number }> {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (datagram, peer) => {
    const answer = reply(datagram);
    if (answer !== null) socket.send(answer, peer.port, peer.address);
  });
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  defer(() => new Promise<void>((resolve) => socket.close(() => resolve())));
  return { port: socket.address().port };
}

/** A UDP port on 127.0.0.1 that nothing is bound to (it was, an instant ago). */
async function closedUdpPort(): Promise<number> {
  const socket = dgram.createSocket('udp4');
  socket.bind(0, '127.0.0.1');
  await once(socket, 'listening');
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

const ENGINES: Engine[] = ['builtin', 'native'];

/** `load --json` with `args` on both engines: each exits `code`, both account alike; returns that accounting. */
async function bothEnginesAccount(args: string[], code: number): Promise<ReturnType<typeof accounting>> {
  const results: Partial<Record<Engine, ReturnType<typeof accounting>>> = {};
  for (const engine of ENGINES) {
    const run = await cliLoad(engine, args);
    assert.equal(run.code, code, engine);
    results[engine] = accounting(run.doc);
  }
  assert.deepEqual(results.native, results.builtin);
  return results.native!;
}

for (const protocol of ['tcp', 'udp'] as const) {
  for (const serveEngine of ENGINES) {
    for (const loadEngine of ENGINES) {
      test(`${protocol}: serve engine ${serveEngine} x load engine ${loadEngine}: 3000 connections, every one attributed and counted`, {
        timeout: 60_000,
      }, async (t) => {
        if (!needEngines(t)) return;
        const target = ['--protocol', protocol, '--host', '127.0.0.1', '--port', '0'];
        const serve = serveWith(serveEngine, [...target, '--workers', '2', '--binder', 'native']);
        t.after(() => serve.stop());
        const { port, pids } = await serve.listening(2);
        for (const pid of pids) {
          assert.equal(
            threadNames(pid).includes('rp-accept'),
            serveEngine === 'native',
            `worker ${pid} ${serveEngine === 'native' ? 'runs' : 'does not run'} the native serve thread`,
          );
        }
        const { code, doc } = await cliLoad(loadEngine, [
          '--protocol',
          protocol,
          '--port',
          String(port),
          '--connections',
          '3000',
          '--concurrency',
          '50',
        ]);
        assert.equal(code, 0);
        assert.deepEqual(accounting(doc), {
          attempted: 3000,
          notStarted: 0,
          attributed: 3000,
          unrecognized: 0,
          silent: 0,
          failed: 0,
          failures: [],
          inFlight: 0,
          stoppedEarly: null,
          hints: [],
        });
        assert.deepEqual(doc.perWorker.map((w) => w.pid).sort(), [...pids].sort(), 'both workers answered');
        assert.ok(doc.perWorker.every((w) => w.local === `127.0.0.1:${port}`));

        const stopped = await serve.stop('SIGTERM');
        assert.equal(stopped.code, 0);
        const exits = serve.events.filter((e) => e.event === 'exit');
        assert.equal(exits.length, 2);
        for (const exit of exits) {
          assert.equal(exit.reason, 'stopped');
          const tally = doc.perWorker.find((w) => w.pid === exit.pid);
          assert.equal(exit.accepted, tally?.count ?? 0, `worker ${exit.pid}: final counter equals the client's tally`);
        }
        assert.equal(serve.events.find((e) => e.event === 'stopped')?.total, 3000);
        assert.deepEqual(await waitGone(pids), []);
      });
    }
  }
}

// The 50 MB budget is checked on Node 20 (a bare Node 20 is ~40 MB); a Node 24
// worker peaks at ~49 MB with the interpreter-only flags (worker-pool.ts), too
// close to the budget to hold on every machine's page cache, so there only the
// growth is checked. Everywhere, 40k connections must not move the peak: the
// loop allocates nothing per connection.
const RSS_BUDGET_KB = Number(process.versions.node.split('.')[0]) === 20 ? 50 * 1024 : Number.POSITIVE_INFINITY;
const RSS_GROWTH_KB = 3 * 1024;

test("a native-engine worker's peak RSS does not move over 40k connections (under 50 MB on Node 20)", {
  timeout: 120_000,
}, async (t) => {
  if (!needEngines(t)) return;
  const serve = serveWith('native', ['--host', '127.0.0.1', '--port', '0', '--workers', '2', '--binder', 'native']);
  t.after(() => serve.stop());
  const { port, pids } = await serve.listening(2);
  const before = pids.map(peakRssKb);
  const { code, doc } = await cliLoad('native', [
    '--port',
    String(port),
    '--connections',
    '40000',
    '--concurrency',
    '64',
  ]);
  assert.equal(code, 0);
  assert.equal(doc.attributed, 40_000);
  pids.forEach((pid, i) => {
    const kb = peakRssKb(pid);
    const mb = (n: number) => `${(n / 1024).toFixed(1)} MB`;
    assert.ok(kb < RSS_BUDGET_KB, `worker ${pid} peak RSS ${mb(kb)}`);
    assert.ok(kb - before[i]! < RSS_GROWTH_KB, `worker ${pid} peak RSS grew from ${mb(before[i]!)} to ${mb(kb)}`);
  });
  await serve.stop();
  assert.equal(serve.events.find((e) => e.event === 'stopped')?.total, 40_000);
});

test('UDP under engine auto, --engine native and REUSEPORT_ENGINE=native alike runs the native serve thread', {
  timeout: 60_000,
}, async (t) => {
  if (!needEngines(t)) return;
  const udp = ['--protocol', 'udp', '--host', '127.0.0.1', '--port', '0', '--binder', 'native'];
  for (const serve of [serveWith('native', udp), new ServeProcess([...udp, '--engine', 'native'])]) {
    t.after(() => serve.stop());
    const { pids } = await serve.listening(1);
    assert.ok(threadNames(pids[0]!).includes('rp-accept'));
    assert.equal((await serve.stop()).code, 0);
  }
  const serve = new ServeProcess([...udp, '--workers', '2']);
  t.after(() => serve.stop());
  const { port, pids } = await serve.listening(2);
  for (const pid of pids) assert.ok(threadNames(pid).includes('rp-accept'));
  const { code, doc } = await cliLoad('', ['--protocol', 'udp', '--port', String(port), '--connections', '200']);
  assert.equal(code, 0);
  assert.equal(doc.attributed, 200);
  await serve.stop();
  const total = serve.events.filter((e) => e.event === 'exit').reduce((sum, e) => sum + (e.accepted ?? 0), 0);
  assert.equal(total, 200);
});

test('the native accept loop counts, greets, and its stop returns the exact count', { timeout: 30_000 }, async (t) => {
  const native = needEngines(t);
  if (!native) return;
  const { helper, engines } = native;
  const defer = cleanups(t);
  const fd = helper.openSocket({
    family: 4,
    type: 'tcp',
    address: '127.0.0.1',
    port: 0,
    reusePort: true,
    reuseAddr: true,
  });
  let open = true;
  defer(() => open && helper.closeFd(fd));
  const { address, port, family } = engines.getsockname(fd);
  assert.equal(address, '127.0.0.1');
  assert.equal(family, 4);
  assert.ok(port > 0);

  const greeting = Buffer.from('hello from the accept loop\nsecond line\n');
  const handle = engines.acceptLoopStart(fd, greeting);
  let running = true;
  defer(() => running && engines.acceptLoopStop(handle));
  greeting.fill(0); // the loop has its own copy
  assert.equal(engines.acceptLoopCount(handle), 0);

  const progress = new Int32Array(new SharedArrayBuffer(8));
  const report = await engines.loadRun(
    {
      family: 4,
      host: '127.0.0.1',
      port,
      connections: 1234,
      concurrency: 16,
      replyTimeoutMs: 5000,
      deadlineMs: 30_000,
    },
    progress,
  );
  assert.deepEqual(report.replies, [{ id: 0, text: 'hello from the accept loop', errno: 0, count: 1234 }]);
  // One reply, so each source port appears once, however often the kernel reused it.
  const ports = report.sourcePorts.filter((_, i) => i % 2 === 0);
  assert.ok(ports.length >= 1 && ports.length <= 1234, `${ports.length} source ports`);
  assert.equal(new Set(ports).size, ports.length);
  assert.ok(ports.every((port) => port > 0 && port < 65536));
  assert.ok(
    report.sourcePorts.every((value, i) => i % 2 === 0 || value === 0),
    'each port got reply 0',
  );
  assert.equal(report.noReply, 0);
  assert.deepEqual(report.failures, []);
  assert.equal(report.attempted, 1234);
  assert.equal(report.stoppedEarly, null);
  assert.equal(Atomics.load(progress, 0), 1234);
  // Counted before the greeting went out: every reply read is already counted.
  assert.equal(engines.acceptLoopCount(handle), 1234);
  assert.equal(engines.acceptLoopErrors(handle), 0);

  assert.equal(engines.acceptLoopStop(handle), 1234);
  running = false;
  assert.equal(engines.acceptLoopStop(handle), 1234, 'a second stop returns the same count');
  assert.equal(engines.acceptLoopCount(handle), 1234);

  // The listening fd is still open and listening: a connection now is queued, not accepted.
  const client = net.connect({ host: '127.0.0.1', port });
  defer(() => client.destroy());
  let received = 0;
  client.on('data', (chunk: Buffer) => {
    received += chunk.length;
  });
  const ended = new Promise<string>((resolve) => {
    client.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
    client.on('close', () => resolve('close'));
  });
  await once(client, 'connect');
  assert.equal(engines.acceptLoopCount(handle), 1234);
  helper.closeFd(fd);
  open = false;
  assert.equal(await ended, 'ECONNRESET', 'closing the listener resets what was queued');
  assert.equal(received, 0, 'nobody greeted it');
});

test('accept loop argument and state errors', (t) => {
  const native = needEngines(t);
  if (!native) return;
  const { engines } = native;
  const start = engines.acceptLoopStart as (fd: unknown, greeting: unknown) => number;
  assert.throws(() => start('3', Buffer.from('x')), TypeError);
  assert.throws(() => start(-1, Buffer.from('x')), RangeError);
  assert.throws(() => start(0, 'not a buffer'), TypeError);
  assert.throws(() => start(0, new Int32Array(1)), TypeError);
  assert.throws(() => start(0, Buffer.alloc(65537)), RangeError);
  assert.throws(() => engines.acceptLoopCount(987_654_321), TypeError);
  assert.throws(() => engines.acceptLoopStop(987_654_321), TypeError);
  assert.throws(() => engines.acceptLoopCount(0), RangeError);

  // A file is no socket: refused before any thread starts.
  const file = openSync('/dev/null', 'r');
  try {
    assert.throws(() => engines.acceptLoopStart(file, Buffer.from('x')), {
      name: 'KernelError',
      code: 'ENOTSOCK',
      syscall: 'getsockopt',
    });
  } finally {
    closeSync(file);
  }
  assert.throws(
    () => engines.acceptLoopStart(2 ** 31 - 1, Buffer.from('x')),
    (err: unknown) => {
      assert.ok(err instanceof KernelError);
      assert.equal(err.code, 'EBADF');
      return true;
    },
  );
});

test('asking for the native load engine without the helper is one usage error', { timeout: 30_000 }, async () => {
  const port = await closedPort();
  const disabled = await runCli(['load', '--port', String(port), '--connections', '1'], {
    env: { [ENGINE_ENV]: 'native', REUSEPORT_NATIVE_DISABLE: '1' },
  });
  assert.equal(disabled.code, 2);
  assert.match(
    disabled.stderr,
    /^reuseport: REUSEPORT_ENGINE=native needs the native helper, which is unavailable \(disabled by REUSEPORT_NATIVE_DISABLE\); or use --engine builtin\n$/,
  );
});

for (const protocol of ['tcp', 'udp'] as const) {
  test(`both load engines, ${protocol}: ECONNREFUSED against a closed port, the same accounting`, {
    timeout: 30_000,
  }, async (t) => {
    if (!needEngines(t)) return;
    const port = protocol === 'tcp' ? await closedPort() : await closedUdpPort();
    const args = ['--protocol', protocol, '--port', String(port), '--connections', '10', '--concurrency', '4'];
    assert.deepEqual(await bothEnginesAccount(args, 1), {
      attempted: 10,
      notStarted: 0,
      attributed: 0,
      unrecognized: 0,
      silent: 0,
      failed: 10,
      failures: [{ code: 'ECONNREFUSED', count: 10 }],
      inFlight: 0,
      stoppedEarly: null,
      hints: [`nothing listens on 127.0.0.1:${port} (ECONNREFUSED): start \`reuseport serve\` first`],
    });
  });
}

for (const protocol of ['tcp', 'udp'] as const) {
  test(`both load engines, ${protocol}: a server that takes them and keeps quiet leaves them silent, exit 1`, {
    timeout: 30_000,
  }, async (t) => {
    if (!needEngines(t)) return;
    const defer = cleanups(t);
    const { port } = protocol === 'tcp' ? await tcpServer(defer, () => {}) : await udpServer(defer, () => null);
    const args = ['--protocol', protocol, '--port', String(port), '--connections', '3', '--timeout', '200'];
    assert.deepEqual(await bothEnginesAccount(args, 1), {
      attempted: 3,
      notStarted: 0,
      attributed: 0,
      unrecognized: 0,
      silent: 3,
      failed: 0,
      failures: [],
      inFlight: 0,
      stoppedEarly: null,
      hints: [
        protocol === 'tcp'
          ? '3 connected but got no greeting within 200 ms: a worker may be frozen (SIGSTOP) or too busy to accept; raise --timeout to wait longer'
          : '3 datagrams got no reply within 200 ms (lost, or a worker is frozen); raise --timeout to wait longer',
      ],
    });
  });
}

test('both load engines: a server that closes without a word is unrecognized', { timeout: 30_000 }, async (t) => {
  if (!needEngines(t)) return;
  const defer = cleanups(t);
  const { port } = await tcpServer(defer, (socket) => socket.end());
  for (const engine of ENGINES) {
    const { code, doc } = await cliLoad(engine, ['--port', String(port), '--connections', '20']);
    assert.equal(code, 1, engine);
    assert.equal(doc.unrecognized, 20, engine);
    assert.equal(doc.silent, 0, engine);
    assert.equal(doc.attributed, 0, engine);
    assert.equal(doc.failed, 0, engine);
  }
});

test('both load engines: other replies are unrecognized, a greeting without a close is attributed', {
  timeout: 30_000,
}, async (t) => {
  if (!needEngines(t)) return;
  const defer = cleanups(t);
  const chatty = await tcpServer(defer, (socket) => socket.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
  // Greets, then keeps the connection open: attributed once the reply timeout closes it.
  const lingering = await tcpServer(defer, (socket) => socket.write('reuseport worker=7 pid=4242 local=127.0.0.1:1\n'));
  for (const engine of ENGINES) {
    const a = await cliLoad(engine, ['--port', String(chatty.port), '--connections', '5']);
    assert.equal(a.doc.unrecognized, 5, engine);
    assert.equal(a.doc.failed, 0, engine);
    const b = await cliLoad(engine, ['--port', String(lingering.port), '--connections', '4', '--timeout', '150']);
    assert.equal(b.doc.attributed, 4, engine);
    assert.deepEqual(
      b.doc.perWorker,
      [{ workerId: 7, pid: 4242, local: '127.0.0.1:1', count: 4, distinctSourcePorts: 4 }],
      engine,
    );
  }
});

test('both load engines: an abort signal stops the run promptly', { timeout: 30_000 }, async (t) => {
  if (!needEngines(t)) return;
  const defer = cleanups(t);
  let accepted = 0;
  let onAccept: () => void = () => {};
  const { port } = await tcpServer(defer, () => {
    accepted++;
    onAccept();
  });
  for (const engine of ENGINES) {
    accepted = 0;
    const controller = new AbortController();
    let abortedAt = 0n;
    onAccept = () => {
      // Every slot is taken by a silent connection: abort now.
      if (accepted === 8 && abortedAt === 0n) {
        abortedAt = process.hrtime.bigint();
        controller.abort();
      }
    };
    const result = await runLoad(
      {
        host: '127.0.0.1',
        port,
        protocol: 'tcp',
        connections: 1000,
        concurrency: 8,
        replyTimeoutMs: 20_000,
        deadlineMs: 20_000,
      },
      { signal: controller.signal, engine },
    );
    const afterMs = Number(process.hrtime.bigint() - abortedAt) / 1e6;
    assert.ok(abortedAt > 0n, engine);
    assert.ok(afterMs < 1000, `${engine}: stopped ${afterMs.toFixed(0)} ms after the abort`);
    assert.equal(result.stoppedEarly, 'aborted', engine);
    assert.equal(result.attempted, 8, engine);
    assert.equal(result.inFlight, 8, engine);
    assert.equal(result.notStarted, 992, engine);
    assert.deepEqual(result.failures, [], engine);
    assert.equal(result.attributed + result.silent + result.unrecognized + result.failed, 0, engine);
  }
});

for (const protocol of ['tcp', 'udp'] as const) {
  test(`both load engines, ${protocol}: the deadline cuts off what is in flight and leaves the rest unattempted`, {
    timeout: 30_000,
  }, async (t) => {
    if (!needEngines(t)) return;
    const defer = cleanups(t);
    // Accepts (receives) and never says a word.
    const { port } = protocol === 'tcp' ? await tcpServer(defer, () => {}) : await udpServer(defer, () => null);
    const results: Record<string, unknown> = {};
    for (const engine of ENGINES) {
      const result = await runLoad(
        {
          host: '127.0.0.1',
          port,
          protocol,
          connections: 100,
          concurrency: 5,
          replyTimeoutMs: 20_000,
          deadlineMs: 200,
        },
        { engine },
      );
      results[engine] = accounting(result);
    }
    assert.deepEqual(results.native, results.builtin);
    assert.deepEqual(results.native, {
      attempted: 5,
      notStarted: 95,
      attributed: 0,
      unrecognized: 0,
      silent: 0,
      failed: 0,
      failures: [],
      inFlight: 5,
      stoppedEarly: 'deadline',
      hints: [],
    });
  });
}

test('the native load engine reports progress and validates its arguments', { timeout: 30_000 }, async (t) => {
  const native = needEngines(t);
  if (!native) return;
  const { engines } = native;
  const defer = cleanups(t);
  const { port } = await tcpServer(defer, (socket) => socket.end('reuseport worker=1 pid=1 local=127.0.0.1:1\n'));
  const seen: number[] = [];
  const result = await runLoad(
    { host: '127.0.0.1', port, protocol: 'tcp', connections: 300, concurrency: 10 },
    { engine: 'native', onProgress: (done) => seen.push(done) },
  );
  assert.equal(result.attributed, 300);
  assert.equal(seen.at(-1), 300, 'the last progress report is the total');
  assert.deepEqual(
    seen,
    [...seen].sort((a, b) => a - b),
    'progress only grows',
  );

  const progress = new Int32Array(new SharedArrayBuffer(8));
  const base = {
    family: 4 as const,
    host: '127.0.0.1',
    port,
    connections: 1,
    concurrency: 1,
    replyTimeoutMs: 1000,
    deadlineMs: 1000,
  };
  const run = engines.loadRun as (options: unknown, progress: unknown) => Promise<unknown>;
  assert.throws(() => run({ ...base, host: 'localhost' }, progress), RangeError);
  assert.throws(() => run({ ...base, host: '::1' }, progress), RangeError);
  assert.throws(() => run({ ...base, family: 5 }, progress), RangeError);
  assert.throws(() => run({ ...base, connections: 0 }, progress), RangeError);
  assert.throws(() => run({ ...base, connections: 2, concurrency: 2, sourcePort: 40000 }, progress), RangeError);
  assert.throws(() => run(base, new Int32Array(1)), TypeError);
  assert.throws(() => run(base, new Uint32Array(2)), TypeError);
  assert.throws(() => run(undefined, progress), TypeError);
});

test('UDP, both load engines: other replies and empty ones are unrecognized, a greeting is attributed', {
  timeout: 30_000,
}, async (t) => {
  if (!needEngines(t)) return;
  const defer = cleanups(t);
  const chatty = await udpServer(defer, () => Buffer.from('PONG\n'));
  const empty = await udpServer(defer, () => Buffer.alloc(0));
  const greeter = await udpServer(defer, (datagram) =>
    datagram.toString() === 'reuseport ping\n' ? Buffer.from('reuseport worker=7 pid=4242 local=127.0.0.1:1\n') : null,
  );
  for (const engine of ENGINES) {
    const args = (port: number, n: number) => ['--protocol', 'udp', '--port', String(port), '--connections', String(n)];
    const a = await cliLoad(engine, args(chatty.port, 5));
    assert.equal(a.doc.unrecognized, 5, engine);
    assert.equal(a.doc.failed + a.doc.silent + a.doc.attributed, 0, engine);
    const b = await cliLoad(engine, args(empty.port, 4));
    assert.equal(b.doc.unrecognized, 4, engine);
    assert.equal(b.doc.failed + b.doc.silent + b.doc.attributed, 0, engine);
    const c = await cliLoad(engine, args(greeter.port, 6));
    assert.equal(c.code, 0, engine);
    assert.deepEqual(
      c.doc.perWorker,
      [{ workerId: 7, pid: 4242, local: '127.0.0.1:1', count: 6, distinctSourcePorts: 6 }],
      `${engine}: the same ping, the same attribution`,
    );
  }
});

test('the native load engine takes protocol tcp or udp, nothing else', { timeout: 30_000 }, async (t) => {
  const native = needEngines(t);
  if (!native) return;
  const run = native.engines.loadRun as (options: unknown, progress: unknown) => Promise<unknown>;
  const progress = new Int32Array(new SharedArrayBuffer(8));
  const base = {
    family: 4 as const,
    host: '127.0.0.1',
    port: await closedUdpPort(),
    connections: 1,
    concurrency: 1,
    replyTimeoutMs: 1000,
    deadlineMs: 1000,
  };
  for (const protocol of ['sctp', 'udpx', 'ud', '']) {
    assert.throws(() => run({ ...base, protocol }, progress), RangeError, protocol);
  }
  assert.throws(() => run({ ...base, protocol: 17 }, progress), TypeError);
  const report = (await run({ ...base, protocol: 'udp' }, progress)) as { failures: unknown };
  assert.deepEqual(report.failures, [{ errno: 111, count: 1 }], 'ECONNREFUSED, as a datagram');
});

test('the native serve loop on a UDP socket counts and answers every datagram; stop returns the exact count', {
  timeout: 30_000,
}, async (t) => {
  const native = needEngines(t);
  if (!native) return;
  const { helper, engines } = native;
  const defer = cleanups(t);
  const fd = helper.openSocket({
    family: 4,
    type: 'udp',
    address: '127.0.0.1',
    port: 0,
    reusePort: true,
    reuseAddr: false,
  });
  defer(() => helper.closeFd(fd));
  const { port } = engines.getsockname(fd);
  const greeting = Buffer.from(`reuseport worker=3 pid=${process.pid} local=127.0.0.1:${port}\n`);
  const handle = engines.acceptLoopStart(fd, greeting);
  let running = true;
  defer(() => running && engines.acceptLoopStop(handle));
  const progress = new Int32Array(new SharedArrayBuffer(8));
  const report = await engines.loadRun(
    {
      protocol: 'udp',
      family: 4,
      host: '127.0.0.1',
      port,
      connections: 1234,
      concurrency: 32,
      replyTimeoutMs: 5000,
      deadlineMs: 20_000,
    },
    progress,
  );
  assert.deepEqual(
    report.replies.map(({ text, errno, count }) => ({ text, errno, count })),
    [{ text: greeting.toString().trimEnd(), errno: 0, count: 1234 }],
  );
  assert.equal(report.noReply, 0);
  assert.deepEqual(report.failures, []);
  // Counted before the reply went out: every reply read is already counted.
  assert.equal(engines.acceptLoopCount(handle), 1234);
  assert.equal(engines.acceptLoopErrors(handle), 0);
  assert.equal(engines.acceptLoopStop(handle), 1234);
  running = false;
  assert.equal(engines.acceptLoopStop(handle), 1234, 'a second stop returns the same count');
});
