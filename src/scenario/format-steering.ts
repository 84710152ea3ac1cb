/**
 * The part of the scenario format about steering and determinism (issue 8):
 * source-port sweeps on traffic steps, and the `sticky` and `remap`
 * expectations. schema.ts adds each piece with one line; the rules that span
 * several items are in checkSteering(), called from schema.ts's crossCheck.
 */
import * as z from 'zod';
import { isLoopback } from './schema.js';
import { integer, ipLiteral, mapping, matching, port, text, trafficId } from './schema-blocks.js';
import { formatPath, isPlainObject, type PathSegment, quoteName, suggest } from './schema-messages.js';

/** Repeats per port: enough to see stickiness, bounded so a sweep stays short. */
export const MAX_SWEEP_REPEAT = 1000;

/** `sourcePorts: { from, count, repeat }`: each of `count` ports from `from`, connected `repeat` times. */
export const sourcePortsSchema = mapping({
  from: integer(1, 65535).meta({ description: 'First client source port of the sweep.' }),
  count: integer(1, 65535).meta({ description: 'How many consecutive source ports.' }),
  repeat: integer(1, MAX_SWEEP_REPEAT)
    .default(1)
    .meta({ description: 'Connections (datagrams) from each port, one at a time per port.' }),
}).meta({
  description:
    'Sweep fixed client source ports: one 4-tuple per port, each used `repeat` times. Replaces `connections`.',
});
export type SourcePorts = z.output<typeof sourcePortsSchema>;

/** `- traffic: ID` + `sticky: true`: every port of the sweep lands on one instance. */
export const stickyExpectation = mapping({
  traffic: trafficId,
  sticky: z
    .literal(true, { error: 'true (every source port of the sweep lands on one instance)' })
    .meta({ description: 'Every connection from one source port reaches one instance (a sweep step).' }),
}).transform((e) => ({ kind: 'sticky' as const, traffic: e.traffic }));

/** `- remap: { before: ID, after: ID }`: the moves between two sweeps follow the kernel's group model. */
export const remapExpectation = mapping({
  remap: mapping({
    before: trafficId.meta({ description: 'The sweep before the group change.' }),
    after: trafficId.meta({ description: 'The same sweep after the group change.' }),
  }),
}).transform((e) => ({ kind: 'remap' as const, before: e.remap.before, after: e.remap.after }));

/** A UDP server replica's `connect: { address, port }`: it becomes a connected socket to that one peer. */
export const udpConnectSchema = mapping({
  address: ipLiteral.meta({ description: "The peer's address (loopback)." }),
  port: port.meta({ description: "The peer's port: a traffic step's source port." }),
}).meta({ description: 'UDP only: connect() each replica to this peer after bind().' });

/** `kernel: { version: ">=6.13", reason, older }`: on an older kernel the scenario is SKIPPED with both texts. */
export const kernelRequirementSchema = mapping({
  version: matching(/^>=\d+\.\d+$/, 'a minimum version like ">=6.13"', 16).meta({
    description: 'The oldest kernel the scenario holds on, as ">=MAJOR.MINOR".',
  }),
  reason: text().meta({ description: 'What changed in that version, shown when the scenario is skipped.' }),
  older: text().optional().meta({ description: 'What older kernels do instead.' }),
}).meta({ description: 'The kernel the scenario needs; older kernels skip it with the reason.' });
export type KernelRequirement = z.output<typeof kernelRequirementSchema>;

type Report = (path: PathSegment[], target: 'key' | 'value', message: string) => void;
type Obj = Record<string, unknown>;

interface SweepStep {
  index: number;
  line: number;
  sourcePorts?: { from: number; count: number };
  target: unknown;
  port: unknown;
  protocol: unknown;
}

/**
 * Rules across items for the steering keys: a traffic step has `connections`
 * or `sourcePorts` (one, not both, and no `sourcePort` beside a sweep); a
 * sweep stays within port 65535; `sticky` names a sweep; `remap` names two
 * sweeps of the same ports and target, in order, with a start or stop between.
 */
