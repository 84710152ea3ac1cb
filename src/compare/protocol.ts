/**
 * The JSON lines the reuseport-compare executable (native/compare_main.c)
 * prints, and the names it accepts. Data only.
 */
import { UsageError } from '../errors.js';

/** Version of the executable's line format this code reads. */
export const EXECUTABLE_PROTOCOL = 2;

/** The C models, all run by default; `--models` picks among them. */
export const MODELS = [
  'reuseport',
  'shared-fifo',
  'shared-lifo',
  'shared-epoll',
  'dispatcher',
  'dispatcher-least-loaded',
] as const;
/** Node's cluster module (`--with-node`): every phase, with the C handler's burn through the addon. */
export const NODE_MODELS = ['node-cluster-rr', 'node-sched-none', 'node-reuseport'] as const;
export type NodeModelName = (typeof NODE_MODELS)[number];
export type ModelName = (typeof MODELS)[number] | NodeModelName;

export function isNodeModel(model: ModelName): model is NodeModelName {
  return (NODE_MODELS as readonly string[]).includes(model);
}

export const PHASES = ['order', 'light', 'heavy', 'stall', 'slow'] as const;
export type PhaseName = (typeof PHASES)[number];
/** `slow` is opt-in: it does not fit the default run's time budget on 2 cores (docs/compare.md). */
export const DEFAULT_PHASES: readonly PhaseName[] = ['order', 'light', 'heavy', 'stall'];

/** Per-connection `status` values. */
export const CONN_OK = 0;
export const CONN_TIMEOUT = 1;
export const CONN_ERROR = 2;
export const CONN_CUT_OFF = 3;

/** Figures for each process of a model (one entry per worker, or one for the dispatcher), for the measured window. */
export interface ProcessFigures {
  accepted: number[];
  /** epoll models: woken but accept4() found nothing. */
  emptyWakeups: number[];
  /** dispatcher models: descriptors received (workers) or sent (dispatcher) with SCM_RIGHTS. */
  fdsPassed: number[];
  errors: number[];
  cpuNs: number[];
  voluntarySwitches: number[];
  involuntarySwitches: number[];
}

export interface StartLine {
  type: 'start';
  protocol: number;
  /** CPUs this process may run on. */
  cores: number;
  workers: number;
  kernel: string;
  /** The network namespace the run used, as /proc/self/ns/net names it. */
  netns: string;
  pid: number;
  burnUs: number;
  burnIterations: number;
  scale: number;
  lightRounds: number;
  heavyRounds: number;
  heavyConcurrency: number;
  /** Slow phase: worker 0 sleeps slowSleepMs on every slowEvery-th request. */
  slowEvery: number;
  slowSleepMs: number;
}

/** One connection per index across the arrays; only connections started inside the measured window. */
export interface Samples {
  count: number;
  worker: number[];
  startUs: number[];
  latencyUs: number[];
  sourcePort: number[];
  status: number[];
  errno: number[];
}

export interface RunLine {
  type: 'run';
  phase: PhaseName;
  model: ModelName;
  round: number;
  port: number;
  /** LISTEN sockets on the port in the namespace's /proc/net/tcp while the model ran. */
  listeners: number;
  pids: number[];
  dispatcherPid: number;
  workers: ProcessFigures;
  dispatcher?: ProcessFigures;
  load: { concurrency: number; rate: number; warmupNs: number; measureNs: number; timeoutNs: number };
  client: { elapsedNs: number; cpuNs: number; completedInWindow: number };
  /** CPU time every process on the machine spent during the window (ours included). */
  machineBusyNs: number;
  stall?: { worker: number; pid: number; atNs: number; plannedNs: number; stoppedNs: number; resumed: boolean };
  samples: Samples;
}

/** Printed when a phase ends: how long its load windows were, and how long it really took. */
export interface PhaseLine {
  type: 'phase';
  phase: PhaseName;
  runs: number;
  /** Warm-up plus measured window of every run; 0 for a count-bound phase (order). */
  windowNs: number;
  elapsedNs: number;
}

export interface FailureLine {
  type: 'failure';
  phase: PhaseName | 'setup';
  model: ModelName | '';
  syscall: string;
  errno: number;
}

export interface EndLine {
  type: 'end';
  failures: number;
}

export type ExecutableLine = StartLine | RunLine | PhaseLine | FailureLine | EndLine;

/** Parses one line; null for anything that is not a line of this protocol. */
export function parseExecutableLine(text: string): ExecutableLine | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const type = (value as { type?: unknown }).type;
  return type === 'start' || type === 'run' || type === 'phase' || type === 'failure' || type === 'end'
    ? (value as ExecutableLine)
    : null;
}

/** A comma-separated list of names from `allowed`, without repeats, in the given order. */
export function parseNameList<T extends string>(text: string, flag: string, allowed: readonly T[]): T[] {
  const names = text
    .split(',')
    .map((n) => n.trim())
    .filter((n) => n !== '');
  const unknown = names.find((n) => !(allowed as readonly string[]).includes(n));
  if (names.length === 0 || unknown !== undefined) {
    throw new UsageError(
      `${flag} takes a comma-separated list of ${allowed.join(', ')}${unknown !== undefined ? `; "${unknown}" is not one` : ''}`,
    );
  }
  return [...new Set(names)] as T[];
}
