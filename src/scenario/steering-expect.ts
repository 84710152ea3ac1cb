/**
 * Judging the expectations about programs and CPUs (issue 8 §4): `payloads`
 * (datagram k reached to[k mod modulo]) and `sameCpu` (a connection from CPU i
 * reached the socket with SO_INCOMING_CPU i, and the accepted socket says i).
 * Both read the per-attempt record of a sweep (steering-run.ts).
 */
import os from 'node:os';
import type { ExpectationResult } from './expect.js';
import type { Observations } from './observations.js';
import { incomingCpuFor, trafficSpecs } from './plan-helpers.js';
import type { Expectation, Scenario } from './schema.js';
import type { SweepObservation } from './steering-run.js';

type ProgramExpectation = Extract<Expectation, { kind: 'payloads' | 'sameCpu' }>;

/** Every attempt of a sweep in index order: k = portIndex × repeat + round. */
function attempts(sweep: SweepObservation): { k: number; answer: number; cpu: number }[] {
  return sweep.ports.flatMap((p, portIndex) =>
    p.answers.map((answer, round) => ({ k: portIndex * sweep.repeat + round, answer, cpu: p.cpus?.[round] ?? -1 })),
  );
}

/** "A#1 4, A#3 2" for a list of instance indexes (-1: no answer). */
function tally(sweep: SweepObservation, answers: number[]): string {
  const counts = new Map<string, number>();
  for (const a of answers) {
    const label = a >= 0 ? sweep.instances[a]!.label : 'no answer';
    counts.set(label, (counts.get(label) ?? 0) + 1);
  }
  return [...counts].map(([label, n]) => `${label} ${n}`).join(', ');
}

export function judgeProgram(
  expectation: ProgramExpectation,
  observations: Observations,
  scenario: Scenario,
): ExpectationResult {
  const base = { kind: expectation.kind, line: expectation.line };
  const traffic = observations.traffic.find((t) => t.id === expectation.traffic);
  const sweep = traffic?.sweep;
  if (expectation.kind === 'payloads') {
    const description = `${expectation.traffic}: datagram k reaches the instance its program picks (k mod ${expectation.modulo})`;
    const expected = expectation.to.map((to, r) => `${r}→${to}`).join(', ');
    if (!sweep) return { ...base, description, passed: false, expected, observed: 'the traffic was not sent' };
    const byResidue = expectation.to.map(() => [] as number[]);
    const wrong: string[] = [];
    for (const { k, answer } of attempts(sweep)) {
      const r = k % expectation.modulo;
      byResidue[r]!.push(answer);
      const want = expectation.to[r]!;
      const label = answer >= 0 ? sweep.instances[answer]!.label : null;
      if (label === null || (want !== 'any' && label !== want)) wrong.push(`#${k} → ${label ?? 'no answer'}`);
    }
    const observed = byResidue.map((answers, r) => `${r}→${tally(sweep, answers) || 'none sent'}`).join('; ');
    return {
      ...base,
      description,
      passed: wrong.length === 0 && byResidue.every((a) => a.length > 0),
      expected,
      observed: wrong.length === 0 ? observed : `${wrong.length} off (${wrong.slice(0, 3).join('; ')}); ${observed}`,
    };
  }
  const spec = trafficSpecs(scenario.steps).find((t) => t.id === expectation.traffic);
  const cpu = spec?.cpu ?? -1;
  const description = `${expectation.traffic}: connections from CPU ${cpu} reach the socket with SO_INCOMING_CPU ${cpu}`;
  const expected = `every connection on an instance with incomingCpu ${cpu}; accepted sockets report ${cpu}`;
  if (!sweep) return { ...base, description, passed: false, expected, observed: 'the traffic was not sent' };
  const cpus = os.availableParallelism();
  const configured = sweep.instances.map((i) => {
    const server = scenario.servers.find((s) => s.id === i.server);
    return incomingCpuFor(server?.incomingCpu, i.replica, cpus);
  });
  const all = attempts(sweep);
  const answered = all.filter((a) => a.answer >= 0);
  const elsewhere = answered.filter((a) => configured[a.answer] !== cpu);
  const reported = new Map<number, number>();
  for (const a of answered) reported.set(a.cpu, (reported.get(a.cpu) ?? 0) + 1);
  const reports = [...reported].map(([c, n]) => `${c < 0 ? 'unreadable' : c} ×${n}`).join(', ');
  const mismatched = answered.length - (reported.get(cpu) ?? 0);
  return {
    ...base,
    description,
    passed: answered.length === all.length && answered.length > 0 && elsewhere.length === 0 && mismatched === 0,
    expected,
    observed: `${tally(
      sweep,
      all.map((a) => a.answer),
    )}; accepted sockets' SO_INCOMING_CPU: ${reports || 'none'}${elsewhere.length ? `; ${elsewhere.length} on an instance without incomingCpu ${cpu}` : ''}`,
  };
}
