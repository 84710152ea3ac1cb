/**
 * The published figures `compare` tests, and the verdict on each. Data only.
 * Sources are listed in docs/compare.md.
 */
import type { HeavyFigures, LightFigures, PhaseFigures } from './analyze.js';
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

/** Thresholds; each is quoted in docs/compare.md. */
export const THRESHOLDS = {
  lifoSameAsPrevious: 0.9,
  fifoSameAsPrevious: 0.2,
  skew: 3,
  nodeTopTwo: 0.7,
  nginxRate: 2,
  nginxStdev: 3,
  dispatcherRate: 1 / 1.5,
  heavyStdev: 5,
  heavyStdevCloudflare: 16,
  heavyMax: 1.5,
  heavyMean: [0.9, 1.15] as const,
  /** shared-fifo's stdev, max over min across rounds, above which the heavy baseline is too noisy to judge. */
  heavyBaselineSpread: 2,
  stallShare: 0.25,
  stallSharedDelayed: 3,
};

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

/** Whether the heavy phase's baseline was too noisy to judge (the phase is then rerun once). */
export function heavyBaselineTooNoisy(heavy: readonly HeavyFigures[]): boolean {
  const base = heavy.find((h) => h.model === 'shared-fifo');
  if (!base || base.rounds.length < 2) return false;
  const stdevs = base.rounds.map((r) => r.latency.stdevUs);
  const min = Math.min(...stdevs);
  return min <= 0 || Math.max(...stdevs) / min > THRESHOLDS.heavyBaselineSpread;
}

