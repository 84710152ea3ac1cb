import { readFileSync } from 'node:fs';
import os from 'node:os';
import { nodeChildEnv } from '../process-hardening.js';
import { probeBuiltin, probeNative } from './binder.js';
import { loopbackTool } from './loopback.js';
import { loadNativeHelper } from './native.js';
import { isRoot } from './users.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'info';

export interface DoctorCheck {
  id: string;
  label: string;
  status: CheckStatus;
  value: string;
  /** What this means for the experiments. */
  meaning: string;
}

export interface DoctorReport {
  checks: DoctorCheck[];
  /** True when `serve`, `load` and at least the namespaced scenarios can run. */
  ready: boolean;
}

export async function runDoctor(): Promise<DoctorReport> {
  const [builtin, netns] = await Promise.all([probeBuiltin(), probeNamespace()]);
  const native = probeNative();
  const release = os.release();
  const [major = 0, minor = 0] = release.split('.').map((part) => Number.parseInt(part, 10));
  const kernelHasReuseport = major > 3 || (major === 3 && minor >= 9);
  const root = isRoot();
  const migrate = readSysctl('net/ipv4/tcp_migrate_req');
  const ports = readSysctl('net/ipv4/ip_local_port_range');
  const limit = openFileLimit();
  const checks: DoctorCheck[] = [
    {
      id: 'kernel',
      label: 'Kernel',
      status: kernelHasReuseport ? 'ok' : 'fail',
      value: `Linux ${release}`,
      meaning: kernelHasReuseport
        ? major >= 4 && (major > 4 || minor >= 6)
          ? 'SO_REUSEPORT with reuseport groups and 4-tuple hashing (the 6.x mechanism docs/how-it-works.md describes)'
          : 'SO_REUSEPORT exists, but this kernel predates reuseport groups: results follow the older scoring'
        : 'SO_REUSEPORT needs Linux 3.9 or later: the experiments cannot run',
    },
    {
      id: 'node',
      label: 'Node.js',
      status: 'info',
      value: process.version,
      meaning: builtin.ok
        ? 'has the reusePort option: Node itself can set SO_REUSEPORT (the builtin binder)'
        : 'has no reusePort option (it came in Node 22.12 and 23.1), so only the C helper can set SO_REUSEPORT',
    },
    {
      id: 'binder.builtin',
      label: 'Builtin binder',
      status: builtin.ok ? 'ok' : 'warn',
      value: builtin.ok ? 'works' : 'unavailable',
      meaning: builtin.ok ? 'Node sets SO_REUSEPORT itself (--binder builtin)' : builtin.reason,
    },
    {
      id: 'binder.native',
      label: 'Native helper',
      status: native.ok ? 'ok' : builtin.ok ? 'warn' : 'fail',
      value: native.ok
        ? loadNativeHelper().helper?.engines
          ? 'works, with its engines'
          : 'works, without engines'
        : 'unavailable',
      meaning: native.ok
        ? loadNativeHelper().helper?.engines
          ? 'the C helper sets SO_REUSEPORT (--binder native); its accept loop and epoll client keep up with C (--engine native)'
          : 'the C helper sets SO_REUSEPORT (--binder native); this build has no engines, so serve and load run in JavaScript: `npm rebuild`'
        : `${native.reason}${builtin.ok ? '' : ': with no builtin binder either, nothing can bind with SO_REUSEPORT'}`,
    },
    {
      id: 'root',
      label: 'Root',
      status: root ? 'ok' : 'warn',
      value: root ? 'yes' : `no (uid ${process.getuid?.() ?? '?'})`,
      meaning: root
        ? 'the cross-user experiment can create sockets as other uids'
        : 'the cross-user experiment will be skipped: it needs real root to create sockets as other uids',
    },
    {
      id: 'netns',
      label: 'Private network namespace',
      status: netns.ok ? 'ok' : 'warn',
      value: netns.ok ? `works (${netns.how})` : 'unavailable',
      meaning: netns.ok
        ? "scenarios run in their own namespace, with the article's 10.0.0.2 and 10.0.0.3 on its lo"
        : `${netns.reason}; scenarios fall back to the host's loopback with 127.0.0.2/127.0.0.3 standing in`,
    },
    {
      id: 'sysctl.tcp_migrate_req',
      label: 'net.ipv4.tcp_migrate_req',
      status: 'info',
      value: migrate ?? 'not present',
      meaning:
        migrate === '1'
          ? 'when a listener of a group closes, its queued connections move to another member'
          : 'when a listener of a group closes, connections still queued on it are reset (scenarios set this per namespace when they need it)',
    },
    {
      id: 'sysctl.ip_local_port_range',
      label: 'Ephemeral ports',
      status: 'info',
      value: ports?.replace(/\s+/, '-') ?? 'unknown',
      meaning: `${portCount(ports)} source ports for client connections to one address:port; the hash that picks a listener uses them`,
    },
    {
      id: 'nofile',
      label: 'Open-file limit',
      status: limit.soft !== undefined && limit.soft < 1024 ? 'warn' : 'ok',
      value: `soft ${limit.soft ?? '?'}, hard ${limit.hard ?? '?'}`,
      meaning: 'caps `load --concurrency`; load raises the soft limit to the hard one when it needs to',
    },
  ];
  return { checks, ready: kernelHasReuseport && (builtin.ok || native.ok) };
}

