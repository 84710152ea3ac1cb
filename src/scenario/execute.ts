import { readFileSync } from 'node:fs';
import os from 'node:os';
import { formatHostPort } from '../errors.js';
import type { BinderName } from '../net/binder.js';
import { resolveBinder } from '../net/binder.js';
import { chooseEngine, requestedEngine } from '../net/engine.js';
import { workerKey } from '../net/greeting.js';
import type { LoadResult } from '../net/load-client.js';
import { engineAvailability } from '../net/native.js';
import { processState } from '../net/proc-stat.js';
import { reconcileWithWorkers } from '../net/reconcile.js';
import { resolveUser, type UserIdentity } from '../net/users.js';
import { type BindOutcome, spawnWorker, type WorkerExit } from '../net/worker-pool.js';
import {
  describeLifecycleRecord,
  describeLifecycleStep,
  type LifecycleInstance,
  LifecycleRun,
} from './lifecycle-run.js';
import type { SecondNamespaces } from './namespaces.js';
import type {
  InnerEvent,
  InstanceObservation,
  Observations,
  Plan,
  StepRecord,
  TrafficObservation,
  WorkerFault,
} from './observations.js';
import type { ServerSpec, Step } from './schema.js';
import { inOrder, openNamespaces, sendTrafficFor, steeredWorker, sweepObservation } from './steering-run.js';

/** Booting Node is the slow part: 64 workers on two busy cores take a while. */
const BOOT_TIMEOUT_MS = 60_000;
/** A worker that has booted answers a bind or a counter query in microseconds; this long means it is stuck. */
const ANSWER_TIMEOUT_MS = 5_000;
/** Every traffic step stops by itself after this long; what was measured until then is kept. */
const TRAFFIC_DEADLINE_MS = 60_000;

/** One socket of one replica (defined with the lifecycle steps, which drive it too). */
type Instance = LifecycleInstance;

/** Where the run is, so that a fault can say when it happened. */
interface Position {
  step: number;
  text: string;
  finished: boolean;
}

const TIMED_OUT = Symbol('timed out');

function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Runs a scenario's steps where this process already is (a private namespace,
 * or the host) and records what the kernel did. Judging is left to expect.ts.
 */
