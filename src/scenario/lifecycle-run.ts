/**
 * Runs the lifecycle steps of a scenario (issue 7) inside the inner runner:
 * each step is a request to the worker that owns the replica's socket
 * (worker-lifecycle.ts), so the syscall runs in that process, as its uid.
 * Around every step it reads the namespace's TcpExt counters and the
 * TIME_WAIT sockets on the scenario's ports; held connections (hold / settle)
 * live here, in the inner runner, on a HoldingClient.
 */
import os from 'node:os';
import { parseGreeting } from '../net/greeting.js';
import { countStates, type HeldConnection, HoldingClient } from '../net/holding-client.js';
import { counterDeltas, countTimeWait, readTcpExtCounters, type TcpExtCounter } from '../net/kernel-counters.js';
import { socketLifecycleUnavailable } from '../net/socket-lifecycle.js';
import type { WorkerProcess } from '../net/worker-pool.js';
import type { LifecycleAnswer, LifecycleRequest, WorkerLifecycleConfig } from '../net/worker-protocol.js';
import type { LifecycleStep } from './format-lifecycle.js';
import type { InstanceObservation } from './observations.js';
import { parseTarget, usesLifecycle } from './plan-helpers.js';
import type { Scenario, ServerSpec, Step } from './schema.js';

/** What a step on a server with no socket gets: what the kernel says for an fd that is not open. */
const NO_SOCKET: LifecycleAnswer = {
  outcome: 'EBADF',
  syscall: 'no socket: the server was never bound, or was stopped',
};

/** A worker answers a lifecycle request in microseconds; this long means it is stuck. */
const ANSWER_TIMEOUT_MS = 5_000;

/** One socket of one replica: a server started again after `stop` gets a new instance (a new worker). */
export interface LifecycleInstance {
  server: ServerSpec;
  replica: number;
  worker: WorkerProcess;
  observation: InstanceObservation;
  running: boolean;
  /** The runner asked it to stop (or gave up on it): its exit is not a fault. */
  stopRequested: boolean;
}

/** What one replica's step did. */
export interface StepOutcome extends LifecycleAnswer {
  server: string;
  replica: number;
  pid: number;
}

/** What became of held connections: counts by state, who served, whether the bytes came back intact. */
export interface HeldSummary {
  states: Record<HeldConnection['state'], number>;
  /** Served connections by the replica named in the greeting. */
  servedBy: { server: string; replica: number; count: number }[];
  /** Served connections whose echoed bytes equal the payload (all served ones when there is no payload). */
  intact: number;
  /** Errno names that ended the reset / failed ones. */
  errors: { code: string; count: number }[];
}

export interface HoldObservation {
  id: string;
  port: number;
  connections: number;
  payload?: string;
  /** Right after the hold step (handshakes done or given up on). */
  opened: HeldSummary;
  /** At the settle step. */
  settled?: HeldSummary;
}

export interface StepKernel {
  /** TcpExt deltas over the step; a counter this kernel lacks is absent. */
  counters: Partial<Record<TcpExtCounter, number>>;
  /** TIME_WAIT sockets per local port of the scenario's servers, right after the step. */
  timeWait: { port: number; count: number }[];
}

export type LifecycleRecord =
  | {
      kind: 'lifecycle';
      action: string;
      id?: string;
      outcomes: StepOutcome[];
      line: number;
    }
  | { kind: 'hold' | 'settle'; hold: HoldObservation; line: number };

/** Why a scenario cannot run here: an older kernel than it needs, or no native helper for lifecycle workers. */
export function lifecycleSkipReason(scenario: Scenario, release = os.release()): string | null {
  const need = scenario.kernel;
  if (need) {
    const wanted = need.version
      .replace(/^>=\s*/, '')
      .split('.')
      .map(Number);
    const have = release.split(/[.-]/).slice(0, 2).map(Number);
    const older = have[0]! < wanted[0]! || (have[0] === wanted[0] && have[1]! < wanted[1]!);
    if (older)
      return `needs Linux ${need.version} (this is ${release}): ${need.reason}. On older kernels: ${need.older}`;
  }
  if (usesLifecycle(scenario)) {
    const why = socketLifecycleUnavailable();
    if (why) return `its lifecycle steps need the native helper: ${why}`;
  }
  return null;
}

/** Per plan: the ports servers got, the held connections, and the kernel readings around each step. */
export class LifecycleRun {
  readonly #scenario: Scenario;
  readonly #lifecycle: boolean;
  readonly #holds = new Map<string, { client: HoldingClient; observation: HoldObservation }>();
  readonly kernel: StepKernel[] = [];
  readonly holds: HoldObservation[] = [];
  #before: Partial<Record<TcpExtCounter, number>> = {};

