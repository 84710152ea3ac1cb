import dgram from 'node:dgram';
import net from 'node:net';
import { errnoName, ReuseportError } from '../errors.js';
import { familyOf, type Protocol } from './address.js';
import { parseGreeting, type WorkerIdentity, workerKey } from './greeting.js';
import {
  type EngineChoice,
  engineFromEnv,
  LOAD_CUT_OFF,
  LOAD_PROGRESS_ABORT,
  LOAD_PROGRESS_DONE,
  loadNativeHelper,
  type NativeEngines,
  type NativeLoadReport,
} from './native.js';

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
  /**
   * `native`: the addon's load engine (TCP only; an error if the addon cannot
   * provide it); `node`: one net.Socket per connection; `auto` (default):
   * native where possible. Unset, REUSEPORT_ENGINE decides.
   */
  engine?: EngineChoice;
}

const DEFAULT_REPLY_TIMEOUT_MS = 2000;
const DEFAULT_DEADLINE_MS = 120_000;
const PROGRESS_EVERY = 100;
const NATIVE_PROGRESS_MS = 100;
const FD_HEADROOM = 64;
/** The failure code of a connection cut off by the deadline or an abort. */
const ABORTED_CODE = 'EABORTED';

type Outcome =
  | { kind: 'attributed'; who: WorkerIdentity }
  | { kind: 'unattributed' }
  | { kind: 'failed'; code: string };

/** Running totals, shared by both engines; `summarize` turns them into a LoadResult. */
class Tally {
  readonly perWorker = new Map<string, WorkerTally>();
  readonly failures = new Map<string, number>();
  attributed = 0;
  unattributed = 0;
  failed = 0;

  add(outcome: Outcome, count = 1): void {
    if (outcome.kind === 'attributed') {
      this.attributed += count;
      const key = workerKey(outcome.who);
      const tally = this.perWorker.get(key);
      if (tally) tally.count += count;
      else this.perWorker.set(key, { ...outcome.who, count });
    } else if (outcome.kind === 'unattributed') {
      this.unattributed += count;
    } else {
      this.failed += count;
      this.failures.set(outcome.code, (this.failures.get(outcome.code) ?? 0) + count);
    }
  }

  summarize(
    options: LoadOptions,
    run: { attempted: number; elapsedMs: number; stoppedEarly: LoadResult['stoppedEarly'] },
  ): LoadResult {
    const { attributed, unattributed, failed, failures } = this;
    const { elapsedMs } = run;
    const hints: string[] = [];
    if (failures.has('EMFILE')) {
      hints.push(
        `ran out of file descriptors (EMFILE): lower --concurrency (now ${options.concurrency}) or raise the limit with \`ulimit -n\``,
      );
    }
    if (failures.has('ECONNREFUSED')) {
      hints.push(`nothing listens on ${options.host}:${options.port} (ECONNREFUSED): start \`reuseport serve\` first`);
    }
    if (failures.has('EADDRNOTAVAIL')) {
      hints.push(
        'no free local port or address (EADDRNOTAVAIL): fewer connections, or widen net.ipv4.ip_local_port_range',
      );
    }
    return {
      protocol: options.protocol,
      target: { host: options.host, port: options.port },
      connections: options.connections,
      concurrency: options.concurrency,
      attempted: run.attempted,
      succeeded: attributed + unattributed,
      attributed,
      unattributed,
      failed,
      failures: [...failures].map(([code, count]) => ({ code, count })).sort((a, b) => b.count - a.count),
      perWorker: [...this.perWorker.values()].sort((a, b) => a.workerId - b.workerId || a.pid - b.pid),
      elapsedMs: Math.round(elapsedMs * 10) / 10,
      ratePerSec: elapsedMs > 0 ? Math.round(((attributed + unattributed + failed) / elapsedMs) * 1000) : 0,
      stoppedEarly: run.stoppedEarly,
      hints,
    };
  }
}

/**
 * The addon's load engine when it should run this load, else null (the JS
 * engine). Throws when `native` was asked for a TCP load and is unavailable.
 */
