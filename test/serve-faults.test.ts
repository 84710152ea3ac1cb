// `serve` and its workers through faults: kill -9, SIGSTOP, a closed stdout,
// SIGHUP, SIGUSR1, hostile limits and flags. Loopback only, kernel-chosen
// ports, no sleeps: every wait is for an event, with a timeout.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import test, { type TestContext } from 'node:test';
import { UsageError } from '../src/errors.js';
import { resolveBinder } from '../src/net/binder.js';
import { CounterFile } from '../src/net/counter-file.js';
import type { EngineName } from '../src/net/engine.js';
import { unprivilegedPortStart } from '../src/net/explain.js';
import { runLoad } from '../src/net/load-client.js';
import { loadNativeHelper } from '../src/net/native.js';
import { processState } from '../src/net/proc-stat.js';
import { MAX_UID, resolveUser } from '../src/net/users.js';
import { spawnWorker, type WorkerExit, type WorkerProcess } from '../src/net/worker-pool.js';
import {
  CLI,
  childClosed,
  cleanups,
  exitBeforeLastMessages,
  inspectorListeners,
  isRoot,
  runCli,
  ServeProcess,
  WAIT_MS,
  waitGone,
  withTimeout,
} from './helpers.js';

const engines = loadNativeHelper().helper?.engines ?? null;

/** One worker on a kernel-chosen loopback port, driven through the pool's API; stopped after the test. */
async function startWorker(
  t: TestContext,
  options: { protocol?: 'tcp' | 'udp'; engine?: EngineName } = {},
): Promise<{ worker: WorkerProcess; port: number }> {
  const binder = options.engine === 'native' ? 'native' : await resolveBinder('auto');
  const worker = spawnWorker(
    {
      workerId: 1,
      protocol: options.protocol ?? 'tcp',
      address: '127.0.0.1',
      port: 0,
      reusePort: true,
      binder,
      engine: options.engine ?? 'builtin',
      // No periodic reports: the count must not depend on one having arrived.
      statsIntervalMs: 0,
    },
    () => {},
  );
  t.after(() => worker.stop(1000));
  const bound = await worker.bound;
  assert.ok(bound.ok, bound.ok ? '' : bound.explanation);
  return { worker, port: bound.port };
}

/** `serve --json` with `workers` on a loopback port, after a `load` of `connections`: what the client attributed to each pid. */
async function serveAfterLoad(
  t: TestContext,
  workers: number,
  connections: number,
): Promise<{ serve: ServeProcess; pids: number[]; tally: { pid: number; count: number }[] }> {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', String(workers)]);
  t.after(() => serve.stop());
  const { port, pids } = await serve.listening(workers);
  const result = await runCli(['load', '--json', '--port', String(port), '--connections', String(connections)]);
  const tally = (JSON.parse(result.stdout) as { perWorker: { pid: number; count: number }[] }).perWorker;
  return { serve, pids, tally };
}

/** A listening TCP socket on a kernel-chosen loopback port, from the native helper; closed by `defer`. */
function nativeListener(defer: (fn: () => unknown) => void): number {
  const helper = loadNativeHelper().helper!;
  const fd = helper.openSocket({
    family: 4,
    type: 'tcp',
    address: '127.0.0.1',
    port: 0,
    reusePort: true,
    reuseAddr: true,
  });
  defer(() => helper.closeFd(fd));
  return fd;
}

/** The pid's threads' names. */
function threadNames(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim());
}

