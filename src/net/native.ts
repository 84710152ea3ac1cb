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
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KernelError } from '../errors.js';

/** Path of the addon relative to the package root. */
export const NATIVE_ADDON_RELATIVE_PATH = 'native/build/Release/reuseport_native.node';

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
}

export type NativeLoadResult = { helper: NativeHelper } | { helper: null; reason: string };

/** What the C functions return: failed syscalls are values, never exceptions. */
type RawErrno = { errno: number; syscall: string; option?: string };
type RawOpenResult = { fd: number } | RawErrno;
type RawLimitResult = OpenFileLimit | RawErrno;

interface RawBinding {
  openSocket(options: NativeSocketOptions): RawOpenResult;
  closeFd(fd: number): number;
  raiseOpenFileLimit(): RawLimitResult;
  getOpenFileLimit(): RawLimitResult;
}

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

function isRawErrno(value: object): value is RawErrno {
  return 'errno' in value;
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
  const path = join(root, NATIVE_ADDON_RELATIVE_PATH);
  if (!existsSync(path)) {
    return { helper: null, reason: `${NATIVE_ADDON_RELATIVE_PATH} not found: run \`npm rebuild\` with a C toolchain` };
  }
  let exported: unknown;
  try {
    exported = createRequire(import.meta.url)(path);
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    return { helper: null, reason: `${NATIVE_ADDON_RELATIVE_PATH} failed to load: ${message}` };
  }
  if (!isRawBinding(exported)) {
    return { helper: null, reason: `${NATIVE_ADDON_RELATIVE_PATH} does not export the expected functions: rebuild it` };
  }
  return { helper: wrap(exported, path) };
}

let cached: NativeLoadResult | undefined;

/** The helper, or why it is unavailable. Loaded once per process; never throws. */
export function loadNativeHelper(): NativeLoadResult {
  cached ??= loadNativeHelperUncached();
  return cached;
}
