import type { LoadResult } from '../net/load-client.js';
import type { Scenario } from './schema.js';

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
  /** 'ok' or the errno name of the failed bind (ECRASHED when the worker died first). */
  bind: string;
  bindMessage?: string;
  uid?: number;
  binder?: string;
}

export interface TrafficObservation {
  id: string;
  target: string;
  port: number;
  load: LoadResult;
  /** Connections the client attributed to each instance, in instance order; instances not running are left out. */
  perInstance: { server: string; replica: number; pid: number; count: number }[];
  /** What each running worker's own counter grew by during this step. */
  workerDeltas: { server: string; replica: number; pid: number; accepted: number }[];
  /** Greetings from workers this scenario did not start. */
  strangers: number;
  /** Every disagreement between the client's tally and the workers' counters. */
  accounting: string[];
}

export type StepRecord =
  | { kind: 'start'; servers: string[]; outcomes: InstanceObservation[]; line: number }
  | {
      kind: 'stop';
      servers: string[];
      accepted: { server: string; replica: number; pid: number; accepted: number }[];
      line: number;
    }
  | { kind: 'traffic'; traffic: TrafficObservation; line: number };

export interface Observations {
  kernel: string;
  isolation: Isolation;
  instances: InstanceObservation[];
  steps: StepRecord[];
  traffic: TrafficObservation[];
  durationMs: number;
}

/** Progress the inner process reports while it works. */
export type InnerEvent =
  | { type: 'step'; index: number; total: number; text: string; status: 'start' | 'done'; detail?: string }
  | { type: 'result'; observations: Observations }
  | { type: 'fatal'; message: string; code: string };
