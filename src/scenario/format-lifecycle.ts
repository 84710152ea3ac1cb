/**
 * The lifecycle part of the scenario format (issue 7): steps that drive each
 * replica's socket one syscall at a time (bind, listen, close, shutdown,
 * setsockopt, pause, resume), connections held in accept queues (hold,
 * settle), a kernel version requirement, and expectations on outcomes
 * (step outcomes, kernel counters, TIME_WAIT, failures by errno, per-replica
 * counts, what became of held connections).
 *
 * schema.ts takes each piece with one line; the rules across items that a
 * schema of one value cannot say are in lifecycleCrossCheck().
 */
import { isIP } from 'node:net';
import * as z from 'zod';
import type { HeldState } from '../net/holding-client.js';
import { TCP_EXT_COUNTERS, type TcpExtCounter } from '../net/kernel-counters.js';
import { quoteName } from '../untrusted-text.js';
import { parseTarget } from './plan-helpers.js';
import { integer, mapping, matching, oneOf, oneOfValues, text } from './schema-blocks.js';
import { formatPath, isPlainObject, type PathSegment, suggest } from './schema-messages.js';

export { parseTarget };

const TARGET_RE = /^[A-Za-z][A-Za-z0-9_-]*(#[1-9][0-9]?)?$/;
const SERVER_ID_RE = /^[A-Za-z][A-Za-z0-9_-]*$/;
const STEP_ID_RE = /^[A-Za-z0-9._-]+$/;
const OUTCOME_RE = /^(ok|E[A-Z0-9]+)$/;
const FAILURE_RE = /^(silent|lost|E[A-Z0-9]+)$/;

export const LIFECYCLE_OPTIONS = ['SO_REUSEPORT', 'SO_REUSEADDR'] as const;
export const FCHOWN_AT = ['before-bind', 'after-bind', 'after-listen'] as const;
export const HELD_STATES = [
  'served',
  'reset',
  'waiting',
  'connecting',
  'closed',
  'failed',
] as const satisfies readonly HeldState[];
/** Held connections per hold step: a few show the queue; many would only slow the run down. */
export const MAX_HELD = 256;
export const DEFAULT_SETTLE_MS = 1000;
export const DEFAULT_HOLD_WAIT_MS = 1000;

/** `W` (every replica of W) or `W#2` (its second replica). */
const target = matching(TARGET_RE, 'a server id, or one replica of it as ID#N (like W#2)');
const targets = oneOf(
  [
    target.transform((t) => [t]),
    z.array(target, { error: 'a list of targets' }).min(1, { error: 'a non-empty list of targets' }),
  ],
  'a server id or ID#N, or a non-empty list of them',
).meta({ description: 'A server (every replica), one replica as ID#N (W#2), or a list of them.' });
const stepId = matching(STEP_ID_RE, 'a step id made of [A-Za-z0-9._-]').meta({
  description: 'Names the step for expectations (step: ID).',
});
const serverRef = matching(SERVER_ID_RE, 'a server id');
/** A port number, or a server id meaning the port that server got (useful with port: 0). */
export const portRef = oneOf(
  [integer(1, 65535), serverRef],
  'a port number (1 to 65535), or a server id for the port that server bound',
).meta({
  description: 'A port number, or a server id: the port that server bound (its port: 0 chosen by the kernel).',
});
const count = (max = 1_000_000) => integer(0, max, `a count from 0 to ${max}`);
const share = z
  .number({ error: 'a number from 0 to 1' })
  .min(0, { error: 'a number from 0 to 1' })
  .max(1, { error: 'a number from 0 to 1' });

/** exactly, or min/max as counts, or minShare/maxShare as fractions of the step's total. */
const rangeKeys = {
  exactly: count().optional().meta({ description: 'Exactly this many.' }),
  min: count().optional().meta({ description: 'At least this many.' }),
  max: count().optional().meta({ description: 'At most this many.' }),
  minShare: share.optional().meta({ description: "At least this fraction of the step's total (0 to 1)." }),
  maxShare: share.optional().meta({ description: "At most this fraction of the step's total (0 to 1)." }),
};
export interface Range {
  exactly?: number | undefined;
  min?: number | undefined;
  max?: number | undefined;
  minShare?: number | undefined;
  maxShare?: number | undefined;
}
const RANGE_KEYS = Object.keys(rangeKeys);

// ----- servers

/** Extra server keys; a server with any of them (or port 0) is driven in lifecycle mode. */
export const lifecycleServerKeys = {
  backlog: integer(1, 65535)
    .optional()
    .meta({ description: "listen()'s backlog; the accept queue holds backlog + 1. Default 511." }),
  fchown: mapping({
    uid: integer(0, 4_294_967_294).meta({ description: 'The new owner (and group, same number).' }),
    at: oneOfValues(FCHOWN_AT).meta({ description: 'When: before-bind, after-bind or after-listen.' }),
  })
    .optional()
    .meta({ description: 'Give the socket to another uid with fchown(2) (root only); the uid rule then sees it.' }),
};
/** A server port: 0 lets the kernel choose at the first bind; later replicas and steps use that port. */
export const serverPort = integer(0, 65535).meta({ description: '0: the kernel chooses, once, for all replicas.' });

// ----- steps

const targetStep = <K extends string>(key: K) =>
  mapping({ [key]: targets, id: stepId.optional() } as Record<K, typeof targets> & {
    id: z.ZodOptional<typeof stepId>;
  });

export const LIFECYCLE_ACTIONS = ['bind', 'listen', 'close', 'shutdown', 'pause', 'resume'] as const;
export type LifecycleAction = (typeof LIFECYCLE_ACTIONS)[number];

const holdSchema = mapping({
  id: stepId.meta({ description: 'Names the held connections for settle and expectations.' }),
  target: z.string({ error: 'an IPv4 or IPv6 address literal' }).refine((v) => isIP(v) !== 0, {
    error: 'an IPv4 or IPv6 address literal',
  }),
  port: portRef,
  connections: integer(1, MAX_HELD),
  payload: text('a non-empty string of at most 64 characters')
    .max(64, { error: 'a non-empty string of at most 64 characters' })
    .optional()
    .meta({ description: 'Sent on each connection once connected; a worker echoes it back after its greeting.' }),
  waitMs: integer(0, 10_000)
    .default(DEFAULT_HOLD_WAIT_MS)
    .meta({ description: 'How long to wait for the handshakes; those still connecting then stay so.' }),
});

/** The step branches, in one order for the union, its selectors and its keys. */
export const lifecycleStepBranches = [
  ...LIFECYCLE_ACTIONS.map((action) =>
    targetStep(action).transform((s) => ({
      kind: 'lifecycle' as const,
      action,
      targets: (s as unknown as Record<string, string[]>)[action]!,
      ...(s.id !== undefined ? { id: s.id } : {}),
    })),
  ),
  mapping({
    setsockopt: targets,
    option: oneOfValues(LIFECYCLE_OPTIONS),
    value: z.boolean({ error: 'true or false' }),
    id: stepId.optional(),
  }).transform((s) => ({
    kind: 'setsockopt' as const,
    targets: s.setsockopt,
    option: s.option,
    value: s.value,
    ...(s.id !== undefined ? { id: s.id } : {}),
  })),
  mapping({ hold: holdSchema }).transform((s) => ({ kind: 'hold' as const, hold: s.hold })),
  mapping({
    settle: stepId.meta({ description: 'The hold step whose connections are resolved now.' }),
    waitMs: integer(0, 10_000).default(DEFAULT_SETTLE_MS),
    id: stepId.optional(),
  }).transform((s) => ({
    kind: 'settle' as const,
    hold: s.settle,
    waitMs: s.waitMs,
    ...(s.id !== undefined ? { id: s.id } : {}),
  })),
] as const;
export const LIFECYCLE_STEP_SELECTORS = [...LIFECYCLE_ACTIONS, 'setsockopt', 'hold', 'settle'];
export const LIFECYCLE_STEP_KEYS = [
  ...LIFECYCLE_ACTIONS.map((a) => [a, 'id']),
  ['setsockopt', 'option', 'value', 'id'],
  ['hold'],
  ['settle', 'waitMs', 'id'],
];

export type LifecycleStep = z.output<(typeof lifecycleStepBranches)[number]>;
export type HoldSpec = z.output<typeof holdSchema>;

// ----- expectations

const counterRanges = z
  .partialRecord(z.enum(TCP_EXT_COUNTERS, { error: `one of ${TCP_EXT_COUNTERS.join(', ')}` }), mapping(rangeKeys), {
    error: 'a mapping of counter name to range',
  })
  .meta({ description: 'TcpExt counter deltas over the step, from /proc/net/netstat of the namespace.' });

export const lifecycleExpectationBranches = [
  mapping({
    step: stepId.meta({ description: 'A step id, hold id or traffic id.' }),
    outcome: matching(OUTCOME_RE, 'ok or an errno name like EADDRINUSE', 32).optional(),
    on: target.optional().meta({ description: 'Only this server or replica (default: every one the step acts on).' }),
    counters: counterRanges.optional(),
    timeWait: mapping({ port: portRef, ...rangeKeys })
      .optional()
      .meta({ description: 'Sockets in TIME_WAIT on this local port right after the step.' }),
  }).transform((e) => ({ kind: 'step' as const, ...e })),
  mapping({
    traffic: stepId,
    fails: mapping({
      with: matching(FAILURE_RE, 'an errno name like ECONNREFUSED, or silent, or lost', 32).meta({
        description: 'ECONNREFUSED, ECONNRESET, ETIMEDOUT (any errno name), silent (TCP), lost (UDP).',
      }),
      ...rangeKeys,
    }),
  }).transform((e) => ({ kind: 'fails' as const, traffic: e.traffic, ...e.fails })),
  mapping({
    traffic: stepId,
    count: mapping({ on: target, ...rangeKeys }),
  }).transform((e) => ({ kind: 'count' as const, traffic: e.traffic, ...e.count })),
  mapping({
    hold: stepId,
    state: oneOfValues(HELD_STATES).meta({
      description: 'served (with the bytes echoed intact), reset, waiting, connecting, closed or failed.',
    }),
    by: target.optional().meta({ description: 'With state served: served by this server or replica.' }),
    ...rangeKeys,
  }).transform((e) => ({ kind: 'held' as const, ...e })),
] as const;
export const LIFECYCLE_EXPECTATION_SELECTORS = ['step', 'fails', 'count', 'hold'];
export const LIFECYCLE_EXPECTATION_KEYS = [
  ['step', 'outcome', 'on', 'counters', 'timeWait'],
  ['traffic', 'fails'],
  ['traffic', 'count'],
  ['hold', 'state', 'by', ...RANGE_KEYS],
];
export type LifecycleExpectation = z.output<(typeof lifecycleExpectationBranches)[number]>;

// ----- top level

// ---------------------------------------------------------------------------
// Rules across items
// ---------------------------------------------------------------------------

type Report = (path: PathSegment[], target: 'key' | 'value', message: string) => void;
type Obj = Record<string, unknown>;

export { usesLifecycle } from './plan-helpers.js';

/**
 * The rules of the lifecycle keys across the file, on the raw data (each item
 * parsed again on its own, so that one broken item does not hide the others).
 * `stepParse` and `expectParse` are schema.ts's own item schemas.
 */
export function lifecycleCrossCheck(
  data: Obj,
  report: Report,
  checkAddress: (path: PathSegment[], address: string) => void,
  stepParse: (raw: unknown) => { kind: string } | undefined,
  expectParse: (raw: unknown) => { kind: string } | undefined,
): void {
  const servers = new Map<string, { replicas: number; protocol: string }>();
  const rawServers = Array.isArray(data.servers) ? data.servers : [];
  for (const s of rawServers) {
    if (isPlainObject(s) && typeof s.id === 'string' && !servers.has(s.id)) {
      servers.set(s.id, {
        replicas: typeof s.replicas === 'number' ? s.replicas : 1,
        protocol: s.protocol === 'udp' ? 'udp' : 'tcp',
      });
    }
  }
  const checkTarget = (path: PathSegment[], text: string, needTcp: boolean) => {
    const { server, replica } = parseTarget(text);
    const known = servers.get(server);
    if (!known) {
      const hint = suggest(server, [...servers.keys()]);
      report(path, 'value', `unknown server ${quoteName(server)}${hint ? ` (did you mean "${hint}"?)` : ''}`);
    } else if (replica !== undefined && replica > known.replicas) {
      report(
        path,
        'value',
        `${formatPath(path)}: ${server} has ${known.replicas} replica(s), so there is no #${replica}`,
      );
    } else if (needTcp && known.protocol !== 'tcp') {
      report(path, 'value', `${formatPath(path)}: lifecycle steps drive TCP listeners; ${server} is UDP`);
    }
  };
  const checkPortRef = (path: PathSegment[], value: unknown) => {
    if (typeof value === 'string' && !servers.has(value)) {
      report(path, 'value', `${formatPath(path)}: unknown server ${quoteName(value)} (a port, or the id of a server)`);
    }
  };
  const checkRange = (path: PathSegment[], raw: unknown) => {
    if (!isPlainObject(raw)) return;
    const present = RANGE_KEYS.filter((k) => raw[k] !== undefined);
    if (present.length === 0) {
      report(path, 'value', `${formatPath(path)} needs one of ${RANGE_KEYS.join(', ')}`);
    } else if (raw.exactly !== undefined && present.length > 1) {
      report(
        path,
        'value',
        `${formatPath(path)}: exactly goes alone, not with ${present.filter((k) => k !== 'exactly').join(', ')}`,
      );
    }
    for (const [lo, hi] of [
      ['min', 'max'],
      ['minShare', 'maxShare'],
    ] as const) {
      const a = raw[lo];
      const b = raw[hi];
      if (typeof a === 'number' && typeof b === 'number' && a > b) {
        report([...path, hi], 'value', `${formatPath([...path, hi])} must be >= ${lo} (${a}), got ${b}`);
      }
    }
  };

  // ----- steps
  const stepIds = new Map<string, number>();
  const holds = new Map<string, { index: number; settled: boolean }>();
  const noteId = (id: string | undefined, path: PathSegment[], index: number) => {
    if (id === undefined) return;
    const first = stepIds.get(id);
    if (first !== undefined) {
      report(
        path,
        'value',
        `duplicate step id ${quoteName(id)} (first used by steps[${first}]); step, hold and traffic ids share one namespace`,
      );
    } else stepIds.set(id, index);
  };
  const rawSteps = Array.isArray(data.steps) ? data.steps : [];
  rawSteps.forEach((raw, i) => {
    const p: PathSegment[] = ['steps', i];
    if (isPlainObject(raw) && isPlainObject(raw.traffic) && typeof raw.traffic.id === 'string') {
      // schema.ts reports a traffic id used twice; here it only joins the namespace.
      if (!stepIds.has(raw.traffic.id)) stepIds.set(raw.traffic.id, i);
      checkPortRef([...p, 'traffic', 'port'], raw.traffic.port);
    }
    const step = stepParse(raw) as (LifecycleStep & Obj) | undefined;
    if (!step || !isPlainObject(raw)) return;
    if (step.kind === 'lifecycle' || step.kind === 'setsockopt') {
      const key = step.kind === 'lifecycle' ? step.action : 'setsockopt';
      const single = !Array.isArray(raw[key]);
      step.targets.forEach((t, j) => {
        checkTarget(single ? [...p, key] : [...p, key, j], t, true);
      });
      noteId(step.id, [...p, 'id'], i);
    } else if (step.kind === 'hold') {
      const h = step.hold;
      noteId(h.id, [...p, 'hold', 'id'], i);
      holds.set(h.id, { index: i, settled: false });
      checkPortRef([...p, 'hold', 'port'], h.port);
      checkAddress([...p, 'hold', 'target'], h.target);
    } else if (step.kind === 'settle') {
      noteId(step.id, [...p, 'id'], i);
      const held = holds.get(step.hold);
      if (!held) {
        const hint = suggest(step.hold, [...holds.keys()]);
        report(
          [...p, 'settle'],
          'value',
          `no earlier hold step ${quoteName(step.hold)}${hint ? ` (did you mean "${hint}"?)` : ''}`,
        );
      } else if (held.settled) {
        report([...p, 'settle'], 'value', `hold ${quoteName(step.hold)} is already settled by an earlier step`);
      } else held.settled = true;
    }
  });
  for (const [id, held] of holds) {
    if (!held.settled) {
      report(
        ['steps', held.index, 'hold', 'id'],
        'value',
        `hold ${quoteName(id)} is never settled; add a later step "settle: ${id}"`,
      );
    }
  }

  // ----- servers
  rawServers.forEach((s, i) => {
    if (!isPlainObject(s)) return;
    const lifecycleKey = ['backlog', 'fchown'].find((k) => s[k] !== undefined) ?? (s.port === 0 ? 'port' : undefined);
    if (lifecycleKey && s.protocol === 'udp') {
      report(
        ['servers', i, lifecycleKey],
        'key',
        `${formatPath(['servers', i, lifecycleKey])} needs a TCP server (lifecycle mode drives TCP listeners)`,
      );
    }
  });

  // ----- expectations
  const rawExpect = Array.isArray(data.expect) ? data.expect : [];
  rawExpect.forEach((raw, i) => {
    const p: PathSegment[] = ['expect', i];
    const e = expectParse(raw) as (LifecycleExpectation & Obj) | undefined;
    if (!e || !isPlainObject(raw)) return;
    const unknownStep = (path: PathSegment[], id: string, what: string, known: string[]) => {
      const hint = suggest(id, known);
      report(
        path,
        'value',
        `unknown ${what} ${quoteName(id)}${hint ? ` (did you mean "${hint}"?)` : known.length ? ` (${what}s: ${known.join(', ')})` : ''}`,
      );
    };
    if (e.kind === 'step') {
      if (!stepIds.has(e.step)) unknownStep([...p, 'step'], e.step, 'step id', [...stepIds.keys()]);
      if (e.outcome === undefined && e.counters === undefined && e.timeWait === undefined) {
        report(p, 'value', `${formatPath(p)} needs outcome, counters or timeWait`);
      }
      if (e.on !== undefined) checkTarget([...p, 'on'], e.on, false);
      if (isPlainObject(raw.counters)) {
        for (const [name, r] of Object.entries(raw.counters)) checkRange([...p, 'counters', name], r);
      }
      if (isPlainObject(raw.timeWait)) {
        checkRange([...p, 'timeWait'], raw.timeWait);
        checkPortRef([...p, 'timeWait', 'port'], raw.timeWait.port);
      }
    } else if (e.kind === 'fails' || e.kind === 'count') {
      if (e.kind === 'count') checkTarget([...p, 'count', 'on'], e.on, false);
      checkRange([...p, e.kind], raw[e.kind]);
    } else if (e.kind === 'held') {
      if (!holds.has(e.hold)) unknownStep([...p, 'hold'], e.hold, 'hold id', [...holds.keys()]);
      if (e.by !== undefined) {
        checkTarget([...p, 'by'], e.by, false);
        if (e.state !== 'served')
          report([...p, 'by'], 'key', `${formatPath([...p, 'by'])} only goes with state: served`);
      }
      checkRange(p, Object.fromEntries(RANGE_KEYS.filter((k) => raw[k] !== undefined).map((k) => [k, raw[k]])));
    }
  });
}

export type { TcpExtCounter };

/** The servers a step brings up (bind or listen), for the rules that need a server started before its traffic. */
export function lifecycleStarts(step: { kind: string; action?: string; targets?: string[] }): string[] {
  if (step.kind !== 'lifecycle' || (step.action !== 'bind' && step.action !== 'listen')) return [];
  return (step.targets ?? []).map((t) => parseTarget(t).server);
}