  constructor(scenario: Scenario) {
    this.#scenario = scenario;
    this.#lifecycle = usesLifecycle(scenario);
  }

  /** What a server's workers need in their config: lifecycle mode for TCP servers of a lifecycle scenario. */
  workerConfig(server: ServerSpec): { lifecycle?: WorkerLifecycleConfig } {
    if (!this.#lifecycle || server.protocol !== 'tcp') return {};
    return {
      lifecycle: {
        backlog: server.backlog ?? 511,
        ...(server.fchown ? { fchown: { uid: server.fchown.uid, gid: server.fchown.uid, at: server.fchown.at } } : {}),
      },
    };
  }

  /** Whether `step` brings server `id` up (its workers are booted before the first step). */
  static bringsUp(step: Step, id: string): boolean {
    if (step.kind === 'start') return step.servers.includes(id);
    return (
      step.kind === 'lifecycle' && step.action === 'bind' && step.targets.some((t) => parseTarget(t).server === id)
    );
  }

  /** The port to bind for a server: its own, or (port 0) the one its first replica got. */
  portFor(server: ServerSpec, instances: readonly LifecycleInstance[]): number {
    if (server.port !== 0) return server.port;
    return instances.find((i) => i.server.id === server.id && i.observation.port)?.observation.port ?? 0;
  }

  /** A port reference (a number, or a server id meaning the port it bound). */
  resolvePort(ref: number | string, instances: readonly LifecycleInstance[]): number {
    if (typeof ref === 'number') return ref;
    const server = this.#scenario.servers.find((s) => s.id === ref);
    return server ? this.portFor(server, instances) : 0;
  }

  /** Read before each step. */
  beforeStep(): void {
    this.#before = readCounters();
  }

  /** Read after each step: counter deltas and TIME_WAIT on every server port. */
  afterStep(instances: readonly LifecycleInstance[]): void {
    const ports = [...new Set(this.#scenario.servers.map((s) => this.portFor(s, instances)).filter((p) => p > 0))];
    this.kernel.push({
      counters: counterDeltas(this.#before, readCounters()),
      timeWait: ports.map((port) => ({ port, count: countTimeWait(port) })),
    });
  }

  async runStep(step: LifecycleStep & { line: number }, instances: LifecycleInstance[]): Promise<LifecycleRecord> {
    if (step.kind === 'hold') {
      const h = step.hold;
      const port = this.resolvePort(h.port, instances);
      const client = HoldingClient.open({
        host: h.target,
        port,
        count: h.connections,
        ...(h.payload !== undefined ? { payload: Buffer.from(h.payload, 'latin1') } : {}),
        lifetimeMs: 60_000,
      });
      await client.waitUntil((r) => r.every((c) => c.state !== 'connecting'), h.waitMs);
      const observation: HoldObservation = {
        id: h.id,
        port,
        connections: h.connections,
        ...(h.payload !== undefined ? { payload: h.payload } : {}),
        opened: summarize(client.report(), h.payload, instances),
      };
      this.#holds.set(h.id, { client, observation });
      this.holds.push(observation);
      return { kind: 'hold', hold: observation, line: step.line };
    }
    if (step.kind === 'settle') {
      const held = this.#holds.get(step.hold)!;
      // Served connections are over once the worker closed them; reset and failed ones end at once.
      await held.client.waitUntil((r) => r.every((c) => c.ended), step.waitMs);
      held.observation.settled = summarize(held.client.report(), held.observation.payload, instances);
      held.client.close();
      this.#holds.delete(step.hold);
      return { kind: 'settle', hold: held.observation, line: step.line };
    }
    const request: LifecycleRequest =
      step.kind === 'setsockopt'
        ? { op: 'setsockopt', option: step.option, value: step.value }
        : step.action === 'bind'
          ? { op: 'bind', port: 0 }
          : { op: step.action };
    const outcomes: StepOutcome[] = [];
    // In the order written, one replica after another: which call fails can depend on who came first.
    for (const target of step.targets) {
      const { server, replica } = parseTarget(target);
      const group = instances.filter(
        (i) => i.server.id === server && (replica === undefined || i.replica === replica) && !i.stopRequested,
      );
      for (const instance of group) {
        const sent: LifecycleRequest =
          request.op === 'bind' ? { op: 'bind', port: this.portFor(instance.server, instances) } : request;
        const done = await instance.worker.lifecycle(sent, ANSWER_TIMEOUT_MS);
        this.#note(instance, sent, done);
        outcomes.push({ server: instance.server.id, replica: instance.replica, pid: instance.worker.pid, ...done });
      }
      if (group.length === 0) {
        // Never bound (or stopped): no socket for the call to act on.
        outcomes.push({ server, replica: replica ?? 1, pid: -1, ...NO_SOCKET });
      }
    }
    const action = step.kind === 'setsockopt' ? `setsockopt ${step.option}=${step.value ? 1 : 0}` : step.action;
    return { kind: 'lifecycle', action, ...(step.id !== undefined ? { id: step.id } : {}), outcomes, line: step.line };
  }

  /** Stop holding whatever was not settled (the run ended early). */
  close(): void {
    for (const held of this.#holds.values()) held.client.close();
    this.#holds.clear();
  }

  #note(instance: LifecycleInstance, request: LifecycleRequest, done: LifecycleAnswer): void {
    const o = instance.observation;
    if (done.port !== undefined) o.port = done.port;
    if (request.op === 'bind') {
      o.bind = done.outcome;
      o.binder = 'native'; // lifecycle sockets are the native helper's, whatever `binder` says
      if (done.outcome !== 'ok') o.bindMessage = `${done.syscall ?? 'bind'}: ${done.outcome}`;
    }
    if (request.op === 'listen' && done.outcome === 'ok') instance.running = true;
    if ((request.op === 'close' || request.op === 'shutdown') && done.outcome === 'ok') instance.running = false;
  }
}

function readCounters(): Partial<Record<TcpExtCounter, number>> {
  try {
    return readTcpExtCounters();
  } catch {
    return {};
  }
}

function summarize(
  report: readonly HeldConnection[],
  payload: string | undefined,
  instances: readonly LifecycleInstance[],
): HeldSummary {
  const servedBy = new Map<string, { server: string; replica: number; count: number }>();
  const errors = new Map<string, number>();
  let intact = 0;
  for (const c of report) {
    if (c.state === 'served') {
      const who = parseGreeting(c.reply);
      const instance =
        who && instances.find((i) => i.observation.workerId === who.workerId && i.worker.pid === who.pid);
      const key = instance ? `${instance.server.id}#${instance.replica}` : 'unknown#0';
      const entry = servedBy.get(key) ?? {
        server: instance?.server.id ?? 'unknown',
        replica: instance?.replica ?? 0,
        count: 0,
      };
      entry.count++;
      servedBy.set(key, entry);
      if (payload === undefined || c.body === payload) intact++;
    } else if (c.error) {
      errors.set(c.error, (errors.get(c.error) ?? 0) + 1);
    }
  }
  return {
    states: countStates(report),
    servedBy: [...servedBy.values()],
    intact,
    errors: [...errors].map(([code, count]) => ({ code, count })),
  };
}

/** "close W#1", "hold 4 connections to 127.0.0.1:W (held)": the progress line of a lifecycle step. */
export function describeLifecycleStep(step: LifecycleStep): string {
  if (step.kind === 'hold') {
    const h = step.hold;
    return `hold ${h.connections} connections to ${h.target}:${h.port}${h.payload ? ' with bytes' : ''} (${h.id})`;
  }
  if (step.kind === 'settle') return `settle ${step.hold}`;
  if (step.kind === 'setsockopt')
    return `setsockopt ${step.option}=${step.value ? 1 : 0} on ${step.targets.join(', ')}`;
  return `${step.action} ${step.targets.join(', ')}`;
}

/** "W#1 ok (3 queued)", "served 4 (4 intact), reset 0, waiting 0". */
export function describeLifecycleRecord(record: LifecycleRecord): string {
  if (record.kind === 'lifecycle') {
    return record.outcomes
      .map((o) => `${o.server}#${o.replica} ${o.outcome}${o.queued !== undefined ? ` (${o.queued} queued)` : ''}`)
      .join(', ');
  }
  const summary = record.kind === 'hold' ? record.hold.opened : (record.hold.settled ?? record.hold.opened);
  return describeHeld(summary, record.hold.payload !== undefined);
}

function describeHeld(summary: HeldSummary, withPayload: boolean): string {
  const parts = Object.entries(summary.states)
    .filter(([, n]) => n > 0)
    .map(([state, n]) => {
      if (state !== 'served') return `${state} ${n}`;
      const by = summary.servedBy.map((s) => `${s.server}#${s.replica} ${s.count}`).join(', ');
      return `served ${n} (${by}${withPayload ? `; ${summary.intact} with bytes intact` : ''})`;
    });
  return parts.join(', ') || 'nothing';
}
