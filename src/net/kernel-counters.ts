// Kernel counters for scenario steps, read from procfs. /proc/net is
// /proc/self/net, so a process inside a network namespace reads that
// namespace's counters and sockets.
import { readFileSync } from 'node:fs';

/** The TcpExt counters scenario steps report, named as in /proc/net/netstat. */
export const TCP_EXT_COUNTERS = [
  'TCPMigrateReqSuccess',
  'TCPMigrateReqFailure',
  'ListenOverflows',
  'ListenDrops',
] as const;
export type TcpExtCounter = (typeof TCP_EXT_COUNTERS)[number];

/** Section -> counter -> value, from the header/value line pairs of /proc/net/netstat or /proc/net/snmp. */
export function parseNetstat(text: string): Map<string, Map<string, number>> {
  const sections = new Map<string, Map<string, number>>();
  const lines = text.split('\n');
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const names = lines[i]!.trim().split(/\s+/);
    const values = lines[i + 1]!.trim().split(/\s+/);
    const section = names[0]?.replace(/:$/, '');
    if (!section || values[0] !== names[0] || names.length !== values.length) continue;
    const counters = new Map<string, number>();
    for (let k = 1; k < names.length; k++) counters.set(names[k]!, Number(values[k]));
    sections.set(section, counters);
  }
  return sections;
}

/**
 * The TcpExt counters now. A counter this kernel lacks (TCPMigrateReq* before
 * 5.14) is absent from the result rather than reported as 0.
 */
export function readTcpExtCounters(path = '/proc/net/netstat'): Partial<Record<TcpExtCounter, number>> {
  const tcpExt = parseNetstat(readFileSync(path, 'utf8')).get('TcpExt');
  const out: Partial<Record<TcpExtCounter, number>> = {};
  for (const name of TCP_EXT_COUNTERS) {
    const value = tcpExt?.get(name);
    if (value !== undefined) out[name] = value;
  }
  return out;
}

/** after - before, per counter present in both. */
export function counterDeltas(
  before: Partial<Record<TcpExtCounter, number>>,
  after: Partial<Record<TcpExtCounter, number>>,
): Partial<Record<TcpExtCounter, number>> {
  const out: Partial<Record<TcpExtCounter, number>> = {};
  for (const name of TCP_EXT_COUNTERS) {
    const a = before[name];
    const b = after[name];
    if (a !== undefined && b !== undefined) out[name] = b - a;
  }
  return out;
}

/** The socket state numbers of /proc/net/tcp (include/net/tcp_states.h). */
export const TCP_STATE_TIME_WAIT = 0x06;

export interface ProcTcpSocket {
  localPort: number;
  remotePort: number;
  state: number;
}

/** The sockets listed in /proc/net/tcp or tcp6 text. */
export function parseProcNetTcp(text: string): ProcTcpSocket[] {
  const out: ProcTcpSocket[] = [];
  for (const line of text.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 4) continue;
    const local = fields[1]!.split(':');
    const remote = fields[2]!.split(':');
    out.push({
      localPort: Number.parseInt(local[local.length - 1]!, 16),
      remotePort: Number.parseInt(remote[remote.length - 1]!, 16),
      state: Number.parseInt(fields[3]!, 16),
    });
  }
  return out;
}

/**
 * TIME_WAIT sockets whose local port (or, with side 'remote', remote port)
 * is `port`, over /proc/net/tcp and tcp6 (a missing tcp6 counts as none).
 */
export function countTimeWait(
  port: number,
  options: { side?: 'local' | 'remote'; paths?: readonly string[] } = {},
): number {
  let count = 0;
  for (const path of options.paths ?? ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // no IPv6 in this kernel
      throw err;
    }
    for (const s of parseProcNetTcp(text)) {
      const p = options.side === 'remote' ? s.remotePort : s.localPort;
      if (s.state === TCP_STATE_TIME_WAIT && p === port) count++;
    }
  }
  return count;
}
