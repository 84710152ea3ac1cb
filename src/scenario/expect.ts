import { formatHostPort } from '../errors.js';
import type { LoadResult } from '../net/load-client.js';
import { chiSquareUniform, formatPValue } from '../stats/chi-square.js';
import {
  bindStepsJudged,
  failureAllowed,
  failureKind,
  implicitLifecycleChecks,
  isLifecycleExpectation,
  judgeLifecycle,
  type LifecycleExpectationItem,
} from './lifecycle-expect.js';
import type { InstanceObservation, Observations, TrafficObservation } from './observations.js';
import { judgeSteering, type RemapTally, type StickyTally } from './remap-model.js';
import type { Expectation, Scenario } from './schema.js';
import { judgeProgram } from './steering-expect.js';

export interface ExpectationResult {
  kind:
    | Expectation['kind']
    | 'accounting'
    | 'implicit-bind'
    | 'implicit-traffic'
    | 'implicit-workers'
    | 'implicit-step'
    | 'implicit-hold';
  /** Line in the scenario file (0 for checks every run makes). */
  line: number;
  description: string;
  passed: boolean;
  expected: string;
  observed: string;
  /** `remap` only: the tuples that stayed and moved, judged by both models. */
  remap?: RemapTally;
  /** `sticky` only: the ports behind the verdict. */
  sticky?: StickyTally;
}

/** Judges the observations against the scenario's expectations, plus the checks every run makes. */
export function evaluate(scenario: Scenario, observations: Observations): ExpectationResult[] {
  const results = scenario.expect.map((expectation) =>
    isLifecycleExpectation(expectation)
      ? judgeLifecycle(expectation, scenario, observations)
      : judge(expectation, observations, scenario),
  );
  const stated = new Set([
    ...scenario.expect.flatMap((e) => (e.kind === 'bind' ? [e.server] : [])),
    ...bindStepsJudged(scenario),
  ]);
  for (const id of new Set(observations.instances.map((i) => i.server))) {
    if (stated.has(id)) continue;
    const instances = observations.instances.filter((i) => i.server === id);
    const failed = instances.filter((i) => i.bind !== 'ok');
    results.push({
      kind: 'implicit-bind',
      line: 0,
      description: `${id} binds (no expectation says it may fail)`,
      passed: failed.length === 0,
      expected: 'ok',
      observed: describeBinds(instances),
    });
  }
  for (const traffic of observations.traffic) results.push(judgeAccounting(traffic));
  // Every failed connection or lost datagram fails the scenario, unless a `fails` expectation allows (and judges) its kind.
  for (const traffic of observations.traffic) {
    const failures = trafficFailures(traffic.load).filter((f) => !failureAllowed(scenario, traffic.id, f.kind));
    const noun = traffic.load.protocol === 'tcp' ? 'connection' : 'datagram';
    const sent = traffic.load.connections;
    results.push({
      kind: 'implicit-traffic',
      line: 0,
      description:
        allowedCount(traffic.load, failures) > 0
          ? `${traffic.id}: every ${noun} answered, but for the failures expectations allow`
          : `${traffic.id}: every ${noun} answered (no expectation allows failures)`,
      passed: failures.length === 0,
      expected: `${sent - allowedCount(traffic.load, failures)}/${sent} answered`,
      observed:
        failures.length === 0
          ? `${traffic.load.attributed}/${sent} answered`
          : `${sent - failures.reduce((n, f) => n + f.count, 0)}/${sent} answered; ${failures.map((f) => `${f.what} ${f.count}`).join(', ')}`,
    });
  }
  results.push(...implicitLifecycleChecks(scenario, observations));
  const faulted = observations.instances.filter((i) => i.fault);
  if (observations.instances.length > 0) {
    results.push({
      kind: 'implicit-workers',
      line: 0,
      description: 'every worker ran and answered until it was told to stop',
      passed: faulted.length === 0,
      expected: 'no worker died or stopped answering',
      observed: faulted.length === 0 ? 'none did' : faulted.map(describeFault).join('; '),
    });
  }
  return results;
}

/**
 * The workers' own counters against the client's tallies (reconciled in
 * src/net/reconcile.ts): passes when every count is known and every
 * difference is explained, and nobody outside the scenario answered.
 */
function judgeAccounting(traffic: TrafficObservation): ExpectationResult {
  const { load, reconciliation } = traffic;
  const accepted = traffic.workerDeltas.reduce((s, d) => s + (d.accepted ?? 0), 0);
  const noun = load.protocol === 'tcp' ? 'accepted' : 'read';
  const passed = traffic.accounting.length === 0 && traffic.strangers === 0;
  const sum =
    reconciliation.acceptedWithoutGreeting > 0
      ? `${accepted} ${noun} = ${load.attributed} attributed + ${reconciliation.acceptedWithoutGreeting} without a greeting`
      : `${load.attributed} attributed = ${accepted} ${noun}`;
  return {
    kind: 'accounting',
    line: 0,
    description: `${traffic.id}: the workers' own counters match the client's tallies, every difference explained`,
    passed,
    expected:
      "every count known, and each worker's count = what the client attributed to it + what it took without greeting",
    observed: [...(passed ? [sum] : traffic.accounting), ...traffic.explained].join('; '),
  };
}

