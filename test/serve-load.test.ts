import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { test } from 'node:test';
import type { LoadResult } from '../src/net/load-client.js';
import {
  CLI,
  childClosed,
  closedPort,
  EXPECTED_BINDER,
  isAlive,
  isRoot,
  runCli,
  ServeProcess,
  WAIT_MS,
  waitGone,
  withTimeout,
} from './helpers.js';

type LoadDocument = LoadResult;

async function load(args: string[]): Promise<{ code: number | null; doc: LoadDocument; stderr: string }> {
  const result = await runCli(['load', '--json', ...args]);
  return { code: result.code, doc: JSON.parse(result.stdout) as LoadDocument, stderr: result.stderr };
}

test('two workers share one port and both accept', async (t) => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '2']);
  t.after(() => serve.stop());
  const { port, pids, events } = await serve.listening(2);
  assert.equal(new Set(events.map((e) => e.port)).size, 1, 'both workers report the same port');
  if (EXPECTED_BINDER)
    assert.ok(
      events.every((e) => e.binder === EXPECTED_BINDER),
      `binder is ${EXPECTED_BINDER}`,
    );
  const { code, doc } = await load(['--port', String(port), '--connections', '400']);
  assert.equal(code, 0);
  assert.deepEqual(doc.perWorker.map((w) => w.pid).sort(), [...pids].sort(), 'each worker answered some connections');
  assert.ok(doc.perWorker.every((w) => w.count > 0));
});

test("the workers' accept counters equal the client's attributions for thousands of connections", async (t) => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '3']);
  t.after(() => serve.stop());
  const { port } = await serve.listening(3);
  const { code, doc } = await load(['--port', String(port), '--connections', '5000', '--concurrency', '100']);
  assert.equal(code, 0);
  assert.equal(doc.attributed, 5000);
  assert.equal(doc.failed, 0);
  const stopped = await serve.stop('SIGTERM');
  assert.equal(stopped.code, 0);
  const exits = serve.events.filter((e) => e.event === 'exit');
  assert.equal(exits.length, 3);
  for (const exit of exits) {
    const tally = doc.perWorker.find((w) => w.pid === exit.pid);
    assert.equal(exit.accepted, tally?.count ?? 0, `worker ${exit.pid}: counter equals the client's tally`);
  }
  const summary = serve.events.find((e) => e.event === 'stopped');
  assert.equal(summary?.total, 5000);
});

test('with --no-reuseport the second bind fails with EADDRINUSE', async () => {
  const result = await runCli([
    'serve',
    '--json',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--workers',
    '2',
    '--no-reuseport',
  ]);
  assert.equal(result.code, 1);
  const events = result.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { event: string; code?: string });
  const error = events.find((e) => e.event === 'error');
  assert.equal(error?.code, 'EADDRINUSE');
  assert.match(result.stderr, /without SO_REUSEPORT|EADDRINUSE/);
});

test('SIGTERM stops every worker, prints the final counters and exits 0', async () => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '2']);
  const { pids } = await serve.listening(2);
  const result = await serve.stop('SIGTERM');
  assert.equal(result.code, 0);
  assert.deepEqual(await waitGone(pids), []);
  assert.equal(serve.events.filter((e) => e.event === 'exit' && e.reason === 'stopped').length, 2);
});

test('SIGINT (Ctrl-C) leaves no process behind', async () => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '3']);
  const { pids } = await serve.listening(3);
  // A terminal's Ctrl-C reaches the whole process group; send it to each, as the terminal would.
  for (const pid of [serve.child.pid!, ...pids]) process.kill(pid, 'SIGINT');
  const result = await serve.stop('SIGINT');
  assert.equal(result.code, 0);
  assert.deepEqual(await waitGone(pids), []);
});

test('a worker that dies on its own is reported and serve exits non-zero, taking the others down', async () => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '3']);
  const { pids } = await serve.listening(3);
  process.kill(pids[1]!, 'SIGKILL');
  const result = await serve.ended();
  assert.equal(result.code, 1);
  const crashed = serve.events.find((e) => e.event === 'exit' && e.reason === 'crashed');
  assert.equal(crashed?.pid, pids[1]);
  assert.deepEqual(await waitGone(pids), []);
});

test('the serve process killed outright takes its workers with it', async () => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '2']);
  const { pids } = await serve.listening(2);
  serve.child.kill('SIGKILL');
  await serve.ended();
  assert.deepEqual(await waitGone(pids), [], 'workers exit when their parent disappears');
});

