/**
 * Judging the lifecycle expectations (issue 7): step outcomes, kernel counter
 * deltas, TIME_WAIT, failures of a traffic step by errno, per-replica counts,
 * and what became of held connections. Plus the checks every run makes: a
 * step that failed, or a held connection that was not served, fails the
 * scenario unless an expectation allows it; a served one must get its bytes
 * back intact.
 */
import type { ExpectationResult } from './expect.js';
import type { LifecycleExpectation, Range } from './format-lifecycle.js';
import type { HeldSummary } from './lifecycle-run.js';
import type { Observations } from './observations.js';
import { parseTarget } from './plan-helpers.js';
import type { Expectation, Scenario, Step } from './schema.js';

const KINDS: readonly string[] = ['step', 'fails', 'count', 'held'] satisfies LifecycleExpectation['kind'][];

/** The expectations this module judges. */
export type LifecycleExpectationItem = Extract<Expectation, { kind: LifecycleExpectation['kind'] }>;

export function isLifecycleExpectation(e: Expectation): e is LifecycleExpectationItem {
  return KINDS.includes(e.kind);
}

/** Servers whose bind steps a `step:` outcome expectation judges: the every-run bind check leaves them to it. */
export function bindStepsJudged(scenario: Scenario): string[] {
  return scenario.steps.flatMap((step) =>
    step.kind === 'lifecycle' &&
    step.action === 'bind' &&
    scenario.expect.some((e) => e.kind === 'step' && e.step === step.id && e.outcome !== undefined)
      ? step.targets.map((t) => parseTarget(t).server)
      : [],
  );
}

/** The id a step answers to in `step:` expectations. */
function stepIdOf(step: Step): string | undefined {
  if (step.kind === 'traffic') return step.traffic.id;
  if (step.kind === 'hold') return step.hold.id;
  return 'id' in step ? step.id : undefined;
}

/** "exactly 3", "2 to 5", "at least 50%". */
function describeRange(r: Range): string {
  if (r.exactly !== undefined) return `exactly ${r.exactly}`;
  const parts: string[] = [];
  if (r.min !== undefined && r.max !== undefined) parts.push(`${r.min} to ${r.max}`);
  else if (r.min !== undefined) parts.push(`at least ${r.min}`);
  else if (r.max !== undefined) parts.push(`at most ${r.max}`);
  const pct = (f: number) => `${Math.round(f * 1000) / 10}%`;
  if (r.minShare !== undefined && r.maxShare !== undefined) parts.push(`${pct(r.minShare)} to ${pct(r.maxShare)}`);
  else if (r.minShare !== undefined) parts.push(`at least ${pct(r.minShare)}`);
  else if (r.maxShare !== undefined) parts.push(`at most ${pct(r.maxShare)}`);
  return parts.join(' and ');
}

function inRange(n: number, total: number, r: Range): boolean {
  const share = total > 0 ? n / total : 0;
  return (
    (r.exactly === undefined || n === r.exactly) &&
    (r.min === undefined || n >= r.min) &&
    (r.max === undefined || n <= r.max) &&
    (r.minShare === undefined || (total > 0 && share >= r.minShare)) &&
    (r.maxShare === undefined || (total > 0 && share <= r.maxShare))
  );
}

function ofTotal(n: number, total: number): string {
  return `${n}/${total}${total > 0 ? ` (${Math.round((n / total) * 1000) / 10}%)` : ''}`;
}

/** A traffic step's failures of one kind: an errno name, `silent` (TCP), `lost` (UDP). */
export function failureKind(protocol: 'tcp' | 'udp', what: 'errno' | 'silent', code = ''): string {
  if (protocol === 'udp' && (what === 'silent' || code === 'ETIMEDOUT')) return 'lost';
  return what === 'silent' ? 'silent' : code;
}

/** Whether an expectation allows (and so judges) failures of this kind on a traffic step. */
export function failureAllowed(scenario: Scenario, traffic: string, kind: string): boolean {
  return scenario.expect.some((e) => e.kind === 'fails' && e.traffic === traffic && e.with === kind);
}

function heldOf(observations: Observations, id: string): { summary: HeldSummary; total: number } | undefined {
  const hold = observations.lifecycle?.holds.find((h) => h.id === id);
  if (!hold) return undefined;
  return { summary: hold.settled ?? hold.opened, total: hold.connections };
}

