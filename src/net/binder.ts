import dgram from 'node:dgram';
import net from 'node:net';
import { KernelError, ReuseportError, UsageError } from '../errors.js';
import { familyOf, type Protocol } from './address.js';
import { loadNativeHelper, type NativeSocketOptions, type SocketFlag } from './native.js';
import { DEFAULT_LISTEN_BACKLOG } from './socket-lifecycle.js';
import { hasSteering, openSteeredSocket, type SocketSteering } from './steered-socket.js';

export type BinderName = 'builtin' | 'native';
export type BinderChoice = 'auto' | BinderName;
export const BINDER_CHOICES: readonly BinderChoice[] = ['auto', 'builtin', 'native'];

export interface BindRequest {
  protocol: Protocol;
  address: string;
  port: number;
  reusePort: boolean;
  /** Defaults to the binder's own default: on for TCP listeners (as libuv does), off for UDP. */
  reuseAddr?: boolean;
  ipv6Only?: boolean;
  backlog?: number;
  /** UDP only: connect() to this peer after bind (a connected member; see scenarios/udp-connected-member.yaml). */
  connect?: { address: string; port: number };
  /** SO_BINDTODEVICE, SO_INCOMING_CPU, a reuseport program: opened by steered-socket.ts (native helper). */
  steering?: SocketSteering;
}

export type BoundSocket = { protocol: 'tcp'; server: net.Server } | { protocol: 'udp'; socket: dgram.Socket };

/**
 * Node's own `reusePort` (Node >= 22.12 / 23.1). Older versions ignore the
 * unknown option silently, so support is found by probing: two listeners on
 * one port succeed only where the option reaches setsockopt().
 */
export async function probeBuiltin(): Promise<{ ok: true } | { ok: false; reason: string }> {
  const first = net.createServer();
  const second = net.createServer();
  try {
    await listen(first, { host: '127.0.0.1', port: 0, reusePort: true, exclusive: true });
    const { port } = first.address() as net.AddressInfo;
    await listen(second, { host: '127.0.0.1', port, reusePort: true, exclusive: true });
    return { ok: true };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'error';
    return {
      ok: false,
      reason: `Node ${process.version} has no working reusePort option (a second reusePort listener got ${code}); it needs Node >= 22.12`,
    };
  } finally {
    first.close();
    second.close();
  }
}

export function probeNative(): { ok: true } | { ok: false; reason: string } {
  const loaded = loadNativeHelper();
  return loaded.helper ? { ok: true } : { ok: false, reason: loaded.reason };
}

/** Which binder `auto` tries first, when set: builtin or native (how the tests cover both on one Node). */
export const BINDER_ENV = 'REUSEPORT_BINDER';

/**
 * Resolves a choice to a concrete binder, or explains why none works. `auto`
 * prefers the native helper whenever it loads, on every Node: with it, serve
 * workers accept in C (its accept loop needs the fd the helper opened), which
 * Node's own reusePort cannot give. Without it, Node's builtin reusePort.
 * REUSEPORT_BINDER=builtin makes `auto` try builtin first (native stays the fallback).
 */
export async function resolveBinder(choice: BinderChoice, env: NodeJS.ProcessEnv = process.env): Promise<BinderName> {
  if (choice === 'native') {
    const native = probeNative();
    if (!native.ok) throw noBinder(`the native helper is not available: ${native.reason}`);
    return 'native';
  }
  if (choice === 'builtin') {
    const builtin = await probeBuiltin();
    if (!builtin.ok) throw noBinder(builtin.reason);
    return 'builtin';
  }
  const builtinFirst = binderFromEnv(env) === 'builtin';
  const builtin = builtinFirst ? await probeBuiltin() : null;
  if (builtin?.ok) return 'builtin';
  const native = probeNative();
  if (native.ok) return 'native';
  const fallback = builtin ?? (await probeBuiltin());
  if (fallback.ok) return 'builtin';
  throw noBinder(`${fallback.reason}, and the native helper is not available: ${native.reason}`);
}