/** Resolves once `pid` shows state T (stopped); rejects after `timeoutMs`. */
async function waitStopped(pid: number, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (processState(pid) === 'T') return;
    if (Date.now() > deadline) throw new Error(`pid ${pid} did not stop`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

const killAfterLoadCases: { name: string; protocol: 'tcp' | 'udp'; engine?: EngineName; skip?: string | false }[] = [
  { name: 'TCP, the builtin engine', protocol: 'tcp', engine: 'builtin' },
  {
    name: 'TCP, the native accept loop',
    protocol: 'tcp',
    engine: 'native',
    skip: engines === null && 'the native helper and its engines are not built',
  },
  { name: 'UDP', protocol: 'udp' },
];

for (const c of killAfterLoadCases) {
  test(`a worker SIGKILLed right after a load keeps its exact count (${c.name})`, {
    skip: c.skip ?? false,
    timeout: 60_000,
  }, async (t) => {
    const { worker, port } = await startWorker(t, { protocol: c.protocol, ...(c.engine ? { engine: c.engine } : {}) });
    const load = await runLoad(
      { host: '127.0.0.1', port, protocol: c.protocol, connections: 600, concurrency: 20, deadlineMs: 30_000 },
      { engine: 'builtin' },
    );
    assert.equal(load.attributed, 600);
    process.kill(worker.pid, 'SIGKILL');
    const exit = await worker.exited;
    assert.equal(exit.reason, 'crashed', 'a kill we did not send is a crash');
    assert.equal(exit.signal, 'SIGKILL');
    assert.equal(exit.accepted, 600, 'the final count is what the worker really answered');
    assert.equal(await worker.count(), 600);
  });
}

test('serve --workers 4: a worker killed with -9 after a load of 2000 keeps its count in the summary', {
  timeout: 60_000,
}, async (t) => {
  const { serve, pids, tally } = await serveAfterLoad(t, 4, 2000);
  const victim = pids[1]!;
  process.kill(victim, 'SIGKILL');
  const closed = await serve.ended();
  assert.equal(closed.code, 1);
  const exit = serve.events.find((e) => e.event === 'exit' && e.pid === victim);
  assert.equal(exit?.reason, 'crashed');
  assert.equal(exit?.accepted, tally.find((w) => w.pid === victim)?.count ?? 0);
  assert.equal(serve.events.find((e) => e.event === 'stopped')?.total, 2000);
  assert.deepEqual(await waitGone(pids), []);
});

test('the accept loop counts into a counter file that another reader sees, live and after stop', {
  skip: engines === null && 'the native helper and its engines are not built',
}, async (t) => {
  const defer = cleanups(t);
  const counter = CounterFile.create();
  defer(() => counter.close());
  const fd = nativeListener(defer);
  const handle = engines!.acceptLoopStart(fd, Buffer.from('hi\n'), counter.fd);
  let running = true;
  defer(() => running && engines!.acceptLoopStop(handle));
  const { port } = engines!.getsockname(fd);
  for (let i = 0; i < 25; i++) {
    const socket = net.connect(port, '127.0.0.1');
    socket.on('error', () => {});
    await once(socket, 'data');
    socket.destroy();
  }
  assert.equal(counter.read(), 25, 'every greeted client is in the file before its greeting');
  assert.equal(engines!.acceptLoopCount(handle), 25);
  assert.equal(engines!.acceptLoopStop(handle), 25);
  running = false;
  assert.equal(counter.read(), 25);
});

test('the accept loop refuses a counter fd that is not an 8-byte file, and leaks nothing', {
  skip: engines === null && 'the native helper and its engines are not built',
}, (t) => {
  const fd = nativeListener(cleanups(t));
  assert.throws(() => engines!.acceptLoopStart(fd, Buffer.from('x'), fd), { code: 'EINVAL', syscall: 'mmap' });
  assert.throws(() => engines!.acceptLoopStart(fd, Buffer.from('x'), 1.5), RangeError);
});

test('the accept thread is named by the time acceptLoopStart returns', {
  skip: engines === null && 'the native helper and its engines are not built',
}, (t) => {
  const fd = nativeListener(cleanups(t));
  for (let round = 0; round < 30; round++) {
    const handle = engines!.acceptLoopStart(fd, Buffer.from('x'));
    const named = threadNames(process.pid).includes('rp-accept');
    engines!.acceptLoopStop(handle);
    assert.ok(named, `round ${round}: the new thread already carries its name`);
  }
});

test('a frozen worker is SIGKILLed after the stop timeout, reported as killed with its exact count, exit 1', {
  timeout: 60_000,
}, async (t) => {
  const { serve, pids, tally } = await serveAfterLoad(t, 2, 300);
  const frozen = pids[0]!;
  process.kill(frozen, 'SIGSTOP');
  t.after(() => {
    try {
      process.kill(frozen, 'SIGKILL');
    } catch {
      // Already gone, as it should be.
    }
  });
  await waitStopped(frozen);
  const closed = await serve.stop('SIGTERM');
  assert.equal(closed.code, 1, 'a forced stop is not a clean stop');
  const exit = serve.events.find((e) => e.event === 'exit' && e.pid === frozen) as
    | (WorkerExit & { event: string })
    | undefined;
  assert.equal(exit?.reason, 'killed');
  assert.equal(exit?.signal, 'SIGKILL');
  assert.match(exit?.detail ?? '', /did not stop within 3 s.*frozen/);
  assert.equal(exit?.accepted, tally.find((w) => w.pid === frozen)?.count ?? 0);
  const other = serve.events.find((e) => e.event === 'exit' && e.pid === pids[1]);
  assert.equal(other?.reason, 'stopped');
  const summary = serve.events.find((e) => e.event === 'stopped');
  assert.equal(summary?.total, 300);
  assert.equal(summary?.exitCode, 1);
  assert.match(serve.stderr, new RegExp(`worker \\d \\(pid ${frozen}\\) did not stop within 3 s`));
  assert.deepEqual(await waitGone(pids), []);
});

test('the text summary says which worker was killed', { timeout: 60_000 }, async (t) => {
  const child = spawn(process.execPath, [CLI, 'serve', '--host', '127.0.0.1', '--port', '0', '--workers', '2'], {
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => child.exitCode === null && child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    err += c;
  });
  const closed = childClosed(child, 'serve to exit after SIGTERM');
  const pids = await withTimeout(
    new Promise<number[]>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (c: string) => {
        out += c;
        const found = [...out.matchAll(/pid is (\d+)/g)].map((m) => Number(m[1]));
        if (found.length === 2) resolve(found);
      });
      closed.then(() => reject(new Error(`serve ended early: ${out} ${err}`)), reject);
    }),
    WAIT_MS,
    'two "pid is N" lines from serve',
  );
  process.kill(pids[1]!, 'SIGSTOP');
  await waitStopped(pids[1]!);
  child.kill('SIGTERM');
  const { code } = await closed;
  assert.equal(code, 1);
  assert.match(
    out,
    new RegExp(`^Server 127\\.0\\.0\\.1:\\d+ \\(${pids[1]}\\) accept success: 0 \\(killed: did not stop`, 'm'),
  );
  assert.match(out, new RegExp(`^Server 127\\.0\\.0\\.1:\\d+ \\(${pids[0]}\\) accept success: 0$`, 'm'));
  assert.deepEqual(await waitGone(pids), []);
});

