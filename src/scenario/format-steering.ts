/**
 * The part of the scenario format about steering and determinism (issue 8):
 * source-port sweeps on traffic steps, and the `sticky` and `remap`
 * expectations. schema.ts adds each piece with one line; the rules that span
 * several items are in checkSteering(), called from schema.ts's crossCheck.
 */
import * as z from 'zod';
import { isLoopback } from '../net/address.js';
import { quoteName } from '../untrusted-text.js';
import { integer, ipLiteral, mapping, matching, oneOf, port, text, trafficId } from './schema-blocks.js';
import { formatPath, isPlainObject, type PathSegment, suggest } from './schema-messages.js';

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
  checkSockets(data, report, lineOf);
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

// ---------------------------------------------------------------------------
// Steering by the kernel's other rules (issue 8 §4-5): programs, CPUs,
// devices, namespaces. Each key is one line in schema.ts; the rules across
// items are in checkSockets(), called from checkSteering().
// ---------------------------------------------------------------------------

/** How many extra namespaces a scenario may name: each is one more process. */
export const MAX_NAMESPACES = 4;
const NAMESPACE_RE = /^[a-z][a-z0-9-]{0,15}$/;
/** `SERVER#N` as reports name an instance, or `any` (the hash decides). */
const INSTANCE_RE = /^([A-Za-z][A-Za-z0-9_-]*)#(\d+)$/;

/** `device: lo`: SO_BINDTODEVICE before bind(). */
export const deviceSchema = matching(
  /^[A-Za-z0-9_.:-]{1,15}$/,
  'an interface name like lo (1 to 15 characters)',
  15,
).meta({
  description: 'SO_BINDTODEVICE before bind(): the socket only gets traffic that arrives on this interface.',
});

/** `incomingCpu: N` on every replica, or `replica-modulo`: replica r gets CPU (r - 1) mod the CPU count. */
export const incomingCpuSchema = oneOf(
  [integer(0, 1023), z.literal('replica-modulo')],
  'a CPU number (0 to 1023), or replica-modulo',
).meta({
  description:
    'SO_INCOMING_CPU before bind(): a CPU number for every replica, or replica-modulo ((replica - 1) mod CPUs).',
});
export type IncomingCpu = z.output<typeof incomingCpuSchema>;

const cbpfInstruction = mapping({
  code: integer(0, 0xffff),
  jt: integer(0, 0xff),
  jf: integer(0, 0xff),
  k: integer(-0x80000000, 0xffffffff),
}).transform((i) => ({ ...i, k: i.k >>> 0 }));

/** `cbpf: { replica, program }`: one replica attaches a classic BPF program to its whole group. */
export const cbpfSchema = mapping({
  replica: integer(1, 65535)
    .default(1)
    .meta({ description: 'The replica whose socket attaches the program, after it joined the group.' }),
  program: oneOf(
    [
      z.literal('cpu').transform(() => ({ name: 'cpu' as const })),
      mapping({ payloadModulo: integer(1, 0xffffffff) }).transform((p) => ({
        name: 'payload-modulo' as const,
        modulo: p.payloadModulo,
      })),
      mapping({ instructions: z.array(cbpfInstruction).min(1).max(4096) }),
    ],
    'cpu, { payloadModulo: N }, or { instructions: [{ code, jt, jf, k }, ...] }',
  ).meta({
    description:
      'cpu (the CPU running the lookup), { payloadModulo: N } (first 4 payload bytes, big-endian, mod N), or raw instructions.',
  }),
}).meta({ description: 'SO_ATTACH_REUSEPORT_CBPF: the returned index picks socks[index]; out of range, the hash.' });
export type CbpfSpec = z.output<typeof cbpfSchema>;

/** `namespace: other`: a second network namespace inside the scenario's own. */
export const namespaceSchema = matching(
  NAMESPACE_RE,
  'a namespace name like other ([a-z][a-z0-9-]*, at most 16)',
  16,
).meta({
  description: "Run in a second network namespace of this name, made inside the scenario's own (only lo, up).",
});

