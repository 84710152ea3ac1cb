import os from 'node:os';
import { formatHostPort } from '../errors.js';
import type { BinderName } from '../net/binder.js';
import { resolveBinder } from '../net/binder.js';
import { decideEngine, requestedEngine } from '../net/engine.js';
import { workerKey } from '../net/greeting.js';
import { runLoad } from '../net/load-client.js';
import { engineAvailability } from '../net/native.js';
import { resolveUser } from '../net/users.js';
import { spawnWorker, type WorkerProcess } from '../net/worker-pool.js';
import type {
  InnerEvent,
  InstanceObservation,
  Observations,
  Plan,
  StepRecord,
  TrafficObservation,
} from './observations.js';
import type { ServerSpec, Step } from './schema.js';

interface Instance {
  server: ServerSpec;
  replica: number;
  worker: WorkerProcess;
  observation: InstanceObservation;
  running: boolean;
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

  // Boot every worker the scenario will need at once; each binds only when its step says so.
  const instances: Instance[] = [];
  let nextWorkerId = 1;
  for (const server of scenario.servers) {
    if (!scenario.steps.some((step) => step.kind === 'start' && step.servers.includes(server.id))) continue;
    const binder = await binderFor(server.binder);
    const user = server.user !== undefined ? resolveUser(server.user) : undefined;
    for (let replica = 1; replica <= server.replicas; replica++) {
      const workerId = nextWorkerId++;
      const worker = spawnWorker(
        {
          workerId,
          protocol: server.protocol,
          address: server.address,
          port: server.port,
          reusePort: server.reuseport,
          ...(server.reuseaddr !== undefined ? { reuseAddr: server.reuseaddr } : {}),
          ...(server.ipv6Only !== undefined ? { ipv6Only: server.ipv6Only } : {}),
          binder,
          engine: decideEngine({
            requested: requestedEngine(),
            protocol: server.protocol,
            binder,
            ...engineAvailability(),
          }),
          ...(user ? { user } : {}),
          holdBind: true,
          statsIntervalMs: 0,
        },
        () => {},
      );
      instances.push({
        server,
        replica,
        worker,
        running: false,
        observation: { server: server.id, replica, workerId, pid: worker.pid, bind: 'pending' },
      });
    }
  }
  const abort = new Promise<never>((_, reject) => {
    const fail = () => reject(new Error('interrupted'));
    if (signal.aborted) fail();
    signal.addEventListener('abort', fail, { once: true });
  });
  abort.catch(() => {});

  const records: StepRecord[] = [];
  const traffic: TrafficObservation[] = [];
  try {
    await Promise.race([Promise.all(instances.map((i) => i.worker.ready)), abort]);
    for (const [index, step] of scenario.steps.entries()) {
      if (signal.aborted) break;
      const text = describeStep(step);
      emit({ type: 'step', index, total: scenario.steps.length, text, status: 'start' });
      const record = await Promise.race([runStep(step, instances, signal), abort]);
      records.push(record);
      if (record.kind === 'traffic') traffic.push(record.traffic);
      emit({ type: 'step', index, total: scenario.steps.length, text, status: 'done', detail: describeRecord(record) });
    }
  } finally {
    await Promise.all(instances.map((i) => i.worker.stop()));
  }
  return {
    kernel: `Linux ${os.release()}`,
    isolation: plan.isolation,
    instances: instances.map((i) => i.observation),
    steps: records,
    traffic,
    durationMs: Date.now() - startedAt,
  };
}

