import { spawn } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { namespaceRemedy, noNamespaceMessage } from '../net/doctor.js';
import { isRoot } from '../net/users.js';
import { hardenedExecArgv, nodeChildEnv } from '../process-hardening.js';
import { type ExpectationResult, evaluate } from './expect.js';
import { lifecycleSkipReason } from './lifecycle-run.js';
import { type NamespaceProbe, startNamespaceProbe } from './namespace-probe.js';
import type { InnerEvent, Isolation, Observations, OuterMessage, Plan } from './observations.js';
import {
  canonicalAddress,
  hostAddress,
  ipFamily,
  isLoopback,
  isWildcard,
  type Scenario,
  sameAddress,
} from './schema.js';
import { cannotRunHere } from './steering-run.js';

const INNER_MAIN = fileURLToPath(new URL('./inner-main.js', import.meta.url));
const SCENARIO_TIMEOUT_MS = 120_000;

export type IsolationChoice = 'auto' | Isolation;

export interface RunOptions {
  isolation: IsolationChoice;
  /** Overrides every server's binder. */
  binder?: 'builtin' | 'native';
  /** How many scenarios may run at once in private namespaces (default: defaultJobs()). */
  jobs?: number;
  /** The namespace probe, when the caller started it early (startNamespaceProbe); else it runs first. */
  namespaceProbe?: Promise<NamespaceProbe | null>;
}

/**
 * Two scenarios per CPU: a scenario spends much of its time waiting (worker
 * boots, connects, the runner's IPC), so two per CPU keep the CPUs busy.
 */
export function defaultJobs(): number {
  return 2 * os.availableParallelism();
}

export type ScenarioStatus = 'passed' | 'failed' | 'skipped' | 'error';

export interface ScenarioResult {
  name: string;
  title: string;
  file: string;
  status: ScenarioStatus;
  article?: string;
  lookFor?: string;
  explanation?: string;
  /** Why it was skipped or could not run, and what to do about it. */
  reason?: string;
  isolation?: Isolation;
  isolationNote?: string;
  /** Host isolation only: stand-ins used for the file's addresses and ports. */
  substitutions: { addresses: { from: string; to: string }[]; ports: { from: number; to: number }[] };
  /** The scenario as it ran (after substitutions). */
  ran?: Scenario;
  observations?: Observations;
  expectations: ExpectationResult[];
  durationMs: number;
}

export interface RunReport {
  kernel: string;
  node: string;
  uid: number;
  results: ScenarioResult[];
  summary: { total: number; passed: number; failed: number; skipped: number; errors: number };
  durationMs: number;
  interrupted: boolean;
}

export interface RunHooks {
  signal: AbortSignal;
  onScenario?: (scenario: Scenario, isolation: Isolation | null) => void;
  onStep?: (scenario: Scenario, event: Extract<InnerEvent, { type: 'step' }>) => void;
}

/**
 * Runs each scenario in isolation and judges it. In private namespaces up to
 * `options.jobs` run at once (they cannot see each other's sockets, ports,
 * sysctls or counters); on the host they share the loopback and the kernel's
 * counters, so they run one after another. Results and progress come out in
 * the order given, as a sequential run would give them.
 */
export async function runScenarios(scenarios: Scenario[], options: RunOptions, hooks: RunHooks): Promise<RunReport> {
  const startedAt = Date.now();
  const namespace = await (options.namespaceProbe ?? startNamespaceProbe(options.isolation));
  const jobs = namespace?.ok ? Math.max(1, Math.min(options.jobs ?? defaultJobs(), scenarios.length)) : 1;
  const progress = new InOrderProgress(scenarios.length, hooks);
  const results: ScenarioResult[] = [];
  let next = 0;
  // The first error that is not a scenario's own outcome (runOne reports those) stops every lane, as it would a loop.
  let failure: { reason: unknown } | undefined;
  const lane = async () => {
    while (next < scenarios.length && !failure && !hooks.signal.aborted) {
      const index = next++;
      try {
        results[index] = await runOne(scenarios[index]!, options, namespace, progress.hooksFor(index));
      } catch (reason) {
        failure ??= { reason };
      } finally {
        progress.finished(index);
      }
    }
  };
  await Promise.all(Array.from({ length: jobs }, lane));
  if (failure) throw failure.reason;
  // Scenarios start in order, so those that ran are a prefix: an interrupt leaves no hole.
  results.length = next;
  const count = (status: ScenarioStatus) => results.filter((r) => r.status === status).length;
  return {
    kernel: `Linux ${os.release()}`,
    node: process.version,
    uid: process.getuid?.() ?? -1,
    results,
    summary: {
      total: results.length,
      passed: count('passed'),
      failed: count('failed'),
      skipped: count('skipped'),
      errors: count('error'),
    },
    durationMs: Date.now() - startedAt,
    interrupted: hooks.signal.aborted,
  };
}

