/**
 * The scenario format, defined once.
 *
 * The format is one zod 4 object, `scenarioFileSchema`. Why zod: from that one
 * object come the TypeScript types (z.output), the structural validation
 * (safeParse), and the JSON Schema that editors use (z.toJSONSchema, written to
 * dist/scenario.schema.json at build time), so the three cannot disagree. Every
 * mapping is a strict object: an unknown key is an error, never a silent default.
 * zod 4 is maintained, has no dependencies, and emits JSON Schema itself.
 *
 * What a schema of one value cannot say is checked after, in crossCheck(), on
 * the same parsed items: references between sections, the order of steps, the
 * never-leave-loopback rule for traffic targets, and limits summed over the file.
 *
 * Every mistake is collected, each with its path; the caller's `locate` turns a
 * path into a line and column (see scenario-file.ts). No I/O here.
 * docs/scenarios.md is the reference of the format.
 */
import { isIP } from 'node:net';
import * as z from 'zod';
import { isLoopback, isWildcard, type Protocol, sameAddress } from '../net/address.js';
import { BALANCE_ALPHA } from '../net/balance.js';
import type { BinderChoice } from '../net/binder.js';
import { quoteName } from '../untrusted-text.js';
import * as lifecycle from './format-lifecycle.js';
import {
  cbpfSchema,
  checkSteering,
  deviceSchema,
  incomingCpuSchema,
  type KernelRequirement,
  kernelRequirementSchema,
  namesNamespace,
  namespaceSchema,
  payloadSchema,
  payloadsExpectation,
  remapExpectation,
  sameCpuExpectation,
  sourcePortsSchema,
  stickyExpectation,
  trafficCpuSchema,
  udpConnectSchema,
} from './format-steering.js';
import { trafficSpecs } from './plan-helpers.js';
import {
  flag,
  fraction,
  integer,
  ipLiteral,
  mapping,
  matching,
  oneOf,
  oneOfValues,
  SERVER_ID_RE,
  serverId,
  text,
  trafficId,
} from './schema-blocks.js';
import {
  describe,
  formatPath,
  isPlainObject,
  type KeyedUnionInfo,
  marker,
  type PathSegment,
  suggest,
  translateIssues,
} from './schema-messages.js';

// One vocabulary with serve and load.
export type { Protocol } from '../net/address.js';
export { canonicalAddress, ipFamily, isLoopback, isWildcard, sameAddress } from '../net/address.js';
export { describe, formatPath, type PathSegment, suggest } from './schema-messages.js';

/** 'root': real root in the initial user namespace. 'netns': cannot run with `--isolation host`. */
export type Requirement = 'root' | 'netns';
export type Binder = BinderChoice;

export const REQUIREMENTS = ['root', 'netns'] as const satisfies readonly Requirement[];
export const PROTOCOLS = ['tcp', 'udp'] as const satisfies readonly Protocol[];
export const BINDERS = ['auto', 'builtin', 'native'] as const satisfies readonly Binder[];

export const MAX_REPLICAS = 64;
export const MAX_CONNECTIONS = 100_000;
/**
 * Worker processes per scenario (replicas summed over servers). Each worker is
 * a Node process of 50 to 70 MB: 128 of them is 6 to 9 GB, the most a lab
 * machine can spare, and enough for two servers at the 64-replica maximum.
 */
export const MAX_WORKERS = 128;
/** The plan stays small enough to read in a report and to hand to the inner runner. */
export const MAX_STEPS = 256;
export const MAX_EXPECTATIONS = 256;
export const MAX_ADDRESSES = 64;
/** Connections (or datagrams) over all traffic steps: ten steps at the per-step maximum. */
export const MAX_TOTAL_CONNECTIONS = 1_000_000;
export const DEFAULT_MAX_CONCURRENCY = 64;
/** One threshold for `load`'s verdict and a scenario's `balanced` default. */
export const DEFAULT_BALANCED_P_VALUE = BALANCE_ALPHA;

const NAME_RE = /^[a-z0-9-]+$/;
const OUTCOME_RE = /^(ok|E[A-Z0-9]+)$/;
const USER_NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]*\$?$/;
const SYSCTL_RE = /^net(\.[A-Za-z0-9_-]+)+$/;
const MAX_UID = 4_294_967_294; // (uid_t)-1 is reserved

const KEYED = new Map<string, KeyedUnionInfo>();

/** A union of mappings told apart by which key is present (a step is exactly one of start, stop, traffic). */
function oneKeyOf<const T extends readonly [z.ZodType, ...z.ZodType[]]>(info: KeyedUnionInfo, options: T) {
  KEYED.set(info.what, info);
  return z.union(options, { error: marker({ keyed: info.what }) });
}

