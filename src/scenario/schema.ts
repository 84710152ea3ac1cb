/**
 * The scenario format: TypeScript types and the validator.
 *
 * The validator works on plain data (what a YAML or JSON parser returns) and
 * reports every mistake it finds, each with the path of the offending key or
 * value. It knows nothing about files: the caller passes a `locate` function
 * that turns a path into a line and column (see load.ts), and the file's
 * expected name. No I/O here, no terminal libraries.
 *
 * The returned Scenario is fully populated: every default is filled in.
 * See docs/scenarios.md for the reference of the format.
 */
import { isIP } from 'node:net';
import type { Protocol } from '../net/address.js';
import type { BinderChoice } from '../net/binder.js';

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/** 'root': real root in the initial user namespace. 'netns': cannot run with `--isolation host`. */
export type Requirement = 'root' | 'netns';
// One vocabulary with serve and load.
export type { Protocol } from '../net/address.js';
export type Binder = BinderChoice;

export const REQUIREMENTS: readonly Requirement[] = ['root', 'netns'];
export const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp'];
export const BINDERS: readonly Binder[] = ['auto', 'builtin', 'native'];

export const MAX_REPLICAS = 64;
export const MAX_CONNECTIONS = 100_000;
export const DEFAULT_MAX_CONCURRENCY = 64;
export const DEFAULT_BALANCED_P_VALUE = 0.001;

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

export interface ServerSpec {
  id: string;
  /** IP literal as written; 0.0.0.0 and :: are wildcards (see isWildcard). */
  address: string;
  port: number;
  protocol: Protocol;
  /** Number of worker processes, each with its own socket. */
  replicas: number;
  /** User name or numeric uid that owns the sockets; absent: whoever runs the scenario. Digit-only strings become numbers. */
  user?: string | number;
  reuseport: boolean;
  /** Absent: the binder's default (Node's own sockets set SO_REUSEADDR for TCP). */
  reuseaddr?: boolean;
  /** Only ever present on servers with an IPv6 address. */
  ipv6Only?: boolean;
  binder: Binder;
  /** Line of the server's entry in the file (0 when validating data without a file). */
  line: number;
  // Planned (not accepted yet): incomingCpu?: number (SO_INCOMING_CPU),
  // cbpf?: ... (SO_ATTACH_REUSEPORT_CBPF). See docs/scenarios.md, "Room to grow".
}

export interface TrafficSpec {
  id: string;
  target: string;
  port: number;
  protocol: Protocol;
  /** TCP: connections; UDP: datagrams. */
  connections: number;
  /** Filled in: 1 with a sourcePort, otherwise min(64, connections). */
  concurrency: number;
  sourcePort?: number;
  line: number;
}

export type Step =
  | { kind: 'start'; servers: string[]; line: number }
  | { kind: 'stop'; servers: string[]; line: number }
  | { kind: 'traffic'; traffic: TrafficSpec; line: number };

export type StepKind = Step['kind'];

export type Expectation =
  | { kind: 'bind'; server: string; outcome: string; line: number }
  | { kind: 'all'; traffic: string; server: string; line: number }
  | { kind: 'balanced'; traffic: string; over: string[]; pValue: number; everyMember: boolean; line: number }
  | { kind: 'share'; traffic: string; server: string; min: number; max: number; line: number };

export type ExpectationKind = Expectation['kind'];

export interface Scenario {
  /** Absolute path of the file it was read from ('' when validated from memory without a file). */
  file: string;
  name: string;
  title: string;
  /** What the article says (trailing whitespace trimmed). */
  article: string;
  /** What to look for in the output (trailing whitespace trimmed). */
  lookFor: string;
  /** How a 6.x kernel produces the result (trailing whitespace trimmed). */
  explanation: string;
  /**
   * Declared requirements plus computed ones: 'root' if any server has a `user`,
   * 'netns' if a declared address has no hostStandIn or any sysctl is set.
   * Always in the order root, netns; no duplicates.
   */
  requires: Requirement[];
  network: NetworkSpec;
  servers: ServerSpec[];
  steps: Step[];
  expect: Expectation[];
}

// ---------------------------------------------------------------------------
// Validation API
// ---------------------------------------------------------------------------

export type PathSegment = string | number;

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
}

export type ValidationResult = { ok: true; scenario: Scenario; issues: [] } | { ok: false; issues: SchemaIssue[] };

/** Validate plain data (as parsed from YAML or JSON); collects every issue, sorted by position. */
export function validateScenario(data: unknown, options: ValidateOptions = {}): ValidationResult {
  const v = new Validator(options.locate ?? (() => ({ line: 0, column: 0 })));
  const scenario = v.scenario(data, options);
  const issues = v.sortedIssues();
  if (issues.length > 0 || scenario === undefined) return { ok: false, issues };
  return { ok: true, scenario, issues: [] };
}

/** `servers[1].replicas`, `network.sysctls["net.ipv4.tcp_migrate_req"]`. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Address helpers (also useful to the runner)
// ---------------------------------------------------------------------------

/** 4, 6, or 0 when not an IP literal (Node's net.isIP). */
export function ipFamily(address: string): 0 | 4 | 6 {
  return isIP(address) as 0 | 4 | 6;
}

/** Canonical text of an IP literal, for comparisons (IPv6 compressed and lowercased). */
export function canonicalAddress(address: string): string {
  if (isIP(address) !== 6) return address;
  try {
    const host = new URL(`http://[${address}]/`).hostname;
    return host.slice(1, -1);
  } catch {
    return address.toLowerCase(); // e.g. a zone id, which URL does not accept
  }
}

export function sameAddress(a: string, b: string): boolean {
  return canonicalAddress(a) === canonicalAddress(b);
}

