/**
 * `reuseport compare` as data: run the executable, analyse, judge, and rerun
 * the heavy phase once when its baseline was too noisy to judge.
 */
import os from 'node:os';
import { analyzeRuns, type PhaseFigures } from './analyze.js';
import type { FailureLine, ModelName, PhaseName, RunLine, StartLine } from './protocol.js';
import { type Isolation, type IsolationChoice, runExecutable } from './run.js';
import { heavyBaselineTooNoisy, judge, regimeNote, type Verdict } from './verdicts.js';

/** Version of the `--json` document. */
export const COMPARE_REPORT_VERSION = 1;

export interface CompareOptions {
  workers: number;
  models: readonly ModelName[];
  phases: readonly PhaseName[];
  scale: number;
  isolation: IsolationChoice;
}

/** A run line without its per-connection arrays, which the figures summarise. */
export type RawRunFigures = Omit<RunLine, 'samples' | 'type'> & { connections: number };

export interface CompareReport {
  version: number;
  kernel: string;
  node: string;
  cores: number;
  workers: number;
  models: ModelName[];
  phases: PhaseName[];
  isolation: Isolation;
  netns: string;
  setup: Omit<StartLine, 'type' | 'protocol'>;
  figures: PhaseFigures;
  verdicts: Verdict[];
  /** Set when the heavy phase was rerun because its baseline was too noisy; holds the first attempt's figures. */
  heavyRerun: PhaseFigures['heavy'] | null;
  regime: string;
  /** Every process of every model, for checking that none is left. */
  pids: number[];
  failures: FailureLine[];
  raw: RawRunFigures[];
  durationMs: number;
  interrupted: boolean;
}

function strip(run: RunLine): RawRunFigures {
  const { samples, type: _type, ...rest } = run;
  return { ...rest, connections: samples.count };
}

export async function runCompare(
  options: CompareOptions,
  hooks: { signal: AbortSignal; onRun?: (run: RunLine) => void },
): Promise<CompareReport> {
  const startedAt = Date.now();
  const base = { workers: options.workers, models: options.models, scale: options.scale, isolation: options.isolation };
  const first = await runExecutable({ ...base, phases: options.phases }, hooks);
  const { start } = first;
  let runs = first.runs;
  let failures = first.failures;
  let figures = analyzeRuns(runs, start.workers, start.cores);
  let heavyRerun: PhaseFigures['heavy'] | null = null;
  let interrupted = first.interrupted;
  if (!interrupted && options.phases.includes('heavy') && heavyBaselineTooNoisy(figures.heavy)) {
    const again = await runExecutable({ ...base, phases: ['heavy'] }, hooks);
    interrupted = again.interrupted;
    heavyRerun = figures.heavy;
    runs = [...runs.filter((r) => r.phase !== 'heavy'), ...again.runs];
    failures = [...failures, ...again.failures];
    figures = analyzeRuns(runs, start.workers, start.cores);
  }
  const { type: _type, protocol: _protocol, ...setup } = start;
  return {
    version: COMPARE_REPORT_VERSION,
    kernel: `Linux ${os.release()}`,
    node: process.version,
    cores: start.cores,
    workers: start.workers,
    models: [...options.models],
    phases: [...options.phases],
    isolation: first.isolation,
    netns: start.netns,
    setup,
    figures,
    verdicts: judge(figures, { cores: start.cores, workers: start.workers }),
    heavyRerun,
    regime: regimeNote(start.cores),
    pids: [...new Set(runs.flatMap((r) => [...r.pids, ...(r.dispatcherPid > 0 ? [r.dispatcherPid] : [])]))],
    failures,
    raw: runs.map(strip),
    durationMs: Date.now() - startedAt,
    interrupted,
  };
}
