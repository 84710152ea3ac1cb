import { isIP } from 'node:net';
import { UsageError } from '../errors.js';

export type Protocol = 'tcp' | 'udp';

export function parsePort(text: string, flag = '--port'): number {
  const port = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new UsageError(`${flag} must be a port number from 0 to 65535, got "${text}"`);
  }
  return port;
}

export function parseHost(text: string, flag = '--host'): string {
  const host = text.trim().replace(/^\[(.*)\]$/, '$1');
  if (isIP(host) === 0) {
    throw new UsageError(`${flag} must be an IPv4 or IPv6 address such as 127.0.0.1, 0.0.0.0 or ::1, got "${text}"`);
  }
  return host;
}

export function parseCount(text: string, flag: string, max = 1_000_000): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : Number.NaN;
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new UsageError(`${flag} must be a whole number from 1 to ${max}, got "${text}"`);
  }
  return value;
}

export function parseProtocol(text: string): Protocol {
  if (text === 'tcp' || text === 'udp') return text;
  throw new UsageError(`--protocol must be tcp or udp, got "${text}"`);
}

export function familyOf(address: string): 4 | 6 {
  return isIP(address) === 6 ? 6 : 4;
}
