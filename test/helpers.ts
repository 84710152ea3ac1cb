import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  readSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { procStatFields } from '../src/net/proc-stat.js';
import type { RunDocument } from '../src/report/run-document.js';

/** The package root: the compiled tests live in dist/test/. */
export const ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (
    !existsSync(join(dir, 'package.json')) ||
    !readFileSync(join(dir, 'package.json'), 'utf8').includes('"name": "reuseport"')
  ) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('package root not found');
    dir = parent;
  }
  return dir;
})();

export const CLI = join(ROOT, 'bin', 'reuseport.js');

/** The binder `auto` is expected to pick under this Node: set by scripts/test.mjs. */
export const EXPECTED_BINDER = process.env.REUSEPORT_EXPECT_BINDER;

export const isRoot = process.getuid?.() === 0;

/** Absolute path of `unshare` (util-linux), or '' when it is not installed. */
export const unsharePath = spawnSync('sh', ['-c', 'command -v unshare'], { encoding: 'utf8' }).stdout.trim();

/** Why a test cannot make a network namespace with `unshare --net` here, or false when it can. */
export const unshareNetSkip: string | false = !isRoot
  ? 'needs root to create a network namespace with unshare --net'
  : unsharePath === ''
    ? 'unshare (util-linux) is not installed'
    : spawnSync(unsharePath, ['--net', 'true']).status !== 0
      ? '`unshare --net` does not work here'
      : false;

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the CLI to completion with the same Node that runs the tests; `via` is
 * a command that execs the rest (e.g. a shell setting a ulimit first); `cli`
 * is another copy's bin/reuseport.js.
 */
export function runCli(
  args: string[],
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string; via?: string[]; cli?: string } = {},
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const [command, ...rest] = [...(options.via ?? []), process.execPath, options.cli ?? CLI, ...args];
    const child = spawn(command!, rest, {
      cwd: options.cwd ?? ROOT,
      env: { ...process.env, NO_COLOR: '1', ...options.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      stdout += c;
    });
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface ServeEvent {
  event: string;
  workerId?: number;
  pid?: number;
  port?: number;
  binder?: string;
  uid?: number;
  accepted?: number;
  code?: string;
  reason?: string;
  [key: string]: unknown;
}

/** How long a test waits for one thing a process should do before it fails, naming what it waited for. */
export const WAIT_MS = 60_000;

/** A running `reuseport serve --json`, read event by event. */
export class ServeProcess {
  readonly child: ChildProcess;
  readonly events: ServeEvent[] = [];
  /** Everything it printed, as a user's `serve --json > file` would hold it. */
  stdout = '';
  stderr = '';
  private waiters: (() => void)[] = [];
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(args: string[], root = ROOT) {
    this.child = spawn(process.execPath, [join(root, 'bin', 'reuseport.js'), 'serve', '--json', ...args], {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let buffer = '';
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stdout += chunk;
      buffer += chunk;
      let newline = buffer.indexOf('\n');
      while (newline >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        if (line.trim()) this.events.push(JSON.parse(line) as ServeEvent);
        newline = buffer.indexOf('\n');
      }
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.closed = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        for (const wake of this.waiters.splice(0)) wake();
        resolve({ code, signal });
      });
    });
  }

  /** Resolves once `count` events match; rejects if the process ends first, or after `timeoutMs`. */
  async waitFor(predicate: (e: ServeEvent) => boolean, count = 1, timeoutMs = WAIT_MS): Promise<ServeEvent[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const matching = this.events.filter(predicate);
      if (matching.length >= count) return matching;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`serve ended before ${count} matching events: ${JSON.stringify(this.events)} ${this.stderr}`);
      }
      const what = `${count} matching serve events (${matching.length} so far): ${JSON.stringify(this.events)} ${this.stderr}`;
      await withTimeout(new Promise<void>((resolve) => this.waiters.push(resolve)), deadline - Date.now(), what);
    }
  }

  async listening(
    workers: number,
    timeoutMs = WAIT_MS,
  ): Promise<{ port: number; pids: number[]; events: ServeEvent[] }> {
    const events = await this.waitFor((e) => e.event === 'listening', workers, timeoutMs);
    return { port: events[0]!.port!, pids: events.map((e) => e.pid!), events };
  }

  /** Waits (bounded) for serve to end on its own; SIGKILLs it and fails when it overruns. */
  async ended(timeoutMs = WAIT_MS): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    try {
      return await withTimeout(this.closed, timeoutMs, `serve to exit on its own: ${this.stderr}`);
    } catch (err) {
      this.child.kill('SIGKILL');
      throw err;
    }
  }

  /** Stops it (if still running) and waits; kills it if it does not go. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    const result = await this.closed;
    clearTimeout(timer);
    return result;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !isZombieOrGone(pid);
  } catch {
    return false;
  }
}

function isZombieOrGone(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

/** Waits (bounded) until none of the pids is alive; returns the ones still alive. */
export async function waitGone(pids: number[], timeoutMs = 5000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const alive = pids.filter(isAlive);
    if (alive.length === 0 || Date.now() > deadline) return alive;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Every descendant of `pid`, read from /proc. */
export function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const fields = procStatFields(Number(entry));
    if (fields === null) continue; // Gone while we looked.
    const ppid = Number(fields[1]);
    const list = parents.get(ppid) ?? [];
    list.push(Number(entry));
    parents.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const child of parents.get(queue.shift()!) ?? []) {
      out.push(child);
      queue.push(child);
    }
  }
  return out;
}

