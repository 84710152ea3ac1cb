/**
 * `reuseport compare` as data: run the executable, analyse, judge, and rerun
 * the heavy phase once when its baseline was too noisy to judge.
 */
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { probeBuiltin } from '../net/binder.js';
import { analyzeRuns, type PhaseFigures } from './analyze.js';
import {
  accountBudget,
  type HeavyRerunTime,
  phaseTime,
  projectHeavy,
  TIME_LIMIT_MS,
  TIME_LIMIT_WITH_NODE_MS,
  type TimeBudget,
} from './budget.js';
import {
  type FailureLine,
  type ModelName,
  NODE_MODELS,
  type NodeModelName,
  type PhaseName,
  type RunLine,
  type StartLine,
} from './protocol.js';
import { type Isolation, type IsolationChoice, runExecutable } from './run.js';
import { heavyNeedsRerun, judge, regimeNote, type Verdict } from './verdicts.js';

/** Version of the `--json` document. */
export const COMPARE_REPORT_VERSION = 2;
/** The models a heavy rerun measures: the two its verdict compares. */
const HEAVY_RERUN_MODELS: readonly ModelName[] = ['reuseport', 'shared-fifo'];

export interface CompareOptions {
  workers: number;
  models: readonly ModelName[];
  phases: readonly PhaseName[];
  scale: number;
  isolation: IsolationChoice;
  /** Also run Node's cluster models with the Node that runs this, in every phase. */
  withNode: boolean;
}

export interface NodeModelsReport {
  version: string;
  ran: NodeModelName[];
  notAvailable: { model: NodeModelName; reason: string }[];
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
  /**
   * Set when the heavy phase was rerun (reuseport and shared-fifo only) because its verdict was open and
   * its baseline too noisy: the first attempt's figures. figures.heavy then pools both attempts' rounds.
   */
  heavyRerun: PhaseFigures['heavy'] | null;
  /** Which Node cluster models ran, and which this Node cannot run; null without --with-node. */
  nodeModels: NodeModelsReport | null;
  budget: TimeBudget;
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

/** Which Node cluster models this Node can run: reusePort needs Node >= 22.12 / 23.1. */
async function nodeModels(): Promise<NodeModelsReport> {
  const builtin = await probeBuiltin();
  return {
    version: process.version,
    ran: NODE_MODELS.filter((m) => m !== 'node-reuseport' || builtin.ok),
    notAvailable: builtin.ok
      ? []
      : [
          {
            model: 'node-reuseport',
            reason: `not available on this Node (${process.version}): cluster + reusePort needs Node >= 22.12 or >= 23.1`,
          },
        ],
  };
}

export async function runCompare(
  options: CompareOptions,
  hooks: { signal: AbortSignal; onRun?: (run: RunLine) => void },
): Promise<CompareReport> {
  const startedAt = Date.now();
  const limitMs = options.withNode ? TIME_LIMIT_WITH_NODE_MS : TIME_LIMIT_MS;
  const node = options.withNode ? await nodeModels() : null;
  const base = { workers: options.workers, scale: options.scale, isolation: options.isolation };
  const first = await runExecutable(
    {
      ...base,
      models: [...options.models, ...(node?.ran ?? [])],
      phases: options.phases,
      ...(node
        ? {
            node: {
              executable: process.execPath,
              script: fileURLToPath(new URL('./node-cluster.js', import.meta.url)),
            },
          }
        : {}),
    },
    hooks,
  );
  const { start } = first;
  let runs = first.runs;
  let failures = first.failures;
  let figures = analyzeRuns(runs, start.workers, start.cores);
  let heavyRerun: PhaseFigures['heavy'] | null = null;
  let rerunTime: HeavyRerunTime | null = null;
  let interrupted = first.interrupted;
  if (!interrupted && options.phases.includes('heavy') && heavyNeedsRerun(figures.heavy)) {
    const models = HEAVY_RERUN_MODELS.filter((m) => options.models.includes(m));
    const heavyLine = first.phases.find((p) => p.phase === 'heavy');
    const projectedMs = projectHeavy(heavyLine && phaseTime(heavyLine), models.length * start.heavyRounds);
    const leftMs = limitMs - (Date.now() - startedAt);
    if (projectedMs > leftMs) {
      rerunTime = {
        projectedMs,
        skipped: `the rerun would take about ${(projectedMs / 1000).toFixed(1)} s and ${(Math.max(0, leftMs) / 1000).toFixed(1)} s of the ${limitMs / 1000} s budget were left`,
        time: null,
      };
    } else {
      const again = await runExecutable({ ...base, models, phases: ['heavy'] }, hooks);
      interrupted = again.interrupted;
      heavyRerun = figures.heavy;
      const rerunLine = again.phases.find((p) => p.phase === 'heavy');
      rerunTime = { projectedMs, skipped: null, time: rerunLine ? phaseTime(rerunLine) : null };
      // Both attempts' rounds count: the rerun's are numbered after the first's, so rounds still pair by number.
      const renumbered = again.runs.map((r) => ({ ...r, round: r.round + start.heavyRounds }));
      runs = [...runs, ...renumbered];
      failures = [...failures, ...again.failures];
      figures = analyzeRuns(runs, start.workers, start.cores);
    }
  }
  const { type: _type, protocol: _protocol, ...setup } = start;
  const durationMs = Date.now() - startedAt;
  return {
    version: COMPARE_REPORT_VERSION,
    kernel: `Linux ${os.release()}`,
    node: process.version,
    cores: start.cores,
    workers: start.workers,
    models: [...options.models, ...(node?.ran ?? [])],
    phases: [...options.phases],
    isolation: first.isolation,
    netns: start.netns,
    setup,
    figures,
    verdicts: judge(figures, { cores: start.cores, workers: start.workers }),
    heavyRerun,
    nodeModels: node,
    budget: accountBudget({ limitMs, totalMs: durationMs, phases: first.phases, heavyRerun: rerunTime }),
    regime: regimeNote(start.cores),
    pids: [...new Set(runs.flatMap((r) => [...r.pids, ...(r.dispatcherPid > 0 ? [r.dispatcherPid] : [])]))],
    failures,
    raw: runs.map(strip),
    durationMs,
    interrupted,
  };
}
