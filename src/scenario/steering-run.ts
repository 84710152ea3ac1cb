/**
 * Running a traffic step that sweeps source ports (`sourcePorts`), and keeping
 * what each port got. The sweep is the native port sweep (src/net/port-sweep.ts);
 * its outcome is also folded into a LoadResult, so that the checks every run
 * makes (accounting against the workers' counters, failed traffic) apply to a
 * sweep exactly as to any other traffic.
 */
import os from 'node:os';
import { ReuseportError } from '../errors.js';
import { parseGreeting, workerKey } from '../net/greeting.js';
import { type LoadResult, LoadTally, runLoad } from '../net/load-client.js';
import { type SweepResult, sweepSourcePorts } from '../net/port-sweep.js';
import { hasSteering, type SocketSteering } from '../net/steered-socket.js';
import type { KernelRequirement } from './format-steering.js';
import { SecondNamespaces } from './namespaces.js';
import { incomingCpuFor, trafficSpecs } from './plan-helpers.js';
import type { Scenario, ServerSpec, TrafficSpec } from './schema.js';

/** A traffic step whose port is known: a server id (`port: W`) resolved to the port W bound. */
export type ResolvedTraffic = Omit<TrafficSpec, 'port'> & { port: number };

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
  ports: { sourcePort: number; answers: number[]; cpus?: number[] }[];
  failures: { sourcePort: number; round: number; outcome: string }[];
  /** Ports answered by more than one instance within this sweep. */
  unstablePorts: number[];
}

/** What a traffic step did: a sweep keeps its per-attempt result too. */
export interface SentTraffic {
  load: LoadResult;
  swept?: SweepResult;
}

/** Sends a traffic step from this process's namespace: a sweep, or the load client. */
export async function sendTraffic(
  spec: ResolvedTraffic,
  deadlineMs: number,
  signal?: AbortSignal,
): Promise<SentTraffic> {
  if (spec.sourcePorts) {
    const { result, load } = await runSweep(spec, deadlineMs);
    return { load, swept: result };
  }
  const load = await runLoad(
    {
      host: spec.target,
      port: spec.port,
      protocol: spec.protocol,
      connections: spec.connections,
      concurrency: spec.concurrency,
      ...(spec.sourcePort !== undefined ? { sourcePort: spec.sourcePort } : {}),
      deadlineMs,
    },
    signal ? { signal } : {},
  );
  return { load };
}

/** Sends a traffic step where it says: here, or in the second namespace it names. */
export function sendTrafficFor(
  spec: ResolvedTraffic,
  deadlineMs: number,
  signal: AbortSignal,
  namespaces: SecondNamespaces | null,
): Promise<SentTraffic> {
  if (spec.namespace === undefined) return sendTraffic(spec, deadlineMs, signal);
  if (!namespaces) throw new ReuseportError(`no namespace "${spec.namespace}"`, { code: 'EINTERNAL' });
  return namespaces.send(spec.namespace, spec, deadlineMs);
}

/** The second namespaces a scenario names, started; null when it names none. */
export async function openNamespaces(scenario: Scenario): Promise<SecondNamespaces | null> {
  const names = new Set(
    [...scenario.servers, ...trafficSpecs(scenario.steps)].flatMap((x) => (x.namespace ? [x.namespace] : [])),
  );
  return names.size > 0 ? SecondNamespaces.open([...names]) : null;
}

/**
 * What a replica's worker gets beyond the plain bind request: its socket's
 * steering options (then the native helper opens it, whatever the binder)
 * and the namespace it runs in. Which engine serves it is chooseEngine's.
 */
export function steeredWorker(
  server: ServerSpec,
  replica: number,
  namespaces: SecondNamespaces | null,
): { steering?: SocketSteering; binder?: 'native'; netns?: string } {
  const steering: SocketSteering = {};
  if (server.device !== undefined) steering.device = server.device;
  const cpu = incomingCpuFor(server.incomingCpu, replica, os.availableParallelism());
  if (cpu !== undefined) steering.incomingCpu = cpu;
  if (server.cbpf && server.cbpf.replica === replica) steering.cbpf = server.cbpf.program;
  return {
    ...(hasSteering(steering) ? { steering, binder: 'native' as const } : {}),
    ...(server.namespace !== undefined && namespaces ? { netns: namespaces.pathOf(server.namespace) } : {}),
  };
}

