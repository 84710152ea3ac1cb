/**
 * The `scenario run --json` document, as the HTML and Markdown reports read
 * it. Only the fields they use are named; everything else may be present.
 * Fields added after version 1 are optional so that an older document (or a
 * scenario without article, lookFor or explanation) still renders.
 */
import type { Scenario } from '../scenario/schema.js';

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
}

export interface ExpectationDocument {
  kind: string;
  line: number;
  description: string;
  passed: boolean;
  expected: string;
  observed: string;
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