function matchesTarget(target: string | undefined, server: string, replica: number): boolean {
  if (target === undefined) return true;
  const t = parseTarget(target);
  return t.server === server && (t.replica === undefined || t.replica === replica);
}

export function judgeLifecycle(
  e: LifecycleExpectationItem,
  scenario: Scenario,
  observations: Observations,
): ExpectationResult {
  const base = { kind: e.kind, line: e.line };
  const notRun = (description: string): ExpectationResult => ({
    ...base,
    description,
    passed: false,
    expected: 'the step to run',
    observed: 'the run ended before this step',
  });
  if (e.kind === 'step') {
    const index = scenario.steps.findIndex((s) => stepIdOf(s) === e.step);
    const record = observations.steps[index];
    const kernel = observations.lifecycle?.kernel[index];
    const description = `step ${e.step}${e.on ? ` on ${e.on}` : ''}: ${[
      e.outcome !== undefined ? `outcome ${e.outcome}` : '',
      ...Object.entries(e.counters ?? {}).map(([name, r]) => `${name} +${describeRange(r)}`),
      e.timeWait ? `TIME_WAIT on port ${e.timeWait.port}: ${describeRange(e.timeWait)}` : '',
    ]
      .filter(Boolean)
      .join(', ')}`;
    if (!record) return notRun(description);
    const expected: string[] = [];
    const observed: string[] = [];
    let passed = true;
    if (e.outcome !== undefined) {
      const outcomes =
        record.kind === 'lifecycle'
          ? record.outcomes.filter((o) => matchesTarget(e.on, o.server, o.replica))
          : record.kind === 'start'
            ? record.outcomes.map((o) => ({ server: o.server, replica: o.replica, outcome: o.bind }))
            : [];
      expected.push(`outcome ${e.outcome}`);
      observed.push(
        outcomes.length === 0
          ? 'no socket this step acted on'
          : outcomes.map((o) => `${o.server}#${o.replica} ${o.outcome}`).join(', '),
      );
      passed &&= outcomes.length > 0 && outcomes.every((o) => o.outcome === e.outcome);
    }
    for (const [name, range] of Object.entries(e.counters ?? {})) {
      const delta = kernel?.counters[name as keyof typeof kernel.counters];
      expected.push(`${name} +${describeRange(range)}`);
      observed.push(delta === undefined ? `${name}: not counted by this kernel` : `${name} +${delta}`);
      passed &&= delta !== undefined && inRange(delta, 0, range);
    }
    if (e.timeWait) {
      const ref = e.timeWait.port;
      const port = typeof ref === 'number' ? ref : observations.instances.find((i) => i.server === ref && i.port)?.port;
      const count = kernel?.timeWait.find((t) => t.port === port)?.count;
      expected.push(`TIME_WAIT on port ${ref}: ${describeRange(e.timeWait)}`);
      observed.push(count === undefined ? `port ${ref}: not read` : `${count} on port ${port}`);
      passed &&= count !== undefined && inRange(count, 0, e.timeWait);
    }
    return { ...base, description, passed, expected: expected.join('; '), observed: observed.join('; ') };
  }
  if (e.kind === 'held') {
    const description = `held ${e.hold}: ${e.state}${e.by ? ` by ${e.by}` : ''} ${describeRange(e)}`;
    const held = heldOf(observations, e.hold);
    if (!held) return notRun(description);
    const n =
      e.state === 'served' && e.by !== undefined
        ? held.summary.servedBy.filter((s) => matchesTarget(e.by, s.server, s.replica)).reduce((a, s) => a + s.count, 0)
        : held.summary.states[e.state];
    return {
      ...base,
      description,
      passed: inRange(n, held.total, e),
      expected: describeRange(e),
      observed: `${e.state}${e.by ? ` by ${e.by}` : ''} ${ofTotal(n, held.total)} — ${describeSummary(held.summary)}`,
    };
  }
  const traffic = observations.traffic.find((t) => t.id === e.traffic);
  const description =
    e.kind === 'fails'
      ? `${e.traffic}: ${describeRange(e)} ${e.with}`
      : `${e.traffic}: ${e.on} gets ${describeRange(e)}`;
  if (!traffic) return notRun(description);
  const total = traffic.load.connections;
  if (e.kind === 'fails') {
    const protocol = traffic.load.protocol;
    const n =
      traffic.load.failures
        .filter((f) => failureKind(protocol, 'errno', f.code) === e.with)
        .reduce((a, f) => a + f.count, 0) + (failureKind(protocol, 'silent') === e.with ? traffic.load.silent : 0);
    const all = traffic.load.failures.map((f) => `${f.code} ${f.count}`);
    if (traffic.load.silent > 0) all.push(`${protocol === 'udp' ? 'lost' : 'silent'} ${traffic.load.silent}`);
    return {
      ...base,
      description,
      passed: inRange(n, total, e),
      expected: `${e.with} ${describeRange(e)}`,
      observed: `${e.with} ${ofTotal(n, total)}${all.length ? ` (all failures: ${all.join(', ')})` : ' (no failures)'}`,
    };
  }
  const n = traffic.perInstance
    .filter((p) => matchesTarget(e.on, p.server, p.replica))
    .reduce((a, p) => a + p.count, 0);
  const each = traffic.perInstance.map((p) => `${p.server}#${p.replica} ${p.count}`).join(', ');
  return {
    ...base,
    description,
    passed: inRange(n, total, e),
    expected: `${e.on}: ${describeRange(e)}`,
    observed: `${e.on} ${ofTotal(n, total)} (${each || 'no listener counted'})`,
  };
}