export async function executePlan(
  plan: Plan,
  emit: (event: InnerEvent) => void,
  signal: AbortSignal,
): Promise<Observations> {
  const startedAt = Date.now();
  const { scenario } = plan;
  const binders = new Map<string, BinderName>();
  const binderFor = async (choice: ServerSpec['binder']): Promise<BinderName> => {
    const wanted = plan.binder ?? choice;
    let name = binders.get(wanted);
    if (!name) {
      name = await resolveBinder(wanted);
      binders.set(wanted, name);
    }
    return name;
  };
  const users = new Map<string, UserIdentity | undefined>();
  const userFor = (server: ServerSpec) => {
    const key = String(server.user);
    if (!users.has(key)) users.set(key, server.user !== undefined ? resolveUser(server.user) : undefined);
    return users.get(key);
  };

  const life = new LifecycleRun(scenario);
  const position: Position = { step: 0, text: 'starting the workers', finished: false };
  const instances: Instance[] = [];
  let namespaces: SecondNamespaces | null = null;
  let nextWorkerId = 1;
  const launch = async (server: ServerSpec): Promise<Instance[]> => {
    const binder = await binderFor(server.binder);
    const user = userFor(server);
    const launched: Instance[] = [];
    for (let replica = 1; replica <= server.replicas; replica++) {
      const workerId = nextWorkerId++;
      const steered = steeredWorker(server, replica, namespaces);
      const lifecycle = life.workerConfig(server);
      const engine = chooseEngine({
        requested: requestedEngine(),
        protocol: server.protocol,
        binder: steered.binder ?? binder,
        ...engineAvailability(),
        incomingCpu: steered.steering?.incomingCpu !== undefined,
        connectedUdp: server.connect !== undefined,
      });
      const worker = spawnWorker(
        {
          workerId,
          protocol: server.protocol,
          address: server.address,
          port: server.port,
          reusePort: server.reuseport,
          ...(server.reuseaddr !== undefined ? { reuseAddr: server.reuseaddr } : {}),
          ...(server.ipv6Only !== undefined ? { ipv6Only: server.ipv6Only } : {}),
          ...(server.connect ? { connect: server.connect } : {}),
          binder,
          engine: engine.engine,
          ...(user ? { user } : {}),
          holdBind: true,
          statsIntervalMs: 0,
          ...steered,
          ...lifecycle,
        },
        () => {},
      );
      const instance: Instance = {
        server,
        replica,
        worker,
        running: false,
        stopRequested: false,
        // The uid it runs as; the worker confirms it once bound.
        observation: {
          server: server.id,
          replica,
          workerId,
          pid: worker.pid,
          bind: 'pending',
          uid: user?.uid ?? process.getuid?.() ?? -1,
          // A lifecycle worker's socket and accept loop are the native helper's whatever the engine.
          ...(lifecycle.lifecycle ? {} : { engine: engine.engine, engineReason: engine.reason }),
        },
      };
      void worker.exited.then((exit) => noteExit(instance, exit, position));
      instances.push(instance);
      launched.push(instance);
    }
    return launched;
  };
  const abort = new Promise<never>((_, reject) => {
    const fail = () => reject(new Error('interrupted'));
    if (signal.aborted) fail();
    signal.addEventListener('abort', fail, { once: true });
  });
  abort.catch(() => {});

  const records: StepRecord[] = [];
  const traffic: TrafficObservation[] = [];
  try {
    namespaces = await openNamespaces(scenario);
    // Boot every worker the first start steps need at once; each binds only when its step says so.
    const firstStarts = scenario.servers.filter((server) =>
      scenario.steps.some((step) => LifecycleRun.bringsUp(step, server.id)),
    );
    const booting: Instance[] = [];
    for (const server of firstStarts) booting.push(...(await launch(server)));
    await Promise.race([awaitReady(booting, position), abort]);
    for (const [index, step] of scenario.steps.entries()) {
      if (signal.aborted) break;
      const text = describeStep(step);
      Object.assign(position, { step: index + 1, text, finished: false });
      emit({ type: 'step', index, total: scenario.steps.length, text, status: 'start' });
      life.beforeStep();
      const record = await Promise.race([runStep(step, instances, launch, position, signal, namespaces, life), abort]);
      life.afterStep(instances);
      position.finished = true;
      records.push(record);
      if (record.kind === 'traffic') traffic.push(record.traffic);
      emit({ type: 'step', index, total: scenario.steps.length, text, status: 'done', detail: describeRecord(record) });
    }
  } finally {
    life.close();
    await stopInstances(instances);
    await namespaces?.close();
  }
  return {
    kernel: `Linux ${os.release()}`,
    isolation: plan.isolation,
    instances: instances.map((i) => i.observation),
    steps: records,
    traffic,
    ...portRange(),
    ...(life.kernel.length > 0 ? { lifecycle: { kernel: life.kernel, holds: life.holds } } : {}),
    durationMs: Date.now() - startedAt,
  };
}

/** Records a worker's end when nobody asked for it: how it died, and when. */
function noteExit(instance: Instance, exit: WorkerExit, position: Position): void {
  instance.running = false;
  if (exit.reason === 'bind-failed') return;
  // A worker exits 0 only after its final report (or when its parent went): asked to stop, that is a clean stop
  // even when Node delivered 'exit' before the last IPC message.
  if (instance.stopRequested && (exit.reason === 'stopped' || (exit.exitCode === 0 && exit.signal === null))) return;
  if (instance.observation.fault) return;
  const how = instance.stopRequested
    ? `did not stop when asked, and was killed (${describeExit(exit)})`
    : describeExit(exit);
  instance.observation.fault = fault(instance.stopRequested ? 'unresponsive' : 'died', how, position, exit);
}

