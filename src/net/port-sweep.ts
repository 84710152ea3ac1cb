// Source-port sweep (native/port_sweep.c): connect from each of `count`
// fixed source ports, `repeat` times each, concurrently but never two at once
// on one port, and keep which instance answered each attempt.
import { errnoName, KernelError, ReuseportError, UsageError } from '../errors.js';
import { familyOf, isLoopback, type Protocol } from './address.js';
import { isRawErrno, type RawErrno } from './native.js';
import { nativeExports } from './socket-lifecycle.js';

export interface SourcePortRange {
  from: number;
  count: number;
  repeat: number;
}

export interface SweepOptions {
  protocol: Protocol;
  /** A loopback address (127.0.0.0/8 or ::1): the sweep never leaves this machine. */
  host: string;
  port: number;
  sourcePorts: SourcePortRange;
  /** Attempts in flight at once (different ports); default min(count, 256). */
  concurrency?: number;
  /** Per attempt: UDP waits this long for a reply, TCP for the server to close. Default 2000. */
  replyTimeoutMs?: number;
  /** The whole sweep stops after this long; attempts not run are reported as such. Default 10000. */
  deadlineMs?: number;
  /** UDP only: the datagram's bytes (after the index, with indexPayload). Default 'sweep\n'. */
  payload?: Uint8Array;
  /** UDP only: start each datagram with its attempt index, 4 bytes big-endian (for `payload-modulo`). */
  indexPayload?: boolean;
  /** Pin the sweep's thread to this CPU for the sweep (sched_setaffinity), e.g. for SO_INCOMING_CPU. */
  cpu?: number;
}

/**
 * How one attempt ended: 'reply' (the first line is in `reply`), an errno
 * name (ECONNREFUSED, ECONNRESET, ETIMEDOUT for a lost datagram or an
 * unanswered SYN, ...), 'silent' (TCP connected, nothing before the timeout),
 * 'cut-off' (in flight at the deadline) or 'not-run' (the deadline came first).
 */
export type SweepOutcome = 'reply' | 'silent' | 'cut-off' | 'not-run' | string;

export interface SweepAttempt {
  sourcePort: number;
  /** 0-based repetition; the attempt's index is portIndex * repeat + round. */
  round: number;
  outcome: SweepOutcome;
  /** The first line received, without its newline ('' when none). */
  reply: string;
}

export interface SweepResult {
  attempts: SweepAttempt[];
  elapsedMs: number;
  deadlineHit: boolean;
}

const SWEEP_CUT_OFF = -1;
const SWEEP_SILENT = -2;
const SWEEP_NOT_RUN = -3;

interface RawSweep {
  portSweep(
    options: object,
  ): Promise<{ errnos: Int32Array; replies: string[]; elapsedNs: number; deadlineHit: boolean } | RawErrno>;
}

function outcomeOf(errno: number): SweepOutcome {
  if (errno === 0) return 'reply';
  if (errno === SWEEP_SILENT) return 'silent';
  if (errno === SWEEP_CUT_OFF) return 'cut-off';
  if (errno === SWEEP_NOT_RUN) return 'not-run';
  return errnoName(errno);
}

/** Runs a sweep. Rejects with UsageError for a non-loopback host, KernelError when it cannot start at all. */
export async function sweepSourcePorts(options: SweepOptions): Promise<SweepResult> {
  if (!isLoopback(options.host)) {
    throw new UsageError(`a source-port sweep only targets loopback (127.0.0.0/8 or ::1), got ${options.host}`);
  }
  const loaded = nativeExports<RawSweep>(['portSweep']);
  if (loaded.exports === null)
    throw new ReuseportError(`source-port sweeps need ${loaded.reason}`, { code: 'ENATIVE' });
  const { from, count, repeat } = options.sourcePorts;
  const udp = options.protocol === 'udp';
  const raw = await loaded.exports.portSweep({
    family: familyOf(options.host),
    host: options.host,
    port: options.port,
    protocol: options.protocol,
    from,
    count,
    repeat,
    concurrency: options.concurrency ?? Math.min(count, 256),
    replyTimeoutMs: options.replyTimeoutMs ?? 2000,
    deadlineMs: options.deadlineMs ?? 10_000,
    ...(udp ? { payload: options.payload ?? Buffer.from('sweep\n'), indexPayload: options.indexPayload ?? false } : {}),
    ...(options.cpu !== undefined ? { cpu: options.cpu } : {}),
  });
  if (isRawErrno(raw)) throw KernelError.fromErrno(raw.errno, raw.syscall);
  const attempts: SweepAttempt[] = [];
  for (let i = 0; i < count; i++) {
    for (let round = 0; round < repeat; round++) {
      const k = i * repeat + round;
      attempts.push({ sourcePort: from + i, round, outcome: outcomeOf(raw.errnos[k]!), reply: raw.replies[k]! });
    }
  }
  return { attempts, elapsedMs: raw.elapsedNs / 1e6, deadlineHit: raw.deadlineHit };
}

/**
 * Source port -> the instances that answered it, in round order, as named by
 * `identify` (null for an attempt without a recognisable reply).
 */
export function answersByPort(
  result: SweepResult,
  identify: (attempt: SweepAttempt) => string | null,
): Map<number, (string | null)[]> {
  const out = new Map<number, (string | null)[]>();
  for (const attempt of result.attempts) {
    const list = out.get(attempt.sourcePort) ?? [];
    list.push(attempt.outcome === 'reply' ? identify(attempt) : null);
    out.set(attempt.sourcePort, list);
  }
  return out;
}