/** The network namespaces in use on this machine (inode strings). */
export function netNamespaces(): Set<string> {
  const out = new Set<string>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      out.add(readlinkSync(`/proc/${entry}/ns/net`));
    } catch {
      // Gone, or not ours to read.
    }
  }
  return out;
}

/** A port nothing listens on right now (the kernel's choice, then released). */
export async function closedPort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A copy of what the CLI needs at run time (no dev tools), in a fresh temp
 * directory with the given mode. 0o700 stands for a checkout another user
 * cannot read (a clone under /root); 0o755 for one they can.
 */
export async function runtimeCopy(mode: number): Promise<{ dir: string; remove(): void }> {
  const { chmodSync, cpSync, mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'reuseport-copy-'));
  for (const part of ['package.json', 'bin', 'dist', 'scenarios', 'native/build/Release']) {
    cpSync(join(ROOT, part), join(dir, part), { recursive: true });
  }
  cpSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'), {
    recursive: true,
    filter: (src) => !/node_modules\/(@biomejs|typescript|@types)(\/|$)/.test(src),
  });
  const { spawnSync } = await import('node:child_process');
  spawnSync('chmod', ['-R', mode === 0o700 ? 'go-rwx' : 'a+rX', dir]);
  chmodSync(dir, mode);
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs the CLI of `dir` as the user nobody, with a Node that nobody can execute. */
export async function runAsNobody(dir: string, args: string[]): Promise<CliResult> {
  const { spawnSync } = await import('node:child_process');
  // A Node kept under /root (the Node 24 test run) is out of nobody's reach; the system one serves there.
  const node =
    spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, '--version']).status === 0
      ? process.execPath
      : 'node';
  const result = spawnSync('runuser', ['-u', 'nobody', '--', node, join(dir, 'bin', 'reuseport.js'), ...args], {
    encoding: 'utf8',
    cwd: dir,
    env: { ...process.env, NO_COLOR: '1' },
    timeout: 60_000,
  });
  return { code: result.status, signal: result.signal, stdout: result.stdout, stderr: result.stderr };
}

/** Cleanups run last-in first-out after the test, whatever its outcome. */
export function cleanups(t: { after(fn: () => unknown): void }): (fn: () => unknown) => void {
  const stack: Array<() => unknown> = [];
  t.after(async () => {
    for (const fn of stack.reverse()) await fn();
  });
  return (fn) => {
    stack.push(fn);
  };
}

/** Rejects with `what` when `promise` has not settled after `ms`: a changed message fails a test, never hangs it. */
export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The child's 'close' (exit code, signal), at most `timeoutMs` away: on
 * overrun the child is SIGKILLed and the wait fails with `what`. Call it
 * before the child can end: a 'close' that already happened is not seen.
 */
