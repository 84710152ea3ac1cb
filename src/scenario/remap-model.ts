/**
 * Judging `sticky` and `remap` (issue 8 §2) against the kernel's model of a
 * reuseport group, read in net/core/sock_reuseport.c:
 *
 * - reuseport_select_sock() → reuseport_select_sock_by_hash() takes
 *   socks[reciprocal_scale(hash, num_socks)], and reciprocal_scale(h, n) is
 *   (h * n) >> 32 = floor(u · n) with u = h / 2^32 in [0, 1): the tuple's
 *   fixed position. The hash is inet_ehashfn()/udp_ehashfn() of the 4-tuple,
 *   keyed per boot and per namespace (net_hash_mix()).
 * - reuseport_add_sock() → __reuseport_add_sock() appends:
 *   socks[num_socks++] = sk. TCP joins at listen(), UDP at bind().
 * - reuseport_detach_sock() → __reuseport_detach_sock() replaces the leaving
 *   socket by the last one: socks[i] = socks[num_socks - 1]; num_socks--.
 *
 * The first sweep tells, for each tuple, its slot s of n, so u lies in
 * [s/n, (s+1)/n); after the change the tuple must land in a slot k of the new
 * size m with [k/m, (k+1)/m) overlapping that interval: one slot, or two when
 * the interval straddles a boundary. A "naive" model, in which a leaving
 * member's successors shift down by one (an ordered list), is judged on the
 * same data and shown alongside.
 */

import { canonicalAddress } from '../net/address.js';
import type { ExpectationResult } from './expect.js';
import type { Observations, TrafficObservation } from './observations.js';
import type { Expectation, Scenario } from './schema.js';
import type { SweepObservation } from './steering-run.js';

type SteeringExpectation = Extract<Expectation, { kind: 'sticky' | 'remap' }>;
type Model = 'swap-with-last' | 'shift-down';

/** Judges a `sticky` or `remap` expectation. */
export function judgeSteering(
  expectation: SteeringExpectation,
  observations: Observations,
  scenario: Scenario,
): ExpectationResult {
  const base = { kind: expectation.kind, line: expectation.line };
  if (expectation.kind === 'sticky') {
    const traffic = observations.traffic.find((t) => t.id === expectation.traffic);
    const description = `${expectation.traffic}: every connection from one source port reaches one instance`;
    const expected = '0 unstable ports';
    if (!traffic?.sweep) return { ...base, description, passed: false, expected, observed: notSent(traffic) };
    const sweep = traffic.sweep;
    const answered = sweep.ports.filter((p) => p.answers.some((a) => a >= 0)).length;
    const unstable = sweep.unstablePorts.length;
    const examples = sweep.unstablePorts.slice(0, 3).map((port) => {
      const answers = sweep.ports.find((p) => p.sourcePort === port)?.answers ?? [];
      return `port ${port}: ${answers.map((a) => (a >= 0 ? sweep.instances[a]!.label : 'none')).join(', ')}`;
    });
    return {
      ...base,
      description,
      passed: unstable === 0 && answered > 0,
      expected,
      observed: `${sweep.count} ports × ${sweep.repeat}: ${answered} of ${sweep.count} ports answered, ${unstable} unstable${examples.length ? ` (${examples.join('; ')})` : ''}; ports per instance ${portsPerInstance(sweep)}`,
      sticky: { traffic: expectation.traffic, ports: sweep.count, answered, unstable },
    };
  }
  const before = observations.traffic.find((t) => t.id === expectation.before);
  const after = observations.traffic.find((t) => t.id === expectation.after);
  const description = `${expectation.before} → ${expectation.after}: the tuples that move are those the kernel's model (swap-with-last, append) predicts`;
  const expected = '0 violations of swap-with-last';
  if (!before?.sweep || !after?.sweep) {
    return { ...base, description, passed: false, expected, observed: notSent(before?.sweep ? after : before) };
  }
  const swap = checkModel('swap-with-last', before, after, observations, scenario);
  const naive = checkModel('shift-down', before, after, observations, scenario);
  const remap: RemapTally = {
    before: expectation.before,
    after: expectation.after,
    kernel: tallyOf(swap),
    naive: tallyOf(naive),
  };
  if ('cannot' in swap)
    return { ...base, description, passed: false, expected, observed: `cannot judge: ${swap.cannot}`, remap };
  const naiveText =
    'cannot' in naive
      ? `naive shift-down model: cannot judge (${naive.cannot})`
      : `naive shift-down model: ${naive.violations.length} violations${naive.violations.length ? ` (e.g. ${naive.violations[0]})` : ''}`;
  const problems: string[] = [];
  if (swap.violations.length > 0)
    problems.push(`${swap.violations.length} violations: ${swap.violations.slice(0, 3).join('; ')}`);
  if (swap.unjudged > 0) problems.push(`${swap.unjudged} ports not judged (no single answer in one of the sweeps)`);
  const moved = swap.allowedMoves + swap.forbiddenMoves;
  return {
    ...base,
    description,
    passed: problems.length === 0 && swap.judged > 0,
    expected,
    observed: `group ${groupText(swap.groupBefore)} → ${groupText(swap.groupAfter)}; ${swap.judged} ports judged: moved ${moved}, predicted ${swap.certainMoves} certain + ${swap.possibleMoves} near a slot boundary; ${problems.length ? problems.join('; ') : '0 violations'}; ${naiveText}`,
    remap,
  };
}

