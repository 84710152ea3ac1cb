// Kernel-facing groundwork for scenario lifecycle steps: a socket whose every
// syscall is a separate call (native/socket_lifecycle.c), so that steps can
// come in any order: bind without listen, SO_REUSEPORT after bind or listen,
// shutdown then listen again, close with connections still queued, accept now
// or leave them queued (pause / resume).
//
// Data only: a kernel failure is a value, `{ ok: false, outcome: 'EADDRINUSE',
// error: KernelError }`, never an exception. Only misuse (wrong argument
// types) throws, and so does asking for a socket when the addon is missing.
import { errnoName, KernelError, ReuseportError } from '../errors.js';
import {
  type CbpfInstruction,
  isRawErrno,
  type LifecycleOption,
  loadNativeHelper,
  type RawErrno,
  type RawSocketOptions,
} from './native.js';

/** Success, with what the call reports. */
export type LifecycleOk<T extends object = object> = { ok: true; outcome: 'ok' } & T;
/** A failed syscall: `outcome` is its errno name (e.g. 'EADDRINUSE'). */
export interface LifecycleFailure {
  ok: false;
  outcome: string;
  error: KernelError;
  /** The socket option involved, for setsockopt / getsockopt. */
  option?: string;
}
export type LifecycleResult<T extends object = object> = LifecycleOk<T> | LifecycleFailure;

export type SocketType = 'tcp' | 'udp';
/** The options a step may set, clear or read at any time (before bind, after bind, after listen). */
export type { LifecycleOption };
export const LIFECYCLE_OPTIONS: readonly LifecycleOption[] = [
  'SO_REUSEPORT',
  'SO_REUSEADDR',
  'SO_INCOMING_CPU',
  'IPV6_V6ONLY',
];

/** The backlog listen() gets when a step names none: what Node and `serve` use. */
export const DEFAULT_LISTEN_BACKLOG = 511;

/** One accepted connection, as `accept` saw it. */
export interface AcceptedConnection {
  /** The accepted fd when `keep` was asked for, else -1 (already closed). */
  fd: number;
  /** The peer (the client) address and port. */
  address: string;
  port: number;
  /** The bytes the client had sent by then (up to 4096). */
  received: Buffer;
  /** errno name that ended reading ('ECONNRESET', ...), or null. */
  readError: string | null;
  /** The client had already closed its side. */
  eof: boolean;
  /** The accepted socket's own SO_INCOMING_CPU (-1 if unreadable). */
  incomingCpu: number;
}

export interface AcceptOptions {
  /** Sent to the client once accepted: how it learns who served it. */
  greeting?: Uint8Array;
  /** Wait at most `waitMs` (blocking, keep it small) for this many bytes from the client. */
  minBytes?: number;
  waitMs?: number;
  /** Keep the accepted fd open and hand it back (close it with closeFd); default: close it. */
  keep?: boolean;
}

/** A classic BPF program for SO_ATTACH_REUSEPORT_CBPF: one of the named ones, or raw instructions. */
export type CbpfProgramSpec =
  | { name: 'cpu' }
  | { name: 'payload-modulo'; modulo: number }
  | { instructions: readonly CbpfInstruction[] };

// struct sock_filter opcodes (include/uapi/linux/filter.h, bpf_common.h).
const BPF_LD_W_ABS = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_ALU_MOD_K = 0x94; // BPF_ALU | BPF_MOD | BPF_K
const BPF_RET_A = 0x16; // BPF_RET | BPF_A
const SKF_AD_OFF = -0x1000;
const SKF_AD_CPU = 36;

/**
 * The instructions of a program. `cpu` returns raw_smp_processor_id() of the
 * CPU running the lookup; `payload-modulo: N` returns the first 4 payload
 * bytes (big-endian) mod N. The kernel uses the result as an index into the
 * group's socket array, falling back to the hash when it is out of range.
 */