/** 0.0.0.0 or :: (any spelling). */
export function isWildcard(address: string): boolean {
  const c = canonicalAddress(address);
  return c === '0.0.0.0' || c === '::';
}

/** 127.0.0.0/8, ::1, or an IPv4-mapped 127.0.0.0/8 address. */
export function isLoopback(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return address.startsWith('127.');
  if (family === 6) {
    const c = canonicalAddress(address);
    if (c === '::1') return true;
    const mapped = /^::ffff:(.+)$/.exec(c);
    if (mapped) {
      const tail = mapped[1]!;
      if (isIP(tail) === 4) return tail.startsWith('127.');
      // URL prints a mapped address as ::ffff:7f00:1
      return /^7f[0-9a-f]{2}:/.test(tail);
    }
  }
  return false;
}

/**
 * The address to use on the host (`--isolation host`): the declared address's
 * hostStandIn when it has one, otherwise the address unchanged.
 */
export function hostAddress(network: NetworkSpec, address: string): string {
  const declared = network.addresses.find((a) => sameAddress(a.address, address));
  return declared?.hostStandIn ?? address;
}

// ---------------------------------------------------------------------------
// Implementation
// ---------------------------------------------------------------------------

const NAME_RE = /^[a-z0-9-]+$/;
const SERVER_ID_RE = /^[A-Za-z][A-Za-z0-9_-]*$/;
const TRAFFIC_ID_RE = /^[A-Za-z0-9._-]+$/;
const OUTCOME_RE = /^(ok|E[A-Z0-9]+)$/;
const USER_NAME_RE = /^[A-Za-z_][A-Za-z0-9_.-]*\$?$/;
const SYSCTL_RE = /^net(\.[A-Za-z0-9_-]+)+$/;
const MAX_UID = 4_294_967_294; // (uid_t)-1 is reserved

const TOP_KEYS = [
  'name',
  'title',
  'article',
  'lookFor',
  'explanation',
  'requires',
  'network',
  'servers',
  'steps',
  'expect',
] as const;
const NETWORK_KEYS = ['addresses', 'sysctls'] as const;
const ADDRESS_KEYS = ['address', 'hostStandIn'] as const;
const SERVER_KEYS = [
  'id',
  'address',
  'port',
  'protocol',
  'replicas',
  'user',
  'reuseport',
  'reuseaddr',
  'ipv6Only',
  'binder',
] as const;
const STEP_KEYS = ['start', 'stop', 'traffic'] as const;
const TRAFFIC_KEYS = ['id', 'target', 'port', 'protocol', 'connections', 'concurrency', 'sourcePort'] as const;
const BIND_EXPECT_KEYS = ['bind', 'outcome'] as const;
const TRAFFIC_EXPECT_KEYS = ['traffic', 'all', 'balanced', 'share'] as const;
const TRAFFIC_CHECKS = ['all', 'balanced', 'share'] as const;
const BALANCED_KEYS = ['over', 'pValue', 'everyMember'] as const;
const SHARE_KEYS = ['server', 'min', 'max'] as const;

type Path = PathSegment[];
type Obj = Record<string, unknown>;

/** Where each server / traffic step was declared, for cross-references. */
interface ServerInfo {
  spec: ServerSpec;
  path: Path;
}
interface Servers {
  byId: Map<string, ServerInfo | undefined>;
  /** False when any entry is broken. */
  ok: boolean;
}
interface TrafficInfo {
  /** Undefined when the traffic step itself is broken (already reported). */
  spec: TrafficSpec | undefined;
  /** Line of the step. */
  line: number;
  /** Servers running (started and not stopped) when this traffic is sent. */
  running: Set<string>;
}
interface NetworkResult {
  spec: NetworkSpec;
  /** Parallel to spec.addresses. */
  standInPaths: Path[];
  ok: boolean;
  /** Every address literal written in network.addresses (undefined if the list itself is unreadable). */
  declared: string[] | undefined;
}
interface Steps {
  list: Step[];
  /** Every traffic id declared (broken steps included, with spec undefined). */
  traffic: Map<string, TrafficInfo>;
  /** Servers started by at least one step. */
  started: Set<string>;
  /** False when any step is broken. */
  ok: boolean;
}
interface LiteralUse {
  address: string;
  path: Path;
}

class Validator {
  private readonly issues: SchemaIssue[] = [];
  constructor(private readonly locate: Locator) {}

  sortedIssues(): SchemaIssue[] {
    // Stable sort by position; issues without a position keep their order.
    return this.issues
      .map((issue, i) => ({ issue, i }))
      .sort((a, b) => a.issue.line - b.issue.line || a.issue.column - b.issue.column || a.i - b.i)
      .map((x) => x.issue);
  }

  error(path: Path, target: 'key' | 'value', message: string): void {
    const pos = this.locate(path, target);
    this.issues.push({ path: [...path], line: pos.line, column: pos.column, message });
  }

  lineOf(path: Path): number {
    return this.locate(path, 'value').line;
  }

  // ----- generic readers -------------------------------------------------

  /** A mapping with only `allowed` keys (each unknown key is reported). */
  mapping(value: unknown, path: Path, allowed: readonly string[], what: string): Obj | undefined {
    if (!isPlainObject(value)) {
      this.error(path, 'value', `${label(path, what)} must be a mapping, got ${describe(value)}`);
      return undefined;
    }
    for (const key of Object.keys(value)) {
      if (!allowed.includes(key)) this.unknownKey([...path, key], key, allowed, path.length === 0 ? '' : label(path));
    }
    return value;
  }

  unknownKey(path: Path, key: string, allowed: readonly string[], where: string): void {
    const hint = suggest(key, allowed);
    const at = where === '' ? 'unknown top-level key' : 'unknown key';
    const inWhere = where === '' ? '' : ` in ${where}`;
    const tail = hint ? ` (did you mean "${hint}"?)` : ` (allowed: ${allowed.join(', ')})`;
    this.error(path, 'key', `${at} "${key}"${inWhere}${tail}`);
  }

