/**
 * Starts the reuseport-compare executable, in a fresh network namespace when
 * one can be made, and collects its lines. Every model's processes are the
 * executable's children: it kills them on SIGTERM, and they die with it
 * (PR_SET_PDEATHSIG) if it is killed outright; the namespace goes with the
 * last of them.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { errnoName, ReuseportError, UsageError } from '../errors.js';
import { noNamespaceMessage, probeNamespace } from '../net/doctor.js';
import { findPackageRoot } from '../net/native.js';
import {
  EXECUTABLE_PROTOCOL,
  type FailureLine,
  type ModelName,
  type PhaseLine,
  type PhaseName,
  parseExecutableLine,
  type RunLine,
  type StartLine,
} from './protocol.js';

export const COMPARE_EXECUTABLE_RELATIVE_PATH = 'native/build/Release/reuseport-compare';
/** Set to a number in (0, 1] to shorten every phase (tests use it); 1 is the default length. */
export const COMPARE_SCALE_ENV = 'REUSEPORT_COMPARE_SCALE';
/** A run that takes longer than this is killed: every phase is bounded far below it. */
const RUN_TIMEOUT_MS = 120_000;

export type IsolationChoice = 'auto' | 'netns' | 'host';

export interface ExecutableOptions {
  workers: number;
  models: readonly ModelName[];
  phases: readonly PhaseName[];
  /** Multiplies every phase's duration. */
  scale: number;
  isolation: IsolationChoice;
  heavyRounds?: number;
  /** The Node and cluster script for the node-* models. */
  node?: { executable: string; script: string };
}

export interface Isolation {
  kind: 'netns' | 'host';
  note: string;
}

export interface ExecutableResult {
  start: StartLine;
  runs: RunLine[];
  phases: PhaseLine[];
  failures: FailureLine[];
  isolation: Isolation;
  interrupted: boolean;
}

export function compareExecutablePath(): string {
  const root = findPackageRoot();
  const path = root === null ? null : join(root, COMPARE_EXECUTABLE_RELATIVE_PATH);
  if (path === null || !existsSync(path)) {
    throw new ReuseportError(
      `${COMPARE_EXECUTABLE_RELATIVE_PATH} is not built: install a C toolchain (gcc, make, python3) and run \`npm rebuild reuseport\``,
      { code: 'ENOCOMPARE' },
    );
  }
  return path;
}

/** The scale from REUSEPORT_COMPARE_SCALE, or 1. Throws a UsageError on a bad value. */
export function scaleFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const text = env[COMPARE_SCALE_ENV]?.trim();
  if (text === undefined || text === '') return 1;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0.01 || value > 1) {
    throw new UsageError(`${COMPARE_SCALE_ENV} must be a number from 0.01 to 1 (unset it for full-length phases)`);
  }
  return value;
}

export async function chooseIsolation(choice: IsolationChoice): Promise<{ isolation: Isolation; unshare: string[] }> {
  if (choice === 'host') {
    return {
      isolation: { kind: 'host', note: "the host's 127.0.0.1 with kernel-chosen ports (--isolation host)" },
      unshare: [],
    };
  }
  const probe = await probeNamespace();
  if (probe.ok) {
    return {
      isolation: { kind: 'netns', note: `a fresh network namespace (${probe.how}) on 127.0.0.1, lo up` },
      unshare: probe.args,
    };
  }
  if (choice === 'netns') {
    throw new ReuseportError(noNamespaceMessage(probe.reason), {
      code: 'ENETNS',
    });
  }
  return {
    isolation: {
      kind: 'host',
      note: `the host's 127.0.0.1 with kernel-chosen ports, because no namespace could be made (${probe.reason})`,
    },
    unshare: [],
  };
}

export function executableArgs(options: ExecutableOptions, netns: boolean): string[] {
  return [
    ...(netns ? ['--netns'] : []),
    '--workers',
    String(options.workers),
    '--models',
    options.models.join(','),
    '--phases',
    options.phases.join(','),
    '--scale',
    String(options.scale),
    ...(options.heavyRounds !== undefined ? ['--heavy-rounds', String(options.heavyRounds)] : []),
    ...(options.node ? ['--node', options.node.executable, '--node-script', options.node.script] : []),
  ];
}

export async function runExecutable(
  options: ExecutableOptions,
  hooks: { signal: AbortSignal; onRun?: (run: RunLine) => void; onStart?: (start: StartLine) => void },
): Promise<ExecutableResult> {
  const executable = compareExecutablePath();
  const { isolation, unshare } = await chooseIsolation(options.isolation);
  const args = executableArgs(options, isolation.kind === 'netns');
  const [command, argv] =
    unshare.length > 0 ? ['unshare', [...unshare, '--', executable, ...args]] : [executable, args];
  const child = spawn(command, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let start: StartLine | undefined;
  const runs: RunLine[] = [];
  const phases: PhaseLine[] = [];
  const failures: FailureLine[] = [];
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    if (stderr.length < 4096) stderr += chunk;
  });
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (text) => {
    const line = parseExecutableLine(text);
    if (line === null) return;
    if (line.type === 'start') {
      start = line;
      hooks.onStart?.(line);
    } else if (line.type === 'run') {
      runs.push(line);
      hooks.onRun?.(line);
    } else if (line.type === 'phase') {
      phases.push(line);
    } else if (line.type === 'failure') {
      failures.push(line);
    }
  });
  const interrupt = () => {
    if (child.exitCode === null) child.kill('SIGTERM');
  };
  hooks.signal.addEventListener('abort', interrupt, { once: true });
  if (hooks.signal.aborted) interrupt();
  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.once('error', () => resolve([null, null]));
    child.once('close', (c, s) => resolve([c, s]));
  });
  clearTimeout(timer);
  hooks.signal.removeEventListener('abort', interrupt);
  const interrupted = hooks.signal.aborted;
  if (start === undefined) {
    const setup = failures.find((f) => f.phase === 'setup');
    const why = setup
      ? `${setup.syscall} ${errnoName(setup.errno)}`
      : stderr.trim().split('\n').slice(-1)[0] || `exit ${code ?? signal}`;
    throw new ReuseportError(interrupted ? 'interrupted' : `reuseport-compare did not start: ${why}`, {
      code: interrupted ? 'EINTERRUPTED' : 'ECOMPARE',
      exitCode: interrupted ? 130 : 1,
    });
  }
  if (start.protocol !== EXECUTABLE_PROTOCOL) {
    throw new ReuseportError(
      `reuseport-compare speaks protocol ${start.protocol}, this code reads ${EXECUTABLE_PROTOCOL}: run \`npm rebuild reuseport\``,
      { code: 'ECOMPARE' },
    );
  }
  return { start, runs, phases, failures, isolation, interrupted };
}
