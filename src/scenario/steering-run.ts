/**
 * Running a traffic step that sweeps source ports (`sourcePorts`), and keeping
 * what each port got. The sweep is the native port sweep (src/net/port-sweep.ts);
 * its outcome is also folded into a LoadResult, so that the checks every run
 * makes (accounting against the workers' counters, failed traffic) apply to a
 * sweep exactly as to any other traffic.
 */
import os from 'node:os';
import { balanceVerdict } from '../net/balance.js';
import { parseGreeting, type WorkerIdentity, workerKey } from '../net/greeting.js';
import type { LoadResult } from '../net/load-client.js';
import { type SweepResult, sweepSourcePorts } from '../net/port-sweep.js';
import type { KernelRequirement } from './format-steering.js';
import type { TrafficSpec } from './schema.js';

/** How long one attempt waits for its greeting (UDP: its reply). */
const SWEEP_REPLY_TIMEOUT_MS = 2000;

/** The instances a sweep can name, as the runner knows them. */
export interface SweepInstance {
  server: string;
  replica: number;
  workerId: number;
  pid: number;
}

/**
 * What every source port of a sweep got, in --json. `answers[k]` per port is
 * the index in `instances` of who answered round k, or -1 when nobody did;
 * those attempts are listed in `failures` with their outcome.
 */
export interface SweepObservation {
  from: number;
  count: number;
  repeat: number;
  elapsedMs: number;
  /** The running instances, labelled as reports name them ("W#2"). */
  instances: { label: string; server: string; replica: number; pid: number }[];
  ports: { sourcePort: number; answers: number[] }[];
  failures: { sourcePort: number; round: number; outcome: string }[];
  /** Ports answered by more than one instance within this sweep. */
  unstablePorts: number[];
}

/** Sweeps the step's source ports; returns the raw result and the same result as a LoadResult. */
export async function runSweep(
  spec: TrafficSpec,
  deadlineMs: number,
): Promise<{ result: SweepResult; load: LoadResult }> {
  const sourcePorts = spec.sourcePorts;
  if (!sourcePorts) throw new Error('runSweep needs a traffic step with sourcePorts');
  const result = await sweepSourcePorts({
    protocol: spec.protocol,
    host: spec.target,
    port: spec.port,
    sourcePorts,
    concurrency: spec.concurrency,
    replyTimeoutMs: SWEEP_REPLY_TIMEOUT_MS,
    deadlineMs,
  });
  return { result, load: sweepAsLoad(spec, result) };
}

/** The sweep in the load client's terms: the same five-way split of what became of each attempt. */
function sweepAsLoad(spec: TrafficSpec, result: SweepResult): LoadResult {
  const workers = new Map<string, WorkerIdentity & { count: number; ports: Set<number> }>();
  const failures = new Map<string, number>();
  let attributed = 0;
  let unrecognized = 0;
  let silent = 0;
  let inFlight = 0;
  let notStarted = 0;
  for (const attempt of result.attempts) {
    if (attempt.outcome === 'reply') {
      const who = parseGreeting(attempt.reply);
      if (!who) {
        unrecognized++;
        continue;
      }
      attributed++;
      const key = workerKey(who);
      const tally = workers.get(key) ?? { ...who, count: 0, ports: new Set<number>() };
      tally.count++;
      tally.ports.add(attempt.sourcePort);
      workers.set(key, tally);
    } else if (attempt.outcome === 'silent') silent++;
    else if (attempt.outcome === 'cut-off') inFlight++;
    else if (attempt.outcome === 'not-run') notStarted++;
    else failures.set(attempt.outcome, (failures.get(attempt.outcome) ?? 0) + 1);
  }
  const perWorker = [...workers.values()]
    .sort((a, b) => a.workerId - b.workerId || a.pid - b.pid)
    .map(({ ports, ...who }) => ({ ...who, distinctSourcePorts: ports.size }));
  const failed = [...failures.values()].reduce((a, b) => a + b, 0);
  const attempted = result.attempts.length - notStarted;
  const settled = attempted - inFlight;
  return {
    protocol: spec.protocol,
    target: { host: spec.target, port: spec.port },
    connections: result.attempts.length,
    concurrency: spec.concurrency,
    attempted,
    notStarted,
    attributed,
    unrecognized,
    silent,
    failed,
    failures: [...failures].map(([code, count]) => ({ code, count })).sort((a, b) => b.count - a.count),
    inFlight,
    perWorker,
    distinctSourcePorts: new Set(result.attempts.filter((a) => a.outcome === 'reply').map((a) => a.sourcePort)).size,
    balance:
      attributed === 0
        ? null
        : balanceVerdict(
            perWorker.map((w) => w.distinctSourcePorts),
            'distinctSourcePorts',
          ),
    elapsedMs: Math.round(result.elapsedMs * 10) / 10,
    ratePerSec: result.elapsedMs > 0 ? Math.round((settled / result.elapsedMs) * 1000) : 0,
    stoppedEarly: result.deadlineHit ? 'deadline' : null,
    hints: [],
  };
}

