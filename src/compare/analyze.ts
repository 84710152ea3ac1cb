/**
 * Turns the executable's raw runs into the figures each phase reports. Data
 * only: no printing, no judging (verdicts.ts judges).
 */
import { chiSquareUniform } from '../stats/chi-square.js';
import { CONN_OK, CONN_TIMEOUT, isNodeModel, type ModelName, type RunLine } from './protocol.js';

/** A connection slower than this counts as delayed in the stall phase. */
export const DELAYED_US = 100_000;
/** Stall phase: the share of the never-stopped workers' connections that, delayed, marks a model as overloaded by the rate itself. */
export const OVERLOADED_SHARE = 0.1;
/** The client's own CPU share above which a connection rate is called client-bound. */
export const CLIENT_BOUND_CPU = 0.6;
/** Machine-wide CPU share above which a rate is called machine-bound (every core busy). */
export const MACHINE_BOUND_CPU = 0.9;

export type OrderClass = 'one worker' | 'rotation' | 'random' | 'mixed' | 'single worker';

export interface Evidence {
  /** LISTEN sockets on the model's port, from the namespace's /proc/net/tcp. */
  listeners: number;
  /** Descriptors the workers received with SCM_RIGHTS. */
  fdsPassed: number;
  /** Server processes: workers plus the dispatcher, if any. */
  processes: number;
}

export interface OrderFigures {
  model: ModelName;
  connections: number;
  failed: number;
  /** Fraction of consecutive connections served by the same worker as the one before. */
  sameAsPrevious: number;
  /** What chance alone gives: 1/N. */
  expectedByChance: number;
  /** Fraction served by the same worker as N connections before (1 for a strict rotation). */
  samePeriodN: number;
  topShare: number;
  perWorker: number[];
  classification: OrderClass;
  sequence: number[];
  evidence: Evidence;
}

export interface LatencySummary {
  count: number;
  meanUs: number;
  p50Us: number;
  p99Us: number;
  maxUs: number;
  stdevUs: number;
}

/** One light round of one model. */
export interface LightRound {
  round: number;
  connectionsPerSecond: number;
  clientCpuShare: number;
  /** Share of all the machine's CPUs that was busy (every process, ours included). */
  machineBusyShare: number;
  serverCpuUsPerConnection: number;
  contextSwitchesPerConnection: number;
  emptyWakeupsPerConnection: number;
  perWorker: number[];
  maxOverMin: number;
  topTwoShare: number;
  /** Distinct source ports, each counted for the worker of its first connection. */
  perWorkerDistinctPorts: number[];
  latency: LatencySummary;
  failed: number;
}

/** This model's figure over reuseport's in the same round, median over rounds. */
export interface RatiosToReuseport {
  connectionsPerSecond: number;
  serverCpuPerConnection: number;
}

/** A model's light figures: medians over its alternating rounds (counts are sums). */
export interface LightFigures {
  model: ModelName;
  rounds: LightRound[];
  connectionsPerSecond: number;
  clientCpuShare: number;
  machineBusyShare: number;
  /** Set when the client or the machine, not the server, limited the rate (judged on the medians). */
  bound: 'client' | 'machine' | null;
  serverCpuUsPerConnection: number;
  contextSwitchesPerConnection: number;
  emptyWakeupsPerConnection: number;
  /** Connections served per worker, summed over rounds: the workers' own counters (C), or the replies (Node). */
  perWorker: number[];
  maxOverMin: number;
  topTwoShare: number;
  distinctSourcePorts: number;
  /** Over the first connection of each distinct source port: a repeated port hashes to the same socket. */
  chiSquare: { statistic: number; degreesOfFreedom: number; pValue: number };
  latency: LatencySummary;
  failed: number;
  ratioToReuseport: RatiosToReuseport | null;
  evidence: Evidence;
}

export interface HeavyRound {
  round: number;
  latency: LatencySummary;
  connectionsPerSecond: number;
  failed: number;
  machineBusyShare: number;
  /** CPU share other programs on the machine used during the round (busy time not ours). */
  foreignCpuShare: number;
}

export interface HeavyRatios {
  mean: number;
  p50: number;
  p99: number;
  max: number;
  stdev: number;
}

/** Bins per doubling of latency: fine enough to show a tail, coarse enough to keep a run's histograms small. */
export const HISTOGRAM_BINS_PER_OCTAVE = 4;

/**
 * Counts of latencies in logarithmic bins: bin i holds latencies from
 * 2^(i / binsPerOctave) µs up to the next bin's start (bin 0 also holds
 * anything under 1 µs). Kept instead of every sample, which the document
 * does not carry; every served request is counted exactly once.
 */
