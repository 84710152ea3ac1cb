import { getSystemErrorName } from 'node:util';

/** Exit codes shared by every command. */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/**
 * The one base class for errors the CLI reports as a single line.
 * `code` is stable for scripts; `exitCode` is what the process exits with.
 */
export class ReuseportError extends Error {
  readonly code: string;
  readonly exitCode: number;
  constructor(message: string, options: { code: string; exitCode?: number; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ReuseportError';
    this.code = options.code;
    this.exitCode = options.exitCode ?? EXIT_FAILURE;
  }
}

/** Bad flags, bad arguments, bad files: exit code 2. */
export class UsageError extends ReuseportError {
  constructor(message: string, code = 'EUSAGE') {
    super(message, { code, exitCode: EXIT_USAGE });
    this.name = 'UsageError';
  }
}

/**
 * A failed syscall. Keeps Node's convention: `code` is the errno name,
 * `errno` is the negative errno number (as libuv reports it), `syscall` names the call.
 */
export class KernelError extends ReuseportError {
  readonly errno: number;
  readonly syscall: string;
  readonly address: string | undefined;
  readonly port: number | undefined;
  constructor(
    message: string,
    fields: { code: string; errno: number; syscall: string; address?: string; port?: number; exitCode?: number },
  ) {
    super(message, { code: fields.code, exitCode: fields.exitCode ?? EXIT_FAILURE });
    this.name = 'KernelError';
    this.errno = fields.errno;
    this.syscall = fields.syscall;
    this.address = fields.address;
    this.port = fields.port;
  }

  /** From a positive errno as a C helper returns it. */
  static fromErrno(errno: number, syscall: string, where?: { address?: string; port?: number }): KernelError {
    const code = errnoName(errno);
    const at = where?.address !== undefined ? ` ${formatHostPort(where.address, where.port ?? 0)}` : '';
    return new KernelError(`${syscall} ${code}${at}`, { code, errno: -Math.abs(errno), syscall, ...where });
  }

  /** From a Node system error (net, dgram). */
  static fromNode(err: NodeJS.ErrnoException, where?: { address?: string; port?: number }): KernelError {
    const errno = typeof err.errno === 'number' ? err.errno : 0;
    const code = err.code ?? (errno ? errnoName(errno) : 'UNKNOWN');
    return new KernelError(err.message, {
      code,
      errno: errno > 0 ? -errno : errno,
      syscall: err.syscall ?? 'unknown',
      ...where,
    });
  }
}

export function errnoName(errno: number): string {
  try {
    return getSystemErrorName(-Math.abs(errno));
  } catch {
    return `E${Math.abs(errno)}`;
  }
}

export function formatHostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

export function isErrnoException(err: unknown): err is NodeJS.ErrnoException {
  return err instanceof Error && typeof (err as NodeJS.ErrnoException).code === 'string';
}