function notSent(traffic: TrafficObservation | undefined): string {
  return traffic ? `traffic ${traffic.id} was not a sweep` : 'the run ended before this traffic step';
}

function portsPerInstance(sweep: SweepObservation): string {
  const counts = sweep.instances.map(() => 0);
  for (const p of sweep.ports) for (const a of new Set(p.answers)) if (a >= 0) counts[a]!++;
  return sweep.instances.map((i, n) => `${i.label} ${counts[n]}`).join(', ');
}

/** The one instance that answered every round of a port, or null. */
function soleAnswer(sweep: SweepObservation, answers: number[]): number | null {
  const set = new Set(answers);
  if (set.size !== 1) return null;
  const only = [...set][0]!;
  return only >= 0 ? sweep.instances[only]!.pid : null;
}

/** A `sticky` expectation's counts, in --json: ports swept, ports answered at least once, ports answered by more than one instance. */
export interface StickyTally {
  traffic: string;
  ports: number;
  answered: number;
  unstable: number;
}

/**
 * What one model made of the tuples of a `remap`, in --json. Every judged
 * tuple (one answer in each sweep) either stayed or moved:
 * judged = stayed + allowedMoves + forbiddenMoves. A stay the model rules out
 * (a certain move that did not happen) is one of `stayed` and also counted in
 * `forbiddenStays`; `violatingPorts` lists the source ports of every
 * forbidden move and stay.
 */
export interface RemapModelTally {
  /** The group's socket array before and after the change, as this model has it. */
  groupBefore: { label: string; pid: number }[];
  groupAfter: { label: string; pid: number }[];
  judged: number;
  unjudged: number;
  stayed: number;
  allowedMoves: number;
  forbiddenMoves: number;
  forbiddenStays: number;
  /** Moves the model predicts whatever u is, and tuples near a slot boundary that may or may not move. */
  certainMoves: number;
  possibleMoves: number;
  violatingPorts: number[];
}

/** A `remap` expectation's counts, under the kernel's swap-with-last and the naive shift-down model. */
export interface RemapTally {
  before: string;
  after: string;
  kernel: RemapModelTally | { cannot: string };
  naive: RemapModelTally | { cannot: string };
}

type ModelCheck = RemapModelTally & { violations: string[] };

function tallyOf(check: ModelCheck | { cannot: string }): RemapModelTally | { cannot: string } {
  if ('cannot' in check) return { cannot: check.cannot };
  const { violations: _, ...tally } = check;
  return tally;
}

/** A group's socket array as reports print it: [A#1, D#1, C#1]. */
export function groupText(group: { label: string }[]): string {
  return `[${group.map((g) => g.label).join(', ')}]`;
}

