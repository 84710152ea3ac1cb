/**
 * The published figures `compare` tests, and the verdict on each. Data only.
 * Sources are listed in docs/compare.md.
 */
import { type HeavyFigures, heavyRatios, type LightFigures, median, type PhaseFigures } from './analyze.js';
import type { ModelName, PhaseName } from './protocol.js';

export type VerdictStatus = 'reproduced' | 'not reproduced here' | 'unclear';

export interface Verdict {
  id: string;
  phase: PhaseName;
  source: string;
  /** The published claim, with its figure. */
  published: string;
  /** What this run measured, with the figure. */
  measured: string;
  status: VerdictStatus;
  /** Why it was not reproduced or is unclear. */
  reason?: string;
}

/**
 * A threshold with a margin on its failing side: a figure at or beyond
 * `reproduced` reproduces the claim, one beyond `notReproduced` does not, and
 * one in between is "unclear". A figure that wobbles around a threshold from
 * run to run then moves between reproduced and unclear, or between unclear
 * and not reproduced, but never straight from one verdict to its opposite.
 */
export interface Band {
  reproduced: number;
  notReproduced: number;
}

/** Thresholds and their margins; each is quoted in docs/compare.md. */
export const THRESHOLDS = {
  lifoSameAsPrevious: { reproduced: 0.9, notReproduced: 0.8 },
  fifoSameAsPrevious: { reproduced: 0.2, notReproduced: 0.3 },
  skew: { reproduced: 3, notReproduced: 2.5 },
  nodeTopTwo: { reproduced: 0.7, notReproduced: 0.6 },
  nginxRate: { reproduced: 2, notReproduced: 1.7 },
  nginxStdev: { reproduced: 3, notReproduced: 2.5 },
  dispatcherRate: { reproduced: 1 / 1.5, notReproduced: 0.75 },
  heavyStdev: { reproduced: 5, notReproduced: 4 },
  heavyStdevCloudflare: 16,
  /** Node reusePort's heavy-handler stdev over Node cluster round-robin's, same rounds. */
  nodeHeavyStdev: { reproduced: 5, notReproduced: 4 },
  heavyMax: { reproduced: 1.5, notReproduced: 1.3 },
  heavyMeanLow: { reproduced: 0.9, notReproduced: 0.85 },
  heavyMeanHigh: { reproduced: 1.15, notReproduced: 1.2 },
  /** shared-fifo's stdev, max over min across rounds (the round farthest from the median left out), above which the heavy baseline is too noisy to judge. */
  heavyBaselineSpread: 2,
  /** |share the stopped worker got ÷ its 1/N − 1|. */
  stallShareDistance: { reproduced: 0.25, notReproduced: 0.35 },
  stallSharedDelayed: { reproduced: 3, notReproduced: 6 },
  /** Timed-out connections under reuseport, as a fraction of the slow worker's 1/N share. */
  slowReuseportTimedOut: { reproduced: 0.5, notReproduced: 0.3 },
  /** Timed-out share of connections in the worst load-aware model. */
  slowLoadAwareTimedOut: { reproduced: 0.005, notReproduced: 0.02 },
};

/** Where a figure falls against a band. */
export function grade(value: number, band: Band): VerdictStatus {
  const higherIsBetter = band.reproduced >= band.notReproduced;
  if (higherIsBetter ? value >= band.reproduced : value <= band.reproduced) return 'reproduced';
  if (higherIsBetter ? value < band.notReproduced : value > band.notReproduced) return 'not reproduced here';
  return 'unclear';
}

/** Several criteria of one claim: not reproduced when any clearly fails, reproduced when all hold. */
export function combine(statuses: readonly VerdictStatus[]): VerdictStatus {
  if (statuses.includes('not reproduced here')) return 'not reproduced here';
  return statuses.every((s) => s === 'reproduced') ? 'reproduced' : 'unclear';
}

function bandText(band: Band, format: (value: number) => string): string {
  const [low, high] = [band.reproduced, band.notReproduced].sort((a, b) => a - b) as [number, number];
  return `near the threshold: between ${format(low)} and ${format(high)} is too close to call`;
}

const fixed = (value: number, digits = 1) => (Number.isFinite(value) ? value.toFixed(digits) : '∞');
const pct = (value: number) => `${Math.round(value * 100)} %`;

function boundReason(rows: readonly LightFigures[], cores: number): string | null {
  const bound = rows.find((r) => r.bound !== null);
  if (!bound) return null;
  const what =
    bound.bound === 'client'
      ? `the client used ${pct(bound.clientCpuShare)} of a core`
      : `the machine's CPUs were ${pct(bound.machineBusyShare)} busy`;
  return `${cores} cores and a ${bound.bound}-bound rate (${what} at ${Math.round(bound.connectionsPerSecond)} connections/s): the servers were not the limit`;
}