/** "W#2 (pid 812) was killed by SIGKILL during step 3 (1000 connections to 127.0.0.1:6000 (lb))". */
export function describeFault(instance: InstanceObservation): string {
  const f = instance.fault;
  if (!f) return '';
  const when =
    f.step === 0 ? 'while the workers booted' : `${f.between ? 'after' : 'during'} step ${f.step} (${f.stepText})`;
  return `${instance.server}#${instance.replica} (pid ${instance.pid}) ${f.how} ${when}`;
}

/**
 * Every way the connections (or datagrams) of a traffic step went unanswered,
 * by name and count; empty when all were answered. The one place that reads
 * the load result's failure fields.
 */
export function trafficFailures(load: LoadResult): { what: string; count: number; kind: string }[] {
  const out: { what: string; count: number; kind: string }[] = [];
  for (const f of load.failures) {
    if (f.count === 0) continue;
    const what = load.protocol === 'udp' && f.code === 'ETIMEDOUT' ? 'lost (no reply, ETIMEDOUT)' : f.code;
    out.push({ what, count: f.count, kind: failureKind(load.protocol, 'errno', f.code) });
  }
  if (load.silent > 0) {
    out.push({
      what: load.protocol === 'udp' ? 'lost (no reply)' : 'silent (no greeting)',
      count: load.silent,
      kind: failureKind(load.protocol, 'silent'),
    });
  }
  if (load.unrecognized > 0)
    out.push({ what: 'answered without a greeting', count: load.unrecognized, kind: 'unrecognized' });
  if (load.inFlight > 0) out.push({ what: 'still in flight', count: load.inFlight, kind: 'inFlight' });
  if (load.notStarted > 0)
    out.push({
      what: `not sent (${load.stoppedEarly ?? 'stopped early'})`,
      count: load.notStarted,
      kind: 'notStarted',
    });
  return out;
}

/** Failures an expectation allowed: the ones trafficFailures lists but `unexpected` does not. */
function allowedCount(load: LoadResult, unexpected: readonly { count: number }[]): number {
  const all = trafficFailures(load).reduce((n, f) => n + f.count, 0);
  return all - unexpected.reduce((n, f) => n + f.count, 0);
}

function judge(
  expectation: Exclude<Expectation, LifecycleExpectationItem>,
  observations: Observations,
  scenario: Scenario,
): ExpectationResult {
  if (expectation.kind === 'sticky' || expectation.kind === 'remap')
    return judgeSteering(expectation, observations, scenario);
  if (expectation.kind === 'payloads' || expectation.kind === 'sameCpu')
    return judgeProgram(expectation, observations, scenario);
  const base = { kind: expectation.kind, line: expectation.line };
  if (expectation.kind === 'bind') {
    const instances = observations.instances.filter((i) => i.server === expectation.server);
    const passed = instances.length > 0 && instances.every((i) => i.bind === expectation.outcome);
    return {
      ...base,
      description: `${expectation.server} bind: ${expectation.outcome}`,
      passed,
      expected: expectation.outcome,
      observed: instances.length > 0 ? describeBinds(instances) : 'never started',
    };
  }
  const traffic = observations.traffic.find((t) => t.id === expectation.traffic);
  if (!traffic) {
    return {
      ...base,
      description: `${expectation.traffic}: traffic`,
      passed: false,
      expected: 'traffic to be sent',
      observed: 'the run ended before this traffic step',
    };
  }
  const total = traffic.load.attempted;
  const countFor = (server: string) =>
    traffic.perInstance.filter((p) => p.server === server).reduce((sum, p) => sum + p.count, 0);
  const to = formatHostPort(traffic.target, traffic.port);
  if (expectation.kind === 'all') {
    const count = countFor(expectation.server);
    return {
      ...base,
      description: `${expectation.traffic}: every connection to ${to} reaches ${expectation.server}`,
      passed: total > 0 && count === total,
      expected: `${expectation.server} ${total}/${total} (100%)`,
      observed: describeLanding(traffic),
    };
  }
  if (expectation.kind === 'share') {
    const count = countFor(expectation.server);
    const share = total > 0 ? count / total : 0;
    return {
      ...base,
      description: `${expectation.traffic}: ${expectation.server} gets ${pct(expectation.min)}–${pct(expectation.max)} of ${to}`,
      passed: share >= expectation.min && share <= expectation.max,
      expected: `${pct(expectation.min)} to ${pct(expectation.max)}`,
      observed: `${expectation.server} ${count}/${total} (${pct(share)})`,
    };
  }
  const members = traffic.perInstance.filter((p) => expectation.over.includes(p.server));
  const draws = independentDraws(traffic, members, observations.portRange);
  const problems: string[] = [];
  if (members.length < 2) problems.push(`only ${members.length} member listening`);
  const inGroup = members.reduce((sum, m) => sum + m.count, 0);
  if (inGroup !== total) problems.push(`${total - inGroup} of ${total} landed outside the group or failed`);
  const description = `${expectation.traffic}: ${to} balanced over ${expectation.over.join(', ')} (${members.length} sockets)`;
  const expected = `chi-square p >= ${expectation.pValue} against uniform${expectation.everyMember ? ', every member used' : ''}`;
  if (draws.counts === null) {
    problems.push(draws.why);
    return { ...base, description, passed: false, expected, observed: `cannot judge: ${problems.join('; ')}` };
  }
  const fit = chiSquareUniform(draws.counts);
  if (fit.pValue < expectation.pValue) problems.push(`p ${formatPValue(fit.pValue)} < ${expectation.pValue}`);
  if (expectation.everyMember && !members.every((m) => m.count > 0)) problems.push('a member received nothing');
  return {
    ...base,
    description,
    passed: problems.length === 0,
    expected,
    observed: `${draws.label} ${draws.counts.join('/')}, chi-square ${fit.statistic.toFixed(2)} (df ${fit.degreesOfFreedom}), p ${formatPValue(fit.pValue)}${problems.length ? ` — ${problems.join('; ')}` : ''}`,
  };
}

