import dgram from 'node:dgram';
import net from 'node:net';
import { errnoName, formatHostPort, ReuseportError } from '../errors.js';
import { familyOf, type Protocol } from './address.js';
import { type BalanceVerdict, balanceVerdict } from './balance.js';
import { decideEngine, type EngineName, requestedEngine } from './engine.js';
import { parseGreeting, type WorkerIdentity, workerKey } from './greeting.js';
import {
  engineAvailability,
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
  /** How many workers serve the target, when known: the balance verdict then counts those that got nothing. */
  workers?: number;
  /** Also return every (source port, worker) pair in `tuples`. */
  recordTuples?: boolean;
}

export interface WorkerTally extends WorkerIdentity {
  /** Connections (datagrams) attributed to this worker. */
  count: number;
  /** How many distinct client source ports those came from. */
  distinctSourcePorts: number;
}

/**
 * What became of every connection (datagram). Each attempted one is in exactly
 * one of attributed, unrecognized, silent, failed, inFlight:
 * attempted = attributed + unrecognized + silent + failed + inFlight, and
 * connections = attempted + notStarted.
 */
export interface LoadResult {
  protocol: Protocol;
  target: { host: string; port: number };
  connections: number;
  concurrency: number;
  /** Connections (datagrams) that were started. */
  attempted: number;
  /** Never started: the deadline or an abort came first. */
  notStarted: number;
  /** A greeting was read: it names the worker. */
  attributed: number;
  /**
   * The peer answered, but not with a greeting: it closed without a word, or
   * sent something else (any other server, `nc -l`). Not a reuseport worker.
   */
  unrecognized: number;
  /**
   * Connected, but not a byte before --timeout (e.g. queued at a frozen
   * worker); for UDP, sent but no reply came (lost).
   */
  silent: number;
  /** Ended by an error before a greeting; by errno in `failures`. */
  failed: number;
  failures: { code: string; count: number }[];
  /** Still open when the deadline or an abort cut the run: neither outcome is known. */
  inFlight: number;
  perWorker: WorkerTally[];
  /** Distinct client source ports over all attributed connections. */
  distinctSourcePorts: number;
  /** Every (source port, worker) pair seen, by port; only with `recordTuples`. */
  tuples?: { sourcePort: number; workerKey: string }[];
  /** How evenly the attributed connections spread; null when none was attributed. */
  balance: BalanceVerdict | null;
  elapsedMs: number;
  /** Settled connections (all but inFlight) per second. */
  ratePerSec: number;
  stoppedEarly: 'deadline' | 'aborted' | null;
  /** Something the user can do about failures or silence, e.g. for EMFILE. */
  hints: string[];
}

export interface LoadHooks {
  onProgress?: (done: number, total: number) => void;
  signal?: AbortSignal;
  /** The engine decideEngine chose; absent, runLoad asks decideEngine itself (REUSEPORT_ENGINE, else auto). */
  engine?: EngineName;
}

const DEFAULT_REPLY_TIMEOUT_MS = 2000;
const DEFAULT_DEADLINE_MS = 120_000;
const PROGRESS_EVERY = 100;
const NATIVE_PROGRESS_MS = 100;
const FD_HEADROOM = 64;

/**
 * How a connection ended. `clean`: the peer closed (or went quiet after
 * some bytes); `silent`: connected, no byte in time; `cut-off`: the run
 * stopped first; anything else is the errno name that ended it. A port
 * sweep's outcomes (port-sweep.ts) use the same words.
 */
export type Ending = 'clean' | 'silent' | 'cut-off' | string;

type Outcome =
  | { kind: 'attributed'; who: WorkerIdentity }
  | { kind: 'unrecognized' | 'silent' | 'inFlight' }
  | { kind: 'failed'; code: string };

/**
 * The one rule both engines follow: a greeting wins whatever ended the
 * connection; otherwise the ending decides.
 */
function classify(reply: string | null, ending: Ending): Outcome {
  const who = reply === null ? null : parseGreeting(reply);
  if (who) return { kind: 'attributed', who };
  if (ending === 'cut-off') return { kind: 'inFlight' };
  if (ending === 'silent') return { kind: 'silent' };
  if (ending === 'clean') return { kind: 'unrecognized' };
  return { kind: 'failed', code: ending };
}