test('sixteen workers stopped at once all end as stopped', {
  timeout: 60_000,
}, async () => {
  const binder = await resolveBinder('auto');
  const workers = Array.from({ length: 16 }, (_, n) =>
    spawnWorker(
      {
        workerId: n + 1,
        protocol: 'tcp',
        address: '127.0.0.1',
        port: 0,
        reusePort: true,
        binder,
        engine: binder === 'native' && engines ? 'native' : 'builtin',
        statsIntervalMs: 0,
      },
      () => {},
    ),
  );
  await Promise.all(workers.map((w) => w.bound));
  const exits = await Promise.all(workers.map((w) => w.stop()));
  assert.deepEqual(
    exits.map((e) => e.reason),
    exits.map(() => 'stopped'),
  );
});

test('a worker whose bind fails ends as bind-failed even when its exit is seen before its last message', {
  timeout: 60_000,
}, async (t) => {
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  t.after(() => busy.close());
  const { port } = busy.address() as net.AddressInfo;
  const binder = await resolveBinder('auto');
  const worker = spawnWorker(
    {
      workerId: 1,
      protocol: 'tcp',
      address: '127.0.0.1',
      port,
      reusePort: true,
      binder,
      engine: binder === 'native' && engines ? 'native' : 'builtin',
      statsIntervalMs: 0,
      holdBind: true,
    },
    () => {},
  );
  t.after(() => worker.kill());
  await withTimeout(worker.ready, WAIT_MS, 'the worker to boot');
  // Its 'bind-error' is the last message before exit(3): settled on 'exit', the worker would count as crashed.
  await exitBeforeLastMessages(() => {
    void worker.bind();
    return worker.pid;
  });
  const [bound, exit] = await withTimeout(Promise.all([worker.bound, worker.exited]), WAIT_MS, 'the worker to end');
  assert.equal(exit.reason, 'bind-failed', JSON.stringify(exit));
  assert.equal(bound.ok ? 'bound' : bound.error.code, 'EADDRINUSE');
});