export interface LatencyHistogram {
  binsPerOctave: number;
  /** The bin of counts[0]; counts runs contiguously from the first non-empty bin to the last. */
  firstBin: number;
  counts: number[];
}

export function histogramBin(latencyUs: number): number {
  return latencyUs < 1 ? 0 : Math.floor(Math.log2(latencyUs) * HISTOGRAM_BINS_PER_OCTAVE);
}

/** Where a bin starts, in µs. */
export function histogramBinStartUs(bin: number, binsPerOctave = HISTOGRAM_BINS_PER_OCTAVE): number {
  return 2 ** (bin / binsPerOctave);
}

export function latencyHistogram(latencies: readonly number[]): LatencyHistogram {
  const bins = latencies.map(histogramBin);
  if (bins.length === 0) return { binsPerOctave: HISTOGRAM_BINS_PER_OCTAVE, firstBin: 0, counts: [] };
  const first = Math.min(...bins);
  const counts = new Array<number>(Math.max(...bins) - first + 1).fill(0);
  for (const bin of bins) counts[bin - first] = (counts[bin - first] ?? 0) + 1;
  return { binsPerOctave: HISTOGRAM_BINS_PER_OCTAVE, firstBin: first, counts };
}

export interface HeavyFigures {
  model: ModelName;
  rounds: HeavyRound[];
  /** Every served request of every round, pooled (the other figures are medians over rounds). */
  histogram: LatencyHistogram;
  /** Medians over rounds. */
  median: LatencySummary;
  /** Median over rounds of this model's figure divided by shared-fifo's in the same round; null without shared-fifo. */
  ratioToSharedFifo: HeavyRatios | null;
  /** Each round's stdev ratio to shared-fifo. */
  stdevRatioByRound: number[];
}

export interface StallFigures {
  model: ModelName;
  stoppedWorker: number;
  stoppedForMs: number;
  resumed: boolean;
  /** Connections started while the worker was stopped. */
  startedWhileStopped: number;
  /** Of those, the ones the stopped worker served (after it was resumed). */
  landedOnStopped: number;
  expectedShare: number;
  /** landedOnStopped / (startedWhileStopped / N). */
  ofExpected: number;
  delayed: number;
  /**
   * Of the delayed, those served by a worker that was never stopped: none of them waited for the
   * stopped worker, so many mean the model could not keep up with the rate at all (`overloaded`).
   */
  delayedOnOtherWorkers: number;
  /** More than OVERLOADED_SHARE of the connections the other workers served were delayed. */
  overloaded: boolean;
  timedOut: number;
  failed: number;
  connections: number;
  maxLatencyUs: number;
}

export interface SlowFigures {
  model: ModelName;
  connections: number;
  timedOut: number;
  timedOutShare: number;
  /** Served, but over DELAYED_US. */
  delayed: number;
  failed: number;
  /** Served by the slow worker (worker 0). */
  servedBySlow: number;
  p99Us: number;
  maxLatencyUs: number;
}

export interface PhaseFigures {
  order: OrderFigures[];
  light: LightFigures[];
  heavy: HeavyFigures[];
  stall: StallFigures[];
  slow: SlowFigures[];
}

export function mean(values: readonly number[]): number {
  return values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;
}

