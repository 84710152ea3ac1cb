// Lifecycle sockets, the holding client, the source-port sweep and kernel
// counters against the real kernel. Cases that need fixed ports, sysctls or
// exact counters run in a private network namespace (test/lifecycle-netns-probe.ts).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import net from 'node:net';
import { cpus } from 'node:os';
import { join } from 'node:path';
import test from 'node:test';
import { UsageError } from '../src/errors.js';
import { countStates, HoldingClient } from '../src/net/holding-client.js';
import { counterDeltas, parseNetstat, parseProcNetTcp } from '../src/net/kernel-counters.js';
import { sweepSourcePorts } from '../src/net/port-sweep.js';
import {
  cbpfProgram,
  type LifecycleResult,
  LifecycleSocket,
  socketLifecycleUnavailable,
} from '../src/net/socket-lifecycle.js';
import { cleanups, isRoot, ROOT } from './helpers.js';

const unavailable = socketLifecycleUnavailable();
const needsNative = { skip: unavailable ?? false, timeout: 20_000 };

const UNSHARE_ARGS = isRoot ? ['--net'] : ['--net', '--map-root-user'];
const netnsSkip: string | false = (() => {
  if (unavailable !== null) return unavailable;
  const probe = spawnSync('unshare', [...UNSHARE_ARGS, 'sh', '-c', 'ip link set lo up'], { stdio: 'ignore' });
  return probe.status === 0 ? false : `cannot make a network namespace (unshare ${UNSHARE_ARGS.join(' ')}, ip)`;
})();
const needsNetns = { skip: netnsSkip, timeout: 30_000 };

/** Runs one probe case in a fresh namespace with lo up; returns what it printed. */
function inNamespace(name: string): Record<string, unknown> {
  const probe = join(ROOT, 'dist', 'test', 'lifecycle-netns-probe.js');
  const result = spawnSync(
    'unshare',
    [...UNSHARE_ARGS, 'sh', '-c', 'ip link set lo up && exec "$0" "$1" "$2"', process.execPath, probe, name],
    { encoding: 'utf8', timeout: 25_000 },
  );
  assert.equal(result.status, 0, `probe ${name} failed: ${result.stderr}`);
  return JSON.parse(result.stdout) as Record<string, unknown>;
}

function must<T extends object>(result: LifecycleResult<T>): T {
  assert.ok(result.ok, `expected ok, got ${result.ok ? '' : result.outcome}`);
  return result;
}

function tcpSocket(defer: (fn: () => unknown) => void, reusePort: boolean): LifecycleSocket {
  const { socket } = must(LifecycleSocket.create(4, 'tcp'));
  defer(() => socket.close());
  must(socket.setOption('SO_REUSEPORT', reusePort));
  return socket;
}

