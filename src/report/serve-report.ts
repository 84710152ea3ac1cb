import { formatHostPort } from '../errors.js';

/** The article's test-server lines, spelling fixed. */
export function startLine(address: string, port: number, pid: number): string {
  return `Start server on ${formatHostPort(address, port)} succeeded, pid is ${pid}`;
}

export function acceptLine(address: string, port: number, pid: number, accepted: number): string {
  return `Server ${formatHostPort(address, port)} (${pid}) accept success: ${accepted}`;
}
