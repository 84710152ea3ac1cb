// Loader and typed wrapper for the native helper (native/reuseport_native.c).
//
// The helper opens and binds sockets with options Node < 22.12 cannot set
// (SO_REUSEPORT, SO_INCOMING_CPU, SO_ATTACH_REUSEPORT_CBPF). Hand the returned
// fd to `net.Server#listen({ fd })` or `dgram.Socket#bind({ fd })`: libuv makes
// it non-blocking on adoption. Two side effects of adoption to keep in mind:
// - net: Node calls listen() again with its own backlog (511 unless
//   `listen({ fd, backlog })` says otherwise), replacing `backlog` given here;
// - dgram: libuv's uv_udp_open sets SO_REUSEADDR=1 on the fd, whatever
//   `reuseAddr` was given here.
//
// The addon also carries two optional engines (`helper.engines`), each with a
// JS fallback elsewhere: an accept loop for `serve` workers and a connection
// generator for `load`. engine.ts decides when they run.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KernelError } from '../errors.js';

/** Where the addon is looked for, relative to the package root: build/Release, then prebuilds/. */
export const NATIVE_DIR = 'native';
/** Path of a locally compiled addon relative to the package root. */
export const NATIVE_ADDON_RELATIVE_PATH = 'native/build/Release/reuseport_native.node';
/** Left by the install script when compiling failed; its first line says why. */
const INSTALL_ERROR_RELATIVE_PATH = 'native/build/install-error.txt';

/** Set to anything but '' or '0' to behave as if the addon had not been built. */
export const NATIVE_DISABLE_ENV = 'REUSEPORT_NATIVE_DISABLE';