/**
 * Hands each scenario's progress to the caller in scenario order: the first
 * unfinished scenario reports live, a later one's events wait until every
 * scenario before it is done, and are then delivered as they happened.
 */
export class InOrderProgress {
  private head = 0;
  private readonly done: boolean[] = [];
  private readonly held: (() => void)[][];

  constructor(
    count: number,
    private readonly hooks: RunHooks,
  ) {
    this.held = Array.from({ length: count }, () => []);
  }

  hooksFor(index: number): RunHooks {
    return {
      signal: this.hooks.signal,
      onScenario: (scenario, isolation) => this.deliver(index, () => this.hooks.onScenario?.(scenario, isolation)),
      onStep: (scenario, event) => this.deliver(index, () => this.hooks.onStep?.(scenario, event)),
    };
  }

  finished(index: number): void {
    this.done[index] = true;
    while (this.done[this.head]) {
      this.head++;
      const waiting = this.held[this.head] ?? [];
      this.held[this.head] = [];
      for (const call of waiting) call();
    }
  }

  private deliver(index: number, call: () => void): void {
    if (index === this.head) call();
    else this.held[index]?.push(call);
  }
}

async function runOne(
  scenario: Scenario,
  options: RunOptions,
  namespace: NamespaceProbe | null,
  hooks: RunHooks,
): Promise<ScenarioResult> {
  const startedAt = Date.now();
  const result: ScenarioResult = {
    name: scenario.name,
    title: scenario.title,
    file: scenario.file,
    status: 'skipped',
    article: scenario.article,
    lookFor: scenario.lookFor,
    explanation: scenario.explanation,
    substitutions: { addresses: [], ports: [] },
    expectations: [],
    durationMs: 0,
  };
  const skip = (reason: string) => {
    hooks.onScenario?.(scenario, null);
    result.reason = reason;
    return result;
  };
  const notHere = cannotRunHere(scenario);
  if (notHere) return skip(notHere);
  if (scenario.requires.includes('root') && !isRoot()) {
    return skip(
      `needs real root: it creates sockets as other uids (${describeUsers(scenario)}). Run it as root, e.g. \`sudo reuseport scenario run ${scenario.name}\``,
    );
  }
  const cannot = lifecycleSkipReason(scenario);
  if (cannot) return skip(cannot);
  let isolation: Isolation;
  let unshareArgs: string[] = [];
  // Why the host is used instead of a namespace (null when a namespace is used).
  const noNamespace =
    options.isolation === 'host' ? '--isolation host was given' : namespace && !namespace.ok ? namespace.reason : null;
  if (namespace?.ok) {
    isolation = 'netns';
    unshareArgs = namespace.args;
    result.isolationNote = `private network namespace (${namespace.how}); nothing touches the host's ports`;
  } else if (options.isolation === 'netns') {
    return skip(noNamespaceMessage(noNamespace ?? 'unknown reason'));
  } else if (scenario.requires.includes('netns')) {
    return skip(
      `needs a private network namespace (its addresses or sysctls have no host stand-in), and ${noNamespace}; ${namespaceRemedy()}`,
    );
  } else {
    isolation = 'host';
  }
  let ran = scenario;
  if (isolation === 'host') {
    const mapped = await mapForHost(scenario);
    if ('refused' in mapped) return skip(mapped.refused);
    ran = mapped.scenario;
    result.substitutions = mapped.substitutions;
    const wildcards = mapped.substitutions.addresses.some((a) => isWildcard(a.from));
    const how = `the host, on loopback only${wildcards ? ' (wildcard addresses are bound as loopback: no listener on the real interfaces)' : ''}; stand-ins for the article's addresses and free ports`;
    result.isolationNote =
      options.isolation === 'host'
        ? `${how} (--isolation host)`
        : `${how}, because no namespace could be made (${noNamespace})`;
  }
  result.isolation = isolation;
  hooks.onScenario?.(scenario, isolation);
  result.ran = ran;
  const plan: Plan = { scenario: ran, isolation, ...(options.binder ? { binder: options.binder } : {}) };
  const outcome = await runInner(plan, unshareArgs, hooks);
  result.durationMs = Date.now() - startedAt;
  if ('error' in outcome) {
    result.status = 'error';
    result.reason = outcome.error;
    return result;
  }
  result.observations = outcome.observations;
  result.expectations = evaluate(ran, outcome.observations);
  if (isolation === 'host') addHostHints(result);
  result.status = result.expectations.every((e) => e.passed) ? 'passed' : 'failed';
  return result;
}