/** Per source port, who answered each round; the runner's instances give the labels. */
export function sweepObservation(spec: TrafficSpec, result: SweepResult, running: SweepInstance[]): SweepObservation {
  const { from, count, repeat } = spec.sourcePorts ?? { from: 0, count: 0, repeat: 0 };
  const index = new Map(running.map((i, n) => [`${i.pid}/${i.workerId}`, n]));
  const ports = new Map<number, number[]>();
  const failures: SweepObservation['failures'] = [];
  for (const attempt of result.attempts) {
    const who = attempt.outcome === 'reply' ? parseGreeting(attempt.reply) : null;
    const n = who ? (index.get(workerKey(who)) ?? -1) : -1;
    if (n < 0) {
      const outcome = attempt.outcome === 'reply' ? (who ? 'stranger' : 'no greeting') : attempt.outcome;
      failures.push({ sourcePort: attempt.sourcePort, round: attempt.round, outcome });
    }
    const list = ports.get(attempt.sourcePort) ?? [];
    list.push(n);
    ports.set(attempt.sourcePort, list);
  }
  const list = [...ports].map(([sourcePort, answers]) => ({ sourcePort, answers }));
  return {
    from,
    count,
    repeat,
    elapsedMs: Math.round(result.elapsedMs * 10) / 10,
    instances: running.map((i) => ({
      label: `${i.server}#${i.replica}`,
      server: i.server,
      replica: i.replica,
      pid: i.pid,
    })),
    ports: list,
    failures,
    unstablePorts: list.filter((p) => new Set(p.answers.filter((a) => a >= 0)).size > 1).map((p) => p.sourcePort),
  };
}

/** Runs the tasks one after another (binds whose order is the kernel's join order). */
export async function inOrder<T>(tasks: (() => Promise<T>)[]): Promise<T[]> {
  const out: T[] = [];
  for (const task of tasks) out.push(await task());
  return out;
}

/** MAJOR.MINOR of a release string such as "6.18.44-fc"; null when it has none. */
export function kernelVersion(release: string = os.release()): [number, number] | null {
  const match = /^(\d+)\.(\d+)/.exec(release);
  return match ? [Number(match[1]), Number(match[2])] : null;
}

/** Why this kernel cannot run a scenario that declares `kernel:`, or null when it can (or says nothing). */
export function kernelTooOld(need: KernelRequirement | undefined, release: string = os.release()): string | null {
  if (!need) return null;
  const [major, minor] = need.version.slice(2).split('.').map(Number) as [number, number];
  const have = kernelVersion(release);
  if (have && (have[0] > major || (have[0] === major && have[1] >= minor))) return null;
  return `needs Linux ${major}.${minor} or later (${need.reason}); this is Linux ${release}${need.older ? `. Older kernels: ${need.older}` : ''}`;
}

/**
 * For `doctor`: which shipped scenarios this kernel can run, and why the
 * others are skipped (their `kernel:` requirement). Unreadable files are
 * left to `scenario check`.
 */
export async function kernelFit(
  dir: string,
  release: string = os.release(),
): Promise<{ runnable: string[]; skipped: { name: string; reason: string }[] }> {
  const { listScenarioFiles, loadScenario } = await import('./scenario-file.js');
  const runnable: string[] = [];
  const skipped: { name: string; reason: string }[] = [];
  for (const file of await listScenarioFiles(dir)) {
    const scenario = await loadScenario(file).catch(() => null);
    if (!scenario) continue;
    const reason = kernelTooOld(scenario.kernel, release);
    if (reason) skipped.push({ name: scenario.name, reason });
    else runnable.push(scenario.name);
  }
  return { runnable, skipped };
}