function describeSummary(s: HeldSummary): string {
  const states = Object.entries(s.states)
    .filter(([, n]) => n > 0)
    .map(([state, n]) => `${state} ${n}`);
  const by = s.servedBy.map((b) => `${b.server}#${b.replica} ${b.count}`);
  return `${states.join(', ') || 'none'}${by.length ? `; served by ${by.join(', ')}` : ''}`;
}

/**
 * Checks every lifecycle run makes: each failed step outcome needs an
 * expectation for it; each held connection that was not served needs one for
 * its state; every served one got its bytes back.
 */
export function implicitLifecycleChecks(scenario: Scenario, observations: Observations): ExpectationResult[] {
  const results: ExpectationResult[] = [];
  const unexpected: string[] = [];
  let acted = 0;
  observations.steps.forEach((record, index) => {
    if (record.kind !== 'lifecycle') return;
    acted++;
    const id = stepIdOf(scenario.steps[index]!);
    if (scenario.expect.some((e) => e.kind === 'step' && e.step === id && e.outcome !== undefined)) return;
    for (const o of record.outcomes.filter((x) => x.outcome !== 'ok')) {
      unexpected.push(
        `${record.action} ${o.server}#${o.replica} (line ${record.line}): ${o.outcome}${o.syscall ? ` in ${o.syscall}` : ''}`,
      );
    }
  });
  if (acted > 0) {
    results.push({
      kind: 'implicit-step',
      line: 0,
      description: 'every lifecycle step succeeds (no expectation says it may fail)',
      passed: unexpected.length === 0,
      expected: 'ok, or the outcome a step expectation names',
      observed: unexpected.length === 0 ? `${acted} steps, all as expected` : unexpected.join('; '),
    });
  }
  for (const hold of observations.lifecycle?.holds ?? []) {
    const summary = hold.settled ?? hold.opened;
    const allowed = new Set(scenario.expect.flatMap((e) => (e.kind === 'held' && e.hold === hold.id ? [e.state] : [])));
    const unexpected = Object.entries(summary.states).filter(
      ([state, n]) => n > 0 && state !== 'served' && !allowed.has(state as never),
    );
    const served = summary.states.served;
    results.push({
      kind: 'implicit-hold',
      line: 0,
      description: `${hold.id}: every held connection served${hold.payload !== undefined ? ' with its bytes intact' : ''}, or in a state an expectation names`,
      passed: unexpected.length === 0 && summary.intact === served,
      expected: `${hold.connections}/${hold.connections} served${hold.payload !== undefined ? ', bytes intact' : ''}, or states an expectation names`,
      observed: `${describeSummary(summary)}${hold.payload !== undefined ? `; ${summary.intact}/${served} with bytes intact` : ''}${unexpected.length ? `; not expected: ${unexpected.map(([s, n]) => `${s} ${n}`).join(', ')}` : ''}`,
    });
  }
  return results;
}