function fault(
  kind: WorkerFault['kind'],
  how: string,
  position: Position,
  exit?: Pick<WorkerExit, 'signal' | 'exitCode'>,
): WorkerFault {
  return {
    kind,
    how,
    step: position.step,
    stepText: position.text,
    between: position.finished,
    signal: exit?.signal ?? null,
    exitCode: exit?.exitCode ?? null,
  };
}

function describeExit(exit: Pick<WorkerExit, 'signal' | 'exitCode'>): string {
  return exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.exitCode}`;
}

/** What /proc says a process is doing, for a worker that does not answer. */
const STATE_WORDS: Record<string, string> = {
  T: 'stopped by a signal',
  t: 'stopped by a tracer',
  Z: 'exited, not yet reaped',
  D: 'in uninterruptible sleep',
  R: 'running',
  S: 'sleeping',
};

/** A worker's process state in words, for a finding. */
function describeProcessState(pid: number): string {
  const state = processState(pid);
  return state === null ? 'gone' : (STATE_WORDS[state] ?? `state ${state}`);
}

/** Gives up on a worker that does not answer: records it, and kills it by pid so nothing is left behind. */
function giveUp(instance: Instance, what: string, position: Position): void {
  instance.observation.fault ??= fault(
    'unresponsive',
    `${what} within ${ANSWER_TIMEOUT_MS / 1000} s (process state: ${describeProcessState(instance.worker.pid)})`,
    position,
  );
  instance.running = false;
  instance.stopRequested = true;
  instance.worker.kill();
}

async function awaitReady(group: Instance[], position: Position): Promise<void> {
  await Promise.all(
    group.map(async (instance) => {
      if ((await within(instance.worker.ready, BOOT_TIMEOUT_MS)) === TIMED_OUT) {
        instance.observation.bind = 'ENOANSWER';
        giveUp(instance, 'did not finish booting', position);
      }
    }),
  );
}

async function stopInstances(instances: Instance[]): Promise<void> {
  for (const instance of instances) instance.stopRequested = true;
  await Promise.all(instances.map((i) => i.worker.stop()));
  // noteExit runs in the exit promise's reaction; let those settle before the caller reads the observations.
  await Promise.all(instances.map((i) => i.worker.exited));
}

/** An instance's exact counter; null only when its counter file cannot be read. */
function counterOf(instance: Instance): number | null {
  try {
    return instance.worker.accepted;
  } catch {
    return null;
  }
}

/**
 * The counter of each instance after a step. The count itself is exact
 * whatever the worker became (it lives in a counter file the worker writes
 * before it greets, which the parent holds); a ping tells whether the worker
 * still answers, and one that does not is named as frozen and stopped.
 */
async function readCounters(group: Instance[], position: Position): Promise<(number | null)[]> {
  return Promise.all(
    group.map(async (instance) => {
      if (instance.running && !(await instance.worker.ping(ANSWER_TIMEOUT_MS))) {
        // A dead worker cannot answer either: its exit, not a ping, says how it died.
        const state = processState(instance.worker.pid);
        if (state === null || state === 'Z') await within(instance.worker.exited, ANSWER_TIMEOUT_MS);
        if (instance.running) giveUp(instance, 'did not answer a ping', position);
      }
      return counterOf(instance);
    }),
  );
}

async function runStep(
  step: Step,
  instances: Instance[],
  launch: (server: ServerSpec) => Promise<Instance[]>,
  position: Position,
  signal: AbortSignal,
  namespaces: SecondNamespaces | null,
  life: LifecycleRun,
): Promise<StepRecord> {
  if (step.kind !== 'start' && step.kind !== 'stop' && step.kind !== 'traffic') return life.runStep(step, instances);
  if (step.kind === 'start') {
    const outcomes: InstanceObservation[] = [];
    // In the order written: which bind fails can depend on who came first.
    for (const id of step.servers) {
      let group = instances.filter((i) => i.server.id === id && i.observation.bind === 'pending');
      if (group.length === 0) {
        // Started before: a fresh worker, a fresh socket, a fresh outcome.
        const server = instances.find((i) => i.server.id === id)?.server;
        if (!server) continue;
        group = await launch(server);
        await awaitReady(group, position);
      }
      const bindOne = async (instance: Instance) => {
        if (instance.observation.bind !== 'pending') return null;
        const result = await within(instance.worker.bind(life.portFor(instance.server, instances)), ANSWER_TIMEOUT_MS);
        if (result === TIMED_OUT) {
          instance.observation.bind = 'ENOANSWER';
          giveUp(instance, 'did not answer its bind request', position);
          return null;
        }
        if (result.ok) instance.observation.port = result.port;
        return result;
      };
      // One after another: the kernel's join order is then the replica order (remap-model.ts
      // relies on it), and with port 0 the first replica's bind picks the port the others share.
      const results = await inOrder(group.map((instance) => () => bindOne(instance)));
      group.forEach((instance, n) => {
        instance.observation.startStep = position.step;
        const result = results[n];
        if (result) recordBind(instance, result);
        outcomes.push({ ...instance.observation });
      });
    }
    return { kind: 'start', servers: step.servers, outcomes, line: step.line };
  }
  if (step.kind === 'stop') {
    const group = instances.filter((i) => step.servers.includes(i.server.id) && i.observation.bind !== 'pending');
    const live = group.filter((i) => !i.stopRequested);
    for (const instance of live) instance.stopRequested = true;
    const exits = await Promise.all(live.map((i) => i.worker.stop()));
    for (const instance of group) instance.running = false;
    return {
      kind: 'stop',
      servers: step.servers,
      accepted: live.map((instance, n) => ({
        server: instance.server.id,
        replica: instance.replica,
        pid: instance.worker.pid,
        accepted: exits[n]!.accepted,
      })),
      line: step.line,
    };
  }
  return runTraffic(step, instances, position, signal, namespaces, life.resolvePort(step.traffic.port, instances));
}

function recordBind(instance: Instance, result: BindOutcome): void {
  instance.running = result.ok;
  instance.observation.bind = result.ok ? 'ok' : result.error.code;
  if (result.ok) {
    instance.observation.binder = result.binder;
    if (result.uid !== undefined) instance.observation.uid = result.uid;
    if (result.options) instance.observation.options = result.options;
  } else {
    instance.observation.bindMessage = result.explanation;
  }
}

async function runTraffic(
  step: Extract<Step, { kind: 'traffic' }>,
  instances: Instance[],
  position: Position,
  signal: AbortSignal,
  namespaces: SecondNamespaces | null,
  port: number,
): Promise<StepRecord> {
  const spec = step.traffic;
  const running = instances.filter((i) => i.running);
  // No ping before: a worker frozen before the step meets its traffic as a real client would meet it, and the
  // ping after the traffic names it.
  const before = running.map(counterOf);
  const { load, swept } = await sendTrafficFor({ ...spec, port }, TRAFFIC_DEADLINE_MS, signal, namespaces);
  const after = await readCounters(running, position);
  // Dead and killed workers included: their counter files outlive them, so every count is exact.
  const reconciliation = reconcileWithWorkers(
    load,
    running.map((i, n) => {
      const [b, a] = [before[n], after[n]];
      return {
        pid: i.worker.pid,
        workerId: i.observation.workerId,
        label: `${i.server.id}#${i.replica}`,
        accepted: b === null || b === undefined || a === null || a === undefined ? null : a - b,
      };
    }),
  );
  const sourcePorts = distinctSourcePortsByWorker(load);
  const perInstance = running.map((i, n) => {
    const ports = sourcePorts.get(workerKey({ workerId: i.observation.workerId, pid: i.worker.pid, local: '' }));
    return {
      server: i.server.id,
      replica: i.replica,
      pid: i.worker.pid,
      count: reconciliation.workers[n]!.attributed,
      ...(ports !== undefined ? { distinctSourcePorts: ports } : {}),
    };
  });
  const workerDeltas = running.map((i, n) => {
    const { accepted, attributed, notGreeted, overAttributed } = reconciliation.workers[n]!;
    return {
      server: i.server.id,
      replica: i.replica,
      pid: i.worker.pid,
      accepted,
      attributed,
      notGreeted,
      overAttributed,
    };
  });
  const observation: TrafficObservation = {
    id: spec.id,
    target: spec.target,
    port,
    load,
    perInstance,
    workerDeltas,
    strangers: reconciliation.strangers,
    accounting: reconciliation.problems,
    explained: reconciliation.explanations,
    reconciliation: {
      connectedWithoutGreeting: reconciliation.connectedWithoutGreeting,
      acceptedWithoutGreeting: reconciliation.acceptedWithoutGreeting,
      neverAccepted: reconciliation.neverAccepted,
      unexplained: reconciliation.unexplained,
    },
    ...(swept
      ? {
          sweep: sweepObservation(
            { ...spec, port },
            swept,
            perInstance.map((p, n) => ({ ...p, workerId: running[n]!.observation.workerId })),
          ),
        }
      : {}),
  };
  return { kind: 'traffic', traffic: observation, line: step.line };
}