async function runStep(step: Step, instances: Instance[], signal: AbortSignal): Promise<StepRecord> {
  if (step.kind === 'start') {
    const outcomes: InstanceObservation[] = [];
    // In the order written: which bind fails can depend on who came first.
    for (const id of step.servers) {
      const group = instances.filter((i) => i.server.id === id);
      const results = await Promise.all(group.map((i) => i.worker.bind()));
      group.forEach((instance, n) => {
        const result = results[n]!;
        instance.running = result.ok;
        instance.observation.bind = result.ok ? 'ok' : result.error.code;
        if (result.ok) {
          instance.observation.binder = result.binder;
        } else {
          instance.observation.bindMessage = result.explanation;
        }
        outcomes.push({ ...instance.observation });
      });
    }
    return { kind: 'start', servers: step.servers, outcomes, line: step.line };
  }
  if (step.kind === 'stop') {
    const group = instances.filter((i) => step.servers.includes(i.server.id));
    const exits = await Promise.all(group.map((i) => i.worker.stop()));
    for (const instance of group) instance.running = false;
    return {
      kind: 'stop',
      servers: step.servers,
      accepted: group.map((instance, n) => ({
        server: instance.server.id,
        replica: instance.replica,
        pid: instance.worker.pid,
        accepted: exits[n]!.accepted,
      })),
      line: step.line,
    };
  }
  const spec = step.traffic;
  const running = instances.filter((i) => i.running);
  const before = await Promise.all(running.map((i) => i.worker.count()));
  const load = await runLoad(
    {
      host: spec.target,
      port: spec.port,
      protocol: spec.protocol,
      connections: spec.connections,
      concurrency: spec.concurrency,
      ...(spec.sourcePort !== undefined ? { sourcePort: spec.sourcePort } : {}),
      deadlineMs: 60_000,
    },
    { signal },
  );
  const after = await Promise.all(running.map((i) => i.worker.count()));
  const byKey = new Map(load.perWorker.map((w) => [workerKey(w), w.count]));
  const perInstance = running.map((i) => ({
    server: i.server.id,
    replica: i.replica,
    pid: i.worker.pid,
    count: byKey.get(workerKey({ workerId: i.observation.workerId, pid: i.worker.pid, local: '' })) ?? 0,
  }));
  const workerDeltas = running.map((i, n) => ({
    server: i.server.id,
    replica: i.replica,
    pid: i.worker.pid,
    accepted: after[n]! - before[n]!,
  }));
  const known = perInstance.reduce((sum, p) => sum + p.count, 0);
  const strangers = load.attributed - known;
  const accounting: string[] = [];
  perInstance.forEach((p, n) => {
    const delta = workerDeltas[n]!.accepted;
    if (delta !== p.count) {
      accounting.push(
        `${p.server}#${p.replica} (pid ${p.pid}) counted ${delta} accepts but the client attributed ${p.count} to it`,
      );
    }
  });
  if (load.silent > 0) accounting.push(`${load.silent} connections got no greeting in time`);
  if (load.unrecognized > 0) accounting.push(`${load.unrecognized} connections were answered without a greeting`);
  if (load.inFlight > 0) accounting.push(`${load.inFlight} connections were cut off in flight`);
  if (strangers > 0) accounting.push(`${strangers} connections were answered by workers this scenario did not start`);
  const observation: TrafficObservation = {
    id: spec.id,
    target: spec.target,
    port: spec.port,
    load,
    perInstance,
    workerDeltas,
    strangers,
    accounting,
  };
  return { kind: 'traffic', traffic: observation, line: step.line };
}

function describeRecord(record: StepRecord): string {
  if (record.kind === 'start') {
    return record.outcomes.map((o) => `${o.server}${o.replica > 1 ? `#${o.replica}` : ''} ${o.bind}`).join(', ');
  }
  if (record.kind === 'stop') return record.accepted.map((a) => `${a.server} accepted ${a.accepted}`).join(', ');
  const { load } = record.traffic;
  const landed = new Map<string, number>();
  for (const p of record.traffic.perInstance) landed.set(p.server, (landed.get(p.server) ?? 0) + p.count);
  const parts = [...landed].filter(([, n]) => n > 0).map(([server, n]) => `${server} ${n}`);
  if (load.failed > 0) parts.push(`failed ${load.failed}`);
  return parts.join(', ');
}

function describeStep(step: Step): string {
  if (step.kind === 'start') return `start ${step.servers.join(', ')}`;
  if (step.kind === 'stop') return `stop ${step.servers.join(', ')}`;
  const t = step.traffic;
  const noun = t.protocol === 'tcp' ? 'connections' : 'datagrams';
  return `${t.connections} ${noun} to ${formatHostPort(t.target, t.port)} (${t.id})`;
}