const protocol = oneOfValues(PROTOCOLS);

/** One id or a non-empty list of ids; always a list once read. */
const serverIds = oneOf(
  [serverId.transform((id) => [id]), z.array(serverId).min(1, { error: 'a non-empty list of server ids' })],
  'a server id or a non-empty list of server ids',
);

const USER_RULE = `a user name or a numeric uid (0 to ${MAX_UID})`;
const user = oneOf(
  [
    integer(0, MAX_UID, USER_RULE),
    z
      .string()
      .regex(/^\d+$/)
      .refine((v) => Number(v) <= MAX_UID, { error: USER_RULE })
      .transform(Number),
    matching(USER_NAME_RE, USER_RULE, 32),
  ],
  USER_RULE,
).meta({ description: 'Owner of the sockets: a user name or a numeric uid. Implies requires: root.' });

const serverSchema = mapping({
  id: serverId.meta({ description: 'Unique among servers; steps and expectations refer to it.' }),
  address: ipLiteral,
  port: lifecycle.serverPort,
  protocol: protocol.default('tcp'),
  replicas: integer(1, MAX_REPLICAS)
    .default(1)
    .meta({ description: 'Worker processes, each with its own socket on the same address and port.' }),
  user: user.optional(),
  reuseport: flag.default(true).meta({ description: 'Set SO_REUSEPORT before bind().' }),
  reuseaddr: flag.optional().meta({ description: "Set or clear SO_REUSEADDR; absent: the binder's default." }),
  ipv6Only: flag.optional().meta({ description: 'IPV6_V6ONLY; only on IPv6 addresses.' }),
  binder: oneOfValues(BINDERS).default('auto'),
  connect: udpConnectSchema.optional(),
  device: deviceSchema.optional(),
  incomingCpu: incomingCpuSchema.optional(),
  cbpf: cbpfSchema.optional(),
  namespace: namespaceSchema.optional(),
  ...lifecycle.lifecycleServerKeys,
});

const trafficSchema = mapping({
  id: trafficId.meta({ description: 'Unique among traffic steps; expectations refer to it.' }),
  target: ipLiteral.meta({ description: 'A loopback address, or one declared in network.addresses.' }),
  port: lifecycle.portRef,
  protocol: protocol.default('tcp'),
  connections: integer(1, MAX_CONNECTIONS)
    .optional()
    .meta({ description: 'TCP connections, or UDP datagrams (required unless sourcePorts is given).' }),
  sourcePorts: sourcePortsSchema.optional(),
  concurrency: integer(1, MAX_CONNECTIONS).optional(),
  sourcePort: integer(1, 65535).optional().meta({ description: 'Fixed client source port; needs concurrency 1.' }),
  payload: payloadSchema.optional(),
  cpu: trafficCpuSchema.optional(),
  namespace: namespaceSchema.optional(),
}).transform((t) => {
  const connections = t.sourcePorts ? t.sourcePorts.count * t.sourcePorts.repeat : (t.connections ?? 0);
  const concurrency =
    t.concurrency ?? (t.sourcePort !== undefined ? 1 : Math.min(DEFAULT_MAX_CONCURRENCY, connections));
  return { ...t, connections, concurrency };
});

const stepSchema = oneKeyOf(
  {
    what: 'step',
    selectors: ['start', 'stop', 'traffic', ...lifecycle.LIFECYCLE_STEP_SELECTORS],
    branchKeys: [['start'], ['stop'], ['traffic'], ...lifecycle.LIFECYCLE_STEP_KEYS],
    none: `is empty; a step is one of: start, stop, traffic, ${lifecycle.LIFECYCLE_STEP_SELECTORS.join(', ')}`,
    onlyOne: 'each step is exactly one action',
  },
  [
    mapping({ start: serverIds }).transform((s) => ({ kind: 'start' as const, servers: s.start })),
    mapping({ stop: serverIds }).transform((s) => ({ kind: 'stop' as const, servers: s.stop })),
    mapping({ traffic: trafficSchema }).transform((s) => ({ kind: 'traffic' as const, traffic: s.traffic })),
    ...lifecycle.lifecycleStepBranches,
  ],
);

const outcome = matching(OUTCOME_RE, 'ok or an errno name like EADDRINUSE', 32);