/** A traffic step's `payload: index`: each datagram starts with its index (4 bytes, big-endian). */
export const payloadSchema = z
  .literal('index', { error: 'index (each datagram starts with its index, 4 bytes big-endian)' })
  .meta({ description: 'UDP sweeps: each datagram starts with its index k = portIndex × repeat + round.' });

/** A traffic step's `cpu: N`: the sweep's thread runs pinned to CPU N. */
export const trafficCpuSchema = integer(0, 1023).meta({
  description: "Pin the sweep's client thread to this CPU (sched_setaffinity).",
});

/** `- traffic: ID` + `payloads: { modulo, to }`: datagram k reached to[k mod modulo]. */
export const payloadsExpectation = mapping({
  traffic: trafficId,
  payloads: mapping({
    modulo: integer(1, 4096).meta({ description: 'Datagram k is judged by k mod this.' }),
    to: z
      .array(matching(/^(any|[A-Za-z][A-Za-z0-9_-]*#\d+)$/, 'SERVER#REPLICA (like A#2) or any', 80), {
        error: 'a list of SERVER#REPLICA or any',
      })
      .min(1)
      .max(4096)
      .meta({ description: 'For each residue: the instance it must reach (A#2), or any (answered, by anyone).' }),
  }),
}).transform((e) => ({ kind: 'payloads' as const, traffic: e.traffic, ...e.payloads }));

/** `- traffic: ID` + `sameCpu: true`: each connection reached the socket whose SO_INCOMING_CPU is the client's CPU. */
export const sameCpuExpectation = mapping({
  traffic: trafficId,
  sameCpu: z
    .literal(true, { error: "true (every connection lands on a socket whose incomingCpu is the client's cpu)" })
    .meta({
      description:
        "Every connection reaches an instance whose incomingCpu is the step's cpu, and the accepted socket says so.",
    }),
}).transform((e) => ({ kind: 'sameCpu' as const, traffic: e.traffic }));

export { incomingCpuFor } from './plan-helpers.js';

/** Whether a scenario (raw data) names a second namespace anywhere: it then needs `netns`. */
export function namesNamespace(servers: { namespace?: string }[], traffic: { namespace?: string }[]): boolean {
  return [...servers, ...traffic].some((x) => x.namespace !== undefined);
}

/** Rules across items for the keys above. */
function checkSockets(data: Obj, report: Report, lineOf: (path: PathSegment[]) => number): void {
  const servers = Array.isArray(data.servers) ? data.servers : [];
  const replicas = new Map<string, number>();
  const namespaces = new Set<string>();
  servers.forEach((raw, i) => {
    if (!isPlainObject(raw)) return;
    const p: PathSegment[] = ['servers', i];
    const count = typeof raw.replicas === 'number' ? raw.replicas : 1;
    if (typeof raw.id === 'string' && !replicas.has(raw.id)) replicas.set(raw.id, count);
    if (typeof raw.namespace === 'string') {
      namespaces.add(raw.namespace);
      if (
        typeof raw.address === 'string' &&
        !isLoopback(raw.address) &&
        raw.address !== '0.0.0.0' &&
        raw.address !== '::'
      ) {
        report(
          [...p, 'address'],
          'value',
          `${formatPath([...p, 'address'])}: a second namespace only has lo; bind a loopback address or a wildcard there`,
        );
      }
    }
    if (!isPlainObject(raw.cbpf)) return;
    const cp: PathSegment[] = [...p, 'cbpf'];
    if (typeof raw.cbpf.replica === 'number' && raw.cbpf.replica > count) {
      report(
        [...cp, 'replica'],
        'value',
        `${formatPath([...cp, 'replica'])} is ${raw.cbpf.replica}, but ${quoteName(String(raw.id))} has ${count} replica${count === 1 ? '' : 's'}`,
      );
    }
    if (
      isPlainObject(raw.cbpf.program) &&
      raw.cbpf.program.payloadModulo !== undefined &&
      (raw.protocol ?? 'tcp') !== 'udp'
    ) {
      report(
        [...cp, 'program'],
        'value',
        `${formatPath([...cp, 'program'])}: payloadModulo reads the payload, and a TCP SYN carries none (the program would read nothing and return 0); use protocol: udp`,
      );
    }
  });
  const steps = Array.isArray(data.steps) ? data.steps : [];
  const payloadSteps = new Map<string, { line: number; indexed: boolean }>();
  steps.forEach((raw, index) => {
    if (!isPlainObject(raw) || !isPlainObject(raw.traffic)) return;
    const t = raw.traffic;
    const tp: PathSegment[] = ['steps', index, 'traffic'];
    const sweep = t.sourcePorts !== undefined;
    if (t.payload !== undefined && ((t.protocol ?? 'tcp') !== 'udp' || !sweep)) {
      report(
        [...tp, 'payload'],
        'key',
        `${formatPath([...tp, 'payload'])} is for UDP sweeps (protocol: udp with sourcePorts): a TCP SYN carries no payload for a program to read`,
      );
    }
    if (t.cpu !== undefined && !sweep) {
      report([...tp, 'cpu'], 'key', `${formatPath([...tp, 'cpu'])} pins a sweep's thread: give the step sourcePorts`);
    }
    if (typeof t.namespace === 'string') {
      namespaces.add(t.namespace);
      if (typeof t.target === 'string' && !isLoopback(t.target)) {
        report(
          [...tp, 'target'],
          'value',
          `${formatPath([...tp, 'target'])}: a second namespace only has lo; send to a loopback address there`,
        );
      }
    }
    if (typeof t.id === 'string' && !payloadSteps.has(t.id)) {
      payloadSteps.set(t.id, { line: lineOf(['steps', index]), indexed: t.payload === 'index' && sweep });
    }
  });
  if (namespaces.size > MAX_NAMESPACES) {
    report(['servers'], 'value', `the scenario names ${namespaces.size} namespaces; at most ${MAX_NAMESPACES}`);
  }
  const expectations = Array.isArray(data.expect) ? data.expect : [];
  expectations.forEach((raw, i) => {
    if (!isPlainObject(raw) || typeof raw.traffic !== 'string') return;
    const p: PathSegment[] = ['expect', i];
    const step = payloadSteps.get(raw.traffic);
    if ((raw.sameCpu !== undefined || raw.payloads !== undefined) && !step) {
      const hint = suggest(raw.traffic, [...payloadSteps.keys()]);
      report(
        [...p, 'traffic'],
        'value',
        `unknown traffic id ${quoteName(raw.traffic)}${hint ? ` (did you mean "${hint}"?)` : ''}`,
      );
      return;
    }
    if (raw.sameCpu !== undefined && step) {
      const s = steps.find((x) => isPlainObject(x) && isPlainObject(x.traffic) && x.traffic.id === raw.traffic) as
        | { traffic: Obj }
        | undefined;
      if (s?.traffic.cpu === undefined) {
        report(
          [...p, 'sameCpu'],
          'value',
          `traffic ${quoteName(raw.traffic)} (line ${step.line}) has no cpu: pin it (cpu: N) so that there is a CPU to match`,
        );
      }
    }
    if (!isPlainObject(raw.payloads) || !step) return;
    if (!step.indexed) {
      report(
        [...p, 'payloads'],
        'value',
        `traffic ${quoteName(raw.traffic)} (line ${step.line}) does not send its index: give it payload: index (a UDP sweep)`,
      );
    }
    const to = Array.isArray(raw.payloads.to) ? raw.payloads.to : [];
    if (typeof raw.payloads.modulo === 'number' && to.length !== raw.payloads.modulo) {
      report(
        [...p, 'payloads', 'to'],
        'value',
        `${formatPath([...p, 'payloads', 'to'])} needs one entry per residue: ${raw.payloads.modulo}, got ${to.length}`,
      );
    }
    to.forEach((entry, j) => {
      const match = typeof entry === 'string' ? INSTANCE_RE.exec(entry) : null;
      if (!match) return;
      const [, id, n] = match as unknown as [string, string, string];
      const has = replicas.get(id);
      const ep: PathSegment[] = [...p, 'payloads', 'to', j];
      if (has === undefined) report(ep, 'value', `${formatPath(ep)}: unknown server ${quoteName(id)}`);
      else if (Number(n) < 1 || Number(n) > has) {
        report(ep, 'value', `${formatPath(ep)}: ${quoteName(id)} has replicas 1 to ${has}, not ${n}`);
      }
    });
  });
}
