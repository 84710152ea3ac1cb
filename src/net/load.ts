import dgram from 'node:dgram';
import net from 'node:net';
import { ReuseportError } from '../errors.js';
import { familyOf, type Protocol } from './address.js';
import { parseGreeting, type WorkerIdentity, workerKey } from './greeting.js';
import { loadNativeHelper } from './native.js';

export interface LoadOptions {
  host: string;
  port: number;
  protocol: Protocol;
  connections: number;
  concurrency: number;
  /** A fixed client source port; needs concurrency 1. */
  sourcePort?: number;
  /** How long a connection (or datagram) may wait for its greeting. */
  replyTimeoutMs?: number;
  /** The whole run stops by itself after this long. */
  deadlineMs?: number;
}

export interface WorkerTally extends WorkerIdentity {
  count: number;
}

export interface LoadResult {
  protocol: Protocol;
  target: { host: string; port: number };
  connections: number;
  concurrency: number;
  /** Connections (or datagrams) that were tried; less than `connections` only when the deadline or an abort cut the run short. */
  attempted: number;
  /** Connected and closed cleanly: attributed + unattributed. */
  succeeded: number;
  /** Succeeded, and the greeting named the worker. */
  attributed: number;
  /** Succeeded, but no greeting came: not a reuseport worker, or it said nothing in time. */
  unattributed: number;
  failed: number;
  failures: { code: string; count: number }[];
  perWorker: WorkerTally[];
  elapsedMs: number;
  ratePerSec: number;
  stoppedEarly: 'deadline' | 'aborted' | null;
  /** Something the user can do about the failures, e.g. for EMFILE. */
  hints: string[];
}

export interface LoadHooks {
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

const DEFAULT_REPLY_TIMEOUT_MS = 2000;
const DEFAULT_DEADLINE_MS = 120_000;
const PROGRESS_EVERY = 100;
const FD_HEADROOM = 64;

type Outcome =
  | { kind: 'attributed'; who: WorkerIdentity }
  | { kind: 'unattributed' }
  | { kind: 'failed'; code: string };

/** Opens `connections` connections to host:port, at most `concurrency` at a time, and tallies who answered. */
export function runLoad(options: LoadOptions, hooks: LoadHooks = {}): Promise<LoadResult> {
  ensureFileLimit(options.concurrency);
  const tallies = new Map<string, WorkerTally>();
  const failures = new Map<string, number>();
  let attributed = 0;
  let unattributed = 0;
  let failed = 0;
  let started = 0;
  let done = 0;
  let stoppedEarly: LoadResult['stoppedEarly'] = null;
  const inFlight = new Set<{ abort(): void }>();
  const startedAt = process.hrtime.bigint();
  const attempt = options.protocol === 'tcp' ? tcpAttempt : udpAttempt;

  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(deadline);
      hooks.signal?.removeEventListener('abort', onAbort);
      const elapsedMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
      const hints: string[] = [];
      if (failures.has('EMFILE')) {
        hints.push(
          `ran out of file descriptors (EMFILE): lower --concurrency (now ${options.concurrency}) or raise the limit with \`ulimit -n\``,
        );
      }
      if (failures.has('ECONNREFUSED')) {
        hints.push(
          `nothing listens on ${options.host}:${options.port} (ECONNREFUSED): start \`reuseport serve\` first`,
        );
      }
      if (failures.has('EADDRNOTAVAIL')) {
        hints.push(
          'no free local port or address (EADDRNOTAVAIL): fewer connections, or widen net.ipv4.ip_local_port_range',
        );
      }
      resolve({
        protocol: options.protocol,
        target: { host: options.host, port: options.port },
        connections: options.connections,
        concurrency: options.concurrency,
        attempted: started,
        succeeded: attributed + unattributed,
        attributed,
        unattributed,
        failed,
        failures: [...failures].map(([code, count]) => ({ code, count })).sort((a, b) => b.count - a.count),
        perWorker: [...tallies.values()].sort((a, b) => a.workerId - b.workerId || a.pid - b.pid),
        elapsedMs: Math.round(elapsedMs * 10) / 10,
        ratePerSec: elapsedMs > 0 ? Math.round(((attributed + unattributed + failed) / elapsedMs) * 1000) : 0,
        stoppedEarly,
        hints,
      });
    };
    const record = (outcome: Outcome) => {
      if (outcome.kind === 'attributed') {
        attributed++;
        const key = workerKey(outcome.who);
        const tally = tallies.get(key);
        if (tally) tally.count++;
        else tallies.set(key, { ...outcome.who, count: 1 });
      } else if (outcome.kind === 'unattributed') {
        unattributed++;
      } else {
        failed++;
        failures.set(outcome.code, (failures.get(outcome.code) ?? 0) + 1);
      }
      done++;
      if (hooks.onProgress && (done % PROGRESS_EVERY === 0 || done === started))
        hooks.onProgress(done, options.connections);
      if (stoppedEarly === null && started < options.connections) launch();
      else if (done === started) finish();
    };
    const launch = () => {
      started++;
      const handle = attempt(options, (outcome) => {
        inFlight.delete(handle);
        record(outcome);
      });
      inFlight.add(handle);
    };
    const stopEarly = (why: 'deadline' | 'aborted') => {
      if (stoppedEarly !== null) return;
      stoppedEarly = why;
      if (inFlight.size === 0) finish();
      for (const handle of [...inFlight]) handle.abort();
    };
    const deadline = setTimeout(() => stopEarly('deadline'), options.deadlineMs ?? DEFAULT_DEADLINE_MS);
    const onAbort = () => stopEarly('aborted');
    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    if (hooks.signal?.aborted) return stopEarly('aborted');
    const first = Math.min(options.concurrency, options.connections);
    for (let i = 0; i < first; i++) launch();
  });
}