/**
 * Whether the heavy phase's baseline was too noisy to judge: shared-fifo's
 * stdev varied more than heavyBaselineSpread× between rounds. With three or
 * more rounds the round farthest from the median is left out first, because
 * the median already absorbs one outlier; noise is when the rest disagree too.
 */
export function heavyBaselineTooNoisy(heavy: readonly HeavyFigures[]): boolean {
  const base = heavy.find((h) => h.model === 'shared-fifo');
  if (!base || base.rounds.length < 2) return false;
  let stdevs = base.rounds.map((r) => r.latency.stdevUs);
  if (stdevs.some((v) => v <= 0)) return true;
  if (stdevs.length >= 3) {
    const mid = median(stdevs);
    const distance = (v: number) => Math.abs(Math.log(v / mid));
    const farthest = stdevs.reduce((worst, v, i) => (distance(v) > distance(stdevs[worst] ?? mid) ? i : worst), 0);
    stdevs = stdevs.filter((_, i) => i !== farthest);
  }
  return Math.max(...stdevs) / Math.min(...stdevs) > THRESHOLDS.heavyBaselineSpread;
}

/** The heavy verdict from the figures alone (before the noise check). */
function heavyGrade(heavy: readonly HeavyFigures[]): VerdictStatus | null {
  const r = heavy.find((h) => h.model === 'reuseport')?.ratioToSharedFifo;
  if (!r) return null;
  return combine([
    grade(r.stdev, THRESHOLDS.heavyStdev),
    grade(r.max, THRESHOLDS.heavyMax),
    grade(r.mean, THRESHOLDS.heavyMeanLow),
    grade(r.mean, THRESHOLDS.heavyMeanHigh),
  ]);
}

/**
 * Rerun the heavy phase only when its verdict is still open and the baseline
 * was too noisy to trust: a reproduced claim stands (a noisy baseline only
 * shrinks the ratios), and a clean baseline's verdict is already the answer.
 */
export function heavyNeedsRerun(heavy: readonly HeavyFigures[]): boolean {
  const status = heavyGrade(heavy);
  return status !== null && status !== 'reproduced' && heavyBaselineTooNoisy(heavy);
}

type Claim = Omit<Verdict, 'status' | 'reason'>;

/** A verdict with the reason that fits its status (none when reproduced). */
function decide(claim: Claim, status: VerdictStatus, why: { unclear: string; notReproduced: string }): Verdict {
  if (status === 'reproduced') return { ...claim, status };
  return { ...claim, status, reason: status === 'unclear' ? why.unclear : why.notReproduced };
}

const LOAD_AWARE = ['shared-fifo', 'shared-lifo', 'shared-epoll', 'dispatcher-least-loaded'] as const;