function readSysctl(path: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/${path}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function portCount(range: string | undefined): string {
  const [low, high] = (range ?? '').split(/\s+/).map(Number);
  return low !== undefined && high !== undefined && high >= low ? String(high - low + 1) : 'an unknown number of';
}

function openFileLimit(): { soft?: number; hard?: number } {
  const helper = loadNativeHelper().helper;
  if (helper) return helper.getOpenFileLimit();
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const [soft, hard] = line?.replace('Max open files', '').trim().split(/\s+/).map(Number) ?? [];
    return { ...(soft !== undefined ? { soft } : {}), ...(hard !== undefined ? { hard } : {}) };
  } catch {
    return {};
  }
}

/** Can this user make a private network namespace and bring its lo up (as the scenario runner will)? */
/**
 * What to do when no private network namespace can be made. Root is never
 * told to run as root: for root, what is missing is the permission to
 * unshare (a container or a user-namespace limit forbids it).
 */
export function namespaceRemedy(root: boolean = isRoot()): string {
  return root
    ? 'run it where `unshare --net` works (not inside a container or user namespace that forbids it)'
    : 'run as root, or where unprivileged user namespaces are allowed';
}

/** The one-line refusal when a private namespace was demanded and the probe failed with `reason`. */
export function noNamespaceMessage(reason: string, root: boolean = isRoot()): string {
  return `no private network namespace can be made here (${reason}); ${namespaceRemedy(root)}, or use --isolation host`;
}

export async function probeNamespace(): Promise<
  { ok: true; how: string; args: string[] } | { ok: false; reason: string }
> {
  const { execa } = await import('execa');
  const attempts = isRoot() ? [['--net']] : [['--net', '--map-root-user']];
  const tool = loopbackTool();
  // The same code the runner uses inside its namespace, run under unshare.
  const setUp =
    tool === 'native helper'
      ? [
          process.execPath,
          '-e',
          'import(process.argv[1]).then((m) => m.configureLoopback([])).catch((e) => { process.stderr.write(e.message + "\\n"); process.exitCode = 1; })',
          new URL('./loopback.js', import.meta.url).href,
        ]
      : ['ip', 'link', 'set', 'lo', 'up'];
  let reason = 'unshare is not installed';
  for (const args of attempts) {
    try {
      await execa('unshare', [...args, '--', ...setUp], {
        timeout: 10_000,
        stdin: 'ignore',
        env: nodeChildEnv(),
        extendEnv: false,
      });
      return { ok: true, how: `unshare ${args.join(' ')}, lo set up by the ${tool}`, args };
    } catch (err) {
      const e = err as { code?: string; stderr?: string; shortMessage?: string };
      const message = (e.stderr || e.shortMessage || 'unknown error').trim().split('\n')[0] ?? '';
      reason =
        e.code === 'ENOENT'
          ? 'unshare is not installed (util-linux)'
          : tool === 'ip' && /failed to execute ip/.test(message)
            ? 'the native helper is not available to bring lo up, and neither is `ip` (iproute2)'
            : `\`unshare ${args.join(' ')}\` failed: ${message}`;
    }
  }
  return { ok: false, reason };
}