test('a closed stdout (serve | head -1) stops the workers cleanly, without a stack trace', {
  timeout: 60_000,
}, async (t) => {
  const child = spawn(
    process.execPath,
    [CLI, 'serve', '--json', '--host', '127.0.0.1', '--port', '0', '--workers', '2'],
    { env: { ...process.env, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => child.exitCode === null && child.kill('SIGKILL'));
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => {
    err += c;
  });
  let buffer = '';
  const listening: { pid: number; port: number }[] = [];
  const closed = childClosed(child, 'serve to exit once its stdout is gone');
  await withTimeout(
    new Promise<void>((resolve, reject) => {
      child.stdout.setEncoding('utf8').on('data', (c: string) => {
        buffer += c;
        for (const line of buffer.split('\n').slice(0, -1)) {
          const event = JSON.parse(line) as { event: string; pid: number; port: number };
          if (event.event === 'listening' && !listening.some((l) => l.pid === event.pid)) listening.push(event);
        }
        if (listening.length === 2) resolve();
      });
      closed.then(() => reject(new Error(`serve ended early: ${err}`)), reject);
    }),
    WAIT_MS,
    'two listening events from serve',
  );
  // Like head(1) after its line: the read end goes away; the next event (stats) hits EPIPE.
  child.stdout.destroy();
  await runCli(['load', '--port', String(listening[0]!.port), '--connections', '50']);
  const { code, signal } = await closed;
  assert.equal(signal, null);
  assert.equal(code, 0);
  assert.doesNotMatch(err, /at .*\.js:\d+|EPIPE|internal error/);
  assert.deepEqual(await waitGone(listening.map((l) => l.pid)), []);
});

test('SIGHUP to the process group stops serve like SIGTERM: summary, every worker stopped, exit 0', {
  timeout: 60_000,
}, async () => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '2']);
  const { pids } = await serve.listening(2);
  // A hung-up terminal signals its whole foreground process group.
  for (const pid of [serve.child.pid!, ...pids]) process.kill(pid, 'SIGHUP');
  const closed = await serve.stop('SIGHUP');
  assert.deepEqual(closed, { code: 0, signal: null });
  assert.deepEqual(
    serve.events.filter((e) => e.event === 'exit').map((e) => e.reason),
    ['stopped', 'stopped'],
  );
  assert.equal(serve.events.at(-1)?.event, 'stopped');
  assert.deepEqual(await waitGone(pids), []);
});

test('SIGUSR1 opens no inspector in the serve parent or a worker, and both keep working', {
  timeout: 60_000,
}, async (t) => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '2']);
  t.after(() => serve.stop());
  const { port, pids } = await serve.listening(2);
  const ours = [serve.child.pid!, ...pids];
  for (const pid of ours) process.kill(pid, 'SIGUSR1');
  // The signal is handled (or not) before the next thing each process does: a full round trip through both.
  const result = await runCli(['load', '--json', '--port', String(port), '--connections', '100']);
  assert.equal(result.code, 0);
  assert.deepEqual(inspectorListeners(ours), [], 'nothing of ours listens on 9229');
  assert.doesNotMatch(serve.stderr, /Debugger listening/);
  const closed = await serve.stop('SIGTERM');
  assert.equal(closed.code, 0);
  assert.equal(serve.events.find((e) => e.event === 'stopped')?.total, 100);
});

test('workers carry a process title with their id and address', async (t) => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '2']);
  t.after(() => serve.stop());
  const { port, events } = await serve.listening(2);
  for (const event of events) {
    const cmdline = readFileSync(`/proc/${event.pid}/cmdline`, 'utf8').replace(/\0+$/, '').trim();
    assert.equal(cmdline, `reuseport worker ${event.workerId} 127.0.0.1:${port}`);
  }
});