export function judge(figures: PhaseFigures, context: { cores: number; workers: number }): Verdict[] {
  const verdicts: Verdict[] = [];
  const { cores, workers } = context;
  const order = (m: ModelName) => figures.order.find((f) => f.model === m);
  const light = (m: ModelName) => figures.light.find((f) => f.model === m);
  const stall = (m: ModelName) => figures.stall.find((f) => f.model === m);
  const slow = (m: ModelName) => figures.slow.find((f) => f.model === m);
  const share = (band: Band) => bandText(band, pct);
  const ratio = (band: Band) => bandText(band, (v) => `${fixed(v, 2)}×`);

  const lifo = order('shared-lifo');
  if (lifo) {
    verdicts.push(
      decide(
        {
          id: 'order.lifo',
          phase: 'order',
          source: 'Cloudflare 2017',
          published: 'epoll on a shared socket wakes the same worker first (LIFO): one worker takes most connections',
          measured: `shared-lifo served the previous connection's worker ${pct(lifo.sameAsPrevious)} of the time (chance ${pct(lifo.expectedByChance)})`,
        },
        grade(lifo.sameAsPrevious, THRESHOLDS.lifoSameAsPrevious),
        {
          unclear: share(THRESHOLDS.lifoSameAsPrevious),
          notReproduced:
            'the favoured worker was often still busy when the next connection came; a busy machine shows this',
        },
      ),
    );
  }
  const fifo = order('shared-fifo');
  if (fifo) {
    verdicts.push(
      decide(
        {
          id: 'order.fifo',
          phase: 'order',
          source: 'Cloudflare 2017',
          published: 'blocking accept() on a shared socket is FIFO: the worker that waited longest goes next',
          measured: `shared-fifo served the previous connection's worker ${pct(fifo.sameAsPrevious)} of the time (${fifo.classification})`,
        },
        grade(fifo.sameAsPrevious, THRESHOLDS.fifoSameAsPrevious),
        {
          unclear: share(THRESHOLDS.fifoSameAsPrevious),
          notReproduced: 'workers were often not back in accept() before the next connection',
        },
      ),
    );
  }

  const skewed = (['shared-lifo', 'shared-epoll'] as const).flatMap((m) => {
    const f = light(m);
    return f ? [f] : [];
  });
  if (skewed.length > 0 && workers >= 2) {
    const worst = skewed.reduce((a, b) => (b.maxOverMin > a.maxOverMin ? b : a));
    verdicts.push(
      decide(
        {
          id: 'light.skew',
          phase: 'light',
          source: 'LWN 2013',
          published: 'wake-ups on a shared accept socket were skewed about 3:1 between workers',
          measured: skewed.map((f) => `${f.model} busiest/idlest ${fixed(f.maxOverMin)}:1`).join(', '),
        },
        grade(worst.maxOverMin, THRESHOLDS.skew),
        {
          unclear: bandText(THRESHOLDS.skew, (v) => `${fixed(v)}:1`),
          notReproduced: 'every worker found connections often enough at this load',
        },
      ),
    );
  }

  // Node's own SCHED_NONE when --with-node ran it; otherwise plain shared epoll, which is what libuv does.
  const nodeNone = light('node-sched-none');
  const plain = nodeNone ?? light('shared-epoll');
  if (plain && workers >= 3) {
    const exclusive = light('shared-lifo');
    const what = nodeNone ? 'Node cluster SCHED_NONE' : 'plain shared epoll (what SCHED_NONE does)';
    verdicts.push(
      decide(
        {
          id: 'light.node-sched-none',
          phase: 'light',
          source: 'Node.js cluster docs',
          published: 'with SCHED_NONE (a shared handle) over 70 % of connections went to 2 of 8 processes',
          measured: `${what}: top two of ${workers} took ${pct(plain.topTwoShare)} (chance ${pct(2 / workers)}; median of ${plain.rounds.length} rounds)${exclusive ? `; with EPOLLEXCLUSIVE ${pct(exclusive.topTwoShare)}` : ''}`,
        },
        grade(plain.topTwoShare, THRESHOLDS.nodeTopTwo),
        {
          unclear: share(THRESHOLDS.nodeTopTwo),
          notReproduced: `plain epoll wakes every worker and the first to accept wins, which spreads the load${exclusive && exclusive.topTwoShare >= THRESHOLDS.nodeTopTwo.reproduced ? '; only EPOLLEXCLUSIVE reaches that regime here' : ''}`,
        },
      ),
    );
  }

  const reuse = light('reuseport');
  const herd = light('shared-epoll');
  if (reuse && herd) {
    const rate = herd.connectionsPerSecond > 0 ? reuse.connectionsPerSecond / herd.connectionsPerSecond : 0;
    const spread = reuse.latency.stdevUs > 0 ? herd.latency.stdevUs / reuse.latency.stdevUs : 0;
    const bound = boundReason([reuse, herd], cores);
    const status = combine([grade(rate, THRESHOLDS.nginxRate), grade(spread, THRESHOLDS.nginxStdev)]);
    verdicts.push(
      decide(
        {
          id: 'light.nginx',
          phase: 'light',
          source: 'NGINX 1.9.1 (2015)',
          published: 'reuseport gave 2–3× the requests/s and cut the latency stdev from 26.6 ms to 3.2 ms (8.3×)',
          measured: `reuseport ${fixed(rate, 2)}× the connections/s of shared-epoll; latency stdev ${fixed(herd.latency.stdevUs / 1000, 2)} ms → ${fixed(reuse.latency.stdevUs / 1000, 2)} ms (${fixed(spread)}×)`,
        },
        // A client- or machine-bound rate cannot show a server's throughput at all.
        bound !== null && status !== 'reproduced' ? 'not reproduced here' : status,
        {
          unclear: 'the rate and stdev ratios are near their thresholds (2× and 3×): too close to call',
          notReproduced: bound ?? 'at this load the shared socket was not the bottleneck',
        },
      ),
    );
  }

  const dispatcher = light('dispatcher');
  if (reuse && dispatcher) {
    const rate = reuse.connectionsPerSecond > 0 ? dispatcher.connectionsPerSecond / reuse.connectionsPerSecond : 0;
    const cpu =
      reuse.serverCpuUsPerConnection > 0 ? dispatcher.serverCpuUsPerConnection / reuse.serverCpuUsPerConnection : 0;
    const bound = boundReason([reuse, dispatcher], cores);
    verdicts.push(
      decide(
        {
          id: 'light.dispatcher',
          phase: 'light',
          source: 'LWN 2013',
          published: 'a dispatcher process became the bottleneck at about 40,000 connections/s',
          measured: `dispatcher ${Math.round(dispatcher.connectionsPerSecond)}/s against reuseport ${Math.round(reuse.connectionsPerSecond)}/s (${fixed(rate, 2)}×), at ${fixed(cpu, 2)}× the server CPU per connection`,
        },
        bound !== null ? 'not reproduced here' : grade(rate, THRESHOLDS.dispatcherRate),
        {
          unclear: ratio(THRESHOLDS.dispatcherRate),
          notReproduced:
            bound ?? 'the dispatcher kept up: this run stayed below the rate where one accepting process saturates',
        },
      ),
    );
  }

  const heavyReuse = figures.heavy.find((h) => h.model === 'reuseport');
  const heavyStatus = heavyGrade(figures.heavy);
  if (heavyReuse?.ratioToSharedFifo && heavyStatus !== null) {
    const r = heavyReuse.ratioToSharedFifo;
    const noisy = heavyBaselineTooNoisy(figures.heavy);
    const busy = Math.max(...heavyReuse.rounds.map((x) => x.foreignCpuShare));
    const scale = r.stdev >= THRESHOLDS.heavyStdevCloudflare ? ", at Cloudflare's scale" : '';
    verdicts.push(
      decide(
        {
          id: 'heavy.cloudflare',
          phase: 'heavy',
          source: 'Cloudflare 2017',
          published:
            'with a CPU-heavy handler reuseport had about the same mean latency, 2× the max and 16× the stdev (25.3 ms against 1.6 ms)',
          measured: `reuseport against shared-fifo: stdev ${fixed(r.stdev)}×, max ${fixed(r.max, 2)}×, mean ${fixed(r.mean, 2)}× (medians of ${heavyReuse.rounds.length} alternating rounds${scale})`,
        },
        heavyStatus !== 'reproduced' && noisy ? 'unclear' : heavyStatus,
        {
          unclear: noisy
            ? `shared-fifo's own stdev varied more than ${THRESHOLDS.heavyBaselineSpread}× between rounds: the baseline is too noisy to judge`
            : 'a ratio is near its threshold (stdev 4–5×, max 1.3–1.5×, mean 0.85–0.9× or 1.15–1.2×): too close to call',
          notReproduced: `${cores} cores${busy > 0.2 ? ` and other programs using ${pct(busy)} of the CPUs` : ''}: with few cores the CPU, not the hash, decides who waits`,
        },
      ),
    );
  }

  const heavyOf = (m: ModelName) => figures.heavy.find((h) => h.model === m);
  const nodeReuse = heavyOf('node-reuseport');
  const nodeRr = heavyOf('node-cluster-rr');
  const nodeRatio = nodeReuse && nodeRr ? heavyRatios(nodeReuse.rounds, nodeRr.rounds) : null;
  if (nodeRatio) {
    verdicts.push(
      decide(
        {
          id: 'heavy.node',
          phase: 'heavy',
          source: 'issue #10 prototype (2 cores)',
          published:
            'with the same CPU-heavy handler, Node 24 cluster + reusePort had 5–6× the latency stdev of cluster round-robin',
          measured: `node-reuseport against node-cluster-rr: stdev ${fixed(nodeRatio.stdev)}×, max ${fixed(nodeRatio.max, 2)}×, mean ${fixed(nodeRatio.mean, 2)}× (medians of ${nodeReuse?.rounds.length ?? 0} alternating rounds)`,
        },
        grade(nodeRatio.stdev, THRESHOLDS.nodeHeavyStdev),
        {
          unclear: bandText(THRESHOLDS.nodeHeavyStdev, (v) => `${fixed(v)}×`),
          notReproduced: `${cores} cores: with few cores the CPU scheduler, not the accept model, decides much of who waits`,
        },
      ),
    );
  }

  const stalledReuse = stall('reuseport');
  if (stalledReuse) {
    const broken = !stalledReuse.resumed || stalledReuse.failed > 0 || stalledReuse.startedWhileStopped === 0;
    verdicts.push(
      decide(
        {
          id: 'stall.reuseport',
          phase: 'stall',
          source: 'Cloudflare 2017',
          published:
            'the kernel keeps sending a busy (here: stopped) reuseport worker its hash share of new connections',
          measured: `the stopped worker got ${stalledReuse.landedOnStopped} of ${stalledReuse.startedWhileStopped} (${fixed(stalledReuse.ofExpected, 2)}× its 1/${workers} share); ${stalledReuse.delayed} connections delayed over 100 ms, ${stalledReuse.timedOut} timed out`,
        },
        broken ? 'not reproduced here' : grade(Math.abs(stalledReuse.ofExpected - 1), THRESHOLDS.stallShareDistance),
        {
          unclear: 'the share is near the edge of 1/N ± 25 % (between ± 25 % and ± 35 %): too close to call',
          notReproduced:
            stalledReuse.failed > 0
              ? `${stalledReuse.failed} connections failed`
              : 'the share fell outside 1/N ± 35 %: too few connections during the stop',
        },
      ),
    );
  }
  const shared = (['shared-fifo', 'shared-lifo', 'shared-epoll'] as const).flatMap((m) => {
    const f = stall(m);
    return f ? [f] : [];
  });
  if (shared.length > 0) {
    const worst = Math.max(...shared.map((f) => f.delayed));
    const broken = shared.some((f) => !f.resumed || f.failed > 0);
    verdicts.push(
      decide(
        {
          id: 'stall.shared',
          phase: 'stall',
          source: 'Cloudflare 2017',
          published: 'a shared accept queue serves new connections from the workers that are free',
          measured: shared.map((f) => `${f.model} ${f.delayed} delayed`).join(', '),
        },
        broken ? 'not reproduced here' : grade(worst, THRESHOLDS.stallSharedDelayed),
        {
          unclear: 'a shared model delayed 4–6 connections: near the threshold of 3',
          notReproduced: 'some connections were accepted by the stopped worker just before it stopped, or failed',
        },
      ),
    );
  }

  const slowReuse = slow('reuseport');
  if (slowReuse) {
    const ofShare = slowReuse.timedOutShare * workers;
    verdicts.push(
      decide(
        {
          id: 'slow.reuseport',
          phase: 'slow',
          source: 'issue #10 prototype (2 cores)',
          published:
            'one worker sleeping 200 ms on every 10th request: reuseport timed out 21 % of connections at N = 4 (most of the slow worker’s share)',
          measured: `reuseport timed out ${slowReuse.timedOut} of ${slowReuse.connections} (${pct(slowReuse.timedOutShare)}, ${fixed(ofShare, 2)}× the slow worker's 1/${workers} share)`,
        },
        grade(ofShare, THRESHOLDS.slowReuseportTimedOut),
        {
          unclear: bandText(THRESHOLDS.slowReuseportTimedOut, (v) => `${fixed(v, 2)}× of its share`),
          notReproduced: 'the slow worker kept up with its share at this rate',
        },
      ),
    );
  }
  const aware = LOAD_AWARE.flatMap((m) => {
    const f = slow(m);
    return f ? [f] : [];
  });
  if (aware.length > 0) {
    const worst = aware.reduce((a, b) => (b.timedOutShare > a.timedOutShare ? b : a));
    verdicts.push(
      decide(
        {
          id: 'slow.load-aware',
          phase: 'slow',
          source: 'issue #10 prototype (2 cores)',
          published: 'with the same slow worker, every load-aware model timed out no connection',
          measured: aware.map((f) => `${f.model} ${f.timedOut} timed out`).join(', '),
        },
        grade(worst.timedOutShare, THRESHOLDS.slowLoadAwareTimedOut),
        {
          unclear: `${worst.model} timed out ${pct(worst.timedOutShare)}: between 0.5 % and 2 % is too close to call`,
          notReproduced: `${worst.model} timed out ${pct(worst.timedOutShare)} of its connections: the machine, not the slow worker, held them up`,
        },
      ),
    );
  }
  return verdicts;
}

/** Which published regimes a machine of this size can show. */
export function regimeNote(cores: number): string {
  if (cores < 4) {
    return `${cores} cores: this machine can show the wake-up order, the stalled worker and, when it is quiet, the heavy-handler variance. It cannot show throughput differences: one client core saturates first (about 20,000–30,000 connections/s), so light-phase rates are client-bound.`;
  }
  if (cores < 8) {
    return `${cores} cores: the wake-up order, the stalled worker and the heavy-handler variance show clearly; throughput differences between models need 8 or more cores.`;
  }
  return `${cores} cores: every regime can show here, including throughput with several clients (reuseport ahead of the dispatcher and of blocking shared accept at N = 16).`;
}