/** How a run went, beyond its tally, for `LoadTally.summarize`. */
export interface LoadRun {
  attempted: number;
  elapsedMs: number;
  stoppedEarly: LoadResult['stoppedEarly'];
  hints: string[];
  /** What the balance verdict counts; absent: distinct source ports when ports repeated, else connections. */
  basis?: BalanceVerdict['basis'];
}

/**
 * Running totals, and the one way they become a LoadResult: both load engines
 * and the scenario port sweep (steering-run.ts) build theirs here.
 */
export class LoadTally {
  private readonly perWorker = new Map<string, WorkerIdentity & { count: number; ports: Set<number> }>();
  readonly failures = new Map<string, number>();
  attributed = 0;
  unrecognized = 0;
  silent = 0;
  inFlight = 0;
  failed = 0;

  private worker(who: WorkerIdentity) {
    const key = workerKey(who);
    let tally = this.perWorker.get(key);
    if (!tally) {
      tally = { ...who, count: 0, ports: new Set() };
      this.perWorker.set(key, tally);
    }
    return tally;
  }

  add(outcome: Outcome, count = 1): void {
    switch (outcome.kind) {
      case 'attributed':
        this.attributed += count;
        this.worker(outcome.who).count += count;
        break;
      case 'failed':
        this.failed += count;
        this.failures.set(outcome.code, (this.failures.get(outcome.code) ?? 0) + count);
        break;
      default:
        this[outcome.kind] += count;
    }
  }

  /** The client source port one connection to `who` came from (0: unknown). */
  addSourcePort(who: WorkerIdentity, port: number): void {
    if (port > 0) this.worker(who).ports.add(port);
  }

  /** One connection (datagram) that got `reply` (null: none) and ended so, from `sourcePort` (0: unknown). */
  record(reply: string | null, ending: Ending, sourcePort = 0): void {
    const outcome = classify(reply, ending);
    this.add(outcome);
    if (outcome.kind === 'attributed') this.addSourcePort(outcome.who, sourcePort);
  }

  summarize(options: LoadOptions, run: LoadRun): LoadResult {
    const { attributed, unrecognized, silent, inFlight, failed, failures } = this;
    const { elapsedMs } = run;
    const workers = [...this.perWorker.values()].sort((a, b) => a.workerId - b.workerId || a.pid - b.pid);
    const perWorker = workers.map(({ ports, ...who }) => ({ ...who, distinctSourcePorts: ports.size }));
    const allPorts = new Set<number>();
    for (const w of workers) for (const port of w.ports) allPorts.add(port);
    const portsRepeated = perWorker.some((w) => w.distinctSourcePorts < w.count);
    const basis = run.basis ?? (portsRepeated ? 'distinctSourcePorts' : 'connections');
    const settled = attributed + unrecognized + silent + failed;
    return {
      protocol: options.protocol,
      target: { host: options.host, port: options.port },
      connections: options.connections,
      concurrency: options.concurrency,
      attempted: run.attempted,
      notStarted: options.connections - run.attempted,
      attributed,
      unrecognized,
      silent,
      failed,
      failures: [...failures].map(([code, count]) => ({ code, count })).sort((a, b) => b.count - a.count),
      inFlight,
      perWorker,
      distinctSourcePorts: allPorts.size,
      ...(options.recordTuples
        ? {
            tuples: workers
              .flatMap((w) => [...w.ports].map((sourcePort) => ({ sourcePort, workerKey: workerKey(w) })))
              .sort((a, b) => a.sourcePort - b.sourcePort || a.workerKey.localeCompare(b.workerKey)),
          }
        : {}),
      balance:
        attributed === 0
          ? null
          : balanceVerdict(
              perWorker.map((w) => (basis === 'connections' ? w.count : w.distinctSourcePorts)),
              basis,
              options.workers,
            ),
      elapsedMs: Math.round(elapsedMs * 10) / 10,
      ratePerSec: elapsedMs > 0 ? Math.round((settled / elapsedMs) * 1000) : 0,
      stoppedEarly: run.stoppedEarly,
      hints: run.hints,
    };
  }
}

