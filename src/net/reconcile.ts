// The client's tallies against the workers' own counters. A worker counts a
// connection when it accepts it (a datagram when it reads it); the client
// attributes one when it reads a greeting. In between the client may give up
// (silent), be cut off (in flight), or see the connection end without a
// greeting, so a worker may count more than the client attributed to it, but
// never fewer. Which silent connection sat at which worker the client cannot
// know (no greeting names it), so the surplus is explained in total.
import type { Protocol } from './address.js';
import type { LoadResult } from './load-client.js';

export interface WorkerCounterDelta {
  pid: number;
  workerId?: number;
  /** How findings name it (a scenario's `W#2`); `worker N` by default. */
  label?: string;
  /** What the worker's own counter grew by over the load; null when it cannot be known (its counter could not be read). */
  accepted: number | null;
}

export interface WorkerReconciliation {
  pid: number;
  workerId: number | null;
  /** How findings name it: the delta's label, else `worker N`. */
  label: string;
  accepted: number | null;
  attributed: number;
  /** accepted − attributed when that is ≥ 0: accepted, but no greeting reached the client. */
  notGreeted: number;
  /** attributed − accepted when that is > 0: impossible, so a counter is wrong. */
  overAttributed: number;
}

export interface Reconciliation {
  workers: WorkerReconciliation[];
  /** Attributed to a worker not in the list: another server shares the port. */
  strangers: number;
  /**
   * Client outcomes a worker may have accepted without a greeting reaching the
   * client: silent + inFlight + unrecognized + failures after the connection
   * was up (ECONNRESET, EPIPE).
   */
  connectedWithoutGreeting: number;
  /** Σ notGreeted over the workers. */
  acceptedWithoutGreeting: number;
  /** connectedWithoutGreeting − acceptedWithoutGreeting, when ≥ 0: never accepted (still queued when the client let go). */
  neverAccepted: number;
  /** Accepts that no client outcome accounts for; 0 when consistent. */
  unexplained: number;
  /** Every count explained: nothing over-attributed, nothing unexplained, no unknown counter. */
  consistent: boolean;
  /** One sentence per finding, worst first: `problems`, then `explanations`. */
  findings: string[];
  /** The findings that leave a count wrong or unknown (what makes it inconsistent). */
  problems: string[];
  /** The findings that account for a difference exactly: accepted without a greeting, never accepted, strangers. */
  explanations: string[];
}

/**
 * Where the client's unanswered attempts that no worker counted were. TCP: a
 * connection the client saw established sits in the listener's accept queue
 * until accept(); with the queue full, the client's final ACK is dropped and
 * the server holds only a request (tcp_check_req, tcp_abort_on_overflow=0).
 * UDP: a datagram no worker read stays in the socket's receive queue, or was
 * dropped because that queue was over sk_rcvbuf (__udp_enqueue_schedule_skb).
 */
const NEVER_ACCEPTED = {
  tcp: 'the client saw connected but got no greeting on were never accepted by a worker (left in a listen queue until the client gave up or the listener closed)',
  udp: 'without a reply were never read by a worker (left in a receive queue, or dropped there when it was full)',
} as const;

/** Errors that end a connection that was already up, and so may have been accepted. */
const AFTER_CONNECT_ERRORS = new Set(['ECONNRESET', 'EPIPE']);

export interface ReconcileOptions {
  /**
   * The deltas are every server the client could have reached (a post-hoc
   * check of one serve run): a greeting from anyone else means the load went
   * elsewhere, a problem rather than an explanation.
   */
  closed?: boolean;
}

