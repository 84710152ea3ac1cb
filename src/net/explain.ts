import { readFileSync } from 'node:fs';
import { EXIT_FAILURE, EXIT_USAGE, formatHostPort } from '../errors.js';
import { isRoot, type UserIdentity } from './users.js';

export interface BindFailureContext {
  address: string;
  port: number;
  reusePort: boolean;
  /** The user the socket was created as, when not the caller. */
  user?: UserIdentity;
}

/** Per network namespace; the kernel's default. */
const UNPRIVILEGED_PORT_START_SYSCTL = '/proc/sys/net/ipv4/ip_unprivileged_port_start';
const DEFAULT_UNPRIVILEGED_PORT_START = 1024;

/**
 * The first port bind() allows without CAP_NET_BIND_SERVICE: __inet_bind and
 * __inet6_bind refuse `port < net.ipv4.ip_unprivileged_port_start` with EACCES
 * (inet_port_requires_bind_service, include/net/ip.h).
 */
export function unprivilegedPortStart(): number {
  try {
    const value = Number(readFileSync(UNPRIVILEGED_PORT_START_SYSCTL, 'utf8').trim());
    return Number.isInteger(value) ? value : DEFAULT_UNPRIVILEGED_PORT_START;
  } catch {
    return DEFAULT_UNPRIVILEGED_PORT_START;
  }
}

/** Says in human terms why a bind failed, and whether it is the user's input (exit 2) or the situation (exit 1). */
export function explainBindError(code: string, at: BindFailureContext): { message: string; exitCode: number } {
  const where = formatHostPort(at.address, at.port);
  switch (code) {
    case 'EADDRINUSE':
      return {
        message: at.reusePort
          ? `${where} is held by a socket without SO_REUSEPORT or owned by another user (EADDRINUSE)`
          : `${where} is already bound and this socket has no SO_REUSEPORT, so it cannot share the port (EADDRINUSE)`,
        exitCode: EXIT_FAILURE,
      };
    case 'EADDRNOTAVAIL':
      return {
        message: `${at.address} is not an address of this machine (EADDRNOTAVAIL); use 0.0.0.0, 127.0.0.1 or an address listed by \`ip addr\``,
        exitCode: EXIT_USAGE,
      };
    case 'EACCES':
      return explainAccessDenied(at, where);
    case 'EPERM':
      return { message: `the kernel refused to set up ${where} (EPERM)`, exitCode: EXIT_FAILURE };
    case 'EAFNOSUPPORT':
      return {
        message: `this kernel has no support for the address family of ${where} (EAFNOSUPPORT)`,
        exitCode: EXIT_USAGE,
      };
    default:
      return { message: `cannot bind ${where} (${code})`, exitCode: EXIT_FAILURE };
  }
}

/** EACCES from bind: a privileged port, said differently to whom it concerns. */
function explainAccessDenied(at: BindFailureContext, where: string): { message: string; exitCode: number } {
  const start = unprivilegedPortStart();
  const sysctl = `net.ipv4.ip_unprivileged_port_start (${start})`;
  const lower = `\`sysctl -w net.ipv4.ip_unprivileged_port_start=${at.port}\``;
  if (at.port >= start || at.port === 0) {
    return {
      message: `the kernel refused to bind ${where} (EACCES) although the port is not privileged here: a security policy (SELinux, AppArmor or a cgroup BPF program) forbids it`,
      exitCode: EXIT_FAILURE,
    };
  }
  if (at.user) {
    // setuid() to a non-root uid clears every capability, CAP_NET_BIND_SERVICE included.
    return {
      message: `user ${at.user.name} cannot bind port ${at.port}: it is below ${sysctl} and a process that became another user has no CAP_NET_BIND_SERVICE (EACCES); use a port >= ${start}, or lower it with ${lower}`,
      exitCode: EXIT_USAGE,
    };
  }
  if (isRoot()) {
    return {
      message: `port ${at.port} is below ${sysctl} and this root process lacks CAP_NET_BIND_SERVICE (EACCES), e.g. in a container or a user namespace; use a port >= ${start}, or lower it with ${lower}`,
      exitCode: EXIT_FAILURE,
    };
  }
  return {
    message: `port ${at.port} is privileged (below ${sysctl}) and this process is not root (EACCES); use a port >= ${start}, run as root, or lower it with ${lower}`,
    exitCode: EXIT_USAGE,
  };
}

/** Why a worker process could not be started (fork, or its counter file). */
export function explainSpawnError(code: string, workerId: number): { message: string; exitCode: number } {
  const cannot = `cannot start worker ${workerId}`;
  switch (code) {
    case 'EMFILE':
      return {
        message: `${cannot}: this process ran out of open files (EMFILE; it keeps 3 per worker); raise the limit, e.g. \`ulimit -n 4096\`, or start fewer workers`,
        exitCode: EXIT_FAILURE,
      };
    case 'ENFILE':
      return {
        message: `${cannot}: the system's table of open files is full (ENFILE); close other programs or raise fs.file-max`,
        exitCode: EXIT_FAILURE,
      };
    case 'EAGAIN':
      return {
        message: `${cannot}: the system refused another process (EAGAIN); raise \`ulimit -u\` or start fewer workers`,
        exitCode: EXIT_FAILURE,
      };
    case 'ENOMEM':
      return { message: `${cannot}: not enough memory (ENOMEM); start fewer workers`, exitCode: EXIT_FAILURE };
    default:
      return { message: `${cannot} (${code})`, exitCode: EXIT_FAILURE };
  }
}