/** One classic BPF instruction (struct sock_filter). `k` may be negative (SKF_AD_OFF + ...). */
export interface CbpfInstruction {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

export interface NativeSocketOptions {
  family: 4 | 6;
  type: 'tcp' | 'udp';
  /** An IP literal: no host names, no zone ids. */
  address: string;
  port: number;
  reusePort: boolean;
  reuseAddr: boolean;
  /** IPV6_V6ONLY; only applied when family is 6. */
  ipv6Only?: boolean;
  /** listen() backlog, tcp only; default 511. */
  backlog?: number;
  /** SO_INCOMING_CPU. */
  incomingCpu?: number;
  /** SO_ATTACH_REUSEPORT_CBPF program, attached before bind(); requires reusePort. */
  cbpf?: readonly CbpfInstruction[];
}

export interface OpenFileLimit {
  soft: number;
  hard: number;
}

export interface NativeHelper {
  /** Absolute path of the loaded addon. */
  readonly path: string;
  /** socket + setsockopt + bind (+ listen for tcp). Returns the fd; throws KernelError on a failed syscall. */
  openSocket(options: NativeSocketOptions): number;
  /** close(2) an fd that was not adopted by net/dgram. Throws KernelError on failure (e.g. EBADF). */
  closeFd(fd: number): void;
  /** Sets the RLIMIT_NOFILE soft limit to the hard limit; returns the limits after. Throws KernelError. */
  raiseOpenFileLimit(): OpenFileLimit;
  /** Current RLIMIT_NOFILE limits (Infinity stands for RLIM_INFINITY). */
  getOpenFileLimit(): OpenFileLimit;
  /** The accept loop and load engine, or null when this build of the addon predates them. */
  readonly engines: NativeEngines | null;
  /** The addon's raw exports, for modules that type and wrap further parts of it (socket-lifecycle.ts). */
  readonly exports: object;
  /** getsockopt/setsockopt of boolean options (lcGetOption/lcSetOption), or null when this build of the addon predates them. */
  readonly socketFlags: SocketFlags | null;
  /** Interface set-up without iproute2, or null when this build of the addon predates it. */
  readonly netns: NativeNetns | null;
}

/** The options native/socket_lifecycle.c sets and reads on any socket, by their kernel names. */
export type LifecycleOption = 'SO_REUSEPORT' | 'SO_REUSEADDR' | 'SO_INCOMING_CPU' | 'IPV6_V6ONLY';

/** The boolean socket options a scenario asks for. */
export type SocketFlag = 'reuseAddr' | 'reusePort' | 'ipv6Only';
const SOCKET_FLAG_OPTION: Record<SocketFlag, LifecycleOption> = {
  reuseAddr: 'SO_REUSEADDR',
  reusePort: 'SO_REUSEPORT',
  ipv6Only: 'IPV6_V6ONLY',
};

export interface SocketFlags {
  /** getsockopt(SO_REUSEADDR / SO_REUSEPORT / IPV6_V6ONLY). Throws KernelError. */
  get(fd: number, flag: SocketFlag): boolean;
  /** setsockopt of the same options. Throws KernelError. */
  set(fd: number, flag: SocketFlag, on: boolean): void;
}

/** What a private namespace's set-up needs, done with ioctl and netlink instead of `ip`. */
export interface NativeNetns {
  /** Sets IFF_UP on the interface (`ip link set NAME up`). Throws KernelError. */
  linkUp(name: string): void;
  /** RTM_NEWADDR (`ip addr add ADDRESS/PREFIX dev NAME`, IPv6 with nodad). Throws KernelError (EEXIST if present). */
  addAddress(name: string, address: string, prefixLength: number): void;
  /**
   * RTM_GETROUTE (`ip route get ADDRESS`): the rtm_type of the route a connect()
   * to the address would use, RTN_LOCAL (2) once it is usable. Throws KernelError
   * (ENETUNREACH: no route at all).
   */
  routeType(address: string): number;
}

export type NativeLoadResult = { helper: NativeHelper } | { helper: null; reason: string };

export interface SocketName {
  address: string;
  port: number;
  family: 4 | 6;
}

/** What `loadRun` is told. `host` is an IP literal of `family`. */
export interface NativeLoadOptions {
  /** Default tcp. udp: one datagram per connected socket, answered or not. */
  protocol?: 'tcp' | 'udp';
  family: 4 | 6;
  host: string;
  port: number;
  connections: number;
  /** At most this many in flight; clamped to `connections`. */
  concurrency: number;
  /** A connection with no data for this long is closed (reset by any data received). */
  replyTimeoutMs: number;
  /** The whole run stops after this long; what has not started is not attempted. */
  deadlineMs: number;
  /** SO_REUSEADDR + bind to this local port before connect; needs concurrency 1. */
  sourcePort?: number;
}

/**
 * `errno` value in `replies` and `failures` for a connection that was still in
 * flight when the run stopped early (deadline or abort): not a real errno.
 */
export const LOAD_CUT_OFF = -1;

/** What `loadRun` found, aggregated. Every attempted connection is in exactly one of replies, noReply, failures. */
export interface NativeLoadReport {
  attempted: number;
  /**
   * Connections that ended after at least one byte (or cleanly with none), by
   * `id` (0, 1, 2, ... in order of first appearance) and by their first line (without the newline; '' for an empty reply) and by the
   * errno that ended them: 0 for a clean close or a timeout after some data,
   * a positive errno, or LOAD_CUT_OFF.
   */
  replies: { id: number; text: string; errno: number; count: number }[];
  /** Connected, but no byte before the reply timeout. */
  noReply: number;
  /** Ended without any byte by an error: a positive errno (ETIMEDOUT when never connected) or LOAD_CUT_OFF. */
  failures: { errno: number; count: number }[];
  /**
   * Which reply each client source port got, as flat pairs [port, reply id, ...]:
   * every distinct (port, reply) pair once, in no order. Ports of failed and
   * silent connections are not in it.
   */
  sourcePorts: Int32Array;
  elapsedNs: number;
  stoppedEarly: 'deadline' | 'aborted' | null;
}

/** Slots of the `progress` array handed to loadRun. */
export const LOAD_PROGRESS_DONE = 0;
export const LOAD_PROGRESS_ABORT = 1;

/** The optional fast paths; null when the addon was built before they existed. */
export interface NativeEngines {
  /** The local address of a socket. Throws KernelError. */
  getsockname(fd: number): SocketName;
  /**
   * Starts a thread that accepts on the listening `fd`, counts each
   * connection, sends `greeting` (copied) and closes it; on a bound UDP `fd`
   * (made non-blocking) it receives, counts and answers each datagram with
   * `greeting`. A TCP listener is blocking with a 50 ms SO_RCVTIMEO while the
   * thread runs, and gets its flags back at stop. The fd stays the caller's:
   * close it after acceptLoopStop. With `counterFd` (a
   * regular file at least 8 bytes long) the count lives in a MAP_SHARED
   * mapping of its first 8 bytes, host byte order, added to what is there:
   * another process holding the file reads it even after this one died.
   * Returns a handle; throws KernelError (e.g. syscall 'pthread_create', 'mmap').
   * With `echo`, what the client had sent by accept time (up to 4096 bytes,
   * read without waiting) goes back after the greeting: how a scenario shows
   * that a migrated connection kept its bytes.
   */
  acceptLoopStart(fd: number, greeting: Uint8Array, counterFd?: number, echo?: boolean): number;
  /** Connections accepted (datagrams received) so far (an atomic read; the counter file's value when there is one). */
  acceptLoopCount(handle: number): number;
  /** accept4() failures so far (EMFILE, ECONNABORTED, ...). */
  acceptLoopErrors(handle: number): number;
  /** Stops and joins the thread; returns the final count. Stopping again returns the same count. */
  acceptLoopStop(handle: number): number;
  /**
   * Runs a TCP or UDP load off the event loop. `progress` is an Int32Array (best on a
   * SharedArrayBuffer) of length >= 2: [LOAD_PROGRESS_DONE] counts finished
   * connections, storing 1 at [LOAD_PROGRESS_ABORT] stops the run. Bad options
   * throw a TypeError / RangeError; the promise rejects with a KernelError only
   * when the run could not start at all (epoll_create1, memory).
   */
  loadRun(options: NativeLoadOptions, progress: Int32Array): Promise<NativeLoadReport>;
}

/** What the C functions return: failed syscalls are values, never exceptions. */
export type RawErrno = { errno: number; syscall: string; option?: string };
type RawOpenResult = { fd: number } | RawErrno;
type RawLimitResult = OpenFileLimit | RawErrno;

interface RawBinding {
  openSocket(options: NativeSocketOptions): RawOpenResult;
  closeFd(fd: number): number;
  raiseOpenFileLimit(): RawLimitResult;
  getOpenFileLimit(): RawLimitResult;
}

/** setsockopt / getsockopt of one int option (native/socket_lifecycle.c); socket-lifecycle.ts wraps them too. */
export interface RawSocketOptions {
  lcSetOption(fd: number, option: LifecycleOption, value: number): 0 | RawErrno;
  lcGetOption(fd: number, option: LifecycleOption): { value: number } | RawErrno;
}

interface RawEngines {
  getsockname(fd: number): SocketName | RawErrno;
  acceptLoopStart(fd: number, greeting: Uint8Array, counterFd?: number, echo?: boolean): number | RawErrno;
  acceptLoopCount(handle: number): number;
  acceptLoopErrors(handle: number): number;
  acceptLoopStop(handle: number): number;
  loadRun(options: NativeLoadOptions, progress: Int32Array): Promise<NativeLoadReport | RawErrno>;
}

interface RawNetns {
  linkUp(name: string): 0 | RawErrno;
  addAddress(name: string, address: string, prefixLength: number): 0 | RawErrno;
  routeType(address: string): number | RawErrno;
}

const ENGINE_FUNCTIONS = [
  'getsockname',
  'acceptLoopStart',
  'acceptLoopCount',
  'acceptLoopErrors',
  'acceptLoopStop',
  'loadRun',
] as const;

const PACKAGE_NAME = 'reuseport';

/** Walks up from this module's directory to the directory whose package.json is named "reuseport". */
export function findPackageRoot(start: string = dirname(fileURLToPath(import.meta.url))): string | null {
  let dir = start;
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        const parsed: unknown = JSON.parse(readFileSync(manifest, 'utf8'));
        if (typeof parsed === 'object' && parsed !== null && (parsed as { name?: unknown }).name === PACKAGE_NAME) {
          return dir;
        }
      } catch {
        // Unreadable or invalid package.json: keep walking up.
      }
    }
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

