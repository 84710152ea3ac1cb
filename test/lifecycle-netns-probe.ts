// Run by test/socket-lifecycle.test.ts inside a fresh network namespace
// (`unshare --net`, lo up): one case per run, named by argv[2], its findings
// printed as one JSON line. Fixed ports and sysctls are safe here: nothing
// else lives in this namespace.
import dgram from 'node:dgram';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { countStates, HoldingClient } from '../src/net/holding-client.js';
import { counterDeltas, countTimeWait, readTcpExtCounters } from '../src/net/kernel-counters.js';
import { loadNativeHelper } from '../src/net/native.js';
import { answersByPort, sweepSourcePorts } from '../src/net/port-sweep.js';
import { type LifecycleResult, LifecycleSocket, type SocketType } from '../src/net/socket-lifecycle.js';

const HOST = '127.0.0.1';
const PORT = 8080;

function must<T extends object>(result: LifecycleResult<T>, what: string): T {
  if (!result.ok) throw new Error(`${what}: ${result.outcome}`);
  return result;
}

function member(type: SocketType, port = PORT, reusePort = true): LifecycleSocket {
  const { socket } = must(LifecycleSocket.create(4, type), 'socket');
  must(socket.setOption('SO_REUSEPORT', reusePort), 'SO_REUSEPORT');
  must(socket.bind(HOST, port), 'bind');
  return socket;
}

/** Resolves once `check` holds, re-checking on a timer; false after timeoutMs. */
async function until(check: () => boolean, timeoutMs = 5000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return true;
}

function engines() {
  const engines = loadNativeHelper().helper?.engines;
  if (!engines) throw new Error('native engines unavailable');
  return engines;
}

/** Three clients queue on A (B is bound, not listening), B listens, A closes. */
async function closeQueued(migrate: boolean) {
  writeFileSync('/proc/sys/net/ipv4/tcp_migrate_req', migrate ? '1' : '0');
  const a = member('tcp');
  const b = member('tcp');
  must(a.listen(), 'listen A');
  const payload = Buffer.from('hello!');
  const clients = HoldingClient.open({ host: HOST, port: PORT, count: 3, payload });
  // Connected on the client side (so the payload is written) and queued on the server side.
  const connected = await clients.waitUntil((r) => r.every((c) => c.state === 'waiting'), 5000);
  const queuedOnA =
    connected &&
    (await until(() => {
      const q = a.acceptQueue();
      return q.ok && q.queued === 3;
    }));
  must(b.listen(), 'listen B');
  const before = readTcpExtCounters();
  const closed = a.close();
  const accepted = b.acceptAll({ greeting: Buffer.from('served-by=B\n'), minBytes: payload.length, waitMs: 1000 });
  const settled = await clients.waitUntil(
    (r) => r.every((c) => c.state !== 'waiting' && c.state !== 'connecting'),
    5000,
  );
  const counters = counterDeltas(before, readTcpExtCounters());
  const report = clients.report();
  clients.close();
  b.close();
  return {
    queuedOnA,
    closeOutcome: closed.outcome,
    settled,
    states: countStates(report),
    errors: report.map((c) => c.error),
    replies: report.map((c) => c.reply),
    acceptedOnB: accepted.connections.length,
    bytesOnB: accepted.connections.map((c) => c.received.toString('latin1')),
    acceptEnd: accepted.stoppedBy.outcome,
    counters,
  };
}

/** Two TCP listeners behind native accept loops, or two UDP responders. */
async function servers(type: SocketType, count = 2) {
  const stops: (() => Promise<void> | void)[] = [];
  for (let i = 0; i < count; i++) {
    const socket = member(type);
    if (type === 'tcp') {
      must(socket.listen(), 'listen');
      const handle = engines().acceptLoopStart(socket.fd, Buffer.from(`instance=${i}\n`));
      stops.push(() => {
        engines().acceptLoopStop(handle);
        socket.close();
      });
    } else {
      const udp = dgram.createSocket('udp4');
      const listening = once(udp, 'listening');
      udp.bind({ fd: socket.release() });
      await listening;
      udp.on('message', (_msg, rinfo) => udp.send(`instance=${i}\n`, rinfo.port, rinfo.address));
      stops.push(() => new Promise<void>((resolve) => udp.close(() => resolve())));
    }
  }
  return async () => {
    for (const stop of stops) await stop();
  };
}

async function sweep(type: SocketType) {
  const stop = await servers(type);
  try {
    const result = await sweepSourcePorts({
      protocol: type,
      host: HOST,
      port: PORT,
      sourcePorts: { from: 40000, count: 400, repeat: 3 },
    });
    const byPort = answersByPort(result, (a) => a.reply);
    const unstable = [...byPort.values()].filter((answers) => new Set(answers).size !== 1).length;
    const outcomes: Record<string, number> = {};
    for (const a of result.attempts) outcomes[a.outcome] = (outcomes[a.outcome] ?? 0) + 1;
    const instances: Record<string, number> = {};
    for (const answers of byPort.values()) instances[String(answers[0])] = (instances[String(answers[0])] ?? 0) + 1;
    return { elapsedMs: result.elapsedMs, attempts: result.attempts.length, outcomes, unstable, instances };
  } finally {
    await stop();
  }
}

/** TIME_WAIT after 5 ports x 2 rounds against a server that closes first. */
async function timeWait() {
  const stop = await servers('tcp', 1);
  const before = countTimeWait(PORT);
  const result = await sweepSourcePorts({
    protocol: 'tcp',
    host: HOST,
    port: PORT,
    sourcePorts: { from: 41000, count: 5, repeat: 2 },
  });
  await stop();
  return {
    replies: result.attempts.filter((a) => a.outcome === 'reply').length,
    before,
    serverSide: countTimeWait(PORT),
    clientSide: countTimeWait(PORT, { side: 'remote' }),
  };
}

