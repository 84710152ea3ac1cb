/**
 * The `scenario run --json` document, as the HTML and Markdown reports read
 * it. Only the fields they use are named; everything else may be present.
 * Fields added after version 1 are optional so that an older document (or a
 * scenario without article, lookFor or explanation) still renders.
 */
import type { RemapTally, StickyTally } from '../scenario/remap-model.js';
import type { Scenario } from '../scenario/schema.js';
import type { SweepObservation } from '../scenario/steering-run.js';

export interface RunDocument {
  version: number;
  kernel: string;
  node: string;
  durationMs: number;
  interrupted: boolean;
  summary: { total: number; passed: number; failed: number; skipped: number; errors: number };
  scenarios: ScenarioDocument[];
  /** Bad scenario files, when the document carries them. */
  errors?: FileIssueDocument[];
}

export interface FileIssueDocument {
  file: string;
  line: number;
  column: number;
  message: string;
}

export interface ScenarioDocument {
  name: string;
  title: string;
  file: string;
  status: 'passed' | 'failed' | 'skipped' | 'error' | (string & {});
  reason: string | null;
  isolation: string | null;
  durationMs: number;
  kernel?: string;
  article?: string | null;
  lookFor?: string | null;
  explanation?: string | null;
  substitutions?: { addresses: { from: string; to: string }[]; ports: { from: number; to: number }[] };
  setup?: SetupDocument | null;
  servers: ServerInstanceDocument[];
  traffic: TrafficDocument[];
  expectations: ExpectationDocument[];
}

export interface ServerInstanceDocument {
  server: string;
  replica: number;
  pid: number;
  uid?: number | null;
  bind: string;
  binder?: string | null;
  engine?: string | null;
  engineReason?: string | null;
  message?: string | null;
}

export interface TrafficDocument {
  id: string;
  target: string;
  port: number;
  protocol?: string;
  attempted: number;
  /** Answered with a greeting that names the worker. */
  attributed: number;
  /** Connected, but no greeting (for UDP: no reply). */
  silent: number;
  inFlight: number;
  failed: number;
  failures: { code: string; count: number }[];
  /** Every way the traffic went unanswered, by name and count. */
  unanswered: { what: string; count: number }[];
  perServer: { server: string; replica: number; pid: number; count: number }[];
  elapsedMs: number;
  /** A source-port sweep, port by port (added in version 1; absent for other traffic). */
  owners?: SweepOwners;
}

/** In `SweepOwners.owner`: no round of the port was answered by an instance of the scenario. */
export const NO_OWNER = -1;
/** In `SweepOwners.owner`: the rounds differ (several instances, or some unanswered); see `mixed`. */
export const MIXED_OWNER = -2;

/**
 * A sweep's tuples in one number per source port: `owner[i]`, for port
 * `from + i`, is the index in `instances` of the one instance that answered
 * every round, or NO_OWNER, or MIXED_OWNER, whose ports' rounds are listed
 * in `mixed` (the index per round, -1 for a round nobody answered).
 */
export interface SweepOwners {
  from: number;
  repeat: number;
  instances: { label: string; pid: number }[];
  owner: number[];
  mixed: { sourcePort: number; answers: number[] }[];
}

/** The `owners` field of a sweep's traffic step. */
export function sweepOwners(sweep: SweepObservation): SweepOwners {
  const owner = new Array<number>(sweep.count).fill(NO_OWNER);
  const mixed: SweepOwners['mixed'] = [];
  for (const { sourcePort, answers } of sweep.ports) {
    const distinct = new Set(answers);
    const only = distinct.size === 1 ? answers[0]! : MIXED_OWNER;
    owner[sourcePort - sweep.from] = only;
    if (only === MIXED_OWNER) mixed.push({ sourcePort, answers });
  }
  return {
    from: sweep.from,
    repeat: sweep.repeat,
    instances: sweep.instances.map(({ label, pid }) => ({ label, pid })),
    owner,
    mixed,
  };
}

export interface ExpectationDocument {
  kind: string;
  line: number;
  description: string;
  passed: boolean;
  expected: string;
  observed: string;
  /** `remap` only (added in version 1). */
  remap?: RemapTally;
  /** `sticky` only (added in version 1). */
  sticky?: StickyTally;
}

/** What the scenario set up, after host stand-ins: the servers as declared and what the expectations name. */
export interface SetupDocument {
  addresses: string[];
  sysctls: Record<string, string>;
  servers: {
    id: string;
    address: string;
    port: number;
    protocol: string;
    replicas: number;
    reuseport: boolean;
    reuseaddr?: boolean;
    ipv6Only?: boolean;
    user?: string | number;
    binder?: string;
  }[];
  /** Per traffic step, the servers an expectation says should receive it. */
  expectedWinners: { traffic: string; servers: string[]; kind: string }[];
}

/** The `setup` field of a scenario in the --json document. */
export function describeSetup(scenario: Scenario): SetupDocument {
  const expectedWinners: SetupDocument['expectedWinners'] = [];
  for (const e of scenario.expect) {
    if (e.kind === 'all' || e.kind === 'share') {
      expectedWinners.push({ traffic: e.traffic, servers: [e.server], kind: e.kind });
    } else if (e.kind === 'balanced') {
      expectedWinners.push({ traffic: e.traffic, servers: [...e.over], kind: e.kind });
    }
  }
  return {
    addresses: scenario.network.addresses.map((a) => a.address),
    sysctls: { ...scenario.network.sysctls },
    servers: scenario.servers.map((s) => ({
      id: s.id,
      address: s.address,
      port: s.port,
      protocol: s.protocol,
      replicas: s.replicas,
      reuseport: s.reuseport,
      ...(s.reuseaddr !== undefined ? { reuseaddr: s.reuseaddr } : {}),
      ...(s.ipv6Only !== undefined ? { ipv6Only: s.ipv6Only } : {}),
      ...(s.user !== undefined ? { user: s.user } : {}),
      binder: s.binder,
    })),
    expectedWinners,
  };
}
