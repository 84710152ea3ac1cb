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

// IP literal helpers, here rather than in the scenario schema so that the
// scenario runner and its traffic clients can use them without loading zod.

/** 4, 6, or 0 when not an IP literal (Node's net.isIP). */
export function ipFamily(address: string): 0 | 4 | 6 {
  return isIP(address) as 0 | 4 | 6;
}

/** Canonical text of an IP literal, for comparisons (IPv6 compressed and lowercased). */
export function canonicalAddress(address: string): string {
  if (isIP(address) !== 6) return address;
  try {
    const host = new URL(`http://[${address}]/`).hostname;
    return host.slice(1, -1);
  } catch {
    return address.toLowerCase(); // e.g. a zone id, which URL does not accept
  }
}

export function sameAddress(a: string, b: string): boolean {
  return canonicalAddress(a) === canonicalAddress(b);
}

/** 0.0.0.0 or :: (any spelling). */
export function isWildcard(address: string): boolean {
  const c = canonicalAddress(address);
  return c === '0.0.0.0' || c === '::';
}

/** 127.0.0.0/8, ::1, or an IPv4-mapped 127.0.0.0/8 address. */
export function isLoopback(address: string): boolean {
  const family = isIP(address);
  if (family === 4) return address.startsWith('127.');
  if (family === 6) {
    const c = canonicalAddress(address);
    if (c === '::1') return true;
    const mapped = /^::ffff:(.+)$/.exec(c);
    if (mapped) {
      const tail = mapped[1]!;
      if (isIP(tail) === 4) return tail.startsWith('127.');
      // URL prints a mapped address as ::ffff:7f00:1
      return /^7f[0-9a-f]{2}:/.test(tail);
    }
  }
  return false;
}