  missing(obj: Obj, key: string, path: Path): boolean {
    if (obj[key] !== undefined) return false;
    const where = path.length === 0 ? 'missing required top-level key' : 'missing required key';
    const inWhere = path.length === 0 ? '' : ` in ${formatPath(path)}`;
    this.error(path, 'value', `${where} "${key}"${inWhere}`);
    return true;
  }

  requiredString(obj: Obj, key: string, path: Path, check?: { re: RegExp; rule: string }): string | undefined {
    if (this.missing(obj, key, path)) return undefined;
    return this.string(obj[key], [...path, key], check);
  }

  string(value: unknown, path: Path, check?: { re: RegExp; rule: string }): string | undefined {
    if (typeof value !== 'string' || value.trim() === '') {
      const rule = check ? check.rule : 'a non-empty string';
      this.error(path, 'value', `${formatPath(path)} must be ${rule}, got ${describe(value)}`);
      return undefined;
    }
    if (check && !check.re.test(value)) {
      this.error(path, 'value', `${formatPath(path)} must be ${check.rule}, got ${describe(value)}`);
      return undefined;
    }
    return value;
  }

  integer(value: unknown, path: Path, min: number, max: number, extra = ''): number | undefined {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
      this.error(
        path,
        'value',
        `${formatPath(path)} must be an integer from ${min} to ${max}${extra}, got ${describe(value)}`,
      );
      return undefined;
    }
    return value;
  }

  fraction(value: unknown, path: Path): number | undefined {
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
      this.error(path, 'value', `${formatPath(path)} must be a number from 0 to 1, got ${describe(value)}`);
      return undefined;
    }
    return value;
  }

  boolean(value: unknown, path: Path): boolean | undefined {
    if (typeof value !== 'boolean') {
      this.error(path, 'value', `${formatPath(path)} must be true or false, got ${describe(value)}`);
      return undefined;
    }
    return value;
  }

  oneOf<T extends string>(value: unknown, path: Path, allowed: readonly T[]): T | undefined {
    if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
      const hint = typeof value === 'string' ? suggest(value, allowed) : undefined;
      const tail = hint ? ` (did you mean "${hint}"?)` : '';
      this.error(
        path,
        'value',
        `${formatPath(path)} must be one of ${allowed.join(', ')}, got ${describe(value)}${tail}`,
      );
      return undefined;
    }
    return value as T;
  }

  ip(value: unknown, path: Path): string | undefined {
    if (typeof value !== 'string' || isIP(value) === 0) {
      this.error(path, 'value', `${formatPath(path)} must be an IPv4 or IPv6 address literal, got ${describe(value)}`);
      return undefined;
    }
    return value;
  }

  /** A non-empty list of unique server ids (a single id is accepted as a one-item list). */
  serverList(value: unknown, path: Path, what: string): { ids: string[]; paths: Path[] } | undefined {
    const items = typeof value === 'string' ? [value] : value;
    const single = typeof value === 'string';
    if (!Array.isArray(items) || items.length === 0) {
      this.error(path, 'value', `${formatPath(path)} must be a non-empty list of ${what}, got ${describe(value)}`);
      return undefined;
    }
    const ids: string[] = [];
    const paths: Path[] = [];
    let ok = true;
    items.forEach((item, i) => {
      const p = single ? path : [...path, i];
      if (typeof item !== 'string' || item === '') {
        this.error(p, 'value', `${formatPath(p)} must be a server id, got ${describe(item)}`);
        ok = false;
      } else if (ids.includes(item)) {
        this.error(p, 'value', `${formatPath(p)}: server "${item}" is listed twice`);
        ok = false;
      } else {
        ids.push(item);
        paths.push(p);
      }
    });
    return ok ? { ids, paths } : undefined;
  }

  // ----- the scenario -----------------------------------------------------

  scenario(data: unknown, options: ValidateOptions): Scenario | undefined {
    if (data === null || data === undefined) {
      this.error([], 'value', 'the file is empty; expected a mapping with name, title, servers, steps, expect, ...');
      return undefined;
    }
    const top = this.mapping(data, [], TOP_KEYS, 'the scenario');
    if (!top) return undefined;

    const name = this.requiredString(top, 'name', [], {
      re: NAME_RE,
      rule: 'lowercase letters, digits and dashes ([a-z0-9-]+)',
    });
    if (name !== undefined && options.expectedName !== undefined && name !== options.expectedName) {
      this.error(
        ['name'],
        'value',
        `name must equal the file's base name "${options.expectedName}", got ${JSON.stringify(name)}`,
      );
    }
    const title = this.requiredString(top, 'title', []);
    const article = this.requiredString(top, 'article', []);
    const lookFor = this.requiredString(top, 'lookFor', []);
    const explanation = this.requiredString(top, 'explanation', []);
    const declared = this.requires(top.requires);
    const literalUses: LiteralUse[] = [];
    const network = this.network(top.network);
    const servers = this.servers(top, literalUses);
    const steps = this.steps(top, servers, network?.declared, literalUses);
    const expect = this.expectations(top, servers, steps);
    if (network?.ok) this.checkStandIns(network, literalUses);

    if (
      name === undefined ||
      title === undefined ||
      article === undefined ||
      lookFor === undefined ||
      explanation === undefined ||
      declared === undefined ||
      network === undefined ||
      !network.ok ||
      servers === undefined ||
      !servers.ok ||
      steps === undefined ||
      !steps.ok ||
      expect === undefined
    ) {
      return undefined;
    }

    const serverSpecs: ServerSpec[] = [];
    for (const info of servers.byId.values()) if (info) serverSpecs.push(info.spec);
    const needs = new Set<Requirement>(declared);
    if (serverSpecs.some((s) => s.user !== undefined)) needs.add('root');
    if (network.spec.addresses.some((a) => a.hostStandIn === undefined)) needs.add('netns');
    if (Object.keys(network.spec.sysctls).length > 0) needs.add('netns');

    return {
      file: options.file ?? '',
      name,
      title: title.trim(),
      article: article.trimEnd(),
      lookFor: lookFor.trimEnd(),
      explanation: explanation.trimEnd(),
      requires: REQUIREMENTS.filter((r) => needs.has(r)),
      network: network.spec,
      servers: serverSpecs,
      steps: steps.list,
      expect,
    };
  }

  requires(value: unknown): Requirement[] | undefined {
    if (value === undefined) return [];
    const path = ['requires'];
    if (!Array.isArray(value)) {
      this.error(path, 'value', `requires must be a list of ${REQUIREMENTS.join(', ')}, got ${describe(value)}`);
      return undefined;
    }
    const out: Requirement[] = [];
    let ok = true;
    value.forEach((item, i) => {
      const r = this.oneOf(item, [...path, i], REQUIREMENTS);
      if (r === undefined) ok = false;
      else if (!out.includes(r)) out.push(r);
    });
    return ok ? out : undefined;
  }

  network(value: unknown): NetworkResult | undefined {
    const spec: NetworkSpec = { addresses: [], sysctls: {} };
    const standInPaths: Path[] = [];
    const declared: string[] = [];
    if (value === undefined) return { spec, standInPaths, ok: true, declared };
    const path: Path = ['network'];
    const net = this.mapping(value, path, NETWORK_KEYS, 'network');
    if (!net) return undefined;
    let ok = true;
    let declaredKnown = true;

    if (net.addresses !== undefined) {
      const ap: Path = [...path, 'addresses'];
      if (!Array.isArray(net.addresses)) {
        this.error(ap, 'value', `network.addresses must be a list, got ${describe(net.addresses)}`);
        ok = false;
        declaredKnown = false;
      } else {
        const listIndex: number[] = [];
        net.addresses.forEach((raw, i) => {
          const p: Path = [...ap, i];
          // Remembered even when the entry is otherwise broken, to check traffic targets against.
          const written = isPlainObject(raw) ? raw.address : raw;
          if (typeof written === 'string' && isIP(written) !== 0) declared.push(written);
          const entry = this.address(typeof raw === 'string' ? { address: raw } : raw, p, typeof raw === 'string');
          if (!entry) {
            ok = false;
            return;
          }
          const dup = spec.addresses.findIndex((a) => sameAddress(a.address, entry.spec.address));
          if (dup >= 0) {
            const firstLine = this.lineOf([...ap, listIndex[dup]!]);
            this.error(
              entry.addressPath,
              'value',
              `${formatPath(entry.addressPath)}: address ${entry.spec.address} is already declared at line ${firstLine}`,
            );
            ok = false;
            return;
          }
          spec.addresses.push(entry.spec);
          listIndex.push(i);
          standInPaths.push(entry.standInPath);
        });
      }
    }

    if (net.sysctls !== undefined) {
      const sp: Path = [...path, 'sysctls'];
      if (!isPlainObject(net.sysctls)) {
        this.error(
          sp,
          'value',
          `network.sysctls must be a mapping of sysctl name to value, got ${describe(net.sysctls)}`,
        );
        ok = false;
      } else {
        for (const [key, val] of Object.entries(net.sysctls)) {
          const p: Path = [...sp, key];
          if (!SYSCTL_RE.test(key)) {
            this.error(
              p,
              'key',
              `sysctl ${JSON.stringify(key)} is not allowed: only net.* sysctls (dotted, like net.ipv4.tcp_migrate_req) are set, because only those belong to the scenario's own network namespace`,
            );
            ok = false;
          } else if (typeof val === 'number' && Number.isInteger(val)) {
            spec.sysctls[key] = String(val);
          } else if (typeof val === 'string' && val.trim() !== '' && !/[\r\n]/.test(val)) {
            spec.sysctls[key] = val;
          } else {
            this.error(p, 'value', `${formatPath(p)} must be an integer or a one-line string, got ${describe(val)}`);
            ok = false;
          }
        }
      }
    }
    return { spec, standInPaths, ok, declared: declaredKnown ? declared : undefined };
  }

  address(
    raw: unknown,
    path: Path,
    shorthand: boolean,
  ): { spec: NetworkAddress; addressPath: Path; standInPath: Path } | undefined {
    const entry = this.mapping(raw, path, ADDRESS_KEYS, 'network address');
    if (!entry) return undefined;
    const addressPath = shorthand ? path : [...path, 'address'];
    const standInPath = [...path, 'hostStandIn'];
    if (this.missing(entry, 'address', path)) return undefined;
    const address = this.ip(entry.address, addressPath);
    let ok = address !== undefined;
    if (address !== undefined) {
      if (isWildcard(address)) {
        this.error(addressPath, 'value', `${formatPath(addressPath)}: ${address} is a wildcard, not an address for lo`);
        ok = false;
      } else if (sameAddress(address, '127.0.0.1') || sameAddress(address, '::1')) {
        this.error(addressPath, 'value', `${formatPath(addressPath)}: ${address} is always on lo; do not declare it`);
        ok = false;
      }
    }
    let hostStandIn: string | undefined;
    if (entry.hostStandIn !== undefined) {
      hostStandIn = this.ip(entry.hostStandIn, standInPath);
      if (hostStandIn === undefined) ok = false;
      else if (!isLoopback(hostStandIn)) {
        this.error(
          standInPath,
          'value',
          `${formatPath(standInPath)} must be a loopback address (127.0.0.0/8 or ::1), got ${JSON.stringify(hostStandIn)}: with --isolation host the scenario runs on this machine's real network`,
        );
        ok = false;
      } else if (address !== undefined && isIP(address) !== isIP(hostStandIn)) {
        this.error(
          standInPath,
          'value',
          `${formatPath(standInPath)} must be of the same IP family as ${address}, got ${JSON.stringify(hostStandIn)}`,
        );
        ok = false;
      }
    } else if (address !== undefined && isLoopback(address)) {
      hostStandIn = address; // a loopback address works on the host as it is
    }
    if (!ok || address === undefined) return undefined;
    const spec: NetworkAddress = hostStandIn === undefined ? { address } : { address, hostStandIn };
    return { spec, addressPath, standInPath };
  }

  /**
   * Reads every server. The returned map holds each declared id; entries whose
   * other fields are broken map to undefined (they are reported, and references
   * to them are not reported again).
   */
  servers(top: Obj, literalUses: LiteralUse[]): Servers | undefined {
    if (this.missing(top, 'servers', [])) return undefined;
    const path: Path = ['servers'];
    const list = top.servers;
    if (!Array.isArray(list) || list.length === 0) {
      this.error(path, 'value', `servers must be a non-empty list of servers, got ${describe(list)}`);
      return undefined;
    }
    const byId = new Map<string, ServerInfo | undefined>();
    let ok = true;
    list.forEach((raw, i) => {
      const p: Path = [...path, i];
      const { id, spec } = this.server(raw, p, literalUses);
      if (!spec) ok = false;
      if (id === undefined) return;
      if (byId.has(id)) {
        const first = byId.get(id);
        const at = first ? ` (first declared at line ${first.spec.line})` : '';
        this.error([...p, 'id'], 'value', `duplicate server id "${id}"${at}`);
        ok = false;
        return;
      }
      byId.set(id, spec ? { spec, path: p } : undefined);
    });
    return { byId, ok };
  }

  server(raw: unknown, path: Path, literalUses: LiteralUse[]): { id?: string; spec?: ServerSpec } {
    const s = this.mapping(raw, path, SERVER_KEYS, 'server');
    if (!s) return {};
    let ok = true;
    const req = <T>(key: string, read: (v: unknown, p: Path) => T | undefined): T | undefined => {
      if (this.missing(s, key, path)) {
        ok = false;
        return undefined;
      }
      const r = read(s[key], [...path, key]);
      if (r === undefined) ok = false;
      return r;
    };
    const opt = <T>(key: string, read: (v: unknown, p: Path) => T | undefined): T | undefined => {
      if (s[key] === undefined) return undefined;
      const r = read(s[key], [...path, key]);
      if (r === undefined) ok = false;
      return r;
    };

    const id = req('id', (v, p) =>
      this.string(v, p, { re: SERVER_ID_RE, rule: 'an id like A or web-1 ([A-Za-z][A-Za-z0-9_-]*)' }),
    );
    const address = req('address', (v, p) => this.ip(v, p));
    const port = req('port', (v, p) => this.integer(v, p, 1, 65535));
    const protocol = opt('protocol', (v, p) => this.oneOf(v, p, PROTOCOLS)) ?? 'tcp';
    const replicas = opt('replicas', (v, p) => this.integer(v, p, 1, MAX_REPLICAS)) ?? 1;
    const user = opt('user', (v, p) => this.user(v, p));
    const reuseport = opt('reuseport', (v, p) => this.boolean(v, p)) ?? true;
    const reuseaddr = opt('reuseaddr', (v, p) => this.boolean(v, p));
    const ipv6Only = opt('ipv6Only', (v, p) => this.boolean(v, p));
    const binder = opt('binder', (v, p) => this.oneOf(v, p, BINDERS)) ?? 'auto';

    if (ipv6Only !== undefined && address !== undefined && isIP(address) !== 6) {
      this.error(
        [...path, 'ipv6Only'],
        'key',
        `${formatPath([...path, 'ipv6Only'])} only applies to IPv6 addresses; ${address} is IPv4`,
      );
      ok = false;
    }
    if (address !== undefined) literalUses.push({ address, path: [...path, 'address'] });
    if (!ok || id === undefined || address === undefined || port === undefined) return id === undefined ? {} : { id };

    const spec: ServerSpec = { id, address, port, protocol, replicas, reuseport, binder, line: this.lineOf(path) };
    if (user !== undefined) spec.user = user;
    if (reuseaddr !== undefined) spec.reuseaddr = reuseaddr;
    if (ipv6Only !== undefined) spec.ipv6Only = ipv6Only;
    return { id, spec };
  }

  user(value: unknown, path: Path): string | number | undefined {
    if (typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_UID) return value;
    if (typeof value === 'string' && /^\d+$/.test(value)) {
      const n = Number(value);
      if (n <= MAX_UID) return n;
    }
    if (typeof value === 'string' && value.length <= 32 && USER_NAME_RE.test(value)) return value;
    this.error(
      path,
      'value',
      `${formatPath(path)} must be a user name or a numeric uid (0 to ${MAX_UID}), got ${describe(value)}`,
    );
    return undefined;
  }

  steps(
    top: Obj,
    servers: Servers | undefined,
    declared: readonly string[] | undefined,
    literalUses: LiteralUse[],
  ): Steps | undefined {
    if (this.missing(top, 'steps', [])) return undefined;
    const path: Path = ['steps'];
    const list = top.steps;
    if (!Array.isArray(list) || list.length === 0) {
      this.error(path, 'value', `steps must be a non-empty list, got ${describe(list)}`);
      return undefined;
    }
    const out: Step[] = [];
    const traffic = new Map<string, TrafficInfo>();
    const started = new Set<string>();
    /** server id -> line of the step that started it, while it runs. */
    const running = new Map<string, number>();
    let ok = true;

    list.forEach((raw, i) => {
      const p: Path = [...path, i];
      const line = this.lineOf(p);
      const kind = this.singleKey(raw, p, STEP_KEYS, 'step', 'start, stop or traffic');
      if (kind === undefined) {
        ok = false;
        return;
      }
      const item = raw as Obj;
      const kp: Path = [...p, kind];
      if (kind === 'start' || kind === 'stop') {
        const ids = this.serverList(item[kind], kp, 'server ids');
        if (!ids) {
          ok = false;
          return;
        }
        ids.ids.forEach((id, j) => {
          const ip = ids.paths[j]!;
          if (servers === undefined) return; // the servers section itself is broken: reported there
          if (!servers.byId.has(id)) {
            this.unknownServer(ip, id, servers);
            ok = false;
            return;
          }
          if (kind === 'start') {
            const since = running.get(id);
            if (since !== undefined) {
              this.error(ip, 'value', `server "${id}" is already running (started at line ${since}); stop it first`);
              ok = false;
            } else {
              running.set(id, line);
              started.add(id);
            }
          } else if (!running.has(id)) {
            this.error(ip, 'value', `server "${id}" is not running at this step, so it cannot be stopped`);
            ok = false;
          } else {
            running.delete(id);
          }
        });
        out.push({ kind, servers: ids.ids, line });
        return;
      }
      const { id, spec } = this.traffic(item.traffic, kp, declared, literalUses);
      if (!spec) ok = false;
      if (id === undefined) return;
      const first = traffic.get(id);
      if (first) {
        const at = ` (first used at line ${first.line})`;
        this.error([...kp, 'id'], 'value', `duplicate traffic id "${id}"${at}; traffic ids must be unique`);
        ok = false;
        return;
      }
      traffic.set(id, { spec, line, running: new Set(running.keys()) });
      if (spec) out.push({ kind: 'traffic', traffic: spec, line });
    });
    return { list: out, traffic, started, ok };
  }

  /** For items that are exactly one of several keys; returns the key. */
  singleKey<K extends string>(raw: unknown, path: Path, keys: readonly K[], what: string, list: string): K | undefined {
    if (!isPlainObject(raw)) {
      this.error(path, 'value', `${formatPath(path)} must be a mapping with one key (${list}), got ${describe(raw)}`);
      return undefined;
    }
    const present = Object.keys(raw);
    let ok = true;
    for (const key of present) {
      if (!(keys as readonly string[]).includes(key)) {
        const hint = suggest(key, keys);
        const tail = hint ? ` (did you mean "${hint}"?)` : ` (a ${what} is one of: ${list})`;
        this.error([...path, key], 'key', `unknown ${what} "${key}" in ${formatPath(path)}${tail}`);
        ok = false;
      }
    }
    const known = present.filter((k) => (keys as readonly string[]).includes(k)) as K[];
    if (known.length > 1) {
      this.error(
        [...path, known[1]!],
        'key',
        `${formatPath(path)} has both "${known[0]}" and "${known[1]}"; each ${what} is exactly one of: ${list}`,
      );
      return undefined;
    }
    if (known.length === 0) {
      if (ok) this.error(path, 'value', `${formatPath(path)} is empty; a ${what} is one of: ${list}`);
      return undefined;
    }
    return ok ? known[0] : undefined;
  }

  traffic(
    raw: unknown,
    path: Path,
    declared: readonly string[] | undefined,
    literalUses: LiteralUse[],
  ): { id?: string; spec?: TrafficSpec } {
    const t = this.mapping(raw, path, TRAFFIC_KEYS, 'traffic');
    if (!t) return {};
    let ok = true;
    const req = <T>(key: string, read: (v: unknown, p: Path) => T | undefined): T | undefined => {
      if (this.missing(t, key, path)) {
        ok = false;
        return undefined;
      }
      const r = read(t[key], [...path, key]);
      if (r === undefined) ok = false;
      return r;
    };
    const opt = <T>(key: string, read: (v: unknown, p: Path) => T | undefined): T | undefined => {
      if (t[key] === undefined) return undefined;
      const r = read(t[key], [...path, key]);
      if (r === undefined) ok = false;
      return r;
    };
    const id = req('id', (v, p) => this.string(v, p, { re: TRAFFIC_ID_RE, rule: 'an id made of [A-Za-z0-9._-]' }));
    const target = req('target', (v, p) => this.ip(v, p));
    const port = req('port', (v, p) => this.integer(v, p, 1, 65535));
    const protocol = opt('protocol', (v, p) => this.oneOf(v, p, PROTOCOLS)) ?? 'tcp';
    const connections = req('connections', (v, p) => this.integer(v, p, 1, MAX_CONNECTIONS));
    const sourcePort = opt('sourcePort', (v, p) => this.integer(v, p, 1, 65535));
    const concurrency = opt('concurrency', (v, p) =>
      connections === undefined
        ? this.integer(v, p, 1, MAX_CONNECTIONS)
        : this.integer(v, p, 1, connections, ` (at most connections)`),
    );
    const cp: Path = [...path, 'concurrency'];
    if (sourcePort !== undefined && concurrency !== undefined && concurrency !== 1) {
      this.error(
        cp,
        'value',
        `${formatPath(cp)} must be 1 with a fixed sourcePort (one source port holds one connection at a time), got ${concurrency}`,
      );
      ok = false;
    }

    if (target !== undefined) {
      const tp: Path = [...path, 'target'];
      literalUses.push({ address: target, path: tp });
      const isDeclared = declared?.some((a) => sameAddress(a, target)) ?? false;
      if (isWildcard(target)) {
        this.error(tp, 'value', `${formatPath(tp)}: ${target} is a wildcard; send traffic to a concrete address`);
        ok = false;
      } else if (!isLoopback(target) && !isDeclared && declared !== undefined) {
        this.error(
          tp,
          'value',
          `${formatPath(tp)} ${target} is neither a loopback address nor declared in network.addresses; ` +
            `the tool never sends traffic off this machine's loopback or the scenario's private network namespace`,
        );
        ok = false;
      }
    }

    if (!ok || id === undefined || target === undefined || port === undefined || connections === undefined) {
      return id === undefined ? {} : { id };
    }
    const spec: TrafficSpec = {
      id,
      target,
      port,
      protocol,
      connections,
      concurrency: concurrency ?? (sourcePort !== undefined ? 1 : Math.min(DEFAULT_MAX_CONCURRENCY, connections)),
      line: this.lineOf(path.slice(0, -1)),
    };
    if (sourcePort !== undefined) spec.sourcePort = sourcePort;
    return { id, spec };
  }

  expectations(top: Obj, servers: Servers | undefined, steps: Steps | undefined): Expectation[] | undefined {
    if (this.missing(top, 'expect', [])) return undefined;
    const path: Path = ['expect'];
    const list = top.expect;
    if (!Array.isArray(list) || list.length === 0) {
      this.error(path, 'value', `expect must be a non-empty list, got ${describe(list)}`);
      return undefined;
    }
    const out: Expectation[] = [];
    let ok = true;
    list.forEach((raw, i) => {
      const e = this.expectation(raw, [...path, i], servers, steps);
      if (e) out.push(e);
      else ok = false;
    });
    return ok ? out : undefined;
  }

  expectation(
    raw: unknown,
    path: Path,
    servers: Servers | undefined,
    steps: Steps | undefined,
  ): Expectation | undefined {
    const line = this.lineOf(path);
    const allKeys = [...BIND_EXPECT_KEYS, ...TRAFFIC_EXPECT_KEYS];
    if (!isPlainObject(raw)) {
      this.error(
        path,
        'value',
        `${formatPath(path)} must be a mapping (bind: ... or traffic: ...), got ${describe(raw)}`,
      );
      return undefined;
    }
    const hasBind = raw.bind !== undefined;
    const hasTraffic = raw.traffic !== undefined;
    if (hasBind && hasTraffic) {
      this.error(
        [...path, 'traffic'],
        'key',
        `${formatPath(path)} has both "bind" and "traffic"; an expectation is about one of them`,
      );
      return undefined;
    }
    if (!hasBind && !hasTraffic) {
      this.mapping(raw, path, allKeys, '');
      this.error(
        path,
        'value',
        `${formatPath(path)} must have either "bind" (a server id) or "traffic" (a traffic id)`,
      );
      return undefined;
    }

    /** A server an expectation names must exist and be started by some step. */
    const knownStarted = (id: unknown, p: Path): string | undefined => {
      const s = this.string(id, p, { re: /^\S+$/, rule: 'a server id' });
      if (s === undefined) return undefined;
      if (servers === undefined || steps === undefined) return s; // reported in their own sections
      if (!servers.byId.has(s)) {
        this.unknownServer(p, s, servers);
        return undefined;
      }
      if (!steps.started.has(s) && steps.ok) {
        this.error(p, 'value', `server "${s}" is never started by any step, so there is nothing to check`);
        return undefined;
      }
      return s;
    };

    if (hasBind) {
      const e = this.mapping(raw, path, BIND_EXPECT_KEYS, '');
      if (!e) return undefined;
      const server = knownStarted(e.bind, [...path, 'bind']);
      let outcome: string | undefined;
      if (!this.missing(e, 'outcome', path)) {
        outcome = this.string(e.outcome, [...path, 'outcome'], {
          re: OUTCOME_RE,
          rule: 'ok or an errno name like EADDRINUSE',
        });
      }
      const clean = Object.keys(e).every((k) => (BIND_EXPECT_KEYS as readonly string[]).includes(k));
      if (server === undefined || outcome === undefined || !clean) return undefined;
      return { kind: 'bind', server, outcome, line };
    }

    const e = this.mapping(raw, path, TRAFFIC_EXPECT_KEYS, '');
    if (!e) return undefined;
    let ok = Object.keys(e).every((k) => (TRAFFIC_EXPECT_KEYS as readonly string[]).includes(k));
    const checks = TRAFFIC_CHECKS.filter((k) => e[k] !== undefined);
    if (checks.length === 0) {
      // An unknown key (a typo of one of them, probably) was already reported.
      if (ok) this.error(path, 'value', `${formatPath(path)} needs one of: all, balanced, share`);
      return undefined;
    }
    if (checks.length > 1) {
      this.error(
        [...path, checks[1]!],
        'key',
        `${formatPath(path)} has both "${checks[0]}" and "${checks[1]}"; write one expectation per check`,
      );
      return undefined;
    }

    const tp: Path = [...path, 'traffic'];
    let info: TrafficInfo | undefined;
    const trafficId = this.string(e.traffic, tp, { re: TRAFFIC_ID_RE, rule: 'a traffic id' });
    if (trafficId === undefined) ok = false;
    else if (steps) {
      info = steps.traffic.get(trafficId);
      if (!info) {
        const known = [...steps.traffic.keys()];
        const hint = suggest(trafficId, known);
        const tail = hint
          ? ` (did you mean "${hint}"?)`
          : known.length > 0
            ? ` (traffic ids: ${known.join(', ')})`
            : ' (no step sends traffic)';
        this.error(tp, 'value', `unknown traffic id "${trafficId}"${tail}`);
        ok = false;
      }
    }
    /** A server that must be receiving at the time of the traffic step. */
    const runningAt = (id: string, p: Path): boolean => {
      if (!info || !steps?.ok || info.running.has(id)) return true;
      this.error(
        p,
        'value',
        `server "${id}" is not running when traffic "${trafficId}" is sent (line ${info.line}), so it cannot receive it`,
      );
      return false;
    };

    const check = checks[0]!;
    const cp: Path = [...path, check];
    if (check === 'all') {
      const server = knownStarted(e.all, cp);
      if (server === undefined || !runningAt(server, cp) || !ok || trafficId === undefined) return undefined;
      return { kind: 'all', traffic: trafficId, server, line };
    }

    if (check === 'balanced') {
      const b = this.mapping(e.balanced, cp, BALANCED_KEYS, '');
      if (!b) return undefined;
      let over: string[] | undefined;
      if (this.missing(b, 'over', cp)) ok = false;
      else {
        const op: Path = [...cp, 'over'];
        const ids = this.serverList(b.over, op, 'server ids');
        if (!ids) ok = false;
        else {
          let membersOk = true;
          for (const [j, id] of ids.ids.entries()) {
            const p = ids.paths[j]!;
            if (knownStarted(id, p) === undefined || !runningAt(id, p)) membersOk = false;
          }
          if (membersOk && servers) {
            const specs = ids.ids.map((id) => servers.byId.get(id)?.spec);
            if (specs.every((s) => s !== undefined)) {
              const instances = specs.reduce((n, s) => n + s.replicas, 0);
              if (instances < 2) {
                this.error(
                  op,
                  'value',
                  `${formatPath(op)} names a single instance; balance needs at least 2 (more servers, or replicas > 1)`,
                );
                membersOk = false;
              }
            }
          }
          if (membersOk) over = ids.ids;
          else ok = false;
        }
      }
      const pValue = b.pValue === undefined ? DEFAULT_BALANCED_P_VALUE : this.fraction(b.pValue, [...cp, 'pValue']);
      const everyMember = b.everyMember === undefined ? true : this.boolean(b.everyMember, [...cp, 'everyMember']);
      const clean = Object.keys(b).every((k) => (BALANCED_KEYS as readonly string[]).includes(k));
      if (!ok || !clean || over === undefined || pValue === undefined || everyMember === undefined) return undefined;
      if (trafficId === undefined) return undefined;
      return { kind: 'balanced', traffic: trafficId, over, pValue, everyMember, line };
    }

    // share
    const s = this.mapping(e.share, cp, SHARE_KEYS, '');
    if (!s) return undefined;
    let server: string | undefined;
    if (this.missing(s, 'server', cp)) ok = false;
    else server = knownStarted(s.server, [...cp, 'server']);
    if (s.min === undefined && s.max === undefined) {
      this.error(cp, 'value', `${formatPath(cp)} needs min, max or both (fractions from 0 to 1)`);
      ok = false;
    }
    const min = s.min === undefined ? 0 : this.fraction(s.min, [...cp, 'min']);
    const max = s.max === undefined ? 1 : this.fraction(s.max, [...cp, 'max']);
    if (min !== undefined && max !== undefined && min > max) {
      this.error([...cp, 'max'], 'value', `${formatPath([...cp, 'max'])} must be >= min (${min}), got ${max}`);
      ok = false;
    }
    const clean = Object.keys(s).every((k) => (SHARE_KEYS as readonly string[]).includes(k));
    if (!ok || !clean || server === undefined || min === undefined || max === undefined) return undefined;
    if (trafficId === undefined) return undefined;
    return { kind: 'share', traffic: trafficId, server, min, max, line };
  }

  unknownServer(path: Path, id: string, servers: Servers): void {
    const known = [...servers.byId.keys()];
    const hint = suggest(id, known);
    const tail = hint ? ` (did you mean "${hint}"?)` : ` (servers: ${known.join(', ')})`;
    this.error(path, 'value', `unknown server "${id}"${tail}`);
  }

  /**
   * A stand-in must not collide with another declared address, another stand-in,
   * or an address used literally by a server or a traffic step: under
   * --isolation host the two would become the same address.
   */
  checkStandIns(network: NetworkResult, literalUses: LiteralUse[]): void {
    const { addresses } = network.spec;
    addresses.forEach((a, i) => {
      const standIn = a.hostStandIn;
      if (standIn === undefined || sameAddress(standIn, a.address)) return;
      const p = network.standInPaths[i]!;
      const clash = (what: string) =>
        this.error(
          p,
          'value',
          `${formatPath(p)} ${standIn} is also ${what}; with --isolation host the two addresses would be indistinguishable`,
        );
      const other = addresses.findIndex(
        (b, j) =>
          j !== i &&
          (sameAddress(b.address, standIn) ||
            (b.hostStandIn !== undefined && j < i && sameAddress(b.hostStandIn, standIn))),
      );
      if (other >= 0) {
        clash(
          `used by ${formatPath(['network', 'addresses', other])} (line ${this.lineOf(['network', 'addresses', other])})`,
        );
        return;
      }
      const use = literalUses.find((u) => sameAddress(u.address, standIn));
      if (use) clash(`used directly by ${formatPath(use.path)} (line ${this.lineOf(use.path)})`);
    });
  }
}

function label(path: Path, what?: string): string {
  if (path.length === 0) return what ?? 'the scenario';
  return formatPath(path);
}

function isPlainObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** How a bad value reads in a message: strings quoted, containers named. */
export function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return String(value);
}

/** The closest allowed word, if it is close enough to be a likely typo. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = levenshtein(w, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  if (best === undefined) return undefined;
  // Short words (ids like A, B) only match when they differ in case.
  const longest = Math.max(word.length, best.length);
  const limit = longest <= 2 ? 0 : Math.max(1, Math.floor(longest / 3));
  return bestDistance <= limit ? best : undefined;
}

function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
