/**
 * One `serve` worker: its own process and its own socket, like one of the
 * article's test-server terminals. It reports to its parent over IPC only;
 * the parent does all the printing.
 *
 * Connections (datagrams) are served one of two ways, as the parent decided
 * (engine.ts). Engine `native`: a C thread accepts, counts, greets and closes
 * (receives, counts and answers, in batches), so no JavaScript runs per
 * connection. Engine `builtin`: Node's net.Server / dgram do it.
 */

import type { Socket } from 'node:net';
import { KernelError } from '../errors.js';
import { hardenProcess } from '../process-hardening.js';
import {
  adoptTcpListener,
  adoptUdpSocket,
  type BoundSocket,
  bindSocket,
  descriptorOf,
  effectiveOptions,
  localAddressOf,
  openNativeSocket,
} from './binder.js';
import { writeCount } from './counter-file.js';
import { formatGreeting, type WorkerIdentity } from './greeting.js';
import { loadNativeHelper, type NativeEngines, type NativeHelper } from './native.js';
import { incomingCpuOf } from './socket-lifecycle.js';
import { dropPrivileges } from './users.js';
import { WorkerListener } from './worker-lifecycle.js';
import { COUNTER_FD, type FromWorker, type ToWorker, type WorkerConfig } from './worker-protocol.js';

const STOP_GRACE_MS = 1000;

interface NativeLoop {
  helper: NativeHelper;
  engines: NativeEngines;
  fd: number;
  handle: number;
}

hardenProcess();
const config = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
setTitle(config.port);
/** The Node path's counter; the native loop keeps its own in the same file. */
let accepted = 0;
let bound: BoundSocket | undefined;
let nativeLoop: NativeLoop | undefined;
/** Lifecycle mode only (config.lifecycle): the socket the scenario's steps drive. */
let listener: WorkerListener | undefined;
/** Lifecycle mode: the port the `bind` request names (the one a server with port 0 got first). */
let requestedPort: number | undefined;
let stopping = false;

/** `reuseport worker 3 0.0.0.0:6000` in ps and /proc/PID/cmdline. */
function setTitle(port: number): void {
  const host = config.address.includes(':') ? `[${config.address}]` : config.address;
  process.title = `reuseport worker ${config.workerId} ${host}:${port}`;
}

/**
 * Counted before the greeting or reply goes out, so a client that got one is
 * always counted; a write that fails ends the worker rather than under-count.
 */
function countOne(): void {
  accepted++;
  writeCount(COUNTER_FD, accepted);
}

function send(message: FromWorker, then?: () => void): void {
  if (process.send && process.connected) process.send(message, undefined, {}, () => then?.());
  else then?.();
}

// The parent is our only reader: without it there is nobody to count for.
process.on('disconnect', () => process.exit(0));
process.on('SIGINT', () => stop());
process.on('SIGTERM', () => stop());
// A closed terminal hangs up the whole process group: stop as cleanly as for SIGTERM.
process.on('SIGHUP', () => stop());
let bindNow: () => void = () => {};
const bindAllowed = new Promise<void>((resolve) => {
  bindNow = resolve;
});
process.on('message', (message: ToWorker) => {
  if (message.type === 'bind') {
    requestedPort = message.port;
    bindNow();
  } else if (message.type === 'stop') stop();
  else if (message.type === 'ping') send({ type: 'pong', seq: message.seq });
  else if (message.type === 'lifecycle') {
    const done = listener?.run(message.request) ?? { outcome: 'ENATIVE', syscall: 'lifecycle mode is off' };
    send({ type: 'lifecycle-done', seq: message.seq, ...done });
  }
});

/** The addon's accept loop when the parent chose the native engine; null for the Node path. */
function nativeEngines(): { helper: NativeHelper; engines: NativeEngines } | null {
  if (config.engine !== 'native') return null;
  const helper = loadNativeHelper().helper;
  if (helper?.engines) return { helper, engines: helper.engines };
  throw new Error('the parent chose the native engine, but this worker cannot load it');
}