export async function childClosed(
  child: ChildProcess,
  what: string,
  timeoutMs = WAIT_MS,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => resolve({ code, signal })),
  );
  try {
    return await withTimeout(closed, timeoutMs, what);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

/** A running CLI whose output can be waited on, line by line, each wait bounded. */
export class CliProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly closed: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: (() => void)[] = [];

  constructor(args: string[], options: { detached?: boolean } = {}) {
    this.child = spawn(process.execPath, [CLI, ...args], {
      cwd: ROOT,
      detached: options.detached ?? false,
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const wake = () => {
      for (const w of this.waiters.splice(0)) w();
    };
    this.child.stdout?.setEncoding('utf8').on('data', (c: string) => {
      this.stdout += c;
      wake();
    });
    this.child.stderr?.setEncoding('utf8').on('data', (c: string) => {
      this.stderr += c;
      wake();
    });
    this.closed = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        wake();
        resolve({ code, signal });
      });
    });
  }

  /** Resolves once stderr matches; rejects when the process ends first or after `timeoutMs`. */
  async waitForStderr(pattern: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.stderr);
      if (match) return match;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`the CLI ended before stderr matched ${pattern}: ${this.stderr}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`stderr did not match ${pattern} within ${timeoutMs} ms: ${this.stderr}`);
      await withTimeout(new Promise<void>((resolve) => this.waiters.push(resolve)), left, `stderr ${pattern}`).catch(
        () => {},
      );
    }
  }

  /** Waits for the end (bounded); kills it when it overruns, and says so. */
  async finish(timeoutMs = 90_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    try {
      return await withTimeout(this.closed, timeoutMs, 'the CLI to exit');
    } catch (err) {
      this.child.kill('SIGKILL');
      throw err;
    }
  }
}

/** A process's command line, NUL-separated, or '' when it is gone. */
export function commandLine(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

/** The pids of the `serve`/scenario worker processes below `pid`. */
export function workerPids(pid: number): number[] {
  return descendants(pid).filter((p) => {
    // A worker names itself (`reuseport worker 3 0.0.0.0:6000`) once it has booted.
    const cmdline = commandLine(p);
    return cmdline.includes('worker-main') || cmdline.startsWith('reuseport worker ');
  });
}

/** The network namespaces (inode strings) the given processes are in. */
export function namespacesOf(pids: number[]): Set<string> {
  const out = new Set<string>();
  for (const pid of pids) {
    try {
      out.add(readlinkSync(`/proc/${pid}/ns/net`));
    } catch {
      // Gone already.
    }
  }
  return out;
}

/** Waits (bounded) until no process on the machine is in any of `namespaces`; returns those still in use. */
export async function waitNamespacesGone(namespaces: Set<string>, timeoutMs = 5000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const inUse = netNamespaces();
    const left = [...namespaces].filter((ns) => inUse.has(ns));
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A fresh temporary directory, removed after the test. */
export function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'reuseport-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A scenario file in a fresh temporary directory, named after `name` (the file's base name must equal it). */
export function scenarioFile(t: { after(fn: () => void): void }, name: string, body: string, prose = 'x'): string {
  const file = join(tempDir(t), `${name}.yaml`);
  writeFileSync(
    file,
    `name: ${name}\ntitle: ${name}\narticle: ${prose}\nlookFor: ${prose}\nexplanation: ${prose}\n${body}`,
  );
  return file;
}

/** Scenario body: server W, `replicas` SO_REUSEPORT sockets on `address`:6000, started; then `rest` (more steps, expect). */
export function replicatedW(address: string, replicas: number, rest: string): string {
  return `servers:\n  - { id: W, address: ${address}, port: 6000, replicas: ${replicas}, reuseport: true }\nsteps:\n  - start: [W]\n${rest}`;
}

/**
 * Runs shipped scenarios, which must pass. A balance check fails by design in
 * 0.1 % of honest runs at p < 0.001 (one in a million at the shipped 1e-6),
 * and the suite runs dozens of them, so a run whose only failures are such
 * p-values is run once more: two in a row would happen once in a million.
 */
export function runShipped(args: string[]): Promise<CliResult>;
export function runShipped<R extends { code: number | null; stdout: string }>(
  args: string[],
  run: (args: string[]) => Promise<R>,
): Promise<R>;
export async function runShipped(
  args: string[],
  // Nine scenarios and more, with other suites running beside: more than runCli's default minute on a busy machine.
  run: (args: string[]) => Promise<{ code: number | null; stdout: string }> = (a) => runCli(a, { timeoutMs: 180_000 }),
): Promise<{ code: number | null; stdout: string }> {
  const first = await run(args);
  if (first.code !== 1 || !args.includes('--json')) return first;
  const doc = JSON.parse(first.stdout) as {
    scenarios: { expectations: { kind: string; passed: boolean; observed: string }[] }[];
  };
  const failed = doc.scenarios.flatMap((s) => s.expectations.filter((e) => !e.passed));
  const onlyChance = failed.length > 0 && failed.every((e) => e.kind === 'balanced' && /p \S+ < /.test(e.observed));
  return onlyChance ? run(args) : first;
}

let namespaceSkip: string | false | undefined;

/**
 * Why a test that runs scenarios in a private network namespace as root must
 * skip here, or false when it can run: asked once, of `unshare --net` itself.
 */
export function privateNamespaceSkip(): string | false {
  if (namespaceSkip === undefined) {
    namespaceSkip = !isRoot
      ? 'needs root for a private namespace'
      : spawnSync('unshare', ['--net', 'true']).status !== 0 && 'unshare --net fails here, so no private namespace';
  }
  return namespaceSkip;
}

/**
 * `scenario run --json` of `args` (names or files), with its document parsed;
 * `Doc` names the fields a test reads beyond RunDocument's.
 */
export async function runScenariosJson<Doc = RunDocument>(
  args: string[],
  options: Parameters<typeof runCli>[1] = {},
): Promise<CliResult & { doc: Doc }> {
  const result = await runCli(['scenario', 'run', '--json', ...args], options);
  assert.ok(result.stdout.startsWith('{'), `no JSON document (exit ${result.code}): ${result.stdout}${result.stderr}`);
  return { ...result, doc: JSON.parse(result.stdout) as Doc };
}

/** The issues of a scenario file that must not load, as "line: message". */
export async function scenarioIssues(file: string): Promise<string[]> {
  // Loaded here, not at the top: most test files never read a scenario file.
  const { loadScenario, ScenarioFileError } = await import('../src/scenario/scenario-file.js');
  try {
    await loadScenario(file);
  } catch (err) {
    if (err instanceof ScenarioFileError) return err.issues.map((i) => `${i.line}: ${i.message}`);
    throw err;
  }
  assert.fail('the file loaded, but it should not');
}

/** Asserts that one of `issues` matches `pattern`, listing them all when none does. */
export function assertIssue(issues: string[], pattern: RegExp): void {
  assert.ok(
    issues.some((i) => pattern.test(i)),
    `${pattern}\n${issues.join('\n')}`,
  );
}

/**
 * A `via` for runCli: a user namespace whose limit on network namespaces is
 * 0, so that `unshare --net` really fails there (ENOSPC), for its root too.
 * Null where that cannot be set up (no user namespaces).
 */
export function noNetnsVia(): string[] | null {
  const via = [
    'unshare',
    '--user',
    '--map-root-user',
    'sh',
    '-c',
    'echo 0 > /proc/sys/user/max_net_namespaces && exec "$0" "$@"',
  ];
  const run = (...command: string[]) => spawnSync(via[0]!, [...via.slice(1), ...command], { stdio: 'ignore' }).status;
  return run('true') === 0 && run('unshare', '--net', 'true') !== 0 ? via : null;
}

/** Node's inspector port: SIGUSR1 would open it, were the tool's processes not hardened. */
export const INSPECTOR_PORT = 9229;

/**
 * The TCP listeners on the inspector port held by any of `pids`, as
 * `pid address`, read from each process's own network namespace.
 */
export function inspectorListeners(pids: number[]): string[] {
  const found: string[] = [];
  const portHex = INSPECTOR_PORT.toString(16).toUpperCase().padStart(4, '0');
  for (const pid of pids) {
    const inodes = new Set<string>();
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`, { encoding: 'utf8' }))?.[1];
        if (inode) inodes.add(inode);
      }
    } catch {
      continue; // gone
    }
    for (const table of ['tcp', 'tcp6']) {
      for (const [local, inode] of listeningRows(`/proc/${pid}/net/${table}`)) {
        if (local.endsWith(`:${portHex}`) && inodes.has(inode)) found.push(`${pid} ${local}`);
      }
    }
  }
  return found;
}