/**
 * The distinct source ports the client saw per worker, by worker key. Touch
 * point for the load client's `perWorker[].distinctSourcePorts` (read when present).
 */
function distinctSourcePortsByWorker(load: LoadResult): Map<string, number> {
  return new Map(
    load.perWorker.flatMap((w) => {
      const ports = (w as { distinctSourcePorts?: unknown }).distinctSourcePorts;
      return typeof ports === 'number' ? [[workerKey(w), ports] as const] : [];
    }),
  );
}

/** The ephemeral port range of this namespace (or the host): where the client's source ports come from. */
function portRange(): { portRange?: { low: number; high: number } } {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    return low && high ? { portRange: { low, high } } : {};
  } catch {
    return {};
  }
}

function describeRecord(record: StepRecord): string {
  if (record.kind === 'start') {
    return record.outcomes.map((o) => `${o.server}${o.replica > 1 ? `#${o.replica}` : ''} ${o.bind}`).join(', ');
  }
  if (record.kind === 'stop') {
    return record.accepted.map((a) => `${a.server} accepted ${a.accepted}`).join(', ');
  }
  if (record.kind !== 'traffic') return describeLifecycleRecord(record);
  const { load } = record.traffic;
  const landed = new Map<string, number>();
  for (const p of record.traffic.perInstance) landed.set(p.server, (landed.get(p.server) ?? 0) + p.count);
  const parts = [...landed].filter(([, n]) => n > 0).map(([server, n]) => `${server} ${n}`);
  if (load.failed > 0) parts.push(`failed ${load.failed}`);
  if (load.silent > 0) parts.push(`silent ${load.silent}`);
  if (load.unrecognized > 0) parts.push(`no greeting ${load.unrecognized}`);
  if (load.inFlight > 0) parts.push(`in flight ${load.inFlight}`);
  return parts.join(', ');
}

function describeStep(step: Step): string {
  if (step.kind === 'start') return `start ${step.servers.join(', ')}`;
  if (step.kind === 'stop') return `stop ${step.servers.join(', ')}`;
  if (step.kind !== 'traffic') return describeLifecycleStep(step);
  const t = step.traffic;
  const noun = t.protocol === 'tcp' ? 'connections' : 'datagrams';
  return `${t.connections} ${noun} to ${typeof t.port === 'number' ? formatHostPort(t.target, t.port) : `${t.target} port of ${t.port}`} (${t.id})`;
}