export function reconcileWithWorkers(
  result: LoadResult,
  deltas: readonly WorkerCounterDelta[],
  options: ReconcileOptions = {},
): Reconciliation {
  const noun = result.protocol === 'tcp' ? 'connections' : 'datagrams';
  const matches = (d: WorkerCounterDelta, w: { pid: number; workerId: number }) =>
    d.pid === w.pid && (d.workerId === undefined || d.workerId === w.workerId);
  const workers = deltas.map((d): WorkerReconciliation => {
    const attributed = result.perWorker.filter((w) => matches(d, w)).reduce((sum, w) => sum + w.count, 0);
    const difference = d.accepted === null ? 0 : d.accepted - attributed;
    return {
      pid: d.pid,
      workerId: d.workerId ?? null,
      label: d.label ?? `worker ${d.workerId ?? '?'}`,
      accepted: d.accepted,
      attributed,
      notGreeted: Math.max(0, difference),
      overAttributed: Math.max(0, -difference),
    };
  });
  const strangers = result.perWorker
    .filter((w) => !deltas.some((d) => matches(d, w)))
    .reduce((sum, w) => sum + w.count, 0);
  const resets = result.failures.filter((f) => AFTER_CONNECT_ERRORS.has(f.code)).reduce((sum, f) => sum + f.count, 0);
  const connectedWithoutGreeting = result.silent + result.inFlight + result.unrecognized + resets;
  const acceptedWithoutGreeting = workers.reduce((sum, w) => sum + w.notGreeted, 0);
  const unexplained = Math.max(0, acceptedWithoutGreeting - connectedWithoutGreeting);
  const neverAccepted = Math.max(0, connectedWithoutGreeting - acceptedWithoutGreeting);

  const name = (w: WorkerReconciliation) => `${w.label} (pid ${w.pid})`;
  const problems: string[] = [];
  for (const w of workers) {
    if (w.accepted === null) problems.push(`${name(w)}: its count cannot be known, so it cannot be checked`);
    else if (w.overAttributed > 0) {
      problems.push(
        `${name(w)} counted ${w.accepted} but the client read ${w.attributed} greetings from it: impossible, a counter is wrong`,
      );
    }
  }
  if (strangers > 0 && options.closed) {
    problems.push(
      `${strangers} ${noun} were answered by processes that are not among the workers: the load did not go only to them`,
    );
  }
  if (unexplained > 0) {
    problems.push(
      `${unexplained} ${noun} counted by workers match no client outcome (${acceptedWithoutGreeting} accepted without a greeting, only ${connectedWithoutGreeting} connected without one)`,
    );
  }
  const explanations: string[] = [];
  if (acceptedWithoutGreeting > 0) {
    const who = workers
      .filter((w) => w.notGreeted > 0)
      .map((w) => `${name(w)} ${w.notGreeted}`)
      .join(', ');
    explanations.push(
      `${acceptedWithoutGreeting} ${noun} were ${result.protocol === 'tcp' ? 'accepted' : 'read'} without a greeting reaching the client (${who}): among its ${result.silent} silent, ${result.inFlight} in flight, ${result.unrecognized} unrecognized and ${resets} reset`,
    );
  }
  if (neverAccepted > 0) explanations.push(`${neverAccepted} ${noun} ${NEVER_ACCEPTED[result.protocol]}`);
  if (strangers > 0 && !options.closed)
    explanations.push(`${strangers} ${noun} were answered by workers not in the list`);
  return {
    workers,
    strangers,
    connectedWithoutGreeting,
    acceptedWithoutGreeting,
    neverAccepted,
    unexplained,
    consistent: problems.length === 0,
    findings: [...problems, ...explanations],
    problems,
    explanations,
  };
}

/** What `serve` recorded when it stopped: each worker's exact count since serve started. */
export interface ServeCounts {
  port: number;
  protocol: Protocol;
  /** pid null: the worker never started, so it counted nothing. */
  workers: { workerId: number; pid: number | null; accepted: number }[];
}

/**
 * One serve run's final counts against one load run's tally, after both
 * ended. Serve counts from its start, so every accept must come from this
 * load: another client's accepts show up as unexplained. A load aimed at
 * another port or protocol, or greeted by other processes, was not this
 * serve's load.
 */
export function reconcileServeWithLoad(serve: ServeCounts, load: LoadResult): Reconciliation {
  const deltas = serve.workers.flatMap((w) =>
    w.pid === null ? [] : [{ pid: w.pid, workerId: w.workerId, accepted: w.accepted }],
  );
  const base = reconcileWithWorkers(load, deltas, { closed: true });
  const mismatches: string[] = [];
  if (load.protocol !== serve.protocol) {
    mismatches.push(`the load was ${load.protocol.toUpperCase()} but serve ran ${serve.protocol.toUpperCase()}`);
  }
  if (load.target.port !== serve.port) {
    mismatches.push(`the load went to port ${load.target.port} but serve listened on port ${serve.port}`);
  }
  if (mismatches.length === 0) return base;
  const problems = [`${mismatches.join(', and ')}: these are not one run's files`, ...base.problems];
  return { ...base, consistent: false, problems, findings: [...problems, ...base.explanations] };
}
