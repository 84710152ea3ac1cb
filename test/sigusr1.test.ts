// SIGUSR1 opens Node's inspector on 127.0.0.1:9229 in a process that is not
// hardened: any local user could attach and run code as that process's user.
// Every process of the tool ignores it; `serve` is checked in
// serve-faults.test.ts, the scenario runner, its workers and `load` here.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { realpathSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { formatGreeting } from '../src/net/greeting.js';
import {
  CliProcess,
  descendants,
  inspectorListeners,
  isAlive,
  ROOT,
  replicatedW,
  scenarioFile,
  WAIT_MS,
  withTimeout,
} from './helpers.js';

const NODE = realpathSync(process.execPath);

/** Only Node processes: SIGUSR1 would kill a helper such as `ip` or `unshare` outright. */
function nodeProcesses(pids: number[]): number[] {
  return pids.filter((pid) => {
    try {
      return realpathSync(`/proc/${pid}/exe`) === NODE;
    } catch {
      return false;
    }
  });
}

test('SIGUSR1 opens no inspector in the scenario CLI, its runner or its workers, and the run still passes', {
  timeout: 120_000,
}, async (t) => {
  // The third step is long: the check runs while every process is still there.
  const steps = Object.entries({ first: 100, second: 100, third: 20_000 })
    .map(([id, n]) => `  - traffic: { id: ${id}, target: 127.0.0.1, port: 6000, connections: ${n}, concurrency: 8 }\n`)
    .join('');
  const file = scenarioFile(
    t,
    'sigusr1',
    replicatedW('127.0.0.1', 2, `${steps}expect:\n  - bind: W\n    outcome: ok\n`),
  );
  const run = new CliProcess(['scenario', 'run', file]);
  t.after(() => run.child.kill('SIGKILL'));
  await run.waitForStderr(/first\)? → /);
  const ours = nodeProcesses([run.child.pid!, ...descendants(run.child.pid!)]);
  // The CLI, the inner runner and two workers at least.
  assert.ok(ours.length >= 4, `the run's processes: ${ours.join(' ')}`);
  for (const pid of ours) process.kill(pid, 'SIGUSR1');
  // Step two is a round trip through each of them: the runner drove it, the workers answered, the CLI printed it.
  await run.waitForStderr(/second\)? → /);
  assert.deepEqual(inspectorListeners(ours), [], 'nothing of ours listens on 9229');
  assert.deepEqual(
    ours.filter((pid) => !isAlive(pid)),
    [],
    'all still running during step three, so the check above saw them',
  );
  const { code } = await run.finish();
  assert.equal(code, 0, run.stdout + run.stderr);
  assert.doesNotMatch(run.stderr + run.stdout, /Debugger listening/);
});

test('SIGUSR1 opens no inspector in load, which keeps going', { timeout: 60_000 }, async (t) => {
  // A server of the test's own that answers only when told: load waits in between.
  const sockets: net.Socket[] = [];
  let wake = () => {};
  const server = net.createServer((socket) => {
    sockets.push(socket);
    wake();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  const { port } = server.address() as net.AddressInfo;
  const connections = (count: number) =>
    withTimeout(
      new Promise<void>((resolve) => {
        wake = () => sockets.length >= count && resolve();
        wake();
      }),
      WAIT_MS,
      `connection ${count} from load`,
    );
  const greet = (socket: net.Socket) =>
    socket.end(formatGreeting({ workerId: 1, pid: process.pid, local: `127.0.0.1:${port}` }));
  const load = new CliProcess([
    'load',
    '--json',
    '--port',
    String(port),
    '--connections',
    '2',
    '--concurrency',
    '1',
    '--engine',
    'builtin',
  ]);
  t.after(() => load.child.kill('SIGKILL'));
  await connections(1);
  process.kill(load.child.pid!, 'SIGUSR1');
  // A round trip through load's event loop after the signal: it reads the greeting, then connects again.
  greet(sockets[0]!);
  await connections(2);
  assert.deepEqual(inspectorListeners([load.child.pid!]), [], 'load does not listen on 9229');
  assert.ok(isAlive(load.child.pid!), 'load still runs');
  greet(sockets[1]!);
  const { code } = await load.finish(WAIT_MS);
  assert.equal(code, 0, load.stdout + load.stderr);
  assert.equal((JSON.parse(load.stdout) as { attributed: number }).attributed, 2);
  assert.doesNotMatch(load.stderr, /Debugger listening/);
});

test('SIGUSR1 opens no inspector in the Node cluster models of compare --with-node, primary or worker', {
  timeout: 60_000,
}, async (t) => {
  // The program compare_node.c starts, started the same way: light handler, 2 workers, round-robin.
  const script = join(ROOT, 'dist', 'src', 'compare', 'node-cluster.js');
  const cluster = spawn(process.execPath, [script, 'rr', '2', 'light', '0', '10', '200'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.after(() => cluster.kill('SIGKILL'));
  const ready = await withTimeout(
    new Promise<string>((resolve) => createInterface({ input: cluster.stdout! }).once('line', resolve)),
    WAIT_MS,
    'the cluster to print its port and pids',
  );
  const [port, ...pids] = ready.split(' ').map(Number);
  assert.ok(port! > 0 && pids.length === 3, ready);
  for (const pid of pids) process.kill(pid, 'SIGUSR1');
  // Each process answers a connection after the signal, so any inspector would be open by now.
  const reply = await withTimeout(
    new Promise<string>((resolve, reject) => {
      const socket = net.connect(port!, '127.0.0.1');
      let data = '';
      socket.on('data', (d) => {
        data += d;
      });
      socket.on('end', () => resolve(data)).on('error', reject);
    }),
    WAIT_MS,
    'a reply from the cluster',
  );
  assert.ok(reply.length > 0);
  assert.deepEqual(inspectorListeners(pids), []);
  assert.ok(pids.every(isAlive), 'every process of the cluster keeps running');
});
