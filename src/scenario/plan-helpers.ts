/**
 * Small readers of an already-validated scenario that the inner runner needs.
 * They live apart from the zod format (schema.ts, format-*.ts) so that the
 * runner, which starts in every scenario's namespace, loads no schema library:
 * its plan arrives validated.
 */
import type { IncomingCpu } from './format-steering.js';
import type { Step, TrafficSpec } from './schema.js';

/** A target's server id and replica (undefined: every replica). */
export function parseTarget(text: string): { server: string; replica?: number } {
  const [server, replica] = text.split('#');
  return replica === undefined ? { server: server! } : { server: server!, replica: Number(replica) };
}

/** Whether a scenario file uses anything that needs lifecycle workers. */
export function usesLifecycle(data: { servers: readonly object[]; steps: readonly { kind: string }[] }): boolean {
  return (
    (data.servers as readonly Record<string, unknown>[]).some(
      (s) => s.backlog !== undefined || s.fchown !== undefined || s.port === 0,
    ) || data.steps.some((s) => ['lifecycle', 'setsockopt', 'hold', 'settle'].includes(s.kind))
  );
}

/** The CPU a replica's socket asks for with SO_INCOMING_CPU, if any. */
export function incomingCpuFor(rule: IncomingCpu | undefined, replica: number, cpus: number): number | undefined {
  if (rule === undefined) return undefined;
  return rule === 'replica-modulo' ? (replica - 1) % cpus : rule;
}

/** The traffic steps' specs, in order. */
export function trafficSpecs(steps: Step[]): TrafficSpec[] {
  return steps.flatMap((s) => (s.kind === 'traffic' ? [s.traffic] : []));
}