function isDisabled(env: NodeJS.ProcessEnv): boolean {
  const value = env[NATIVE_DISABLE_ENV];
  return value !== undefined && value !== '' && value !== '0';
}

function isRawBinding(value: unknown): value is RawBinding {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return ['openSocket', 'closeFd', 'raiseOpenFileLimit', 'getOpenFileLimit'].every((k) => typeof v[k] === 'function');
}

function hasRawEngines(value: RawBinding): value is RawBinding & RawEngines {
  const v = value as unknown as Record<string, unknown>;
  return ENGINE_FUNCTIONS.every((k) => typeof v[k] === 'function');
}

function hasRawSocketOptions(value: RawBinding): value is RawBinding & RawSocketOptions {
  const v = value as unknown as Record<string, unknown>;
  return typeof v.lcGetOption === 'function' && typeof v.lcSetOption === 'function';
}

function wrapSocketFlags(raw: RawSocketOptions): SocketFlags {
  return {
    get(fd, flag) {
      const result = raw.lcGetOption(fd, SOCKET_FLAG_OPTION[flag]);
      if (isRawErrno(result)) throw KernelError.fromErrno(result.errno, result.syscall);
      return result.value !== 0;
    },
    set(fd, flag, on) {
      const result = raw.lcSetOption(fd, SOCKET_FLAG_OPTION[flag], on ? 1 : 0);
      if (result !== 0) throw KernelError.fromErrno(result.errno, result.syscall);
    },
  };
}