export function nativeLoadEngine(protocol: Protocol, engine?: EngineChoice): NativeEngines | null {
  const choice = engine ?? engineFromEnv() ?? 'auto';
  if (choice === 'node' || protocol !== 'tcp') return null;
  const loaded = loadNativeHelper();
  if (loaded.helper?.engines) return loaded.helper.engines;
  if (choice === 'auto') return null;
  throw new ReuseportError(
    `the native load engine was asked for, but ${
      loaded.helper ? 'this build of the addon has none: rebuild it with `npm rebuild`' : loaded.reason
    }`,
    { code: 'ENOENGINE' },
  );
}

/** Opens `connections` connections to host:port, at most `concurrency` at a time, and tallies who answered. */
export function runLoad(options: LoadOptions, hooks: LoadHooks = {}): Promise<LoadResult> {
  ensureFileLimit(options.concurrency);
  const native = nativeLoadEngine(options.protocol, hooks.engine);
  if (native) return runNativeLoad(native, options, hooks);
  const tally = new Tally();
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
      resolve(tally.summarize(options, { attempted: started, elapsedMs, stoppedEarly }));
    };
    const record = (outcome: Outcome) => {
      tally.add(outcome);
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

/**
 * The same load through the addon: one C loop off the event loop, so no
 * net.Socket per connection. Its aggregated replies become the same outcomes
 * the JS engine records one by one.
 */
async function runNativeLoad(engines: NativeEngines, options: LoadOptions, hooks: LoadHooks): Promise<LoadResult> {
  const progress = new Int32Array(new SharedArrayBuffer(2 * Int32Array.BYTES_PER_ELEMENT));
  const onAbort = () => Atomics.store(progress, LOAD_PROGRESS_ABORT, 1);
  hooks.signal?.addEventListener('abort', onAbort, { once: true });
  if (hooks.signal?.aborted) onAbort();
  let reported = 0;
  const report = () => {
    const done = Atomics.load(progress, LOAD_PROGRESS_DONE);
    if (done !== reported) {
      reported = done;
      hooks.onProgress?.(done, options.connections);
    }
  };
  const ticker = hooks.onProgress ? setInterval(report, NATIVE_PROGRESS_MS) : undefined;
  ticker?.unref();
  let result: NativeLoadReport;
  try {
    result = await engines.loadRun(
      {
        family: familyOf(options.host),
        host: options.host,
        port: options.port,
        connections: options.connections,
        concurrency: options.concurrency,
        replyTimeoutMs: options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS,
        deadlineMs: options.deadlineMs ?? DEFAULT_DEADLINE_MS,
        ...(options.sourcePort !== undefined ? { sourcePort: options.sourcePort } : {}),
      },
      progress,
    );
  } finally {
    clearInterval(ticker);
    hooks.signal?.removeEventListener('abort', onAbort);
  }
  report();
  const tally = new Tally();
  const codeOf = (errno: number) => (errno === LOAD_CUT_OFF ? ABORTED_CODE : errnoName(errno));
  for (const reply of result.replies) {
    // As the JS engine decides: a greeting is attributed whatever ended the
    // connection; otherwise a clean end is unattributed and an error a failure.
    const who = parseGreeting(reply.text);
    if (who) tally.add({ kind: 'attributed', who }, reply.count);
    else if (reply.errno === 0) tally.add({ kind: 'unattributed' }, reply.count);
    else tally.add({ kind: 'failed', code: codeOf(reply.errno) }, reply.count);
  }
  tally.add({ kind: 'unattributed' }, result.noReply);
  for (const failure of result.failures) tally.add({ kind: 'failed', code: codeOf(failure.errno) }, failure.count);
  return tally.summarize(options, {
    attempted: result.attempted,
    elapsedMs: result.elapsedNs / 1e6,
    stoppedEarly: result.stoppedEarly,
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
      errorCode ??= ABORTED_CODE;
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
  return { abort: () => done({ kind: 'failed', code: ABORTED_CODE }) };
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
