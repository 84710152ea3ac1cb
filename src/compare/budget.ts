/**
 * The time budget of a compare run. The phase lengths live in the executable
 * (native/compare_main.c) and were chosen so that the default run, including
 * one heavy rerun, fits the limit on 2 cores; this module accounts for where
 * the time went and decides whether a rerun still fits. Data only.
 */
import type { PhaseLine, PhaseName } from './protocol.js';

/** Goal for the default run on 2 cores (issue #10, G1). */
export const TIME_LIMIT_MS = 15_000;
/** Goal with --with-node: three Node clusters cost about a second each to start on a loaded machine. */
export const TIME_LIMIT_WITH_NODE_MS = 20_000;

export interface PhaseTime {
  runs: number;
  /** Warm-up plus measured windows: the part no implementation can save (0 for the count-bound order phase). */
  windowMs: number;
  /** Wall time the phase took: windows, starting and stopping servers, draining. */
  usedMs: number;
}

export interface HeavyRerunTime {
  /** What the rerun was expected to take, from the first heavy phase's time per run. */
  projectedMs: number;
  /** Null when the rerun ran; otherwise why not. */
  skipped: string | null;
  time: PhaseTime | null;
}

export interface TimeBudget {
  limitMs: number;
  totalMs: number;
  withinLimit: boolean;
  phases: Partial<Record<PhaseName, PhaseTime>>;
  /** Null when no rerun was needed. */
  heavyRerun: HeavyRerunTime | null;
  /** Everything outside the phases: the namespace probe, starting the executable, calibration, analysis. */
  otherMs: number;
}

export function phaseTime(line: PhaseLine): PhaseTime {
  return { runs: line.runs, windowMs: line.windowNs / 1e6, usedMs: line.elapsedNs / 1e6 };
}

/** The expected time of `runs` heavy runs, from what the heavy phase just cost per run. */
export function projectHeavy(heavy: PhaseTime | undefined, runs: number): number {
  return heavy && heavy.runs > 0 ? (heavy.usedMs / heavy.runs) * runs : Number.POSITIVE_INFINITY;
}

export function accountBudget(input: {
  limitMs: number;
  totalMs: number;
  phases: readonly PhaseLine[];
  heavyRerun: HeavyRerunTime | null;
}): TimeBudget {
  const phases: Partial<Record<PhaseName, PhaseTime>> = {};
  for (const line of input.phases) phases[line.phase] = phaseTime(line);
  const inPhases = Object.values(phases).reduce((sum, p) => sum + p.usedMs, 0) + (input.heavyRerun?.time?.usedMs ?? 0);
  return {
    limitMs: input.limitMs,
    totalMs: input.totalMs,
    withinLimit: input.totalMs <= input.limitMs,
    phases,
    heavyRerun: input.heavyRerun,
    otherMs: Math.max(0, input.totalMs - inPhases),
  };
}
