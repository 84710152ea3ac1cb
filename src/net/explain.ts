import { EXIT_FAILURE, EXIT_USAGE, formatHostPort } from '../errors.js';

export interface BindFailureContext {
  address: string;
  port: number;
  reusePort: boolean;
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
      return {
        message: `port ${at.port} is privileged and this process is not root (EACCES); use a port >= 1024 or run as root`,
        exitCode: EXIT_USAGE,
      };
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