/** What the user can do about what went wrong; one sentence each. */
function hintsFor(options: LoadOptions, failures: ReadonlyMap<string, number>, silent: number): string[] {
  const hints: string[] = [];
  const target = formatHostPort(options.host, options.port);
  const timeout = options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS;
  if (failures.has('EMFILE')) {
    hints.push(
      `ran out of file descriptors (EMFILE): lower --concurrency (now ${options.concurrency}) or raise the limit with \`ulimit -n\``,
    );
  }
  if (failures.has('ECONNREFUSED')) {
    hints.push(`nothing listens on ${target} (ECONNREFUSED): start \`reuseport serve\` first`);
  }
  if (failures.has('ETIMEDOUT')) {
    hints.push(
      `no answer to the connection request within ${timeout} ms (ETIMEDOUT): the listen queues may be full (a frozen or overloaded worker), or packets to ${target} are dropped; check \`reuseport serve\` and raise --timeout`,
    );
  }
  if (failures.has('ENETUNREACH')) {
    hints.push(
      `no route to ${options.host} (ENETUNREACH): in a fresh network namespace, bring loopback up first (\`ip link set lo up\`)`,
    );
  }
  if (failures.has('EADDRNOTAVAIL')) {
    hints.push(
      'no free local port or address (EADDRNOTAVAIL): fewer connections, or widen net.ipv4.ip_local_port_range',
    );
  }
  if (silent > 0) {
    hints.push(
      options.protocol === 'tcp'
        ? `${silent} connected but got no greeting within ${timeout} ms: a worker may be frozen (SIGSTOP) or too busy to accept; raise --timeout to wait longer`
        : `${silent} datagrams got no reply within ${timeout} ms (lost, or a worker is frozen); raise --timeout to wait longer`,
    );
  }
  return hints;
}

/** The engine to run this load: the caller's decision, else decideEngine's. */
function loadEngine(options: LoadOptions, hooks: LoadHooks): NativeEngines | null {
  const engine =
    hooks.engine ?? decideEngine({ requested: requestedEngine(), protocol: options.protocol, ...engineAvailability() });
  if (engine === 'builtin') return null;
  const engines = loadNativeHelper().helper?.engines;
  if (!engines) {
    throw new ReuseportError(`the native load engine was chosen, but it cannot run this ${options.protocol} load`, {
      code: 'ENOENGINE',
    });
  }
  return engines;
}