function tcpAttempt(options: LoadOptions, settle: (outcome: Outcome) => void): { abort(): void } {
  const socket = net.connect({
    host: options.host,
    port: options.port,
    ...(options.sourcePort !== undefined ? { localPort: options.sourcePort } : {}),
  });
  let reply: Buffer | undefined;
  let errorCode: string | undefined;
  socket.setTimeout(options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS, () => {
    // Connected but silent (e.g. `nc -l`): unattributed. Never connected: a failure.
    if (socket.connecting) errorCode = 'ETIMEDOUT';
    socket.destroy();
  });
  socket.on('data', (chunk: Buffer) => {
    reply = reply === undefined ? chunk : reply.length < 512 ? Buffer.concat([reply, chunk]) : reply;
  });
  // The server closes first; closing on its FIN (instead of a half-close
  // handshake) keeps TIME_WAIT on the server side and off our source ports.
  socket.on('end', () => socket.destroy());
  socket.on('error', (err: NodeJS.ErrnoException) => {
    errorCode ??= err.code ?? 'EUNKNOWN';
  });
  socket.once('close', () => {
    const who = reply === undefined ? null : parseGreeting(reply.toString('latin1'));
    if (who) settle({ kind: 'attributed', who });
    else if (errorCode === undefined) settle({ kind: 'unattributed' });
    else settle({ kind: 'failed', code: errorCode });
  });
  return {
    abort: () => {
      errorCode ??= 'EABORTED';
      socket.destroy();
    },
  };
}

const PING = Buffer.from('reuseport ping\n');

function udpAttempt(options: LoadOptions, settle: (outcome: Outcome) => void): { abort(): void } {
  // A fresh socket per datagram gives each one a fresh source port, so the
  // kernel's 4-tuple hash spreads them as it would spread new connections.
  const socket = dgram.createSocket(familyOf(options.host) === 6 ? 'udp6' : 'udp4');
  let settled = false;
  const done = (outcome: Outcome) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    socket.close();
    settle(outcome);
  };
  const timer = setTimeout(
    () => done({ kind: 'failed', code: 'ETIMEDOUT' }),
    options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS,
  );
  socket.on('error', (err: NodeJS.ErrnoException) => done({ kind: 'failed', code: err.code ?? 'EUNKNOWN' }));
  socket.on('message', (message) => {
    const who = parseGreeting(message.toString('latin1'));
    done(who ? { kind: 'attributed', who } : { kind: 'unattributed' });
  });
  const send = () =>
    socket.connect(options.port, options.host, () => {
      socket.send(PING, (err) => {
        if (err) done({ kind: 'failed', code: (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN' });
      });
    });
  if (options.sourcePort !== undefined) socket.bind(options.sourcePort, send);
  else send();
  return { abort: () => done({ kind: 'failed', code: 'EABORTED' }) };
}

/**
 * Many connections in flight need as many descriptors. Raise the soft limit to
 * the hard one where the native helper can; otherwise say what to change.
 */
function ensureFileLimit(concurrency: number): void {
  const helper = loadNativeHelper().helper;
  if (!helper) return;
  let limit = helper.getOpenFileLimit();
  if (concurrency + FD_HEADROOM <= limit.soft) return;
  if (limit.soft < limit.hard) limit = helper.raiseOpenFileLimit();
  if (concurrency + FD_HEADROOM > limit.soft) {
    throw new ReuseportError(
      `--concurrency ${concurrency} needs about ${concurrency + FD_HEADROOM} open files, but the limit is ${limit.soft} (hard limit ${limit.hard}); lower --concurrency or raise the limit with \`ulimit -n\``,
      { code: 'EMFILE', exitCode: 2 },
    );
  }
}