function hasRawNetns(value: RawBinding): value is RawBinding & RawNetns {
  const v = value as unknown as Record<string, unknown>;
  return typeof v.linkUp === 'function' && typeof v.addAddress === 'function' && typeof v.routeType === 'function';
}

function wrapNetns(raw: RawNetns): NativeNetns {
  const check = (result: 0 | RawErrno) => {
    if (result !== 0) throw KernelError.fromErrno(result.errno, result.syscall);
  };
  return {
    linkUp: (name) => check(raw.linkUp(name)),
    addAddress: (name, address, prefixLength) => check(raw.addAddress(name, address, prefixLength)),
    routeType(address) {
      const result = raw.routeType(address);
      if (typeof result !== 'number') throw KernelError.fromErrno(result.errno, result.syscall);
      return result;
    },
  };
}

export function isRawErrno(value: object): value is RawErrno {
  return 'errno' in value && 'syscall' in value;
}

function wrapEngines(raw: RawEngines): NativeEngines {
  return {
    getsockname(fd) {
      const result = raw.getsockname(fd);
      if (isRawErrno(result)) throw KernelError.fromErrno(result.errno, result.syscall);
      return { address: result.address, port: result.port, family: result.family };
    },
    acceptLoopStart(fd, greeting, counterFd, echo) {
      const result = raw.acceptLoopStart(fd, greeting, counterFd, echo);
      if (typeof result !== 'number') throw KernelError.fromErrno(result.errno, result.syscall);
      return result;
    },
    acceptLoopCount: (handle) => raw.acceptLoopCount(handle),
    acceptLoopErrors: (handle) => raw.acceptLoopErrors(handle),
    acceptLoopStop: (handle) => raw.acceptLoopStop(handle),
    loadRun(options, progress) {
      // Argument errors throw here and now; only the run itself is asynchronous.
      return raw.loadRun(options, progress).then((result) => {
        if (isRawErrno(result)) throw KernelError.fromErrno(result.errno, result.syscall);
        return result;
      });
    },
  };
}

function wrap(raw: RawBinding, path: string): NativeHelper {
  const limits = (result: RawLimitResult): OpenFileLimit => {
    if (isRawErrno(result)) throw KernelError.fromErrno(result.errno, result.syscall);
    return { soft: result.soft, hard: result.hard };
  };
  return {
    path,
    openSocket(options) {
      const result = raw.openSocket(options);
      if (isRawErrno(result)) {
        throw KernelError.fromErrno(result.errno, result.syscall, { address: options.address, port: options.port });
      }
      return result.fd;
    },
    closeFd(fd) {
      const errno = raw.closeFd(fd);
      if (errno !== 0) throw KernelError.fromErrno(errno, 'close');
    },
    raiseOpenFileLimit: () => limits(raw.raiseOpenFileLimit()),
    getOpenFileLimit: () => limits(raw.getOpenFileLimit()),
    engines: hasRawEngines(raw) ? wrapEngines(raw) : null,
    exports: raw,
    socketFlags: hasRawSocketOptions(raw) ? wrapSocketFlags(raw) : null,
    netns: hasRawNetns(raw) ? wrapNetns(raw) : null,
  };
}

