// The client's tallies against the workers' own counters. A worker counts a
// connection when it accepts it (a datagram when it reads it); the client
// attributes one when it reads a greeting. In between the client may give up
// (silent), be cut off (in flight), or see the connection end without a
// greeting, so a worker may count more than the client attributed to it, but
// never fewer. Which silent connection sat at which worker the client cannot
// know (no greeting names it), so the surplus is explained in total.
import type { LoadResult } from './load-client.js';

export interface WorkerCounterDelta {
  pid: number;
  workerId?: number;
  /** What the worker's own counter grew by over the load; null when it cannot be known (e.g. died uncounted). */
  accepted: number | null;
}

export interface WorkerReconciliation {
  pid: number;
  workerId: number | null;
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
  /** One sentence per finding, worst first. */
  findings: string[];
}

/** Errors that end a connection that was already up, and so may have been accepted. */
const AFTER_CONNECT_ERRORS = new Set(['ECONNRESET', 'EPIPE']);

export function reconcileWithWorkers(result: LoadResult, deltas: readonly WorkerCounterDelta[]): Reconciliation {
  const noun = result.protocol === 'tcp' ? 'connections' : 'datagrams';
  const matches = (d: WorkerCounterDelta, w: { pid: number; workerId: number }) =>
    d.pid === w.pid && (d.workerId === undefined || d.workerId === w.workerId);
  const workers = deltas.map((d): WorkerReconciliation => {
    const attributed = result.perWorker.filter((w) => matches(d, w)).reduce((sum, w) => sum + w.count, 0);
    const difference = d.accepted === null ? 0 : d.accepted - attributed;
    return {
      pid: d.pid,
      workerId: d.workerId ?? null,
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

  const name = (w: WorkerReconciliation) => `worker ${w.workerId ?? '?'} (pid ${w.pid})`;
  const findings: string[] = [];
  for (const w of workers) {
    if (w.accepted === null) findings.push(`${name(w)}: its count cannot be known, so it cannot be checked`);
    else if (w.overAttributed > 0) {
      findings.push(
        `${name(w)} counted ${w.accepted} but the client read ${w.attributed} greetings from it: impossible, a counter is wrong`,
      );
    }
  }
  if (unexplained > 0) {
    findings.push(
      `${unexplained} ${noun} counted by workers match no client outcome (${acceptedWithoutGreeting} accepted without a greeting, only ${connectedWithoutGreeting} connected without one)`,
    );
  }
  if (acceptedWithoutGreeting > 0) {
    const who = workers
      .filter((w) => w.notGreeted > 0)
      .map((w) => `${name(w)} ${w.notGreeted}`)
      .join(', ');
    findings.push(
      `${acceptedWithoutGreeting} ${noun} were accepted without a greeting reaching the client (${who}): among its ${result.silent} silent, ${result.inFlight} in flight, ${result.unrecognized} unrecognized and ${resets} reset`,
    );
  }
  if (neverAccepted > 0) {
    findings.push(
      `${neverAccepted} ${noun} the client connected but got no greeting on were never accepted by a worker (still queued when it let go)`,
    );
  }
  if (strangers > 0) findings.push(`${strangers} ${noun} were answered by workers not in the list`);
  return {
    workers,
    strangers,
    connectedWithoutGreeting,
    acceptedWithoutGreeting,
    neverAccepted,
    unexplained,
    consistent: unexplained === 0 && workers.every((w) => w.accepted !== null && w.overAttributed === 0),
    findings,
  };
}