const expectationSchema = oneKeyOf(
  {
    what: 'key',
    selectors: [
      'bind',
      'all',
      'balanced',
      'share',
      'sticky',
      'remap',
      'payloads',
      'sameCpu',
      ...lifecycle.LIFECYCLE_EXPECTATION_SELECTORS,
    ],
    branchKeys: [
      ['bind', 'outcome'],
      ['traffic', 'all'],
      ['traffic', 'balanced'],
      ['traffic', 'share'],
      ['traffic', 'sticky'],
      ['remap'],
      ['traffic', 'payloads'],
      ['traffic', 'sameCpu'],
      ...lifecycle.LIFECYCLE_EXPECTATION_KEYS,
    ],
    none: 'needs "bind: SERVER" with "outcome", "traffic: ID" with one of all, balanced, share, sticky, payloads, sameCpu, or "remap"',
    onlyOne: 'write one expectation per check',
  },
  [
    mapping({ bind: serverId, outcome }).transform((e) => ({
      kind: 'bind' as const,
      server: e.bind,
      outcome: e.outcome,
    })),
    mapping({ traffic: trafficId, all: serverId }).transform((e) => ({
      kind: 'all' as const,
      traffic: e.traffic,
      server: e.all,
    })),
    mapping({
      traffic: trafficId,
      balanced: mapping({
        over: serverIds,
        pValue: fraction.default(DEFAULT_BALANCED_P_VALUE),
        everyMember: flag.default(true),
      }),
    }).transform((e) => ({ kind: 'balanced' as const, traffic: e.traffic, ...e.balanced })),
    mapping({
      traffic: trafficId,
      share: mapping({ server: serverId, min: fraction.optional(), max: fraction.optional() }).meta({
        anyOf: [{ required: ['min'] }, { required: ['max'] }],
      }),
    }).transform((e) => ({
      kind: 'share' as const,
      traffic: e.traffic,
      server: e.share.server,
      min: e.share.min ?? 0,
      max: e.share.max ?? 1,
    })),
    stickyExpectation,
    remapExpectation,
    payloadsExpectation,
    sameCpuExpectation,
    ...lifecycle.lifecycleExpectationBranches,
  ],
);

const addressEntry = oneOf(
  [
    ipLiteral.transform((address) => ({ address }) as { address: string; hostStandIn?: string }),
    mapping({
      address: ipLiteral,
      hostStandIn: ipLiteral.optional().meta({ description: 'Loopback address used instead with --isolation host.' }),
    }),
  ],
  'an address, or a mapping with address and hostStandIn',
);

const networkSchema = mapping({
  addresses: z
    .array(addressEntry, { error: 'a list of addresses' })
    .max(MAX_ADDRESSES, { error: `a list of at most ${MAX_ADDRESSES} addresses` })
    .default([]),
  sysctls: z
    .record(
      z.string().regex(SYSCTL_RE, {
        error:
          "a dotted net.* sysctl name (like net.ipv4.tcp_migrate_req): only those belong to the scenario's own network namespace",
      }),
      oneOf([z.int().transform(String), z.string().regex(/^[^\r\n]*\S[^\r\n]*$/)], 'an integer or a one-line string'),
      { error: 'a mapping of sysctl name to value' },
    )
    .default({}),
});

/** The format of a scenario file: what authors write, and (with defaults and kinds filled in) what is read. */
export const scenarioFileSchema = mapping(
  {
    $schema: z.string().optional().meta({ description: 'The JSON Schema, for editors; ignored by the tool.' }),
    name: matching(NAME_RE, 'lowercase letters, digits and dashes ([a-z0-9-]+)').meta({
      description: "Must equal the file's base name without extension.",
    }),
    title: text().meta({ description: 'One line, shown in lists and reports.' }),
    article: text().optional().meta({ description: 'What the article claims.' }),
    lookFor: text().optional().meta({ description: 'What to look for in the output.' }),
    explanation: text().optional().meta({ description: 'How a 6.x kernel produces the result.' }),
    requires: z.array(oneOfValues(REQUIREMENTS), { error: 'a list of root, netns' }).optional(),
    kernel: kernelRequirementSchema.optional(),
    network: networkSchema.optional(),
    servers: z
      .array(serverSchema, { error: 'a non-empty list of servers' })
      .min(1, { error: 'a non-empty list of servers' })
      .max(MAX_WORKERS, { error: `a list of at most ${MAX_WORKERS} servers` }),
    steps: z
      .array(stepSchema, { error: 'a non-empty list of steps' })
      .min(1, { error: 'a non-empty list of steps' })
      .max(MAX_STEPS, { error: `a list of at most ${MAX_STEPS} steps` }),
    expect: z
      .array(expectationSchema, { error: 'a non-empty list of expectations' })
      .min(1, { error: 'a non-empty list of expectations' })
      .max(MAX_EXPECTATIONS, { error: `a list of at most ${MAX_EXPECTATIONS} expectations` }),
  },
  'a mapping',
).meta({
  title: 'reuseport scenario',
  description: 'One SO_REUSEPORT experiment: servers, steps, expectations. Reference: docs/scenarios.md.',
});