function describeUsers(scenario: Scenario): string {
  return [...new Set(scenario.servers.flatMap((s) => (s.user !== undefined ? [String(s.user)] : [])))].join(', ');
}

/** Spawns the inner runner, in a fresh namespace when `unshareArgs` is given, and collects its result. */
function runInner(
  plan: Plan,
  unshareArgs: string[],
  hooks: RunHooks,
): Promise<{ observations: Observations } | { error: string }> {
  const [command, args] =
    unshareArgs.length > 0
      ? ['unshare', [...unshareArgs, '--', process.execPath, ...hardenedExecArgv(), INNER_MAIN]]
      : [process.execPath, [...hardenedExecArgv(), INNER_MAIN]];
  return new Promise((resolve) => {
    // The IPC channel survives unshare's exec: it is fd 3 plus NODE_CHANNEL_FD.
    const child = spawn(command, args, {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'json',
      env: nodeChildEnv(),
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 8192) stderr += chunk;
    });
    let outcome: { observations: Observations } | { error: string } | undefined;
    child.on('message', (event: InnerEvent) => {
      if (event.type === 'step') hooks.onStep?.(plan.scenario, event);
      else if (event.type === 'result') outcome = { observations: event.observations };
      else outcome = { error: event.message };
    });
    // The plan goes over IPC: as one argv element, a large scenario failed with E2BIG.
    const message: OuterMessage = { type: 'plan', plan };
    child.send(message, (err) => {
      if (err) outcome ??= { error: `could not hand the plan to the scenario runner: ${err.message}` };
    });
    const interrupt = () => {
      if (child.exitCode === null) child.kill('SIGTERM');
    };
    hooks.signal.addEventListener('abort', interrupt, { once: true });
    const timer = setTimeout(() => {
      outcome ??= { error: `gave up after ${SCENARIO_TIMEOUT_MS / 1000} s` };
      child.kill('SIGKILL');
    }, SCENARIO_TIMEOUT_MS);
    timer.unref();
    const done = (code: number | null, signal: string | null) => {
      clearTimeout(timer);
      hooks.signal.removeEventListener('abort', interrupt);
      const last = stderr.trim().split('\n').slice(-1)[0];
      resolve(
        outcome ?? {
          error: `the scenario runner ${signal ? `was killed by ${signal}` : `exited with code ${code}`}${last ? `: ${last}` : ''}`,
        },
      );
    };
    // 'close', not 'exit': 'exit' can come before the last IPC message (the result).
    child.once('close', done);
    child.once('error', (err) => {
      outcome ??= { error: `cannot start the scenario runner: ${err.message}` };
      done(null, null);
    });
  });
}

/**
 * On the host the article's addresses become loopback stand-ins, wildcards
 * become loopback too (a wildcard listener would be reachable from the
 * machine's real interfaces), and each port becomes one the kernel says is
 * free right now, so that parallel runs and other programs on the host do not
 * collide with the file's port 6000. A scenario whose point needs a real
 * wildcard, or an address that is not loopback, is refused with the reason.
 */