/**
 * The LISTEN rows of a /proc/net/tcp table, as [local address, inode]. The
 * kernel lists listeners before any other socket (tcp_seq_start walks the
 * listening hash first), so reading stops at the first other row: a
 * namespace that just made 20,000 connections has as many TIME_WAIT rows.
 */
function listeningRows(file: string): [string, string][] {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch {
    return [];
  }
  const rows: [string, string][] = [];
  try {
    const chunk = Buffer.alloc(16 * 1024);
    let text = '';
    let header = true;
    for (;;) {
      const read = readSync(fd, chunk, 0, chunk.length, null);
      text += chunk.toString('utf8', 0, read);
      const lines = text.split('\n');
      text = read === 0 ? '' : (lines.pop() ?? '');
      for (const line of lines) {
        if (header) {
          header = false;
          continue;
        }
        const fields = line.trim().split(/\s+/);
        const [local, , state, , , , , , inode] = fields.slice(1);
        if (!local || !inode) continue;
        if (state !== '0A') return rows; // 0A is TCP_LISTEN
        rows.push([local, inode]);
      }
      if (read === 0) return rows;
    }
  } finally {
    closeSync(fd);
  }
}

/**
 * Makes this process see the end of a child before that child's last IPC
 * messages, the order in which Node may emit 'exit' (only 'close' waits for
 * the messages). `finish` asks the child to send its last messages and exit,
 * and returns its pid. A helper process exits first, and this process blocks
 * until its stdout's EOF and its SIGCHLD are both pending. On the next poll
 * libuv runs the I/O callbacks first and the signal watcher last
 * (uv__io_poll): in the EOF's callback `finish` runs and this process blocks
 * until the child can be reaped, so the child's last bytes arrive after that
 * poll. The pending SIGCHLD then reaps both (uv__wait_children calls waitpid
 * for every child), and Node emits the child's 'exit' before it reads those
 * bytes. A test that uses it fails whenever code settles on 'exit'.
 * Resolves once the child has been waited for.
 */