export function cbpfProgram(spec: CbpfProgramSpec): CbpfInstruction[] {
  if ('instructions' in spec) return spec.instructions.map((i) => ({ ...i }));
  if (spec.name === 'cpu') {
    return [
      { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: SKF_AD_OFF + SKF_AD_CPU },
      { code: BPF_RET_A, jt: 0, jf: 0, k: 0 },
    ];
  }
  if (!Number.isInteger(spec.modulo) || spec.modulo < 1 || spec.modulo > 0xffffffff) {
    throw new RangeError(`payload-modulo needs an integer modulo in 1..4294967295, got ${spec.modulo}`);
  }
  return [
    { code: BPF_LD_W_ABS, jt: 0, jf: 0, k: 0 },
    { code: BPF_ALU_MOD_K, jt: 0, jf: 0, k: spec.modulo },
    { code: BPF_RET_A, jt: 0, jf: 0, k: 0 },
  ];
}

type RawEndpoint = { host: string; port: number };
type RawAccepted = Omit<AcceptedConnection, 'readError'> & { readErrno: number };

/** What native/socket_lifecycle.c exports. */
interface RawLifecycle extends RawSocketOptions {
  lcSocket(family: 4 | 6, type: SocketType): { fd: number } | RawErrno;
  lcBindToDevice(fd: number, device: string): 0 | RawErrno;
  lcBind(fd: number, endpoint: RawEndpoint): { address: string; port: number } | RawErrno;
  lcListen(fd: number, backlog: number): 0 | RawErrno;
  lcShutdown(fd: number): 0 | RawErrno;
  lcConnect(fd: number, endpoint: RawEndpoint): 0 | RawErrno;
  lcFchown(fd: number, uid: number, gid: number): 0 | RawErrno;
  lcAttachCbpf(fd: number, instructions: readonly CbpfInstruction[]): 0 | RawErrno;
  lcDetachBpf(fd: number): 0 | RawErrno;
  lcAccept(fd: number, options: AcceptOptions): RawAccepted | RawErrno;
  lcAcceptQueue(fd: number): { queued: number; backlog: number } | RawErrno;
  getsockname(fd: number): { address: string; port: number; family: 4 | 6 } | RawErrno;
  closeFd(fd: number): number;
}

const RAW_FUNCTIONS = [
  'lcSocket',
  'lcSetOption',
  'lcGetOption',
  'lcBindToDevice',
  'lcBind',
  'lcListen',
  'lcShutdown',
  'lcConnect',
  'lcFchown',
  'lcAttachCbpf',
  'lcDetachBpf',
  'lcAccept',
  'lcAcceptQueue',
  'getsockname',
  'closeFd',
] as const;

/** The addon's exports that carry `names`, or why not: shared with port-sweep.ts. */
export function nativeExports<T>(names: readonly string[]): { exports: T } | { exports: null; reason: string } {
  const loaded = loadNativeHelper();
  if (loaded.helper === null) return { exports: null, reason: `native helper unavailable: ${loaded.reason}` };
  const raw = loaded.helper.exports as Record<string, unknown>;
  const missing = names.filter((name) => typeof raw[name] !== 'function');
  if (missing.length > 0) {
    return { exports: null, reason: `the native helper predates ${missing.join(', ')}: rebuild it (npm rebuild)` };
  }
  return { exports: raw as T };
}

let rawLifecycle: { exports: RawLifecycle } | { exports: null; reason: string } | undefined;

function lifecycle(): RawLifecycle {
  rawLifecycle ??= nativeExports<RawLifecycle>(RAW_FUNCTIONS);
  if (rawLifecycle.exports === null) {
    throw new ReuseportError(`lifecycle sockets need the native helper: ${rawLifecycle.reason}`, {
      code: 'ENATIVE',
    });
  }
  return rawLifecycle.exports;
}

/** Why lifecycle sockets cannot be used here, or null when they can. */
export function socketLifecycleUnavailable(): string | null {
  rawLifecycle ??= nativeExports<RawLifecycle>(RAW_FUNCTIONS);
  return rawLifecycle.exports === null ? rawLifecycle.reason : null;
}

function failure(errno: number, syscall: string, option?: string): LifecycleFailure {
  const error = KernelError.fromErrno(errno, option === undefined ? syscall : `${syscall}(${option})`);
  return option === undefined
    ? { ok: false, outcome: error.code, error }
    : { ok: false, outcome: error.code, error, option };
}