test('serve warns about, and names, other processes already listening on the port', async (t) => {
  // Another address on loopback, so that the workers still bind.
  const other = net.createServer();
  other.listen(0, '127.0.0.2');
  await once(other, 'listening');
  t.after(() => other.close());
  const { port } = other.address() as net.AddressInfo;
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', String(port), '--workers', '1']);
  t.after(() => serve.stop());
  await serve.listening(1);
  const [warning] = await serve.waitFor((e) => e.event === 'warning');
  const listeners = (warning?.otherListeners ?? []) as { pid: number | null; address: string; port: number }[];
  assert.deepEqual(
    listeners.map((l) => [l.pid, l.address, l.port]),
    [[process.pid, '127.0.0.2', port]],
  );
  assert.match(serve.stderr, new RegExp(`warning: .*pid ${process.pid} \\(.+\\) on 127\\.0\\.0\\.2:${port}`));
  await serve.stop();
  const summary = serve.events.find((e) => e.event === 'stopped');
  assert.equal((summary?.otherListeners as unknown[] | undefined)?.length, 1);
});

test('a fork failure under a low open-file limit names EMFILE and the remedy, in one line', {
  timeout: 60_000,
}, async () => {
  // 64 workers need ~200 descriptors in the parent; Node itself boots within 48.
  const { code, stdout, stderr } = await runCli(['serve', '--host', '127.0.0.1', '--port', '0', '--workers', '64'], {
    via: ['sh', '-c', 'ulimit -n 48 && exec "$@"', 'sh'],
  });
  assert.equal(code, 1, stderr);
  const lines = stderr.trim().split('\n');
  assert.equal(lines.length, 1, stderr);
  assert.match(lines[0]!, /^reuseport: cannot start worker \d+: .*\(EMFILE.*ulimit -n/);
  assert.doesNotMatch(stderr + stdout, /code null|\(-1\)|pid -1/);
  const started = [...stdout.matchAll(/pid is (\d+)/g)].map((m) => Number(m[1]));
  assert.deepEqual(await waitGone(started), [], 'the workers that did start are stopped');
});

test('--user nobody on a privileged port, as root, names the real reason and no "run as root"', {
  skip:
    (!isRoot && 'needs root to switch users') || (unprivilegedPortStart() <= 80 && 'port 80 is not privileged here'),
}, async () => {
  const result = await runCli(['serve', '--host', '127.0.0.1', '--port', '80', '--workers', '1', '--user', 'nobody']);
  assert.equal(result.code, 2);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0]!, /user nobody cannot bind port 80: .*ip_unprivileged_port_start/);
  assert.match(lines[0]!, /use a port >= \d+/);
  assert.doesNotMatch(result.stderr, /run as root/);
});

test('--user 4294967295 is an invalid uid, not a missing user name', async () => {
  assert.throws(
    () => resolveUser(String(MAX_UID + 1)),
    (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.match(err.message, /^4294967295 is not a valid uid: uids go from 0 to 4294967294/);
      return true;
    },
  );
  assert.throws(() => resolveUser('-1'), /not a valid uid/);
  assert.equal(resolveUser(String(MAX_UID)).uid, MAX_UID);
  if (!isRoot) return;
  const result = await runCli(['serve', '--port', '0', '--user', '4294967295']);
  assert.equal(result.code, 2);
  assert.equal(result.stderr.trim().split('\n').length, 1);
  assert.match(result.stderr, /^reuseport: --user: 4294967295 is not a valid uid/);
  assert.doesNotMatch(result.stderr, /no user named/);
});

test('the counter file has no name: nothing is left in the temp folder, even after a kill -9', async (t) => {
  const named = () => readdirSync(tmpdir()).filter((f) => f.startsWith('reuseport-counter-'));
  const before = new Set(named());
  const { worker } = await startWorker(t);
  assert.match(readlinkSync(`/proc/${worker.pid}/fd/4`), /\(deleted\)$/);
  process.kill(worker.pid, 'SIGKILL');
  await worker.exited;
  assert.deepEqual(
    named().filter((f) => !before.has(f)),
    [],
  );
});

test('a worker starts when TMPDIR cannot hold its counter file (not ours, or missing)', async (t) => {
  const saved = process.env.TMPDIR;
  // A TMPDIR this process cannot create in: the state after `runuser` or `sudo -u` keeps a root-only TMPDIR.
  process.env.TMPDIR = '/nonexistent-reuseport-tmpdir';
  t.after(() => {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  });
  const { worker } = await startWorker(t);
  assert.match(readlinkSync(`/proc/${worker.pid}/fd/4`), /^\/(dev\/shm|tmp)\/.*\(deleted\)$/);
});