/**
 * Loads the addon without caching (exported for tests and `doctor`).
 * Never throws: every failure becomes a `reason`.
 */
export function loadNativeHelperUncached(env: NodeJS.ProcessEnv = process.env): NativeLoadResult {
  if (isDisabled(env)) return { helper: null, reason: `disabled by ${NATIVE_DISABLE_ENV}` };
  let root: string | null;
  try {
    root = findPackageRoot();
  } catch (err) {
    return { helper: null, reason: `cannot locate the package root: ${String(err)}` };
  }
  if (root === null) {
    return { helper: null, reason: `cannot locate the package root (no package.json named "${PACKAGE_NAME}")` };
  }
  const require = createRequire(import.meta.url);
  let path: string;
  try {
    // node-gyp-build picks native/build/Release (compiled here) first, else the
    // prebuilt binary in native/prebuilds/ that fits this platform, arch and libc.
    path = (require('node-gyp-build') as { path(dir: string): string }).path(join(root, NATIVE_DIR));
  } catch {
    return { helper: null, reason: missingHelperReason(root) };
  }
  const shown = relative(root, path);
  let exported: unknown;
  try {
    exported = require(path);
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    return { helper: null, reason: `${shown} failed to load (${message}): ${rebuildRemedy(root, true)}` };
  }
  if (!isRawBinding(exported)) {
    return {
      helper: null,
      reason: `${shown} does not export the expected functions: ${rebuildRemedy(root, true)}`,
    };
  }
  return { helper: wrap(exported, path) };
}

/**
 * Why there is no addon, and the remedy that fits how the package was
 * installed. A prebuilt binary ships for linux-x64 glibc; elsewhere the
 * install script compiles one, unless scripts were skipped (npm
 * --ignore-scripts, pnpm's and npm's build-script approval).
 */
function missingHelperReason(root: string): string {
  const target = `${process.platform}-${process.arch}`;
  let failure: string | undefined;
  try {
    failure = readFileSync(join(root, INSTALL_ERROR_RELATIVE_PATH), 'utf8').split('\n')[0];
  } catch {
    failure = undefined;
  }
  return failure !== undefined
    ? `no prebuilt native helper fits ${target}, and compiling one at install failed (${failure}): install gcc, make and python3, then ${rebuildRemedy(root, false)}`
    : `no prebuilt native helper fits ${target}, and the install script that compiles one did not run (scripts skipped or not approved): ${rebuildRemedy(root, false)}; it needs gcc, make and python3`;
}

/**
 * The command that runs the install script again. `npm rebuild` works in
 * pnpm's layout too (checked in test/install-paths.test.ts); pnpm's own
 * rebuild runs only approved packages' scripts.
 */
function rebuildRemedy(root: string, fromSource: boolean): string {
  const pnpm = root.split(sep).includes('.pnpm') ? ' (pnpm skips unapproved build scripts: `pnpm approve-builds`)' : '';
  const global = root.split(sep).slice(-3, -1).join('/') === 'lib/node_modules';
  return `run \`npm rebuild ${global ? '-g ' : ''}reuseport${fromSource ? ' --build-from-source' : ''}\`${global ? '' : ' in the project'}${pnpm}`;
}

let cached: NativeLoadResult | undefined;

/** Whether the native engines can run here, as decideEngine wants to know it. */
export function engineAvailability(): { helperAvailable: boolean; helperReason?: string } {
  const loaded = loadNativeHelper();
  if (loaded.helper?.engines) return { helperAvailable: true };
  return {
    helperAvailable: false,
    helperReason: loaded.helper
      ? 'this build of the addon has no engines: rebuild it with `npm rebuild`'
      : loaded.reason,
  };
}

/** The helper, or why it is unavailable. Loaded once per process; never throws. */
export function loadNativeHelper(): NativeLoadResult {
  cached ??= loadNativeHelperUncached();
  return cached;
}