function fromRaw(raw: RawErrno): LifecycleFailure {
  return failure(raw.errno, raw.syscall, raw.option);
}

function settled(result: 0 | RawErrno): LifecycleResult {
  return result === 0 ? { ok: true, outcome: 'ok' } : fromRaw(result);
}

const EBADF = 9;

/**
 * SO_INCOMING_CPU of a socket someone else owns (an accepted net.Socket's fd):
 * the CPU whose softirq last handled its packets; -1 when unreadable.
 */
export function incomingCpuOf(fd: number): number {
  const raw = lifecycle().lcGetOption(fd, 'SO_INCOMING_CPU');
  return isRawErrno(raw) ? -1 : raw.value;
}

/**
 * One socket driven step by step. Created non-blocking, so `accept` never
 * blocks Node. After `close`, every call fails with EBADF without reaching
 * the kernel: the fd number may already belong to someone else.
 */
export class LifecycleSocket {
  readonly family: 4 | 6;
  readonly type: SocketType;
  #fd: number;

  private constructor(fd: number, family: 4 | 6, type: SocketType) {
    this.#fd = fd;
    this.family = family;
    this.type = type;
  }

  /** socket(2). */
  static create(family: 4 | 6, type: SocketType): LifecycleResult<{ socket: LifecycleSocket }> {
    const raw = lifecycle().lcSocket(family, type);
    if (isRawErrno(raw)) return fromRaw(raw);
    return { ok: true, outcome: 'ok', socket: new LifecycleSocket(raw.fd, family, type) };
  }