/** Waits (bounded) until `check` holds; the kernel has no event for an accept queue's length. */
async function until(check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    assert.ok(Date.now() < deadline, 'condition not reached in time');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

function queued(socket: LifecycleSocket): number {
  const q = socket.acceptQueue();
  return q.ok ? q.queued : -1;
}

function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

test('cbpfProgram: cpu and payload-modulo compile to classic BPF', () => {
  assert.deepEqual(cbpfProgram({ name: 'cpu' }), [
    { code: 0x20, jt: 0, jf: 0, k: -0x1000 + 36 },
    { code: 0x16, jt: 0, jf: 0, k: 0 },
  ]);
  assert.deepEqual(cbpfProgram({ name: 'payload-modulo', modulo: 4 }), [
    { code: 0x20, jt: 0, jf: 0, k: 0 },
    { code: 0x94, jt: 0, jf: 0, k: 4 },
    { code: 0x16, jt: 0, jf: 0, k: 0 },
  ]);
  assert.throws(() => cbpfProgram({ name: 'payload-modulo', modulo: 0 }), RangeError);
});

test('kernel counters: netstat pairs and /proc/net/tcp lines are parsed, deltas per counter', () => {
  const netstat =
    'TcpExt: ListenOverflows ListenDrops TCPMigrateReqSuccess\nTcpExt: 5 7 1\nIpExt: InNoRoutes\nIpExt: 0\n';
  assert.equal(parseNetstat(netstat).get('TcpExt')?.get('ListenDrops'), 7);
  assert.deepEqual(counterDeltas({ ListenOverflows: 5, ListenDrops: 7 }, { ListenOverflows: 9, ListenDrops: 7 }), {
    ListenOverflows: 4,
    ListenDrops: 0,
  });
  const tcp =
    '  sl  local_address rem_address   st tx_queue rx_queue\n' +
    '   0: 0100007F:1F90 0100007F:9C40 06 00000000:00000000 03:00001770 00000000     0        0 0\n';
  assert.deepEqual(parseProcNetTcp(tcp), [{ localPort: 8080, remotePort: 40000, state: 6 }]);
});

test(
  'a bound, not listening TCP socket holds the port: EADDRINUSE without SO_REUSEPORT, connects refused',
  needsNative,
  async (t) => {
    const defer = cleanups(t);
    const holder = tcpSocket(defer, true);
    const { port } = must(holder.bind('127.0.0.1', 0));
    assert.ok(port > 0);
    const intruder = tcpSocket(defer, false);
    assert.equal(intruder.bind('127.0.0.1', port).outcome, 'EADDRINUSE');
    assert.equal(await connectOutcome(port), 'ECONNREFUSED');
    must(holder.listen());
    assert.equal(await connectOutcome(port), 'connected');
  },
);

test('SO_ATTACH_REUSEPORT_CBPF on a socket without SO_REUSEPORT is EINVAL, with it ok', needsNative, (t) => {
  const defer = cleanups(t);
  const without = tcpSocket(defer, false);
  const refused = without.attachCbpf({ name: 'cpu' });
  assert.equal(refused.outcome, 'EINVAL');
  assert.ok(
    !refused.ok && refused.error.syscall === 'setsockopt(SO_ATTACH_REUSEPORT_CBPF)' && refused.error.errno === -22,
  );
  const withIt = tcpSocket(defer, true);
  assert.equal(withIt.attachCbpf({ name: 'cpu' }).outcome, 'ok');
  assert.equal(withIt.detachBpf().outcome, 'ok');
});

for (const when of ['after bind', 'after listen'] as const) {
  test(
    `SO_REUSEPORT set ${when} on the first socket still lets a second one join the group`,
    needsNative,
    async (t) => {
      const defer = cleanups(t);
      const first = tcpSocket(defer, false);
      const { port } = must(first.bind('127.0.0.1', 0));
      if (when === 'after bind') must(first.setOption('SO_REUSEPORT', true));
      must(first.listen());
      if (when === 'after listen') must(first.setOption('SO_REUSEPORT', true));
      const second = tcpSocket(defer, true);
      must(second.bind('127.0.0.1', port));
      must(second.listen());
      const clients = HoldingClient.open({ host: '127.0.0.1', port, count: 40 });
      defer(() => clients.close());
      await until(() => queued(first) + queued(second) === 40);
      // 40 hashed connections all on one of two members: probability 2^-39.
      assert.ok(queued(first) > 0 && queued(second) > 0, `split ${queued(first)}/${queued(second)}`);
    },
  );
}

test(
  'pause and resume: unaccepted connections wait in the queue, acceptAll serves them with their bytes',
  needsNative,
  async (t) => {
    const defer = cleanups(t);
    const listener = tcpSocket(defer, true);
    const { port } = must(listener.bind('127.0.0.1', 0));
    must(listener.listen(8));
    const payload = Buffer.from('abc');
    const clients = HoldingClient.open({ host: '127.0.0.1', port, count: 3, payload });
    defer(() => clients.close());
    await until(() => queued(listener) === 3);
    assert.deepEqual(must(listener.acceptQueue()), { ok: true, outcome: 'ok', queued: 3, backlog: 8 });
    assert.ok(await clients.waitUntil((r) => r.every((c) => c.state === 'waiting'), 5000));
    const { connections, stoppedBy } = listener.acceptAll({ greeting: Buffer.from('hi\n'), minBytes: 3, waitMs: 1000 });
    assert.equal(stoppedBy.outcome, 'EAGAIN');
    assert.equal(connections.length, 3);
    for (const c of connections) {
      assert.equal(c.received.toString(), 'abc');
      assert.ok(c.incomingCpu >= 0 && c.incomingCpu < cpus().length, `incomingCpu ${c.incomingCpu}`);
      assert.equal(c.fd, -1);
    }
    assert.deepEqual(
      connections.map((c) => c.port).sort(),
      clients
        .report()
        .map((c) => c.localPort)
        .sort(),
    );
    assert.ok(await clients.waitUntil((r) => countStates(r).served === 3, 5000));
    assert.deepEqual(
      clients.report().map((c) => c.reply),
      ['hi', 'hi', 'hi'],
    );
  },
);

test('options read back as set before bind, after bind and after listen; SO_INCOMING_CPU too', needsNative, (t) => {
  const defer = cleanups(t);
  const socket = tcpSocket(defer, true);
  assert.equal(must(socket.getOption('SO_REUSEPORT')).value, 1);
  must(socket.bind('127.0.0.1', 0));
  must(socket.setOption('SO_REUSEADDR', true));
  assert.equal(must(socket.getOption('SO_REUSEADDR')).value, 1);
  must(socket.listen());
  must(socket.setOption('SO_REUSEPORT', false));
  assert.equal(must(socket.getOption('SO_REUSEPORT')).value, 0);
  must(socket.setOption('SO_INCOMING_CPU', 0));
  assert.equal(must(socket.getOption('SO_INCOMING_CPU')).value, 0);
});

test(
  'shutdown takes the only listener out (connects refused); bound to port 0, listen again gets a new port',
  needsNative,
  async (t) => {
    const defer = cleanups(t);
    const listener = tcpSocket(defer, true);
    const { port } = must(listener.bind('127.0.0.1', 0));
    must(listener.listen());
    must(listener.shutdown());
    assert.equal(await connectOutcome(port), 'ECONNREFUSED');
    must(listener.listen());
    const again = must(listener.localAddress()).port;
    assert.notEqual(again, port);
    assert.equal(await connectOutcome(again), 'connected');
  },
);

test('shutdown then listen on an explicitly bound port rejoins on the same port', needsNetns, () => {
  assert.deepEqual(inNamespace('shutdown-relisten'), {
    afterShutdown: 'ECONNREFUSED',
    listen: 'ok',
    port: 8080,
    afterListen: 'connected',
  });
});

test('after close every call is EBADF without reaching the kernel', needsNative, (t) => {
  const defer = cleanups(t);
  const socket = tcpSocket(defer, true);
  must(socket.close());
  assert.equal(socket.fd, -1);
  const again = socket.close();
  assert.equal(again.outcome, 'EBADF');
  assert.equal(socket.bind('127.0.0.1', 0).outcome, 'EBADF');
});

test(
  'UDP connect makes a connected member; SO_BINDTODEVICE takes lo and rejects an unknown device',
  needsNative,
  (t) => {
    const defer = cleanups(t);
    const { socket } = must(LifecycleSocket.create(4, 'udp'));
    defer(() => socket.close());
    must(socket.setOption('SO_REUSEPORT', true));
    must(socket.bind('127.0.0.1', 0));
    assert.equal(socket.connect('127.0.0.1', 9).outcome, 'ok');
    assert.equal(socket.bindToDevice('no-such-dev0').outcome, 'ENODEV');
    if (isRoot) assert.equal(socket.bindToDevice('lo').outcome, 'ok');
  },
);

test('the holding client and the sweep refuse targets outside loopback', needsNative, async () => {
  assert.throws(() => HoldingClient.open({ host: '10.0.0.1', port: 80, count: 1 }), UsageError);
  await assert.rejects(
    sweepSourcePorts({
      protocol: 'tcp',
      host: '192.0.2.1',
      port: 80,
      sourcePorts: { from: 40000, count: 1, repeat: 1 },
    }),
    UsageError,
  );
});

const migrateSkip = existsSync('/proc/sys/net/ipv4/tcp_migrate_req')
  ? false
  : 'net.ipv4.tcp_migrate_req needs Linux 5.14';

test('closing a listener with 3 queued clients resets them when tcp_migrate_req=0', needsNetns, () => {
  const r = inNamespace('close-resets');
  assert.equal(r.queuedOnA, true);
  assert.deepEqual(r.states, { connecting: 0, waiting: 0, served: 0, reset: 3, closed: 0, failed: 0 });
  assert.deepEqual(r.errors, ['ECONNRESET', 'ECONNRESET', 'ECONNRESET']);
  assert.equal(r.acceptedOnB, 0);
  assert.deepEqual(r.counters, {
    TCPMigrateReqSuccess: 0,
    TCPMigrateReqFailure: 0,
    ListenOverflows: 0,
    ListenDrops: 0,
  });
});

test('closing a listener with 3 queued clients migrates them, bytes intact, when tcp_migrate_req=1', {
  ...needsNetns,
  skip: needsNetns.skip || migrateSkip,
}, () => {
  const r = inNamespace('close-migrates');
  assert.deepEqual(r.states, { connecting: 0, waiting: 0, served: 3, reset: 0, closed: 0, failed: 0 });
  assert.deepEqual(r.replies, ['served-by=B', 'served-by=B', 'served-by=B']);
  assert.deepEqual(r.bytesOnB, ['hello!', 'hello!', 'hello!']);
  assert.deepEqual(r.counters, {
    TCPMigrateReqSuccess: 3,
    TCPMigrateReqFailure: 0,
    ListenOverflows: 0,
    ListenDrops: 0,
  });
});

for (const protocol of ['tcp', 'udp'] as const) {
  test(
    `a ${protocol} sweep of 400 source ports x 3 takes under 1 s; every port sticks to one instance`,
    needsNetns,
    () => {
      const r = inNamespace(`sweep-${protocol}`);
      assert.equal(r.attempts, 1200);
      assert.deepEqual(r.outcomes, { reply: 1200 });
      assert.equal(r.unstable, 0);
      const instances = r.instances as Record<string, number>;
      assert.deepEqual(Object.keys(instances).sort(), ['instance=0', 'instance=1']);
      assert.ok((r.elapsedMs as number) <= 1000, `took ${r.elapsedMs} ms`);
    },
  );
}

test('TIME_WAIT stays on the server, one per 4-tuple, when the server closes first', needsNetns, () => {
  const r = inNamespace('time-wait');
  assert.deepEqual(r, { replies: 10, before: 0, serverSide: 5, clientSide: 0 });
});

test('a payload-modulo program attached by one member steers the whole UDP group', needsNetns, () => {
  assert.deepEqual(inNamespace('cbpf-payload'), { attach: 'ok', attempts: 40, mismatches: 0 });
});

test('a full accept queue (backlog 1) drops further SYNs: ListenOverflows and ListenDrops rise', needsNetns, () => {
  const r = inNamespace('backlog-overflow');
  assert.equal(r.reached, true);
  assert.deepEqual(r.queue, { ok: true, outcome: 'ok', queued: 2, backlog: 1 });
  assert.deepEqual(r.states, { connecting: 2, waiting: 2, served: 0, reset: 0, closed: 0, failed: 0 });
  const c = r.counters as Record<string, number>;
  assert.ok(c.ListenOverflows! >= 2 && c.ListenDrops === c.ListenOverflows, JSON.stringify(c));
});

test('fchown changes the owner the bind-conflict rule compares (sk_uid), but the bind bucket caches it at bind', {
  ...needsNetns,
  skip: needsNetns.skip || (isRoot ? false : 'fchown to another uid needs root'),
}, () => {
  assert.deepEqual(inNamespace('owner-rule'), {
    sameOwner: { bind: 'ok', listen: 'ok' },
    chownBeforeBind: { bind: 'EADDRINUSE', listen: null },
    chownAfterBind: { bind: 'EADDRINUSE', listen: null },
    chownBetweenBindAndListen: { secondBind: 'ok', secondListen: 'ok', firstListen: 'EADDRINUSE' },
  });
});