export function checkSteering(data: Obj, report: Report, lineOf: (path: PathSegment[]) => number): void {
  const servers = Array.isArray(data.servers) ? data.servers : [];
  servers.forEach((raw, i) => {
    if (!isPlainObject(raw) || !isPlainObject(raw.connect)) return;
    const cp: PathSegment[] = ['servers', i, 'connect'];
    if ((raw.protocol ?? 'tcp') !== 'udp') {
      report(cp, 'key', `${formatPath(cp)}: only a UDP socket can connect() to one peer and stay a server`);
    }
    const address = raw.connect.address;
    if (typeof address === 'string' && !isLoopback(address)) {
      report(
        [...cp, 'address'],
        'value',
        `${formatPath([...cp, 'address'])} must be a loopback address (127.0.0.0/8 or ::1): the connected socket's replies go there`,
      );
    }
  });
  const steps = Array.isArray(data.steps) ? data.steps : [];
  const traffic = new Map<string, SweepStep>();
  steps.forEach((raw, index) => {
    if (!isPlainObject(raw) || !isPlainObject(raw.traffic)) return;
    const t = raw.traffic;
    const tp: PathSegment[] = ['steps', index, 'traffic'];
    const sweep = sourcePortsSchema.safeParse(t.sourcePorts);
    if (t.sourcePorts !== undefined) {
      if (t.connections !== undefined) {
        report(
          [...tp, 'connections'],
          'key',
          `${formatPath([...tp, 'connections'])}: a sweep sends count × repeat; give connections or sourcePorts, not both`,
        );
      }
      if (t.sourcePort !== undefined) {
        report(
          [...tp, 'sourcePort'],
          'key',
          `${formatPath([...tp, 'sourcePort'])}: give one fixed sourcePort or a sourcePorts sweep, not both`,
        );
      }
      if (sweep.success && sweep.data.from + sweep.data.count - 1 > 65535) {
        report(
          [...tp, 'sourcePorts', 'count'],
          'value',
          `${formatPath([...tp, 'sourcePorts'])} ends at port ${sweep.data.from + sweep.data.count - 1}; the last port must be at most 65535`,
        );
      }
    } else if (t.connections === undefined) {
      report(tp, 'value', `${formatPath(tp)} needs connections (or a sourcePorts sweep)`);
    }
    if (typeof t.id === 'string' && !traffic.has(t.id)) {
      traffic.set(t.id, {
        index,
        line: lineOf(['steps', index]),
        ...(sweep.success ? { sourcePorts: sweep.data } : {}),
        target: t.target,
        port: t.port,
        protocol: t.protocol ?? 'tcp',
      });
    }
  });
  const expectations = Array.isArray(data.expect) ? data.expect : [];
  /** The sweep an expectation names, or undefined after reporting why it is not one. */
  const sweepNamed = (path: PathSegment[], id: unknown): SweepStep | undefined => {
    if (typeof id !== 'string') return undefined;
    const step = traffic.get(id);
    if (!step) {
      const hint = suggest(id, [...traffic.keys()]);
      report(path, 'value', `unknown traffic id ${quoteName(id)}${hint ? ` (did you mean "${hint}"?)` : ''}`);
      return undefined;
    }
    if (!step.sourcePorts) {
      report(
        path,
        'value',
        `traffic ${quoteName(id)} (line ${step.line}) is not a sweep: give it sourcePorts, so that each 4-tuple is sent more than once or in more than one step`,
      );
      return undefined;
    }
    return step;
  };
  expectations.forEach((raw, i) => {
    if (!isPlainObject(raw)) return;
    const p: PathSegment[] = ['expect', i];
    if (raw.sticky !== undefined) sweepNamed([...p, 'traffic'], raw.traffic);
    if (!isPlainObject(raw.remap)) return;
    const rp: PathSegment[] = [...p, 'remap'];
    const before = sweepNamed([...rp, 'before'], raw.remap.before);
    const after = sweepNamed([...rp, 'after'], raw.remap.after);
    if (!before || !after) return;
    if (after.index <= before.index) {
      report(
        [...rp, 'after'],
        'value',
        `${formatPath([...rp, 'after'])} must be a sweep sent after ${quoteName(String(raw.remap.before))} (line ${before.line}), got line ${after.line}`,
      );
      return;
    }
    const same =
      before.sourcePorts?.from === after.sourcePorts?.from &&
      before.sourcePorts?.count === after.sourcePorts?.count &&
      before.target === after.target &&
      before.port === after.port &&
      before.protocol === after.protocol;
    if (!same) {
      report(
        [...rp, 'after'],
        'value',
        `${formatPath(rp)}: both sweeps must send the same source ports to the same target, port and protocol (the same 4-tuples)`,
      );
      return;
    }
    const change = steps
      .slice(before.index + 1, after.index)
      .some((s) => isPlainObject(s) && (s.start !== undefined || s.stop !== undefined));
    if (!change) {
      report(
        rp,
        'value',
        `${formatPath(rp)}: no start or stop step between lines ${before.line} and ${after.line}, so the group does not change`,
      );
    }
  });
}