  /** The fd, or -1 once closed. */
  get fd(): number {
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  #call<T extends object>(syscall: string, run: (fd: number) => LifecycleResult<T>, option?: string) {
    if (this.#fd < 0) return failure(EBADF, syscall, option);
    return run(this.#fd);
  }

  /** setsockopt(2): booleans become 1 / 0; SO_INCOMING_CPU takes a CPU number. */
  setOption(option: LifecycleOption, value: boolean | number): LifecycleResult {
    const number = typeof value === 'boolean' ? (value ? 1 : 0) : value;
    return this.#call('setsockopt', (fd) => settled(lifecycle().lcSetOption(fd, option, number)), option);
  }

  /** getsockopt(2). */
  getOption(option: LifecycleOption): LifecycleResult<{ value: number }> {
    return this.#call(
      'getsockopt',
      (fd) => {
        const raw = lifecycle().lcGetOption(fd, option);
        return isRawErrno(raw) ? fromRaw(raw) : { ok: true, outcome: 'ok', value: raw.value };
      },
      option,
    );
  }

  /** SO_BINDTODEVICE; '' removes the binding. Needs CAP_NET_RAW unless it only narrows (see docs/kernel-notes.md). */
  bindToDevice(device: string): LifecycleResult {
    return this.#call('setsockopt', (fd) => settled(lifecycle().lcBindToDevice(fd, device)), 'SO_BINDTODEVICE');
  }

  /** bind(2); port 0 lets the kernel choose, and `port` reports what it chose. */
  bind(host: string, port: number): LifecycleResult<{ address: string; port: number }> {
    return this.#call('bind', (fd) => {
      const raw = lifecycle().lcBind(fd, { host, port });
      return isRawErrno(raw) ? fromRaw(raw) : { ok: true, outcome: 'ok', address: raw.address, port: raw.port };
    });
  }

  /**
   * getsockname(2): the local address and port now. A shutdown() listener
   * that was bound to port 0 loses its port (tcp_set_state(TCP_CLOSE) puts
   * it back without SOCK_BINDPORT_LOCK), so a later listen() gets a new one.
   */
  localAddress(): LifecycleResult<{ address: string; port: number }> {
    return this.#call('getsockname', (fd) => {
      const raw = lifecycle().getsockname(fd);
      return isRawErrno(raw) ? fromRaw(raw) : { ok: true, outcome: 'ok', address: raw.address, port: raw.port };
    });
  }

  /** listen(2). On a bound SO_REUSEPORT socket this is when a TCP socket joins its group. */
  listen(backlog: number = DEFAULT_LISTEN_BACKLOG): LifecycleResult {
    return this.#call('listen', (fd) => settled(lifecycle().lcListen(fd, backlog)));
  }

  /** shutdown(SHUT_RDWR). A TCP listener stops listening and leaves its group; `listen` brings it back. */
  shutdown(): LifecycleResult {
    return this.#call('shutdown', (fd) => settled(lifecycle().lcShutdown(fd)));
  }

  /** connect(2), for UDP: the socket becomes a connected member of its group. */
  connect(host: string, port: number): LifecycleResult {
    return this.#call('connect', (fd) => settled(lifecycle().lcConnect(fd, { host, port })));
  }

  /** fchown(2) on the socket's inode; sockfs_setattr() also updates sk->sk_uid. */
  chown(uid: number, gid: number = uid): LifecycleResult {
    return this.#call('fchown', (fd) => settled(lifecycle().lcFchown(fd, uid, gid)));
  }

  /** SO_ATTACH_REUSEPORT_CBPF: the program steers the whole group, whichever member attached it. */
  attachCbpf(program: CbpfProgramSpec): LifecycleResult {
    const instructions = cbpfProgram(program);
    return this.#call(
      'setsockopt',
      (fd) => settled(lifecycle().lcAttachCbpf(fd, instructions)),
      'SO_ATTACH_REUSEPORT_CBPF',
    );
  }

  /** SO_DETACH_REUSEPORT_BPF: the group goes back to the hash. */
  detachBpf(): LifecycleResult {
    return this.#call('setsockopt', (fd) => settled(lifecycle().lcDetachBpf(fd)), 'SO_DETACH_REUSEPORT_BPF');
  }

  /** accept4(2) once. `outcome` is 'EAGAIN' when nothing is queued. */
  accept(options: AcceptOptions = {}): LifecycleResult<{ connection: AcceptedConnection }> {
    return this.#call('accept4', (fd) => {
      const raw = lifecycle().lcAccept(fd, options);
      if (isRawErrno(raw)) return fromRaw(raw);
      const { readErrno, ...rest } = raw;
      const connection: AcceptedConnection = { ...rest, readError: readErrno === 0 ? null : errnoName(readErrno) };
      return { ok: true, outcome: 'ok', connection };
    });
  }

  /**
   * Accepts everything queued now ("resume" after a pause; a paused worker
   * simply does not call accept). Stops at the first failure: EAGAIN is the
   * normal end, anything else is returned as `stoppedBy`.
   */
  acceptAll(options: AcceptOptions = {}): { connections: AcceptedConnection[]; stoppedBy: LifecycleFailure } {
    const connections: AcceptedConnection[] = [];
    for (;;) {
      const result = this.accept(options);
      if (!result.ok) return { connections, stoppedBy: result };
      connections.push(result.connection);
    }
  }

  /** The listener's accept queue: connections waiting (sk_ack_backlog) and its limit (sk_max_ack_backlog). */
  acceptQueue(): LifecycleResult<{ queued: number; backlog: number }> {
    return this.#call(
      'getsockopt',
      (fd) => {
        const raw = lifecycle().lcAcceptQueue(fd);
        return isRawErrno(raw) ? fromRaw(raw) : { ok: true, outcome: 'ok', queued: raw.queued, backlog: raw.backlog };
      },
      'TCP_INFO',
    );
  }

  /**
   * Hands the fd to another owner (net.Server#listen({ fd }), dgram bind({ fd }))
   * after the lifecycle steps; this object makes no more syscalls. Returns the fd, -1 if closed.
   */
  release(): number {
    const fd = this.#fd;
    this.#fd = -1;
    return fd;
  }

  /** close(2). Closing twice is EBADF, reported, not thrown. */
  close(): LifecycleResult {
    return this.#call('close', (fd) => {
      this.#fd = -1;
      const errno = lifecycle().closeFd(fd);
      return errno === 0 ? { ok: true, outcome: 'ok' } : failure(errno, 'close');
    });
  }
}