/** Sweeps the step's source ports; returns the raw result and the same result as a LoadResult. */
export async function runSweep(
  spec: ResolvedTraffic,
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
    ...(spec.payload === 'index' ? { indexPayload: true } : {}),
    ...(spec.cpu !== undefined ? { cpu: spec.cpu } : {}),
  });
  return { result, load: sweepAsLoad(spec, result) };
}

/**
 * The sweep in the load client's terms, built as the load client builds its
 * own. Its draws are its source ports, so the balance counts those; the load
 * client's hints name `load` flags, so a sweep has none.
 */
function sweepAsLoad(spec: ResolvedTraffic, result: SweepResult): LoadResult {
  const tally = new LoadTally();
  let notStarted = 0;
  for (const attempt of result.attempts) {
    if (attempt.outcome === 'not-run') notStarted++;
    else if (attempt.outcome === 'reply') tally.record(attempt.reply, 'clean', attempt.sourcePort);
    else tally.record(null, attempt.outcome);
  }
  return tally.summarize(
    {
      host: spec.target,
      port: spec.port,
      protocol: spec.protocol,
      connections: result.attempts.length,
      concurrency: spec.concurrency,
    },
    {
      attempted: result.attempts.length - notStarted,
      elapsedMs: result.elapsedMs,
      stoppedEarly: result.deadlineHit ? 'deadline' : null,
      hints: [],
      basis: 'distinctSourcePorts',
    },
  );
}

/** Per source port, who answered each round; the runner's instances give the labels. */
export function sweepObservation(
  spec: ResolvedTraffic,
  result: SweepResult,
  running: SweepInstance[],
): SweepObservation {
  const { from, count, repeat } = spec.sourcePorts ?? { from: 0, count: 0, repeat: 0 };
  const index = new Map(running.map((i, n) => [`${i.pid}/${i.workerId}`, n]));
  const ports = new Map<number, number[]>();
  /** The accepted sockets' SO_INCOMING_CPU per port and round, from greetings that carry it (-1: none). */
  const cpus = new Map<number, number[]>();
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
    const cpu = cpus.get(attempt.sourcePort) ?? [];
    cpu.push(who?.incomingCpu ?? -1);
    cpus.set(attempt.sourcePort, cpu);
  }
  const reported = [...cpus.values()].some((c) => c.some((x) => x >= 0));
  const list = [...ports].map(([sourcePort, answers]) => ({
    sourcePort,
    answers,
    ...(reported ? { cpus: cpus.get(sourcePort) ?? [] } : {}),
  }));
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
 * Why this process's CPUs cannot run a scenario whose traffic is pinned to
 * CPU N (`cpu: N`), or null when they can. `cpus` counts what the kernel lets
 * this process and its children run on: os.availableParallelism() is
 * sched_getaffinity's count, so `taskset -c 0` makes it 1.
 */
export function tooFewCpus(scenario: Scenario, cpus: number = os.availableParallelism()): string | null {
  const pinned = trafficSpecs(scenario.steps).flatMap((t) => (t.cpu !== undefined ? [t.cpu] : []));
  if (pinned.length === 0) return null;
  const highest = Math.max(...pinned);
  if (highest < cpus) return null;
  return `needs ${highest + 1} usable CPUs (its traffic is pinned to CPU ${highest}), but this process's CPU affinity mask allows ${cpus}: run it with at least ${highest + 1} CPUs allowed (\`taskset -p $$\` shows the mask)`;
}

/** Why a scenario cannot run on this kernel and these CPUs, or null when it can. */
export function cannotRunHere(
  scenario: Scenario,
  release: string = os.release(),
  cpus: number = os.availableParallelism(),
): string | null {
  return kernelTooOld(scenario.kernel, release) ?? tooFewCpus(scenario, cpus);
}

/**
 * For `doctor`: which shipped scenarios this kernel and these CPUs can run,
 * and why the others are skipped (their `kernel:` requirement, or CPUs their
 * traffic is pinned to). Unreadable files are left to `scenario check`.
 */
export async function runnableHere(
  dir: string,
  release: string = os.release(),
  cpus: number = os.availableParallelism(),
): Promise<{ runnable: string[]; skipped: { name: string; reason: string }[] }> {
  const { listScenarioFiles, loadScenario } = await import('./scenario-file.js');
  const runnable: string[] = [];
  const skipped: { name: string; reason: string }[] = [];
  for (const file of await listScenarioFiles(dir)) {
    const scenario = await loadScenario(file).catch(() => null);
    if (!scenario) continue;
    const reason = cannotRunHere(scenario, release, cpus);
    if (reason) skipped.push({ name: scenario.name, reason });
    else runnable.push(scenario.name);
  }
  return { runnable, skipped };
}