/** The JSON Schema of a scenario file, as shipped in dist/scenario.schema.json. */
export function scenarioJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(scenarioFileSchema, { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>;
}

// ---------------------------------------------------------------------------
// Types of a loaded scenario: zod's outputs, plus where each item was written.
// ---------------------------------------------------------------------------

/** What an author writes (before defaults). */
export type ScenarioFile = z.input<typeof scenarioFileSchema>;

type WithLine<T> = T extends unknown ? T & { line: number } : never;

export interface NetworkAddress {
  /** IPv4 or IPv6 literal added to `lo` inside the scenario's private network namespace. */
  address: string;
  /**
   * Loopback address used instead with `--isolation host`. Filled in with the
   * address itself when the address is already a loopback one; absent otherwise
   * (and then the scenario requires 'netns').
   */
  hostStandIn?: string;
}

export interface NetworkSpec {
  addresses: NetworkAddress[];
  /** net.* sysctls set inside the scenario's namespace only. Values are strings (numbers are converted). */
  sysctls: Record<string, string>;
}

/**
 * A set of identical listening sockets. `address` is the IP literal as written
 * (0.0.0.0 and :: are wildcards, see isWildcard); `user` is a name or a uid
 * (digit-only strings become numbers); `reuseaddr` absent means the binder's
 * default; `ipv6Only` is only ever present on IPv6 servers.
 */
export interface ServerSpec extends z.output<typeof serverSchema> {
  /** Line of the server's entry in the file (0 when validating data without a file). */
  line: number;
}

/** TCP: `connections` are connections; UDP: datagrams. `concurrency` is filled in. */
export interface TrafficSpec extends z.output<typeof trafficSchema> {
  line: number;
}

type StepOutput = z.output<typeof stepSchema>;
export type Step =
  | WithLine<Exclude<StepOutput, { kind: 'traffic' }>>
  | { kind: 'traffic'; traffic: TrafficSpec; line: number };
export type StepKind = Step['kind'];

export type Expectation = WithLine<z.output<typeof expectationSchema>>;
export type ExpectationKind = Expectation['kind'];

export interface Scenario {
  /** Absolute path of the file it was read from ('' when validated from memory without a file). */
  file: string;
  name: string;
  title: string;
  /** What the article says (trailing whitespace trimmed); absent when the file has none. */
  article?: string;
  /** What to look for in the output (trailing whitespace trimmed); absent when the file has none. */
  lookFor?: string;
  /** How a 6.x kernel produces the result (trailing whitespace trimmed); absent when the file has none. */
  explanation?: string;
  /**
   * Declared requirements plus computed ones: 'root' if any server has a `user`,
   * 'netns' if a declared address has no hostStandIn or any sysctl is set.
   * Always in the order root, netns; no duplicates.
   */
  requires: Requirement[];
  /** The kernel it needs; older kernels skip it (format-steering.ts). */
  kernel?: KernelRequirement;
  network: NetworkSpec;
  servers: ServerSpec[];
  steps: Step[];
  expect: Expectation[];
}

// ---------------------------------------------------------------------------
// Validation API
// ---------------------------------------------------------------------------

export interface SourcePosition {
  /** 1-based; 0 when unknown. */
  line: number;
  /** 1-based; 0 when unknown. */
  column: number;
}

/**
 * Turns a path into a source position. `target` says whether the key itself
 * (for "unknown key") or its value (for "bad value") is meant. For a path that
 * does not exist (a missing key) it should return the position of the nearest
 * existing ancestor.
 */
export type Locator = (path: readonly PathSegment[], target: 'key' | 'value') => SourcePosition;

export interface SchemaIssue {
  path: PathSegment[];
  line: number;
  column: number;
  message: string;
}

export interface ValidateOptions {
  /** Absolute path, copied to Scenario.file. */
  file?: string;
  /** When given, `name` must equal it (the file's base name without extension). */
  expectedName?: string;
  locate?: Locator;
  /** When given, a server's `user` must be one it knows (checked at load time, not mid-run). */
  userExists?: (user: string | number) => boolean;
}

export type ValidationResult = { ok: true; scenario: Scenario; issues: [] } | { ok: false; issues: SchemaIssue[] };

const TOP_KEYS = Object.keys(scenarioFileSchema.shape);

/** Validate plain data (as parsed from YAML or JSON); collects every issue, sorted by position. */
export function validateScenario(data: unknown, options: ValidateOptions = {}): ValidationResult {
  const locate = options.locate ?? (() => ({ line: 0, column: 0 }));
  const issues: SchemaIssue[] = [];
  const report = (path: PathSegment[], target: 'key' | 'value', message: string) => {
    const pos = locate(path, target);
    issues.push({ path, line: pos.line, column: pos.column, message });
  };
  const lineOf = (path: PathSegment[]) => locate(path, 'value').line;

  // A file that is not a scenario at all gets one line, and none of its content.
  if (!isPlainObject(data)) {
    const what = data === null || data === undefined ? 'empty' : `not a YAML mapping (it is ${describe(data)})`;
    report(
      [],
      'value',
      `the file is ${what}; a scenario file is a mapping with name, title, servers, steps and expect`,
    );
    return { ok: false, issues };
  }
  const keys = Object.keys(data);
  if (!keys.some((k) => TOP_KEYS.includes(k))) {
    const which = keys.length === 0 ? 'it is an empty mapping' : `none of its ${keys.length} top-level keys is one`;
    report(
      [],
      'value',
      `the file is not a scenario: ${which} (a scenario has name, title, servers, steps, expect, ...)`,
    );
    return { ok: false, issues };
  }

  const parsed = scenarioFileSchema.safeParse(data);
  if (!parsed.success) {
    for (const i of translateIssues(parsed.error.issues, data, KEYED)) report(i.path, i.target, i.message);
  }
  crossCheck(data, options, report, lineOf);

  const sorted = issues
    .map((issue, i) => ({ issue, i }))
    .sort((a, b) => a.issue.line - b.issue.line || a.issue.column - b.issue.column || a.i - b.i)
    .map((x) => x.issue);
  if (sorted.length > 0 || !parsed.success) return { ok: false, issues: sorted };
  return { ok: true, scenario: assemble(parsed.data, options.file ?? '', lineOf), issues: [] };
}

function assemble(
  file: z.output<typeof scenarioFileSchema>,
  path: string,
  lineOf: (path: PathSegment[]) => number,
): Scenario {
  const addresses: NetworkAddress[] = (file.network?.addresses ?? []).map((a) =>
    a.hostStandIn === undefined && isLoopback(a.address) ? { address: a.address, hostStandIn: a.address } : a,
  );
  const network: NetworkSpec = { addresses, sysctls: file.network?.sysctls ?? {} };
  const servers: ServerSpec[] = file.servers.map((s, i) => ({ ...s, line: lineOf(['servers', i]) }));
  const steps: Step[] = file.steps.map((s, i) => {
    const line = lineOf(['steps', i]);
    return s.kind === 'traffic' ? { kind: 'traffic', traffic: { ...s.traffic, line }, line } : { ...s, line };
  });
  const expect: Expectation[] = file.expect.map((e, i) => ({ ...e, line: lineOf(['expect', i]) }));
  const needs = new Set<Requirement>(file.requires ?? []);
  if (servers.some((s) => s.user !== undefined)) needs.add('root');
  if (addresses.some((a) => a.hostStandIn === undefined)) needs.add('netns');
  if (Object.keys(network.sysctls).length > 0) needs.add('netns');
  if (namesNamespace(servers, trafficSpecs(steps))) needs.add('netns');
  const scenario: Scenario = {
    file: path,
    name: file.name,
    title: file.title.trim(),
    requires: REQUIREMENTS.filter((r) => needs.has(r)),
    network,
    servers,
    steps,
    expect,
  };
  if (file.kernel !== undefined) scenario.kernel = file.kernel;
  if (file.article !== undefined) scenario.article = file.article.trimEnd();
  if (file.lookFor !== undefined) scenario.lookFor = file.lookFor.trimEnd();
  if (file.explanation !== undefined) scenario.explanation = file.explanation.trimEnd();
  if (file.kernel !== undefined) scenario.kernel = file.kernel;
  return scenario;
}

// ---------------------------------------------------------------------------
// Rules across items. Each item is parsed on its own with the same schema, so
// one broken item is reported once (by the structural pass) and the others are
// still checked against each other.
// ---------------------------------------------------------------------------

type Report = (path: PathSegment[], target: 'key' | 'value', message: string) => void;
type Obj = Record<string, unknown>;

interface TrafficInfo {
  line: number;
  /** Servers running when this traffic is sent. */
  running: Set<string>;
}

function crossCheck(
  data: Obj,
  options: ValidateOptions,
  report: Report,
  lineOf: (path: PathSegment[]) => number,
): void {
  const name = data.name;
  if (
    typeof name === 'string' &&
    NAME_RE.test(name) &&
    options.expectedName !== undefined &&
    name !== options.expectedName
  ) {
    report(
      ['name'],
      'value',
      `name must equal the file's base name ${quoteName(options.expectedName)}, got ${quoteName(name)}`,
    );
  }

  // Literal addresses used by servers and traffic, for the stand-in clash rule.
  const literalUses: { address: string; path: PathSegment[] }[] = [];

  // ----- servers
  const rawServers = Array.isArray(data.servers) ? data.servers : undefined;
  /** Every declared id (even of a broken server, so that references to it are not reported again). */
  const servers = new Map<string, { spec?: ServerSpec; index: number }>();
  let workers = 0;
  rawServers?.forEach((raw, i) => {
    const p: PathSegment[] = ['servers', i];
    const id = isPlainObject(raw) && typeof raw.id === 'string' && SERVER_ID_RE.test(raw.id) ? raw.id : undefined;
    const parsed = serverSchema.safeParse(raw);
    const spec = parsed.success ? { ...parsed.data, line: lineOf(p) } : undefined;
    if (spec) {
      workers += spec.replicas;
      literalUses.push({ address: spec.address, path: [...p, 'address'] });
      if (spec.ipv6Only !== undefined && isIP(spec.address) !== 6) {
        report([...p, 'ipv6Only'], 'key', `${formatPath([...p, 'ipv6Only'])} only applies to IPv6 addresses`);
      }
      if (spec.user !== undefined && options.userExists && !options.userExists(spec.user)) {
        report(
          [...p, 'user'],
          'value',
          `${formatPath([...p, 'user'])}: no user ${quoteName(String(spec.user))} on this machine; give an existing user name or a numeric uid`,
        );
      }
    }
    if (id === undefined) return;
    const first = servers.get(id);
    if (first) {
      report(
        [...p, 'id'],
        'value',
        `duplicate server id ${quoteName(id)} (first declared at line ${lineOf(['servers', first.index])})`,
      );
      return;
    }
    servers.set(id, spec ? { spec, index: i } : { index: i });
  });
  if (workers > MAX_WORKERS) {
    report(
      ['servers'],
      'value',
      `servers add up to ${workers} worker processes (replicas summed over servers); a scenario may have at most ${MAX_WORKERS}, because each worker is a process of its own`,
    );
  }
  const unknownServer = (path: PathSegment[], id: string): boolean => {
    if (rawServers === undefined || servers.has(id)) return false;
    const known = [...servers.keys()];
    const hint = suggest(id, known);
    const tail = hint ? ` (did you mean "${hint}"?)` : ` (servers: ${known.join(', ')})`;
    report(path, 'value', `unknown server ${quoteName(id)}${tail}`);
    return true;
  };

  // ----- network
  const net = isPlainObject(data.network) ? data.network : undefined;
  const rawAddresses =
    net && Array.isArray(net.addresses) ? net.addresses : net?.addresses === undefined ? [] : undefined;
  /** Every address literal written in network.addresses (undefined when the list itself is unreadable). */
  const declared = rawAddresses?.flatMap((raw) => {
    const written = isPlainObject(raw) ? raw.address : raw;
    return typeof written === 'string' && isIP(written) !== 0 ? [written] : [];
  });
  const standIns: { standIn: string; address: string; path: PathSegment[]; index: number }[] = [];
  const addressAt: { address: string; index: number }[] = [];
  rawAddresses?.forEach((raw, i) => {
    const p: PathSegment[] = ['network', 'addresses', i];
    const parsed = addressEntry.safeParse(raw);
    if (!parsed.success) return;
    const { address, hostStandIn } = parsed.data;
    const ap = typeof raw === 'string' ? p : [...p, 'address'];
    const sp = [...p, 'hostStandIn'];
    if (isWildcard(address)) {
      report(ap, 'value', `${formatPath(ap)}: ${address} is a wildcard, not an address for lo`);
    } else if (sameAddress(address, '127.0.0.1') || sameAddress(address, '::1')) {
      report(ap, 'value', `${formatPath(ap)}: ${address} is always on lo; do not declare it`);
    } else {
      const dup = addressAt.find((a) => sameAddress(a.address, address));
      if (dup) {
        report(
          ap,
          'value',
          `${formatPath(ap)}: address ${address} is already declared at line ${lineOf(['network', 'addresses', dup.index])}`,
        );
      } else addressAt.push({ address, index: i });
    }
    if (hostStandIn === undefined) return;
    if (!isLoopback(hostStandIn)) {
      report(
        sp,
        'value',
        `${formatPath(sp)} must be a loopback address (127.0.0.0/8 or ::1), got ${hostStandIn}: with --isolation host the scenario runs on this machine's real network`,
      );
    } else if (isIP(address) !== isIP(hostStandIn)) {
      report(sp, 'value', `${formatPath(sp)} must be of the same IP family as ${address}, got ${hostStandIn}`);
    } else if (!sameAddress(hostStandIn, address)) {
      standIns.push({ standIn: hostStandIn, address, path: sp, index: i });
    }
  });

  /** The never-leave-loopback rule, for every address traffic is sent to. */
  const checkTarget = (target: PathSegment[], address: string) => {
    literalUses.push({ address, path: target });
    if (isWildcard(address)) {
      report(target, 'value', `${formatPath(target)}: ${address} is a wildcard; send traffic to a concrete address`);
    } else if (declared !== undefined && !isLoopback(address) && !declared.some((a) => sameAddress(a, address))) {
      report(
        target,
        'value',
        `${formatPath(target)} ${address} is neither a loopback address nor declared in network.addresses; ` +
          `the tool never sends traffic off this machine's loopback or the scenario's private network namespace`,
      );
    }
  };

  // ----- steps
  const rawSteps = Array.isArray(data.steps) ? data.steps : undefined;
  let stepsOk = rawSteps !== undefined;
  const traffic = new Map<string, TrafficInfo>();
  const started = new Set<string>();
  /** server id -> line of the step that started it, while it runs. */
  const running = new Map<string, number>();
  let totalConnections = 0;
  rawSteps?.forEach((raw, i) => {
    const p: PathSegment[] = ['steps', i];
    const line = lineOf(p);
    const parsed = stepSchema.safeParse(raw);
    if (!parsed.success) {
      stepsOk = false;
      // A broken traffic step still declares its id, so that expectations about it are not reported again.
      const t = isPlainObject(raw) && isPlainObject(raw.traffic) ? raw.traffic.id : undefined;
      if (typeof t === 'string' && !traffic.has(t)) traffic.set(t, { line, running: new Set(running.keys()) });
      return;
    }
    const step = parsed.data;
    if (step.kind === 'start' || step.kind === 'stop') {
      const kp: PathSegment[] = [...p, step.kind];
      const single = !Array.isArray((raw as Obj)[step.kind]);
      step.servers.forEach((id, j) => {
        const ip = single ? kp : [...kp, j];
        if (step.servers.indexOf(id) !== j) {
          report(ip, 'value', `${formatPath(ip)}: server ${quoteName(id)} is listed twice`);
          stepsOk = false;
          return;
        }
        if (rawServers === undefined) return;
        if (unknownServer(ip, id)) {
          stepsOk = false;
          return;
        }
        if (step.kind === 'start') {
          const since = running.get(id);
          if (since !== undefined) {
            report(ip, 'value', `server ${quoteName(id)} is already running (started at line ${since}); stop it first`);
            stepsOk = false;
          } else {
            running.set(id, line);
            started.add(id);
          }
        } else if (!running.has(id)) {
          report(ip, 'value', `server ${quoteName(id)} is not running at this step, so it cannot be stopped`);
          stepsOk = false;
        } else {
          running.delete(id);
        }
      });
      return;
    }
    if (step.kind !== 'traffic') {
      for (const id of lifecycle.lifecycleStarts(step)) {
        running.set(id, line);
        started.add(id);
      }
      return;
    }
    const t = step.traffic;
    const tp: PathSegment[] = [...p, 'traffic'];
    const first = traffic.get(t.id);
    if (first) {
      report(
        [...tp, 'id'],
        'value',
        `duplicate traffic id ${quoteName(t.id)} (first used at line ${first.line}); traffic ids must be unique`,
      );
      stepsOk = false;
    } else {
      traffic.set(t.id, { line, running: new Set(running.keys()) });
    }
    totalConnections += t.connections;
    const cp: PathSegment[] = [...tp, 'concurrency'];
    const written = (raw as { traffic: Obj }).traffic.concurrency;
    if (t.sourcePort !== undefined && written !== undefined && t.concurrency !== 1) {
      report(
        cp,
        'value',
        `${formatPath(cp)} must be 1 with a fixed sourcePort (one source port holds one connection at a time), got ${t.concurrency}`,
      );
    } else if (t.concurrency > t.connections) {
      report(cp, 'value', `${formatPath(cp)} must be at most connections (${t.connections}), got ${t.concurrency}`);
    }
    checkTarget([...tp, 'target'], t.target);
  });
  if (totalConnections > MAX_TOTAL_CONNECTIONS) {
    report(
      ['steps'],
      'value',
      `the traffic steps send ${totalConnections} connections in all; a scenario may send at most ${MAX_TOTAL_CONNECTIONS}`,
    );
  }

  // ----- expectations
  const rawExpect = Array.isArray(data.expect) ? data.expect : [];
  rawExpect.forEach((raw, i) => {
    const p: PathSegment[] = ['expect', i];
    const parsed = expectationSchema.safeParse(raw);
    if (!parsed.success || rawSteps === undefined) return;
    const e = parsed.data;
    if (e.kind === 'remap' || e.kind === 'sticky' || e.kind === 'payloads' || e.kind === 'sameCpu') return; // checkSteering
    /** A server an expectation names must exist and be started by some step. */
    const knownStarted = (id: string, path: PathSegment[]): boolean => {
      if (unknownServer(path, id)) return false;
      if (rawServers === undefined || !stepsOk || started.has(id)) return true;
      report(path, 'value', `server ${quoteName(id)} is never started by any step, so there is nothing to check`);
      return false;
    };
    if (e.kind === 'bind') {
      knownStarted(e.server, [...p, 'bind']);
      return;
    }
    if (!('traffic' in e)) return; // lifecycle.lifecycleCrossCheck judges the rest
    const tp: PathSegment[] = [...p, 'traffic'];
    const info = traffic.get(e.traffic);
    if (!info) {
      const known = [...traffic.keys()];
      const hint = suggest(e.traffic, known);
      const tail = hint
        ? ` (did you mean "${hint}"?)`
        : known.length > 0
          ? ` (traffic ids: ${known.join(', ')})`
          : ' (no step sends traffic)';
      report(tp, 'value', `unknown traffic id ${quoteName(e.traffic)}${tail}`);
    }
    /** A server that must be receiving at the time of the traffic step. */
    const runningAt = (id: string, path: PathSegment[]): boolean => {
      if (!knownStarted(id, path)) return false;
      if (!info || !stepsOk || info.running.has(id)) return true;
      report(
        path,
        'value',
        `server ${quoteName(id)} is not running when traffic ${quoteName(e.traffic)} is sent (line ${info.line}), so it cannot receive it`,
      );
      return false;
    };
    if (e.kind === 'fails' || e.kind === 'count') return;
    if (e.kind === 'all') {
      runningAt(e.server, [...p, 'all']);
    } else if (e.kind === 'share') {
      const sp: PathSegment[] = [...p, 'share'];
      knownStarted(e.server, [...sp, 'server']);
      const written = (raw as { share: Obj }).share;
      if (written.min === undefined && written.max === undefined) {
        report(sp, 'value', `${formatPath(sp)} needs min, max or both (fractions from 0 to 1)`);
      } else if (e.min > e.max) {
        report([...sp, 'max'], 'value', `${formatPath([...sp, 'max'])} must be >= min (${e.min}), got ${e.max}`);
      }
    } else {
      const op: PathSegment[] = [...p, 'balanced', 'over'];
      const single = !Array.isArray((raw as { balanced: Obj }).balanced.over);
      let membersOk = true;
      e.over.forEach((id, j) => {
        const ip = single ? op : [...op, j];
        if (e.over.indexOf(id) !== j) {
          report(ip, 'value', `${formatPath(ip)}: server ${quoteName(id)} is listed twice`);
          membersOk = false;
        } else if (!runningAt(id, ip)) membersOk = false;
      });
      const instances = e.over.reduce((n, id) => n + (servers.get(id)?.spec?.replicas ?? 2), 0);
      if (membersOk && instances < 2) {
        report(
          op,
          'value',
          `${formatPath(op)} names a single instance; balance needs at least 2 (more servers, or replicas > 1)`,
        );
      }
    }
  });

  checkSteering(data, report, lineOf);
  lifecycle.lifecycleCrossCheck(
    data,
    report,
    checkTarget,
    (raw) => stepSchema.safeParse(raw).data,
    (raw) => expectationSchema.safeParse(raw).data,
  );

  // ----- stand-ins: under --isolation host a stand-in and the address it collides with would be one address.
  for (const s of standIns) {
    const clash = (what: string) =>
      report(
        s.path,
        'value',
        `${formatPath(s.path)} ${s.standIn} is also ${what}; with --isolation host the two addresses would be indistinguishable`,
      );
    const other = addressAt.find((a) => a.index !== s.index && sameAddress(a.address, s.standIn));
    const earlier = standIns.find((o) => o.index < s.index && sameAddress(o.standIn, s.standIn));
    const twin = other?.index ?? earlier?.index;
    if (twin !== undefined) {
      clash(`used by ${formatPath(['network', 'addresses', twin])} (line ${lineOf(['network', 'addresses', twin])})`);
      continue;
    }
    const use = literalUses.find((u) => sameAddress(u.address, s.standIn));
    if (use) clash(`used directly by ${formatPath(use.path)} (line ${lineOf(use.path)})`);
  }
}

// ---------------------------------------------------------------------------
// Address helpers (also used by the runner)
// ---------------------------------------------------------------------------

/**
 * The address to use on the host (`--isolation host`): the declared address's
 * hostStandIn when it has one, otherwise the address unchanged.
 */
export function hostAddress(network: NetworkSpec, address: string): string {
  const declared = network.addresses.find((a) => sameAddress(a.address, address));
  return declared?.hostStandIn ?? address;
}

export { trafficSpecs };