export function judge(figures: PhaseFigures, context: { cores: number; workers: number }): Verdict[] {
  const verdicts: Verdict[] = [];
  const { cores, workers } = context;
  const order = (m: ModelName) => figures.order.find((f) => f.model === m);
  const light = (m: ModelName) => figures.light.find((f) => f.model === m);
  const stall = (m: ModelName) => figures.stall.find((f) => f.model === m);

  const lifo = order('shared-lifo');
  if (lifo) {
    const ok = lifo.sameAsPrevious >= THRESHOLDS.lifoSameAsPrevious;
    verdicts.push({
      id: 'order.lifo',
      phase: 'order',
      source: 'Cloudflare 2017',
      published: 'epoll on a shared socket wakes the same worker first (LIFO): one worker takes most connections',
      measured: `shared-lifo served the previous connection's worker ${pct(lifo.sameAsPrevious)} of the time (chance ${pct(lifo.expectedByChance)})`,
      status: ok ? 'reproduced' : 'not reproduced here',
      ...(ok
        ? {}
        : {
            reason: 'the favoured worker was often still busy when the next connection came; a busy machine shows this',
          }),
    });
  }
  const fifo = order('shared-fifo');
  if (fifo) {
    const ok = fifo.sameAsPrevious <= THRESHOLDS.fifoSameAsPrevious;
    verdicts.push({
      id: 'order.fifo',
      phase: 'order',
      source: 'Cloudflare 2017',
      published: 'blocking accept() on a shared socket is FIFO: the worker that waited longest goes next',
      measured: `shared-fifo served the previous connection's worker ${pct(fifo.sameAsPrevious)} of the time (${fifo.classification})`,
      status: ok ? 'reproduced' : 'not reproduced here',
      ...(ok ? {} : { reason: 'workers were often not back in accept() before the next connection' }),
    });
  }

  const skewed = (['shared-lifo', 'shared-epoll'] as const).flatMap((m) => {
    const f = light(m);
    return f ? [f] : [];
  });
  if (skewed.length > 0 && workers >= 2) {
    const worst = skewed.reduce((a, b) => (b.maxOverMin > a.maxOverMin ? b : a));
    const ok = worst.maxOverMin >= THRESHOLDS.skew;
    verdicts.push({
      id: 'light.skew',
      phase: 'light',
      source: 'LWN 2013',
      published: 'wake-ups on a shared accept socket were skewed about 3:1 between workers',
      measured: skewed.map((f) => `${f.model} busiest/idlest ${fixed(f.maxOverMin)}:1`).join(', '),
      status: ok ? 'reproduced' : 'not reproduced here',
      ...(ok ? {} : { reason: 'every worker found connections often enough at this load' }),
    });
  }

  const plain = light('shared-epoll');
  if (plain && workers >= 3) {
    const exclusive = light('shared-lifo');
    const ok = plain.topTwoShare >= THRESHOLDS.nodeTopTwo;
    verdicts.push({
      id: 'light.node-sched-none',
      phase: 'light',
      source: 'Node.js cluster docs',
      published: 'with SCHED_NONE (a shared handle) over 70 % of connections went to 2 of 8 processes',
      measured: `plain shared epoll: top two of ${workers} took ${pct(plain.topTwoShare)} (chance ${pct(2 / workers)})${exclusive ? `; with EPOLLEXCLUSIVE ${pct(exclusive.topTwoShare)}` : ''}`,
      status: ok ? 'reproduced' : 'not reproduced here',
      ...(ok
        ? {}
        : {
            reason: `plain epoll wakes every worker and the first to accept wins, which spreads the load${exclusive && exclusive.topTwoShare >= THRESHOLDS.nodeTopTwo ? '; only EPOLLEXCLUSIVE reaches that regime here' : ''}`,
          }),
    });
  }

  const reuse = light('reuseport');
  const herd = light('shared-epoll');
  if (reuse && herd) {
    const rate = herd.connectionsPerSecond > 0 ? reuse.connectionsPerSecond / herd.connectionsPerSecond : 0;
    const spread = reuse.latency.stdevUs > 0 ? herd.latency.stdevUs / reuse.latency.stdevUs : 0;
    const ok = rate >= THRESHOLDS.nginxRate && spread >= THRESHOLDS.nginxStdev;
    const bound = boundReason([reuse, herd], cores);
    verdicts.push({
      id: 'light.nginx',
      phase: 'light',
      source: 'NGINX 1.9.1 (2015)',
      published: 'reuseport gave 2–3× the requests/s and cut the latency stdev from 26.6 ms to 3.2 ms (8.3×)',
      measured: `reuseport ${fixed(rate, 2)}× the connections/s of shared-epoll; latency stdev ${fixed(herd.latency.stdevUs / 1000, 2)} ms → ${fixed(reuse.latency.stdevUs / 1000, 2)} ms (${fixed(spread)}×)`,
      status: ok ? 'reproduced' : 'not reproduced here',
      ...(ok ? {} : { reason: bound ?? 'at this load the shared socket was not the bottleneck' }),
    });
  }

  const dispatcher = light('dispatcher');
  if (reuse && dispatcher) {
    const rate = reuse.connectionsPerSecond > 0 ? dispatcher.connectionsPerSecond / reuse.connectionsPerSecond : 0;
    const cpu =
      reuse.serverCpuUsPerConnection > 0 ? dispatcher.serverCpuUsPerConnection / reuse.serverCpuUsPerConnection : 0;
    const bound = boundReason([reuse, dispatcher], cores);
    const ok = rate <= THRESHOLDS.dispatcherRate && bound === null;
    verdicts.push({
      id: 'light.dispatcher',
      phase: 'light',
      source: 'LWN 2013',
      published: 'a dispatcher process became the bottleneck at about 40,000 connections/s',
      measured: `dispatcher ${Math.round(dispatcher.connectionsPerSecond)}/s against reuseport ${Math.round(reuse.connectionsPerSecond)}/s (${fixed(rate, 2)}×), at ${fixed(cpu, 2)}× the server CPU per connection`,
      status: ok ? 'reproduced' : 'not reproduced here',
      ...(ok
        ? {}
        : {
            reason:
              bound ?? `the dispatcher kept up: this run stayed below the rate where one accepting process saturates`,
          }),
    });
  }

  const heavyReuse = figures.heavy.find((h) => h.model === 'reuseport');
  if (heavyReuse?.ratioToSharedFifo) {
    const r = heavyReuse.ratioToSharedFifo;
    const [low, high] = THRESHOLDS.heavyMean;
    const ok = r.stdev >= THRESHOLDS.heavyStdev && r.max >= THRESHOLDS.heavyMax && r.mean >= low && r.mean <= high;
    const noisy = heavyBaselineTooNoisy(figures.heavy);
    const busy = Math.max(...heavyReuse.rounds.map((x) => x.foreignCpuShare));
    const scale = r.stdev >= THRESHOLDS.heavyStdevCloudflare ? ", at Cloudflare's scale" : '';
    verdicts.push({
      id: 'heavy.cloudflare',
      phase: 'heavy',
      source: 'Cloudflare 2017',
      published:
        'with a CPU-heavy handler reuseport had about the same mean latency, 2× the max and 16× the stdev (25.3 ms against 1.6 ms)',
      measured: `reuseport against shared-fifo: stdev ${fixed(r.stdev)}×, max ${fixed(r.max, 2)}×, mean ${fixed(r.mean, 2)}× (medians of ${heavyReuse.rounds.length} alternating rounds${scale})`,
      status: ok ? 'reproduced' : noisy ? 'unclear' : 'not reproduced here',
      ...(ok
        ? {}
        : {
            reason: noisy
              ? `shared-fifo's own stdev varied more than ${THRESHOLDS.heavyBaselineSpread}× between rounds: the baseline is too noisy to judge`
              : `${cores} cores${busy > 0.2 ? ` and other programs using ${pct(busy)} of the CPUs` : ''}: with few cores the CPU, not the hash, decides who waits`,
          }),
    });
  }

  const stalledReuse = stall('reuseport');
  if (stalledReuse) {
    const ok =
      stalledReuse.resumed &&
      Math.abs(stalledReuse.ofExpected - 1) <= THRESHOLDS.stallShare &&
      stalledReuse.failed === 0 &&
      stalledReuse.startedWhileStopped > 0;
    verdicts.push({
      id: 'stall.reuseport',
      phase: 'stall',
      source: 'Cloudflare 2017',
      published: 'the kernel keeps sending a busy (here: stopped) reuseport worker its hash share of new connections',
      measured: `the stopped worker got ${stalledReuse.landedOnStopped} of ${stalledReuse.startedWhileStopped} (${fixed(stalledReuse.ofExpected, 2)}× its 1/${workers} share); ${stalledReuse.delayed} connections delayed over 100 ms, ${stalledReuse.timedOut} timed out`,
      status: ok ? 'reproduced' : 'not reproduced here',
      ...(ok
        ? {}
        : {
            reason:
              stalledReuse.failed > 0
                ? `${stalledReuse.failed} connections failed`
                : 'the share fell outside 1/N ± 25 %: too few connections during the stop',
          }),
    });
  }
  const shared = (['shared-fifo', 'shared-lifo', 'shared-epoll'] as const).flatMap((m) => {
    const f = stall(m);
    return f ? [f] : [];
  });
  if (shared.length > 0) {
    const ok = shared.every((f) => f.resumed && f.delayed <= THRESHOLDS.stallSharedDelayed && f.failed === 0);
    verdicts.push({
      id: 'stall.shared',
      phase: 'stall',
      source: 'Cloudflare 2017',
      published: 'a shared accept queue serves new connections from the workers that are free',
      measured: shared.map((f) => `${f.model} ${f.delayed} delayed`).join(', '),
      status: ok ? 'reproduced' : 'not reproduced here',
      ...(ok
        ? {}
        : { reason: 'some connections were accepted by the stopped worker just before it stopped, or failed' }),
    });
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
