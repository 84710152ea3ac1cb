/**
 * A scenario worker's socket in lifecycle mode: each step is one syscall on
 * the worker's own LifecycleSocket, so the uid, a paused process and a close
 * with connections still queued are the real thing. Accepting is the native
 * accept loop on that fd (counting into the worker's counter file, echoing
 * what the client had sent); `pause` stops the loop and leaves the socket
 * listening, so the kernel keeps queueing connections for it.
 */
import { formatGreeting } from './greeting.js';
import type { NativeEngines } from './native.js';
import { type LifecycleFailure, type LifecycleResult, LifecycleSocket } from './socket-lifecycle.js';
import type { LifecycleAnswer, LifecycleRequest, WorkerConfig, WorkerLifecycleConfig } from './worker-protocol.js';

export class WorkerListener {
  readonly #config: WorkerConfig & { lifecycle: WorkerLifecycleConfig };
  readonly #engines: NativeEngines;
  readonly #counterFd: number;
  #socket: LifecycleSocket | undefined;
  #loop: number | undefined;
  #listening = false;
  #paused = false;
  #port: number | undefined;

  constructor(config: WorkerConfig & { lifecycle: WorkerLifecycleConfig }, engines: NativeEngines, counterFd: number) {
    this.#config = config;
    this.#engines = engines;
    this.#counterFd = counterFd;
  }

  get port(): number | undefined {
    return this.#port;
  }

  run(request: LifecycleRequest): LifecycleAnswer {
    switch (request.op) {
      case 'bind':
        return this.bind(request.port);
      case 'listen':
        return this.listen();
      case 'close':
        return this.close();
      case 'shutdown':
        return this.shutdown();
      case 'setsockopt':
        return this.#socket ? answer(this.#socket.setOption(request.option, request.value)) : NO_SOCKET;
      case 'pause':
        this.#paused = true;
        this.#stopLoop();
        return { outcome: 'ok' };
      case 'resume':
        this.#paused = false;
        return this.#listening ? this.#startLoop() : { outcome: 'ok' };
    }
  }

  /** socket(), the server's options, fchown when it comes first, bind(). */
  bind(port: number): LifecycleAnswer {
    const { lifecycle, address, reusePort, reuseAddr, ipv6Only } = this.#config;
    if (this.#socket && !this.#socket.closed) return { outcome: 'EINVAL', syscall: 'bind (already bound)' };
    const created = LifecycleSocket.create(address.includes(':') ? 6 : 4, 'tcp');
    if (!created.ok) return answer(created);
    const socket = created.socket;
    this.#socket = socket;
    const steps: (() => LifecycleResult)[] = [() => socket.setOption('SO_REUSEPORT', reusePort)];
    if (reuseAddr !== undefined) steps.push(() => socket.setOption('SO_REUSEADDR', reuseAddr));
    if (ipv6Only !== undefined) steps.push(() => socket.setOption('IPV6_V6ONLY', ipv6Only));
    if (lifecycle.fchown?.at === 'before-bind') steps.push(() => this.#chown());
    for (const step of steps) {
      const result = step();
      if (!result.ok) return answer(result);
    }
    const bound = socket.bind(address, port);
    if (!bound.ok) return answer(bound);
    this.#port = bound.port;
    if (lifecycle.fchown?.at === 'after-bind') {
      const chowned = this.#chown();
      if (!chowned.ok) return answer(chowned);
    }
    return { outcome: 'ok', port: bound.port };
  }

  /** listen(backlog); joins the group now. Starts accepting unless paused. */
  listen(): LifecycleAnswer {
    const socket = this.#socket;
    if (!socket) return NO_SOCKET;
    const listened = socket.listen(this.#config.lifecycle.backlog);
    if (!listened.ok) return answer(listened);
    this.#listening = true;
    const local = socket.localAddress();
    if (local.ok) this.#port = local.port;
    if (this.#config.lifecycle.fchown?.at === 'after-listen') {
      const chowned = this.#chown();
      if (!chowned.ok) return answer(chowned);
    }
    const started = this.#paused ? { outcome: 'ok' } : this.#startLoop();
    return this.#port === undefined ? started : { ...started, port: this.#port };
  }

  /** close(): what was queued is reset or migrated by the kernel (inet_csk_listen_stop). */
  close(): LifecycleAnswer {
    const socket = this.#socket;
    if (!socket) return NO_SOCKET;
    const queued = this.#queued();
    this.#stopLoop();
    this.#listening = false;
    const closed = answer(socket.close());
    return queued === undefined ? closed : { ...closed, queued };
  }

  /** shutdown(SHUT_RDWR): leaves the group; a later listen brings it back. */
  shutdown(): LifecycleAnswer {
    const socket = this.#socket;
    if (!socket) return NO_SOCKET;
    const queued = this.#queued();
    this.#stopLoop();
    const result = answer(socket.shutdown());
    if (result.outcome === 'ok') this.#listening = false;
    return queued === undefined ? result : { ...result, queued };
  }

  /** The worker is stopping: no more accepts, and the socket goes. */
  stop(): void {
    this.#stopLoop();
    if (this.#socket && !this.#socket.closed) this.#socket.close();
  }

  #chown(): LifecycleResult {
    const to = this.#config.lifecycle.fchown!;
    return this.#socket!.chown(to.uid, to.gid);
  }

  #queued(): number | undefined {
    if (!this.#listening || !this.#socket) return undefined;
    const queue = this.#socket.acceptQueue();
    return queue.ok ? queue.queued : undefined;
  }

  #startLoop(): LifecycleAnswer {
    if (this.#loop !== undefined || !this.#socket) return { outcome: 'ok' };
    const host = this.#config.address.includes(':') ? `[${this.#config.address}]` : this.#config.address;
    const greeting = Buffer.from(
      formatGreeting({ workerId: this.#config.workerId, pid: process.pid, local: `${host}:${this.#port ?? 0}` }),
    );
    try {
      this.#loop = this.#engines.acceptLoopStart(this.#socket.fd, greeting, this.#counterFd, true);
      return { outcome: 'ok' };
    } catch (err) {
      const code = (err as { code?: string }).code ?? 'EIO';
      return { outcome: code, syscall: 'accept loop' };
    }
  }

  #stopLoop(): void {
    if (this.#loop === undefined) return;
    this.#engines.acceptLoopStop(this.#loop);
    this.#loop = undefined;
  }
}

/** A step before any bind acts on no socket: EBADF, what the kernel says for an fd that is not open. */
const NO_SOCKET: LifecycleAnswer = { outcome: 'EBADF', syscall: 'no socket yet (no bind step before this one)' };

function answer(result: LifecycleResult | LifecycleFailure): LifecycleAnswer {
  if (result.ok) return { outcome: 'ok' };
  return { outcome: result.outcome, syscall: result.error.syscall };
}