function binderFromEnv(env: NodeJS.ProcessEnv): BinderChoice {
  const value = env[BINDER_ENV]?.trim();
  if (value === undefined || value === '') return 'auto';
  if ((BINDER_CHOICES as readonly string[]).includes(value)) return value as BinderChoice;
  throw new UsageError(`${BINDER_ENV} must be one of ${BINDER_CHOICES.join(', ')}, got "${value}"`);
}

function noBinder(detail: string): ReuseportError {
  return new ReuseportError(
    `no way to set SO_REUSEPORT here: ${detail}. Use Node >= 22.12, or make the native helper available (\`reuseport doctor\` says how)`,
    { code: 'ENOBINDER' },
  );
}

/** Creates, binds and (for TCP) listens on one socket with the given binder. */
export async function bindSocket(binder: BinderName, request: BindRequest): Promise<BoundSocket> {
  const where = { address: request.address, port: request.port };
  // Steering options need the helper's step-by-step socket: never dropped for want of a binder that has them.
  const fd = binder === 'native' || hasSteering(request.steering) ? openNativeSocket(request) : undefined;
  try {
    if (request.protocol === 'tcp') {
      if (fd !== undefined) return { protocol: 'tcp', server: await adoptTcpListener(fd, request.backlog) };
      const server = net.createServer({ pauseOnConnect: true });
      await listen(server, {
        host: request.address,
        port: request.port,
        reusePort: request.reusePort,
        ipv6Only: request.ipv6Only ?? false,
        backlog: request.backlog ?? DEFAULT_LISTEN_BACKLOG,
        exclusive: true,
      });
      const bound: BoundSocket = { protocol: 'tcp', server };
      // libuv sets SO_REUSEADDR on every TCP bind; undo it when the request said no and the helper can.
      const descriptor = request.reuseAddr === false ? descriptorOf(bound) : undefined;
      if (descriptor !== undefined && loadNativeHelper().helper?.socketFlags) {
        applySocketFlag(descriptor, 'reuseAddr', false);
      }
      return bound;
    }
    if (fd !== undefined) {
      const adopted = await adoptUdpSocket(fd, request);
      if (request.connect) await connectDgram(adopted, request.connect);
      return { protocol: 'udp', socket: adopted };
    }
    const socket = dgram.createSocket({
      type: familyOf(request.address) === 6 ? 'udp6' : 'udp4',
      reuseAddr: request.reuseAddr ?? false,
      ipv6Only: request.ipv6Only ?? false,
      reusePort: request.reusePort,
    } as dgram.SocketOptions);
    await bindDgram(socket, { ...toBindAddress(request), exclusive: true });
    if (request.connect) await connectDgram(socket, request.connect);
    return { protocol: 'udp', socket };
  } catch (err) {
    // An fd handed to net or dgram is theirs to close, and they do on failure.
    if (err instanceof KernelError) throw err;
    throw KernelError.fromNode(err as NodeJS.ErrnoException, where);
  }
}

/** socket + options + bind (+ listen) in the C helper; returns the fd, which the caller owns. */
export function openNativeSocket(request: BindRequest): number {
  const helper = loadNativeHelper().helper;
  if (!helper) throw noBinder('the native helper is not available');
  const options = nativeSocketOptions(request);
  return hasSteering(request.steering) ? openSteeredSocket(options, request.steering) : helper.openSocket(options);
}

/** The options a helper-opened socket gets, defaults filled in: one description for both openers. */
function nativeSocketOptions(request: BindRequest): NativeSocketOptions {
  return {
    family: familyOf(request.address),
    type: request.protocol,
    address: request.address,
    port: request.port,
    reusePort: request.reusePort,
    reuseAddr: request.reuseAddr ?? request.protocol === 'tcp',
    ...(request.ipv6Only !== undefined ? { ipv6Only: request.ipv6Only } : {}),
    backlog: request.backlog ?? DEFAULT_LISTEN_BACKLOG,
  };
}