/** Nearest-rank percentile of unsorted values (q in [0, 1]). */
export function percentile(values: readonly number[], q: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/** Population standard deviation. */
export function stdev(values: readonly number[]): number {
  if (values.length === 0) return 0;
  const m = mean(values);
  return Math.sqrt(mean(values.map((v) => (v - m) * (v - m))));
}

export function summarize(latencies: readonly number[]): LatencySummary {
  return {
    count: latencies.length,
    meanUs: mean(latencies),
    p50Us: percentile(latencies, 0.5),
    p99Us: percentile(latencies, 0.99),
    maxUs: latencies.length ? Math.max(...latencies) : 0,
    stdevUs: stdev(latencies),
  };
}

function okLatencies(run: RunLine): number[] {
  const { latencyUs, status } = run.samples;
  return latencyUs.filter((_, i) => status[i] === CONN_OK);
}

function failedCount(run: RunLine): number {
  return run.samples.status.filter((s) => s !== CONN_OK).length;
}

function perWorkerCounts(workers: readonly number[], n: number): number[] {
  const counts = new Array<number>(n).fill(0);
  for (const w of workers) if (w >= 0 && w < n) counts[w] = (counts[w] ?? 0) + 1;
  return counts;
}

function topTwoShare(counts: readonly number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  const [a = 0, b = 0] = [...counts].sort((x, y) => y - x);
  return total === 0 ? 0 : (a + b) / total;
}

function evidence(run: RunLine): Evidence {
  return {
    listeners: run.listeners,
    fdsPassed: run.workers.fdsPassed.reduce((a, b) => a + b, 0),
    processes: run.pids.length + (run.dispatcherPid > 0 ? 1 : 0),
  };
}

function serverSum(run: RunLine, key: 'cpuNs' | 'voluntarySwitches' | 'involuntarySwitches' | 'emptyWakeups'): number {
  const sum = (v: readonly number[]) => v.reduce((a, b) => a + b, 0);
  return sum(run.workers[key]) + (run.dispatcher ? sum(run.dispatcher[key]) : 0);
}

export function classifyOrder(sameAsPrevious: number, samePeriodN: number, workers: number, n: number): OrderClass {
  if (workers < 2) return 'single worker';
  const chance = 1 / workers;
  if (sameAsPrevious >= 0.7) return 'one worker';
  if (sameAsPrevious <= chance / 2 && samePeriodN >= 0.5) return 'rotation';
  // Three binomial standard errors around chance, and never tighter than ±0.08.
  const tolerance = Math.max(0.08, 3 * Math.sqrt((chance * (1 - chance)) / Math.max(1, n)));
  if (Math.abs(sameAsPrevious - chance) <= tolerance) return 'random';
  return 'mixed';
}

export function analyzeOrder(run: RunLine, workers: number): OrderFigures {
  const sequence = run.samples.worker.filter((w) => w >= 0);
  let same = 0;
  let period = 0;
  for (let i = 1; i < sequence.length; i++) if (sequence[i] === sequence[i - 1]) same++;
  for (let i = workers; i < sequence.length; i++) if (sequence[i] === sequence[i - workers]) period++;
  const sameAsPrevious = sequence.length > 1 ? same / (sequence.length - 1) : 0;
  const samePeriodN = sequence.length > workers ? period / (sequence.length - workers) : 0;
  const perWorker = perWorkerCounts(sequence, workers);
  return {
    model: run.model,
    connections: sequence.length,
    failed: failedCount(run),
    sameAsPrevious,
    expectedByChance: 1 / workers,
    samePeriodN,
    topShare: sequence.length ? Math.max(...perWorker) / sequence.length : 0,
    perWorker,
    classification: classifyOrder(sameAsPrevious, samePeriodN, workers, sequence.length),
    sequence,
    evidence: evidence(run),
  };
}

function machineShare(run: RunLine, cores: number): number {
  return run.client.elapsedNs > 0 ? run.machineBusyNs / (run.client.elapsedNs * cores) : 0;
}

function foreignShare(run: RunLine, cores: number): number {
  if (run.client.elapsedNs <= 0) return 0;
  const ours = serverSum(run, 'cpuNs') + run.client.cpuNs;
  return Math.max(0, (run.machineBusyNs - ours) / (run.client.elapsedNs * cores));
}

/** Connections each worker served in the window: its own counter (C), or the replies naming it (Node keeps no counters). */
function servedPerWorker(run: RunLine, workers: number): number[] {
  if (!isNodeModel(run.model)) return run.workers.accepted;
  return perWorkerCounts(
    run.samples.worker.filter((_, i) => run.samples.status[i] === CONN_OK),
    workers,
  );
}

export function analyzeLightRound(run: RunLine, workers: number, cores: number): LightRound {
  const elapsed = run.client.elapsedNs;
  const perWorker = servedPerWorker(run, workers);
  const served = perWorker.reduce((a, b) => a + b, 0);
  const firstPerPort = new Map<number, number>();
  run.samples.sourcePort.forEach((port, i) => {
    const worker = run.samples.worker[i] ?? -1;
    if (worker >= 0 && !firstPerPort.has(port)) firstPerPort.set(port, worker);
  });
  const min = Math.min(...perWorker);
  const per = (value: number) => (served > 0 ? value / served : 0);
  return {
    round: run.round,
    connectionsPerSecond: elapsed > 0 ? (run.client.completedInWindow * 1e9) / elapsed : 0,
    clientCpuShare: elapsed > 0 ? run.client.cpuNs / elapsed : 0,
    machineBusyShare: machineShare(run, cores),
    serverCpuUsPerConnection: per(serverSum(run, 'cpuNs') / 1000),
    contextSwitchesPerConnection: per(serverSum(run, 'voluntarySwitches') + serverSum(run, 'involuntarySwitches')),
    emptyWakeupsPerConnection: per(serverSum(run, 'emptyWakeups')),
    perWorker,
    maxOverMin: min > 0 ? Math.max(...perWorker) / min : Number.POSITIVE_INFINITY,
    topTwoShare: topTwoShare(perWorker),
    perWorkerDistinctPorts: perWorkerCounts([...firstPerPort.values()], workers),
    latency: summarize(okLatencies(run)),
    failed: failedCount(run),
  };
}

function sumColumns(rows: readonly (readonly number[])[], n: number): number[] {
  return Array.from({ length: n }, (_, i) => rows.reduce((sum, row) => sum + (row[i] ?? 0), 0));
}

function medianSummary(summaries: readonly LatencySummary[]): LatencySummary {
  const pick = (key: keyof LatencySummary) => median(summaries.map((s) => s[key]));
  return {
    count: pick('count'),
    meanUs: pick('meanUs'),
    p50Us: pick('p50Us'),
    p99Us: pick('p99Us'),
    maxUs: pick('maxUs'),
    stdevUs: pick('stdevUs'),
  };
}

/** Each model's light rounds, as medians, with ratios to reuseport's figure in the same round. */
export function analyzeLight(runs: readonly RunLine[], workers: number, cores: number): LightFigures[] {
  const models = [...new Set(runs.map((r) => r.model))];
  const roundsOf = (model: ModelName) =>
    runs.filter((r) => r.model === model).map((r) => analyzeLightRound(r, workers, cores));
  const baseline = roundsOf('reuseport');
  return models.map((model) => {
    const rounds = roundsOf(model);
    const first = runs.find((r) => r.model === model) as RunLine;
    const pick = (
      key:
        | 'connectionsPerSecond'
        | 'clientCpuShare'
        | 'machineBusyShare'
        | 'serverCpuUsPerConnection'
        | 'contextSwitchesPerConnection'
        | 'emptyWakeupsPerConnection'
        | 'maxOverMin'
        | 'topTwoShare',
    ) => median(rounds.map((r) => r[key]));
    const clientCpuShare = pick('clientCpuShare');
    const machineBusyShare = pick('machineBusyShare');
    const paired = rounds.flatMap((r) => {
      const base = baseline.find((b) => b.round === r.round);
      return base && base.connectionsPerSecond > 0 && base.serverCpuUsPerConnection > 0 ? [{ r, base }] : [];
    });
    const distinct = sumColumns(
      rounds.map((r) => r.perWorkerDistinctPorts),
      workers,
    );
    return {
      model,
      rounds,
      connectionsPerSecond: pick('connectionsPerSecond'),
      clientCpuShare,
      machineBusyShare,
      bound: clientCpuShare >= CLIENT_BOUND_CPU ? 'client' : machineBusyShare >= MACHINE_BOUND_CPU ? 'machine' : null,
      serverCpuUsPerConnection: pick('serverCpuUsPerConnection'),
      contextSwitchesPerConnection: pick('contextSwitchesPerConnection'),
      emptyWakeupsPerConnection: pick('emptyWakeupsPerConnection'),
      perWorker: sumColumns(
        rounds.map((r) => r.perWorker),
        workers,
      ),
      maxOverMin: pick('maxOverMin'),
      topTwoShare: pick('topTwoShare'),
      distinctSourcePorts: distinct.reduce((a, b) => a + b, 0),
      chiSquare: chiSquareUniform(distinct),
      latency: medianSummary(rounds.map((r) => r.latency)),
      failed: rounds.reduce((sum, r) => sum + r.failed, 0),
      ratioToReuseport:
        paired.length === 0
          ? null
          : {
              connectionsPerSecond: median(paired.map((p) => p.r.connectionsPerSecond / p.base.connectionsPerSecond)),
              serverCpuPerConnection: median(
                paired.map((p) => p.r.serverCpuUsPerConnection / p.base.serverCpuUsPerConnection),
              ),
            },
      evidence: evidence(first),
    };
  });
}

export function analyzeHeavy(runs: readonly RunLine[], cores: number): HeavyFigures[] {
  const models = [...new Set(runs.map((r) => r.model))];
  const roundsOf = (model: ModelName): HeavyRound[] =>
    runs
      .filter((r) => r.model === model)
      .map((r) => ({
        round: r.round,
        latency: summarize(okLatencies(r)),
        connectionsPerSecond: r.client.elapsedNs > 0 ? (r.client.completedInWindow * 1e9) / r.client.elapsedNs : 0,
        failed: failedCount(r),
        machineBusyShare: machineShare(r, cores),
        foreignCpuShare: foreignShare(r, cores),
      }));
  const baseline = roundsOf('shared-fifo');
  return models.map((model) => {
    const rounds = roundsOf(model);
    return {
      model,
      rounds,
      histogram: latencyHistogram(runs.filter((r) => r.model === model).flatMap(okLatencies)),
      median: medianSummary(rounds.map((r) => r.latency)),
      ratioToSharedFifo: heavyRatios(rounds, baseline),
      stdevRatioByRound: pairRounds(rounds, baseline)
        .filter((p) => p.b.stdevUs > 0)
        .map((p) => p.r.stdevUs / p.b.stdevUs),
    };
  });
}

function pairRounds(
  rounds: readonly HeavyRound[],
  baseline: readonly HeavyRound[],
): { r: LatencySummary; b: LatencySummary }[] {
  return rounds.flatMap((r) => {
    const base = baseline.find((b) => b.round === r.round);
    return base ? [{ r: r.latency, b: base.latency }] : [];
  });
}

/** Medians over rounds of one model's latency figures divided by another's in the same round; null when no round pairs. */
export function heavyRatios(rounds: readonly HeavyRound[], baseline: readonly HeavyRound[]): HeavyRatios | null {
  const paired = pairRounds(rounds, baseline);
  if (paired.length === 0) return null;
  const ratio = (key: keyof LatencySummary) =>
    median(paired.filter((p) => p.b[key] > 0).map((p) => p.r[key] / p.b[key]));
  return {
    mean: ratio('meanUs'),
    p50: ratio('p50Us'),
    p99: ratio('p99Us'),
    max: ratio('maxUs'),
    stdev: ratio('stdevUs'),
  };
}

export function analyzeStall(run: RunLine, workers: number): StallFigures {
  const stall = run.stall ?? { worker: 0, pid: 0, atNs: 0, plannedNs: 0, stoppedNs: 0, resumed: false };
  const from = stall.atNs / 1000;
  const to = from + stall.stoppedNs / 1000;
  const { startUs, worker, latencyUs, status } = run.samples;
  let started = 0;
  let landed = 0;
  let servedByOthers = 0;
  let delayedOnOthers = 0;
  startUs.forEach((t, i) => {
    if (t >= from && t < to) {
      started++;
      if (worker[i] === stall.worker) landed++;
    }
    if (status[i] === CONN_OK && worker[i] !== stall.worker) {
      servedByOthers++;
      if ((latencyUs[i] ?? 0) > DELAYED_US) delayedOnOthers++;
    }
  });
  const expected = started / workers;
  return {
    model: run.model,
    stoppedWorker: stall.worker,
    stoppedForMs: stall.stoppedNs / 1e6,
    resumed: stall.resumed,
    startedWhileStopped: started,
    landedOnStopped: landed,
    expectedShare: 1 / workers,
    ofExpected: expected > 0 ? landed / expected : 0,
    delayed: latencyUs.filter((l, i) => status[i] === CONN_OK && l > DELAYED_US).length,
    delayedOnOtherWorkers: delayedOnOthers,
    overloaded: delayedOnOthers > OVERLOADED_SHARE * servedByOthers,
    timedOut: status.filter((s) => s === CONN_TIMEOUT).length,
    failed: status.filter((s) => s !== CONN_OK && s !== CONN_TIMEOUT).length,
    connections: startUs.length,
    maxLatencyUs: latencyUs.length ? Math.max(...latencyUs) : 0,
  };
}

export function analyzeSlow(run: RunLine): SlowFigures {
  const { worker, latencyUs, status } = run.samples;
  const timedOut = status.filter((s) => s === CONN_TIMEOUT).length;
  const ok = okLatencies(run);
  return {
    model: run.model,
    connections: status.length,
    timedOut,
    timedOutShare: status.length > 0 ? timedOut / status.length : 0,
    delayed: ok.filter((l) => l > DELAYED_US).length,
    failed: status.filter((s) => s !== CONN_OK && s !== CONN_TIMEOUT).length,
    servedBySlow: worker.filter((w, i) => w === 0 && status[i] === CONN_OK).length,
    p99Us: percentile(ok, 0.99),
    maxLatencyUs: latencyUs.length ? Math.max(...latencyUs) : 0,
  };
}

export function analyzeRuns(runs: readonly RunLine[], workers: number, cores: number): PhaseFigures {
  return {
    order: runs.filter((r) => r.phase === 'order').map((r) => analyzeOrder(r, workers)),
    light: analyzeLight(
      runs.filter((r) => r.phase === 'light'),
      workers,
      cores,
    ),
    heavy: analyzeHeavy(
      runs.filter((r) => r.phase === 'heavy'),
      cores,
    ),
    stall: runs.filter((r) => r.phase === 'stall').map((r) => analyzeStall(r, workers)),
    slow: runs.filter((r) => r.phase === 'slow').map(analyzeSlow),
  };
}