/** Opens `connections` connections to host:port, at most `concurrency` at a time, and tallies what became of each. */
export function runLoad(options: LoadOptions, hooks: LoadHooks = {}): Promise<LoadResult> {
  const native = loadEngine(options, hooks);
  ensureFileLimit(options.concurrency);
  if (native) return runNativeLoad(native, options, hooks);
  const tally = new LoadTally();
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
      resolve(
        tally.summarize(options, {
          attempted: started,
          elapsedMs,
          stoppedEarly,
          hints: hintsFor(options, tally.failures, tally.silent),
        }),
      );
    };
    const record = (reply: string | null, ending: Ending, sourcePort: number) => {
      tally.record(reply, ending, sourcePort);
      done++;
      if (hooks.onProgress && (done % PROGRESS_EVERY === 0 || done === started))
        hooks.onProgress(done, options.connections);
      if (stoppedEarly === null && started < options.connections) launch();
      else if (done === started) finish();
    };
    const launch = () => {
      started++;
      const handle = attempt(options, (reply, ending, sourcePort) => {
        inFlight.delete(handle);
        record(reply, ending, sourcePort);
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
 * net.Socket per connection. Its aggregated replies go through the same
 * `classify` as the JS engine's connections, one by one.
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
        protocol: options.protocol,
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
  const tally = new LoadTally();
  const endingOf = (errno: number): Ending =>
    errno === 0 ? 'clean' : errno === LOAD_CUT_OFF ? 'cut-off' : errnoName(errno);
  const greetings = new Map<number, WorkerIdentity>();
  for (const reply of result.replies) {
    const outcome = classify(reply.text, endingOf(reply.errno));
    tally.add(outcome, reply.count);
    if (outcome.kind === 'attributed') greetings.set(reply.id, outcome.who);
  }
  tally.add({ kind: 'silent' }, result.noReply);
  for (const failure of result.failures) tally.add(classify(null, endingOf(failure.errno)), failure.count);
  const pairs = result.sourcePorts;
  for (let i = 0; i + 1 < pairs.length; i += 2) {
    const who = greetings.get(pairs[i + 1]!);
    if (who) tally.addSourcePort(who, pairs[i]!);
  }
  return tally.summarize(options, {
    attempted: result.attempted,
    elapsedMs: result.elapsedNs / 1e6,
    stoppedEarly: result.stoppedEarly,
    hints: hintsFor(options, tally.failures, tally.silent),
  });
}

type Settle = (reply: string | null, ending: Ending, sourcePort: number) => void;

function tcpAttempt(options: LoadOptions, settle: Settle): { abort(): void } {
  const socket = net.connect({
    host: options.host,
    port: options.port,
    ...(options.sourcePort !== undefined ? { localPort: options.sourcePort } : {}),
  });
  let reply: Buffer | undefined;
  let ending: Ending | undefined;
  let sourcePort = 0;
  socket.once('connect', () => {
    sourcePort = socket.localPort ?? 0;
  });
  socket.setTimeout(options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS, () => {
    // Never connected: a failure. Connected: silent, or (after some bytes) no greeting.
    ending ??= socket.connecting ? 'ETIMEDOUT' : reply === undefined ? 'silent' : 'clean';
    socket.destroy();
  });
  socket.on('data', (chunk: Buffer) => {
    reply = reply === undefined ? chunk : reply.length < 512 ? Buffer.concat([reply, chunk]) : reply;
  });
  // The server closes first; closing on its FIN (instead of a half-close
  // handshake) keeps TIME_WAIT on the server side and off our source ports.
  socket.on('end', () => socket.destroy());
  socket.on('error', (err: NodeJS.ErrnoException) => {
    ending ??= err.code ?? 'EUNKNOWN';
  });
  socket.once('close', () => {
    settle(reply === undefined ? null : reply.toString('latin1'), ending ?? 'clean', sourcePort);
  });
  return {
    abort: () => {
      ending ??= 'cut-off';
      socket.destroy();
    },
  };
}

const PING = Buffer.from('reuseport ping\n');

function udpAttempt(options: LoadOptions, settle: Settle): { abort(): void } {
  // A fresh socket per datagram gives each one a fresh source port, so the
  // kernel's 4-tuple hash spreads them as it would spread new connections.
  const socket = dgram.createSocket(familyOf(options.host) === 6 ? 'udp6' : 'udp4');
  let settled = false;
  let sent = false;
  let sourcePort = 0;
  const done = (reply: string | null, ending: Ending) => {
    if (settled) return;
    settled = true;
    clearTimeout(timer);
    try {
      socket.close();
    } catch {
      // Closed already (a failed connect closes nothing, but a late error may have).
    }
    settle(reply, ending, sourcePort);
  };
  const timer = setTimeout(
    () => done(null, sent ? 'silent' : 'ETIMEDOUT'),
    options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS,
  );
  socket.on('error', (err: NodeJS.ErrnoException) => done(null, err.code ?? 'EUNKNOWN'));
  socket.on('message', (message) => done(message.toString('latin1'), 'clean'));
  const send = () =>
    socket.connect(options.port, options.host, (err?: Error) => {
      if (settled) return;
      if (err) return done(null, (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN');
      sourcePort = socket.address().port;
      socket.send(PING, (sendErr) => {
        if (sendErr) done(null, (sendErr as NodeJS.ErrnoException).code ?? 'EUNKNOWN');
        else sent = true;
      });
    });
  if (options.sourcePort !== undefined) socket.bind(options.sourcePort, send);
  else send();
  return { abort: () => done(null, 'cut-off') };
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