export function exitBeforeLastMessages(finish: () => number, timeoutMs = WAIT_MS): Promise<void> {
  const helper = spawn('true', { stdio: ['ignore', 'pipe', 'ignore'] });
  const done = new Promise<void>((resolve, reject) => {
    helper.stdout?.once('end', () => {
      try {
        blockUntilReapable(finish(), timeoutMs);
        resolve();
      } catch (err) {
        reject(err);
      }
    });
  });
  helper.stdout?.resume();
  blockUntilReapable(helper.pid ?? -1, timeoutMs);
  return done;
}

/** Blocks this thread (its event loop included) until our child `pid` can be reaped. */
function blockUntilReapable(pid: number, timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    // Null while not (yet) readable: nothing else reaps our children while our loop is blocked.
    const fields = procStatFields(pid) ?? [];
    // A thread group's leader shows Z while its other threads still exit, and
    // is reapable (exit_notify: thread_group_empty) only once they have gone:
    // field 20 is num_threads.
    if (fields[0] === 'Z' && fields[17] === '1') return;
    if (Date.now() > deadline) throw new Error(`process ${pid} did not exit within ${timeoutMs} ms`);
    // Waits without spinning: the process we wait for needs a CPU.
    Atomics.wait(pause, 0, 0, 1);
  }
}