test('--json events all parse and carry the version, pid and worker id', async (t) => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '2']);
  t.after(() => serve.stop());
  const { port } = await serve.listening(2);
  await load(['--port', String(port), '--connections', '50']);
  await serve.stop();
  assert.ok(serve.events.length >= 5);
  for (const e of serve.events) assert.equal(e.version, 1, `${e.event} carries the NDJSON version`);
  for (const e of serve.events.filter((e) => e.event !== 'stopped')) {
    assert.equal(typeof e.pid, 'number');
    assert.equal(typeof e.workerId, 'number');
  }
  assert.deepEqual([...new Set(serve.events.map((e) => e.event))].filter((e) => e !== 'stats').sort(), [
    'exit',
    'listening',
    'stopped',
  ]);
});

test('human output has the article lines', async () => {
  const serve = spawn(process.execPath, [CLI, 'serve', '--host', '127.0.0.1', '--port', '0', '--workers', '2'], {
    env: { ...process.env, NO_COLOR: '1' },
  });
  let out = '';
  serve.stdout.setEncoding('utf8');
  const closed = childClosed(serve, 'serve to exit after SIGTERM');
  await withTimeout(
    new Promise<void>((resolve) => {
      serve.stdout.on('data', (chunk: string) => {
        out += chunk;
        if ((out.match(/succeeded/g) ?? []).length === 2) resolve();
      });
    }),
    WAIT_MS,
    'two "succeeded" lines from serve',
  ).catch((err: Error) => {
    serve.kill('SIGKILL');
    throw err;
  });
  serve.kill('SIGTERM');
  await closed;
  assert.match(out, /^Start server on 127\.0\.0\.1:\d+ succeeded, pid is \d+$/m);
  assert.match(out, /^Server 127\.0\.0\.1:\d+ \(\d+\) accept success: 0$/m);
});

test('UDP: workers answer datagrams and the replies are attributed', async (t) => {
  const serve = new ServeProcess(['--protocol', 'udp', '--host', '127.0.0.1', '--port', '0', '--workers', '2']);
  t.after(() => serve.stop());
  const { port, pids } = await serve.listening(2);
  const { code, doc } = await load(['--protocol', 'udp', '--port', String(port), '--connections', '300']);
  assert.equal(code, 0);
  assert.equal(doc.attributed, 300);
  assert.deepEqual(doc.perWorker.map((w) => w.pid).sort(), [...pids].sort());
  await serve.stop();
  const total = serve.events.filter((e) => e.event === 'exit').reduce((s, e) => s + (e.accepted ?? 0), 0);
  assert.equal(total, 300);
});

test('load counts a connection closed without a greeting as unrecognized, and exits 1', async (t) => {
  // A server that accepts and closes without a word, as `nc -l` would.
  const silent = net.createServer((socket) => socket.end());
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => silent.close());
  const { port } = silent.address() as net.AddressInfo;
  const { code, doc } = await load(['--port', String(port), '--connections', '20']);
  assert.equal(code, 1);
  assert.equal(doc.unrecognized, 20);
  assert.equal(doc.attributed, 0);
});

test('load against a silent server that keeps the connection open counts it silent', async (t) => {
  const sockets = new Set<net.Socket>();
  const silent = net.createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    silent.close();
  });
  const { port } = silent.address() as net.AddressInfo;
  const { doc } = await load(['--port', String(port), '--connections', '3', '--timeout', '200']);
  assert.equal(doc.silent, 3);
});

test('ECONNREFUSED is counted and reported, not a crash', async () => {
  const port = await closedPort();
  const result = await runCli(['load', '--port', String(port), '--connections', '10']);
  assert.equal(result.code, 1);
  assert.match(result.stdout, /ECONNREFUSED\s+10/);
  assert.match(result.stdout, /hint: nothing listens/);
  assert.doesNotMatch(result.stderr, /at .*\.js:\d+/);
});

test('--user creates the sockets as that user', { skip: !isRoot && 'needs root to switch users' }, async (t) => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '2', '--user', 'nobody']);
  t.after(() => serve.stop());
  const { events } = await serve.listening(2);
  assert.ok(events.every((e) => e.uid === 65534));
});

test('worker processes are gone after a normal stop', async () => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '2']);
  const { pids } = await serve.listening(2);
  assert.ok(pids.every(isAlive));
  await serve.stop();
  assert.deepEqual(await waitGone(pids), []);
});
