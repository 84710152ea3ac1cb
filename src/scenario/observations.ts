import type { EffectiveOptions } from '../net/binder.js';
import type { EngineName } from '../net/engine.js';
import type { LoadResult } from '../net/load-client.js';
import type { Reconciliation } from '../net/reconcile.js';
import type { HoldObservation, LifecycleRecord, StepKernel } from './lifecycle-run.js';
import type { Scenario } from './schema.js';
import type { SweepObservation } from './steering-run.js';

export type Isolation = 'netns' | 'host';

/** What the runner asks the inner process (in the namespace, or on the host) to do. */
export interface Plan {
  /** With addresses and ports already mapped for the isolation in use. */
  scenario: Scenario;
  isolation: Isolation;
  /** `--binder` from the command line; overrides each server's own choice when set. */
  binder?: 'builtin' | 'native';
}

export interface InstanceObservation {
  server: string;
  /** 1-based replica number. */
  replica: number;
  workerId: number;
  pid: number;
  /** 1-based number of the start step that bound this socket (a server started again gets a new instance). */
  startStep?: number;
  /**
   * 'ok' or the errno name of the failed bind; ECRASHED when the worker died
   * first, ENOANSWER when it did not answer the bind request in time.
   */
  bind: string;
  bindMessage?: string;
  /** The port the socket bound (what the kernel chose for port 0). */
  port?: number;
  uid?: number;
  binder?: string;
  /** Who serves the socket (chooseEngine), and why. */
  engine?: EngineName;
  engineReason?: string;
  /** The socket's options as getsockopt reads them after the bind. */
  options?: EffectiveOptions;
  /** Set when the worker died or stopped answering without being told to stop. */
  fault?: WorkerFault;
}

/** A worker that died or froze: who, how, and during which step. */
export interface WorkerFault {
  kind: 'died' | 'unresponsive';
  /** e.g. "was killed by SIGKILL", "did not answer its counter query within 5 s (process state: stopped)". */
  how: string;
  /** 1-based step number it happened in (or after, when `between` is set), 0 while the workers booted. */
  step: number;
  stepText: string;
  /** The step had already finished: the fault came between it and the next one. */
  between: boolean;
  signal: string | null;
  exitCode: number | null;
}

export interface TrafficObservation {
  id: string;
  target: string;
  port: number;
  load: LoadResult;
  /**
   * Connections the client attributed to each instance, in instance order;
   * instances not running are left out. `distinctSourcePorts` is present when
   * the load client reports it (see expect.ts, balanced).
   */
  perInstance: { server: string; replica: number; pid: number; count: number; distinctSourcePorts?: number }[];
  /**
   * Each running worker's own counter against the client's tally (reconcileWithWorkers): `accepted` is what
   * its counter grew by during this step, exact also for a worker that died or was killed (its counter file
   * outlives it); null only when the counter could not be read. `attributed` + `notGreeted` = `accepted`
   * whenever `overAttributed` is 0.
   */
  workerDeltas: {
    server: string;
    replica: number;
    pid: number;
    accepted: number | null;
    attributed: number;
    notGreeted: number;
    overAttributed: number;
  }[];
  /** Greetings from workers this scenario did not start. */
  strangers: number;
  /** Counts that are wrong or cannot be known; each fails the accounting check. */
  accounting: string[];
  /** How every difference between the workers' counters and the client's tallies is accounted for, exactly. */
  explained: string[];
  /** The totals behind `explained` (src/net/reconcile.ts). */
  reconciliation: Pick<
    Reconciliation,
    'connectedWithoutGreeting' | 'acceptedWithoutGreeting' | 'neverAccepted' | 'unexplained'
  >;
  /** A `sourcePorts` sweep: who answered each source port, round by round. */
  sweep?: SweepObservation;
}

export type StepRecord =
  | { kind: 'start'; servers: string[]; outcomes: InstanceObservation[]; line: number }
  | {
      kind: 'stop';
      servers: string[];
      /** The worker's own final counter; null when it had to be killed and could not report one. */
      accepted: { server: string; replica: number; pid: number; accepted: number | null }[];
      line: number;
    }
  | { kind: 'traffic'; traffic: TrafficObservation; line: number }
  | LifecycleRecord;

export interface Observations {
  kernel: string;
  isolation: Isolation;
  instances: InstanceObservation[];
  steps: StepRecord[];
  traffic: TrafficObservation[];
  /** net.ipv4.ip_local_port_range where the traffic came from: what the client's source ports are drawn from. */
  portRange?: { low: number; high: number };
  /** Kernel counters and TIME_WAIT around each step (index = step index), and the held connections. */
  lifecycle?: { kernel: StepKernel[]; holds: HoldObservation[] };
  durationMs: number;
}

/** The runner's first and only message to the inner process: the plan travels over IPC, never argv (E2BIG). */
export type OuterMessage = { type: 'plan'; plan: Plan };

/** Progress the inner process reports while it works. */
export type InnerEvent =
  | { type: 'step'; index: number; total: number; text: string; status: 'start' | 'done'; detail?: string }
  | { type: 'result'; observations: Observations }
  | { type: 'fatal'; message: string; code: string };