function checkModel(
  model: Model,
  before: TrafficObservation,
  after: TrafficObservation,
  observations: Observations,
  scenario: Scenario,
): ModelCheck | { cannot: string } {
  const b = before.sweep!;
  const a = after.sweep!;
  const label = new Map<number, string>();
  for (const i of [...b.instances, ...a.instances]) label.set(i.pid, i.label);
  const firstAnswer = b.ports.map((p) => soleAnswer(b, p.answers)).find((pid) => pid !== null);
  if (firstAnswer === undefined || firstAnswer === null) return { cannot: `no port of ${before.id} had one answer` };
  const groups = (stepIndex: number) => groupOrders(model, observations, scenario, stepIndex);
  const key = groupKeyOf(firstAnswer, observations, scenario);
  const order1 = groups(stepOf(observations, before)).get(key ?? '') ?? [];
  const order2 = groups(stepOf(observations, after)).get(key ?? '') ?? [];
  if (order1.length === 0 || order2.length === 0) return { cannot: 'the answering instance is in no known group' };
  const labelled = (order: number[]) => order.map((pid) => ({ label: label.get(pid) ?? `pid ${pid}`, pid }));
  const result: ModelCheck = {
    groupBefore: labelled(order1),
    groupAfter: labelled(order2),
    judged: 0,
    unjudged: 0,
    stayed: 0,
    allowedMoves: 0,
    forbiddenMoves: 0,
    forbiddenStays: 0,
    certainMoves: 0,
    possibleMoves: 0,
    violatingPorts: [],
    violations: [],
  };
  const n = order1.length;
  const m = order2.length;
  const afterPorts = new Map(a.ports.map((p) => [p.sourcePort, p.answers]));
  // Every earlier sweep of the same tuples narrows u: each says slot s of its own group size.
  const earlier = observations.traffic
    .filter((t) => t.sweep && stepOf(observations, t) <= stepOf(observations, before) && sameTuples(t, before))
    .map((t) => ({ sweep: t.sweep!, order: groups(stepOf(observations, t)).get(key ?? '') ?? [] }))
    .map(({ sweep, order }) => ({
      order,
      ports: new Map(sweep.ports.map((p) => [p.sourcePort, soleAnswer(sweep, p.answers)])),
    }));
  for (const port of b.ports) {
    const was = soleAnswer(b, port.answers);
    const now = soleAnswer(a, afterPorts.get(port.sourcePort) ?? []);
    const slot = was === null ? -1 : order1.indexOf(was);
    if (was === null || now === null || slot < 0) {
      result.unjudged++;
      continue;
    }
    result.judged++;
    if (now === was) result.stayed++;
    // u in [lo, hi), the intersection of [s/k, (s+1)/k) over the sweeps so far (as exact fractions).
    let lo: Fraction = [slot, n];
    let hi: Fraction = [slot + 1, n];
    for (const e of earlier) {
      const pid = e.ports.get(port.sourcePort);
      const s = pid === null || pid === undefined ? -1 : e.order.indexOf(pid);
      if (s < 0) continue;
      if (less(lo, [s, e.order.length])) lo = [s, e.order.length];
      if (less([s + 1, e.order.length], hi)) hi = [s + 1, e.order.length];
    }
    const violation = (why: string) => {
      result.violations.push(`port ${port.sourcePort}: ${why}`);
      result.violatingPorts.push(port.sourcePort);
      if (now === was) result.forbiddenStays++;
      else result.forbiddenMoves++;
    };
    if (!less(lo, hi)) {
      violation('its slots in the earlier sweeps contradict each other');
      continue;
    }
    const [low, high] = overlappingSlots(lo, hi, m);
    const predicted = order2.slice(low, high + 1);
    if (!predicted.includes(was)) result.certainMoves++;
    else if (predicted.length > 1) result.possibleMoves++;
    if (!predicted.includes(now)) {
      violation(
        `${label.get(was)} (slot ${slot} of ${n}) → ${label.get(now) ?? `pid ${now}`}, predicted ${predicted.map((pid) => label.get(pid)).join(' or ')}`,
      );
    } else if (now !== was) result.allowedMoves++;
  }
  return result;
}

/** A non-negative fraction as [numerator, denominator]; denominators are group sizes (<= 128), so products stay exact. */
export type Fraction = [number, number];

/** The first and last slot k of m whose [k/m, (k+1)/m) overlaps [lo, hi): where a tuple with u in [lo, hi) lands. */
export function overlappingSlots(lo: Fraction, hi: Fraction, m: number): [number, number] {
  return [Math.floor((lo[0] * m) / lo[1]), Math.ceil((hi[0] * m) / hi[1]) - 1];
}

function less(x: Fraction, y: Fraction): boolean {
  return x[0] * y[1] < y[0] * x[1];
}

function sameTuples(x: TrafficObservation, y: TrafficObservation): boolean {
  return (
    x.sweep?.from === y.sweep?.from &&
    x.sweep?.count === y.sweep?.count &&
    x.target === y.target &&
    x.port === y.port &&
    x.load.protocol === y.load.protocol
  );
}

/** 0-based index in observations.steps of a traffic observation. */
function stepOf(observations: Observations, traffic: TrafficObservation): number {
  return observations.steps.findIndex((s) => s.kind === 'traffic' && s.traffic.id === traffic.id);
}

/** A reuseport group is one protocol, one exact local address, one port. */
function groupKey(server: Scenario['servers'][number]): string {
  return `${server.protocol} ${canonicalAddress(server.address)} ${server.port}`;
}

function groupKeyOf(pid: number, observations: Observations, scenario: Scenario): string | undefined {
  const id = observations.instances.find((i) => i.pid === pid)?.server;
  const server = scenario.servers.find((s) => s.id === id);
  return server ? groupKey(server) : undefined;
}

/**
 * Every group's socket array (as pids) just before step `until`, replayed
 * from the start and stop records: a successful bind appends (binds within a
 * step run one after another, in the order recorded), a stop removes, the way
 * `model` says.
 */
function groupOrders(
  model: Model,
  observations: Observations,
  scenario: Scenario,
  until: number,
): Map<string, number[]> {
  const groups = new Map<string, number[]>();
  const serverOf = (id: string) => scenario.servers.find((s) => s.id === id);
  for (const record of observations.steps.slice(0, until)) {
    if (record.kind === 'start') {
      for (const o of record.outcomes) {
        const server = serverOf(o.server);
        if (o.bind !== 'ok' || !server?.reuseport) continue;
        const key = groupKey(server);
        groups.set(key, [...(groups.get(key) ?? []), o.pid]);
      }
    } else if (record.kind === 'stop') {
      for (const stopped of record.accepted) {
        const server = serverOf(stopped.server);
        const members = server ? groups.get(groupKey(server)) : undefined;
        const i = members?.indexOf(stopped.pid) ?? -1;
        if (!members || i < 0) continue;
        if (model === 'swap-with-last') {
          members[i] = members[members.length - 1]!;
          members.pop();
        } else {
          members.splice(i, 1);
        }
      }
    }
  }
  return groups;
}