function toBindAddress(request: BindRequest): { address: string; port: number } {
  return { address: request.address, port: request.port };
}

/** A dgram socket on a bound fd opened elsewhere (the native binder's); `request` is what it was opened with. */
export async function adoptUdpSocket(fd: number, request: BindRequest): Promise<dgram.Socket> {
  const socket = dgram.createSocket({ type: familyOf(request.address) === 6 ? 'udp6' : 'udp4' });
  await bindDgram(socket, { fd, exclusive: true });
  // libuv's uv_udp_open turns SO_REUSEADDR on for an adopted fd: put back what was asked for.
  applySocketFlag(fd, 'reuseAddr', request.reuseAddr ?? false);
  return socket;
}

/**
 * A net.Server on a listening fd opened elsewhere. Its sockets start paused:
 * workers only write. Node calls listen() again on an adopted fd, so the
 * backlog is passed on, or it would become 511.
 */
export async function adoptTcpListener(fd: number, backlog = DEFAULT_LISTEN_BACKLOG): Promise<net.Server> {
  const server = net.createServer({ pauseOnConnect: true });
  await listen(server, { fd, backlog });
  return server;
}

function listen(server: net.Server, options: net.ListenOptions & { reusePort?: boolean; fd?: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function bindDgram(socket: dgram.Socket, options: dgram.BindOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      socket.close();
      reject(err);
    };
    socket.once('error', onError);
    socket.bind(options, () => {
      socket.off('error', onError);
      resolve();
    });
  });
}

function connectDgram(socket: dgram.Socket, peer: { address: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.connect(peer.port, peer.address, (err?: Error) => {
      if (!err) return resolve();
      socket.close();
      reject(err);
    });
  });
}

export function localAddressOf(bound: BoundSocket): { address: string; port: number } {
  const info = bound.protocol === 'tcp' ? (bound.server.address() as net.AddressInfo) : bound.socket.address();
  return { address: info.address, port: info.port };
}

/** What a bound socket really has, read back with getsockopt (null: this platform or build cannot say). */
export interface EffectiveOptions {
  reuseAddr: boolean | null;
  reusePort: boolean | null;
  ipv6Only: boolean | null;
}

/** setsockopt through the native helper; throws when it cannot, so a request is never silently dropped. */
export function applySocketFlag(fd: number, flag: SocketFlag, on: boolean): void {
  const flags = loadNativeHelper().helper?.socketFlags;
  if (!flags) {
    throw new ReuseportError(
      `cannot set ${flag} on the socket: the native helper has no setsockopt; rebuild it with \`npm rebuild\``,
      { code: 'ENOBINDER' },
    );
  }
  flags.set(fd, flag, on);
}

/** The descriptor under a bound socket (Node keeps it on its internal handle), or undefined. */
export function descriptorOf(bound: BoundSocket): number | undefined {
  const owner: object = bound.protocol === 'tcp' ? bound.server : bound.socket;
  // net.Server keeps `_handle`; dgram.Socket keeps its handle under a private symbol.
  const candidates = [
    (owner as { _handle?: { fd?: unknown } })._handle,
    ...Object.getOwnPropertySymbols(owner).map(
      (key) => (owner as Record<symbol, { handle?: { fd?: unknown } }>)[key]?.handle,
    ),
  ];
  for (const handle of candidates) {
    if (typeof handle?.fd === 'number' && handle.fd >= 0) return handle.fd;
  }
  return undefined;
}

/** getsockopt of every option a scenario can ask for; each is null when it cannot be read. */
export function effectiveOptions(fd: number | undefined, family: 4 | 6): EffectiveOptions {
  const flags = loadNativeHelper().helper?.socketFlags;
  const read = (flag: SocketFlag): boolean | null => {
    if (fd === undefined || !flags) return null;
    try {
      return flags.get(fd, flag);
    } catch {
      return null;
    }
  };
  return {
    reuseAddr: read('reuseAddr'),
    reusePort: read('reusePort'),
    ipv6Only: family === 6 ? read('ipv6Only') : null,
  };
}