async function main(): Promise<void> {
  // Load the helper while we may still read the checkout: after the drop,
  // the other user may not be allowed to (think of a clone under /root).
  if (config.binder === 'native') loadNativeHelper();
  if (config.user) dropPrivileges(config.user);
  if (config.lifecycle) {
    // Lifecycle sockets and their accept loop are the native helper's, whichever engine serve would pick.
    const engines = loadNativeHelper().helper?.engines;
    if (!engines) throw new Error('lifecycle mode needs the native helper, and this worker cannot load it');
    listener = new WorkerListener({ ...config, lifecycle: config.lifecycle }, engines, COUNTER_FD);
    send({ type: 'ready' });
    await bindAllowed;
    if (!stopping) startListener(listener);
    return;
  }
  if (config.holdBind) {
    send({ type: 'ready' });
    await bindAllowed;
  }
  if (stopping) return;
  const native = nativeEngines();
  let local: { address: string; port: number };
  let fd: number | undefined;
  try {
    if (native) {
      fd = openNativeSocket(config);
      try {
        local = native.engines.getsockname(fd);
      } catch (err) {
        native.helper.closeFd(fd);
        throw err;
      }
    } else {
      bound = await bindSocket(config.binder, config);
      local = localAddressOf(bound);
    }
  } catch (err) {
    const e = err instanceof KernelError ? err : KernelError.fromNode(err as NodeJS.ErrnoException);
    send({ type: 'bind-error', code: e.code, errno: e.errno, syscall: e.syscall, message: e.message }, () =>
      process.exit(3),
    );
    return;
  }
  const host = local.address.includes(':') ? `[${local.address}]` : local.address;
  const identity = { workerId: config.workerId, pid: process.pid, local: `${host}:${local.port}` };
  const greeting = Buffer.from(formatGreeting(identity));
  if (native && fd !== undefined) {
    try {
      nativeLoop = { ...native, fd, handle: native.engines.acceptLoopStart(fd, greeting, COUNTER_FD) };
    } catch (err) {
      // No thread to be had (e.g. pthread_create EAGAIN): the socket is bound, so serve it from Node.
      process.stderr.write(`worker ${config.workerId}: accept loop unavailable (${String(err)}); using Node\n`);
      bound =
        config.protocol === 'tcp'
          ? { protocol: 'tcp', server: await adoptTcpListener(fd, config.backlog) }
          : { protocol: 'udp', socket: await adoptUdpSocket(fd, config) };
    }
  }
  if (bound?.protocol === 'tcp') {
    // Paused sockets never start reading: the greeting goes out, the socket
    // closes, and no read path is armed for a peer that only waits for it.
    const report = config.steering?.incomingCpu !== undefined ? identity : undefined;
    bound.server.on('connection', (socket) => {
      countOne();
      socket.on('error', ignore);
      socket.write(report ? acceptedCpuGreeting(report, socket) : greeting);
      // Almost always the kernel took it all at once: close now, and it sends
      // the greeting and then our FIN, with no shutdown() or 'finish' round.
      // Otherwise end() waits until the rest is out before closing.
      if (socket.writableLength === 0) socket.destroy();
      else socket.end(() => socket.destroy());
    });
  } else if (bound?.protocol === 'udp') {
    const socket = bound.socket;
    socket.on('message', (_message, peer) => {
      countOne();
      // A connected socket has one peer, and send() with an address would fail (EISCONN).
      if (config.connect) socket.send(greeting);
      else socket.send(greeting, peer.port, peer.address);
    });
  }
  if (local.port !== config.port) setTitle(local.port);
  send({
    type: 'listening',
    address: local.address,
    port: local.port,
    binder: config.binder,
    uid: process.getuid?.() ?? -1,
    options: effectiveOptions(
      nativeLoop?.fd ?? (bound ? descriptorOf(bound) : fd),
      local.address.includes(':') ? 6 : 4,
    ),
  });
}

/** A `start` step in lifecycle mode: bind and listen on the worker's own socket, answered like any bind. */
function startListener(socket: WorkerListener): void {
  const bound = socket.bind(requestedPort ?? config.port);
  const done = bound.outcome === 'ok' ? socket.listen() : bound;
  if (done.outcome !== 'ok') {
    const message = `${done.syscall ?? 'bind'} failed: ${done.outcome}`;
    send({ type: 'bind-error', code: done.outcome, errno: 0, syscall: done.syscall ?? 'bind', message }, () =>
      process.exit(3),
    );
    return;
  }
  const port = socket.port ?? config.port;
  if (port !== config.port) setTitle(port);
  // The socket is the native helper's LifecycleSocket, whichever binder the server named.
  send({ type: 'listening', address: config.address, port, binder: 'native', uid: process.getuid?.() ?? -1 });
}

function stop(): void {
  if (stopping) return;
  stopping = true;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    send({ type: 'stopped' }, () => process.exit(0));
  };
  if (listener) {
    listener.stop();
    finish();
    return;
  }
  if (nativeLoop) {
    // The loop sends each greeting before it closes: nothing is left to drain.
    const { helper, engines, fd, handle } = nativeLoop;
    engines.acceptLoopStop(handle);
    nativeLoop = undefined;
    try {
      helper.closeFd(fd);
    } catch {
      // Ours and open, so this cannot fail; if it ever did, exiting closes it anyway.
    }
    finish();
    return;
  }
  if (!bound) {
    finish();
    return;
  }
  // Connections already accepted are counted; let their greetings drain, but not forever.
  setTimeout(finish, STOP_GRACE_MS).unref();
  if (bound.protocol === 'tcp') bound.server.close(finish);
  else bound.socket.close(finish);
}

function ignore(): void {}

/** The greeting with the accepted socket's own SO_INCOMING_CPU (scenarios/incoming-cpu.yaml). */
function acceptedCpuGreeting(who: WorkerIdentity, socket: Socket): Buffer {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return Buffer.from(formatGreeting({ ...who, incomingCpu: typeof fd === 'number' ? incomingCpuOf(fd) : -1 }));
}

main().catch((err: unknown) => {
  process.stderr.write(`worker ${config.workerId}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(4);
});
