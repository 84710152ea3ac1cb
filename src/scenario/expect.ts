import { formatHostPort } from '../errors.js';
import { chiSquareUniform } from '../stats/chi-square.js';
import type { InstanceObservation, Observations, TrafficObservation } from './observations.js';
import type { Expectation, Scenario } from './schema.js';

export interface ExpectationResult {
  kind: Expectation['kind'] | 'accounting' | 'implicit-bind';
  /** Line in the scenario file (0 for checks every run makes). */
  line: number;
  description: string;
  passed: boolean;
  expected: string;
  observed: string;
}

/** Judges the observations against the scenario's expectations, plus the checks every run makes. */
export function evaluate(scenario: Scenario, observations: Observations): ExpectationResult[] {
  const results = scenario.expect.map((expectation) => judge(expectation, observations));
  const stated = new Set(scenario.expect.flatMap((e) => (e.kind === 'bind' ? [e.server] : [])));
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
  for (const traffic of observations.traffic) {
    results.push({
      kind: 'accounting',
      line: 0,
      description: `${traffic.id}: every connection counted once, by the client and by exactly one worker`,
      passed: traffic.accounting.length === 0,
      expected: "client tallies equal the workers' accept counters",
      observed:
        traffic.accounting.length === 0
          ? `${traffic.load.attributed} attributed = ${traffic.workerDeltas.reduce((s, d) => s + d.accepted, 0)} accepted`
          : traffic.accounting.join('; '),
    });
  }
  return results;
}

function judge(expectation: Expectation, observations: Observations): ExpectationResult {
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
  const counts = members.map((m) => m.count);
  const inGroup = counts.reduce((a, b) => a + b, 0);
  const fit = chiSquareUniform(counts);
  const everyMemberUsed = counts.every((c) => c > 0);
  const problems: string[] = [];
  if (members.length < 2) problems.push(`only ${members.length} member listening`);
  if (inGroup !== total) problems.push(`${total - inGroup} of ${total} landed outside the group or failed`);
  if (fit.pValue < expectation.pValue) problems.push(`p ${formatP(fit.pValue)} < ${expectation.pValue}`);
  if (expectation.everyMember && !everyMemberUsed) problems.push('a member received nothing');
  return {
    ...base,
    description: `${expectation.traffic}: ${to} balanced over ${expectation.over.join(', ')} (${members.length} sockets)`,
    passed: problems.length === 0,
    expected: `chi-square p >= ${expectation.pValue} against uniform${expectation.everyMember ? ', every member used' : ''}`,
    observed: `counts ${counts.join('/')}, chi-square ${fit.statistic.toFixed(2)} (df ${fit.degreesOfFreedom}), p ${formatP(fit.pValue)}${problems.length ? ` — ${problems.join('; ')}` : ''}`,
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

function formatP(p: number): string {
  return p >= 0.001 ? p.toFixed(3) : p.toExponential(1);
}