/**
 * The counts a chi-square test may be run on: one per distinct 4-tuple. A
 * connection that reuses a source port has the same 4-tuple, hence the same
 * hash and the same socket, as the earlier one: it is not a new draw, and
 * counting it anyway inflates the statistic (30,000 connections over 64
 * sockets failed at p ~ 1e-12). With the load client's distinct source ports
 * per worker, those are the draws. Without them, plain counts are draws only
 * while no source port can have come back: connect() walks the ephemeral range
 * (RFC 6056 algorithm 4, __inet_hash_connect) moving at most 16 ports per
 * connection, so it cannot wrap before range/16 connections; UDP's autobind
 * picks ports at random, so repeats stay rare only below range/64 datagrams.
 */
function independentDraws(
  traffic: TrafficObservation,
  members: TrafficObservation['perInstance'],
  range: Observations['portRange'],
): { counts: number[]; label: string } | { counts: null; why: string } {
  if (members.length > 0 && members.every((m) => m.distinctSourcePorts !== undefined)) {
    return { counts: members.map((m) => m.distinctSourcePorts!), label: 'distinct source ports' };
  }
  const counts = members.map((m) => m.count);
  if (traffic.load.attempted <= 1 || members.length < 2) return { counts, label: 'counts' };
  const size = range ? range.high - range.low + 1 : 0;
  const limit = Math.floor(size / (traffic.load.protocol === 'tcp' ? 16 : 64));
  if (traffic.load.attempted <= limit) return { counts, label: 'counts' };
  return {
    counts: null,
    why: `${traffic.load.attempted} ${traffic.load.protocol === 'tcp' ? 'connections' : 'datagrams'} from ${
      range ? `the source port range ${range.low}-${range.high}` : 'an unknown source port range'
    } can repeat source ports, and a repeated 4-tuple is not a new draw; counts ${counts.join('/')} (judging needs at most ${limit}, or the client's distinct source ports)`,
  };
}

function describeBinds(instances: InstanceObservation[]): string {
  const outcomes = new Set(instances.map((i) => i.bind));
  if (outcomes.size === 1) return `${[...outcomes][0]}${instances.length > 1 ? ` (all ${instances.length})` : ''}`;
  return instances.map((i) => `#${i.replica} ${i.bind}`).join(', ');
}

function describeLanding(traffic: TrafficObservation): string {
  const total = traffic.load.attempted;
  const byServer = new Map<string, number>();
  for (const p of traffic.perInstance) byServer.set(p.server, (byServer.get(p.server) ?? 0) + p.count);
  const parts = [...byServer]
    .filter(([, n]) => n > 0)
    .map(([server, n]) => `${server} ${n}/${total} (${pct(n / total)})`);
  if (traffic.load.failed > 0) {
    parts.push(
      `failed ${traffic.load.failed} (${traffic.load.failures.map((f) => `${f.code} ${f.count}`).join(', ')})`,
    );
  }
  if (traffic.load.silent > 0) parts.push(`silent ${traffic.load.silent}`);
  if (traffic.load.unrecognized > 0) parts.push(`no greeting ${traffic.load.unrecognized}`);
  if (traffic.load.inFlight > 0) parts.push(`in flight ${traffic.load.inFlight}`);
  return parts.join(', ') || 'nothing';
}

function pct(fraction: number): string {
  return `${(fraction * 100).toFixed(fraction === 1 || fraction === 0 ? 0 : 1)}%`;
}
