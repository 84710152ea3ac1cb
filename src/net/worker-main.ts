/**
 * One `serve` worker: its own process and its own socket, like one of the
 * article's test-server terminals. It reports to its parent over IPC only;
 * the parent does all the printing.
 */
import { KernelError } from '../errors.js';
import { type BoundSocket, bindSocket, localAddressOf } from './binder.js';
import { formatGreeting } from './greeting.js';
import { loadNativeHelper } from './native.js';
import { dropPrivileges } from './users.js';
import type { FromWorker, ToWorker, WorkerConfig } from './worker-protocol.js';

const STOP_GRACE_MS = 1000;

const config = JSON.parse(process.argv[2] ?? '{}') as WorkerConfig;
let accepted = 0;
let bound: BoundSocket | undefined;
let stopping = false;

function send(message: FromWorker, then?: () => void): void {
  if (process.send && process.connected) process.send(message, undefined, {}, () => then?.());
  else then?.();
}

// The parent is our only reader: without it there is nobody to count for.
process.on('disconnect', () => process.exit(0));
process.on('SIGINT', () => stop());
process.on('SIGTERM', () => stop());
let bindNow: () => void = () => {};
const bindAllowed = new Promise<void>((resolve) => {
  bindNow = resolve;
});
process.on('message', (message: ToWorker) => {
  if (message.type === 'bind') bindNow();
  else if (message.type === 'stop') stop();
  else if (message.type === 'count') send({ type: 'count', accepted, seq: message.seq });
});

async function main(): Promise<void> {
  // Load the helper while we may still read the checkout: after the drop,
  // the other user may not be allowed to (think of a clone under /root).
  if (config.binder === 'native') loadNativeHelper();
  if (config.user) dropPrivileges(config.user);
  if (config.holdBind) {
    send({ type: 'ready' });
    await bindAllowed;
  }
  if (stopping) return;
  try {
    bound = await bindSocket(config.binder, config);
  } catch (err) {
    const e = err instanceof KernelError ? err : KernelError.fromNode(err as NodeJS.ErrnoException);
    send({ type: 'bind-error', code: e.code, errno: e.errno, syscall: e.syscall, message: e.message }, () =>
      process.exit(3),
    );
    return;
  }
  const local = localAddressOf(bound);
  const host = local.address.includes(':') ? `[${local.address}]` : local.address;
  const greeting = Buffer.from(
    formatGreeting({ workerId: config.workerId, pid: process.pid, local: `${host}:${local.port}` }),
  );
  if (bound.protocol === 'tcp') {
    // Paused sockets never start reading: the greeting goes out, the socket
    // closes, and no read path is armed for a peer that only waits for it.
    bound.server.on('connection', (socket) => {
      accepted++;
      socket.on('error', ignore);
      socket.end(greeting, () => socket.destroy());
    });
  } else {
    const socket = bound.socket;
    socket.on('message', (_message, peer) => {
      accepted++;
      socket.send(greeting, peer.port, peer.address);
    });
  }
  if (config.statsIntervalMs > 0) {
    let reported = 0;
    setInterval(() => {
      if (accepted !== reported) {
        reported = accepted;
        send({ type: 'count', accepted, seq: 0 });
      }
    }, config.statsIntervalMs).unref();
  }
  send({
    type: 'listening',
    address: local.address,
    port: local.port,
    binder: config.binder,
    uid: process.getuid?.() ?? -1,
  });
}

function stop(): void {
  if (stopping) return;
  stopping = true;
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    send({ type: 'stopped', accepted }, () => process.exit(0));
  };
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

main().catch((err: unknown) => {
  process.stderr.write(`worker ${config.workerId}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(4);
});