/** UDP group of 4; one member attaches `payload-modulo: 4`; attempt k carries k. */
async function cbpfPayload() {
  const sockets = [0, 1, 2, 3].map(() => member('udp'));
  const attach = sockets[2]!.attachCbpf({ name: 'payload-modulo', modulo: 4 });
  const stops: (() => Promise<void>)[] = [];
  for (const [i, socket] of sockets.entries()) {
    const udp = dgram.createSocket('udp4');
    const listening = once(udp, 'listening');
    udp.bind({ fd: socket.release() });
    await listening;
    udp.on('message', (_msg, rinfo) => udp.send(`instance=${i}\n`, rinfo.port, rinfo.address));
    stops.push(() => new Promise<void>((resolve) => udp.close(() => resolve())));
  }
  const result = await sweepSourcePorts({
    protocol: 'udp',
    host: HOST,
    port: PORT,
    sourcePorts: { from: 42000, count: 40, repeat: 1 },
    indexPayload: true,
  });
  for (const stop of stops) await stop();
  const mismatches = result.attempts.filter((a, k) => a.reply !== `instance=${k % 4}`).length;
  return { attach: attach.outcome, attempts: result.attempts.length, mismatches };
}

/** A full accept queue drops SYNs, though nothing else is wrong. */
async function backlogOverflow() {
  const listener = member('tcp');
  must(listener.listen(1), 'listen');
  const before = readTcpExtCounters();
  const clients = HoldingClient.open({ host: HOST, port: PORT, count: 4, lifetimeMs: 10_000 });
  const twoConnected = await clients.waitUntil((r) => countStates(r).waiting === 2, 5000);
  const reached =
    twoConnected &&
    (await until(() => {
      const d = counterDeltas(before, readTcpExtCounters());
      return (d.ListenOverflows ?? 0) >= 2;
    }));
  const counters = counterDeltas(before, readTcpExtCounters());
  const queue = listener.acceptQueue();
  const states = countStates(clients.report());
  clients.close();
  listener.close();
  return { reached, counters, queue, states };
}

/** Who owns a socket for the bind-conflict rule: created as root, then fchown'd. */
function ownerRule() {
  const NOBODY = 65534;
  const other = (when: 'before-bind' | 'after-bind' | 'never') => {
    const a = LifecycleSocket.create(4, 'tcp');
    const { socket } = must(a, 'socket');
    must(socket.setOption('SO_REUSEPORT', true), 'reuseport');
    if (when === 'before-bind') must(socket.chown(NOBODY), 'fchown');
    must(socket.bind(HOST, PORT), 'bind');
    if (when === 'after-bind') must(socket.chown(NOBODY), 'fchown');
    must(socket.listen(), 'listen');
    const second = member2();
    socket.close();
    return second;
  };
  const member2 = () => {
    const { socket } = must(LifecycleSocket.create(4, 'tcp'), 'socket');
    must(socket.setOption('SO_REUSEPORT', true), 'reuseport');
    const bind = socket.bind(HOST, PORT);
    const listen = bind.ok ? socket.listen() : null;
    socket.close();
    return { bind: bind.outcome, listen: listen?.outcome ?? null };
  };
  // fchown between bind and listen: the bind bucket still caches the old owner (tb->fastuid).
  const stale = () => {
    const { socket: a } = must(LifecycleSocket.create(4, 'tcp'), 'socket');
    must(a.setOption('SO_REUSEPORT', true), 'reuseport');
    must(a.bind(HOST, PORT), 'bind');
    must(a.chown(NOBODY), 'fchown');
    const { socket: b } = must(LifecycleSocket.create(4, 'tcp'), 'socket');
    must(b.setOption('SO_REUSEPORT', true), 'reuseport');
    const out = {
      secondBind: b.bind(HOST, PORT).outcome,
      secondListen: b.listen().outcome,
      firstListen: a.listen().outcome,
    };
    a.close();
    b.close();
    return out;
  };
  return {
    sameOwner: other('never'),
    chownBeforeBind: other('before-bind'),
    chownAfterBind: other('after-bind'),
    chownBetweenBindAndListen: stale(),
  };
}

function connectOutcome(port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: HOST, port });
    socket.on('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'));
  });
}

/** A listener bound to a fixed port keeps it through shutdown (SOCK_BINDPORT_LOCK). */
async function shutdownRelisten() {
  const listener = member('tcp');
  must(listener.listen(), 'listen');
  must(listener.shutdown(), 'shutdown');
  const afterShutdown = await connectOutcome(PORT);
  const listen = listener.listen().outcome;
  const name = listener.localAddress();
  const afterListen = await connectOutcome(PORT);
  listener.close();
  return { afterShutdown, listen, port: name.ok ? name.port : name.outcome, afterListen };
}

const cases: Record<string, () => unknown> = {
  'shutdown-relisten': shutdownRelisten,
  'close-resets': () => closeQueued(false),
  'close-migrates': () => closeQueued(true),
  'sweep-tcp': () => sweep('tcp'),
  'sweep-udp': () => sweep('udp'),
  'time-wait': timeWait,
  'cbpf-payload': cbpfPayload,
  'backlog-overflow': backlogOverflow,
  'owner-rule': ownerRule,
};

const run = cases[process.argv[2] ?? ''];
if (run === undefined) {
  process.stderr.write(`unknown case ${process.argv[2]}; known: ${Object.keys(cases).join(', ')}\n`);
  process.exit(2);
}
process.stdout.write(`${JSON.stringify(await run())}\n`);
process.exit(0);