async function mapForHost(
  scenario: Scenario,
): Promise<{ scenario: Scenario; substitutions: ScenarioResult['substitutions'] } | { refused: string }> {
  const standIns = scenario.network.addresses
    .map((a) => ({ from: a.address, to: hostAddress(scenario.network, a.address) }))
    .filter((a) => !sameAddress(a.from, a.to));
  const wildcards = [
    ...new Map(
      scenario.servers
        .filter((s) => isWildcard(s.address))
        .map((s) => [
          canonicalAddress(s.address),
          { from: s.address, to: ipFamily(s.address) === 6 ? '::1' : '127.0.0.1' },
        ]),
    ).values(),
  ];
  const addresses = [...standIns, ...wildcards];
  const address = (a: string) => addresses.find((m) => sameAddress(m.from, a))?.to ?? a;
  for (const server of scenario.servers) {
    if (!isLoopback(address(server.address))) {
      return {
        refused: `not run on the host: server ${server.id} binds ${server.address}, which is not a loopback address, and --isolation host only binds loopback; run it in a private namespace (${namespaceRemedy()})`,
      };
    }
  }
  for (const server of scenario.servers.filter((s) => isWildcard(s.address))) {
    const samePort = (port: number | string, protocol: string) =>
      (port === server.port || port === server.id) && protocol === server.protocol;
    const rival = scenario.servers.find((o) => o !== server && !isWildcard(o.address) && samePort(o.port, o.protocol));
    const elsewhere = scenario.steps.find(
      (s) =>
        s.kind === 'traffic' &&
        samePort(s.traffic.port, s.traffic.protocol) &&
        !sameAddress(address(s.traffic.target), address(server.address)),
    );
    if (rival || elsewhere) {
      const why = rival
        ? `${rival.id} binds ${rival.address} on the same port`
        : `traffic goes to ${elsewhere?.kind === 'traffic' ? elsewhere.traffic.target : 'another address'}`;
      return {
        refused: `needs a private network namespace: on the host, ${server.id}'s wildcard ${server.address} would be bound as ${address(server.address)} (no wildcard listener on the real interfaces), and ${why}, so the experiment would not be the article's`,
      };
    }
  }
  const declaredPorts = [
    ...new Set([
      ...scenario.servers.map((s) => s.port),
      ...scenario.steps.flatMap((s) =>
        s.kind === 'traffic' ? [s.traffic.port] : s.kind === 'hold' ? [s.hold.port] : [],
      ),
    ]),
  ].filter((p): p is number => typeof p === 'number' && p !== 0); // a server id, or 0, is not a port to replace
  const ports: { from: number; to: number }[] = [];
  for (const from of declaredPorts) ports.push({ from, to: await freePort() });
  const port = <P extends number | string>(p: P): P => (ports.find((m) => m.from === p)?.to ?? p) as P;
  const mapped: Scenario = {
    ...scenario,
    network: {
      ...scenario.network,
      addresses: scenario.network.addresses.map((a) => ({ ...a, address: address(a.address) })),
    },
    servers: scenario.servers.map((s) => ({ ...s, address: address(s.address), port: port(s.port) })),
    steps: scenario.steps.map((s) =>
      s.kind === 'traffic'
        ? { ...s, traffic: { ...s.traffic, target: address(s.traffic.target), port: port(s.traffic.port) } }
        : s.kind === 'hold'
          ? { ...s, hold: { ...s.hold, target: address(s.hold.target), port: port(s.hold.port) } }
          : s,
    ),
  };
  return { scenario: mapped, substitutions: { addresses, ports } };
}

/**
 * A port the kernel says is free on loopback right now. The probe binds
 * 127.0.0.1, never a wildcard: in host mode nothing of ours may listen on the
 * machine's real interfaces, not even for an instant.
 */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen({ host: '127.0.0.1', port: 0, exclusive: true }, () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

function addHostHints(result: ScenarioResult): void {
  for (const expectation of result.expectations) {
    if (!expectation.passed && expectation.observed.includes('EADDRINUSE') && expectation.expected === 'ok') {
      expectation.observed += ` (host isolation: another program on this machine may have taken the port since it was chosen; run again, or in a private namespace: ${namespaceRemedy()})`;
    }
  }
}
