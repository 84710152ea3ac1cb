import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { endianness } from 'node:os';
import type { Protocol } from './address.js';

/** A socket of some process that receives on a port: a TCP listener, or an unconnected bound UDP socket. */
export interface PortListener {
  protocol: Protocol;
  address: string;
  port: number;
  /** Owner uid of the socket, as the kernel recorded it at socket(). */
  uid: number;
  inode: number;
  /** The process holding it; null when it could not be found (another user's /proc/PID/fd is closed to us). */
  pid: number | null;
  /** Its /proc/PID/comm. */
  command: string | null;
}

/** st column of /proc/net/{tcp,udp}: TCP_LISTEN for TCP, TCP_CLOSE (bound, unconnected) for UDP. */
const RECEIVING_STATE: Record<Protocol, string> = { tcp: '0A', udp: '07' };

/** Every socket in this network namespace that receives on `port`, with the process that holds it where visible. */
export function listenersOn(protocol: Protocol, port: number): PortListener[] {
  const found: Omit<PortListener, 'pid' | 'command'>[] = [];
  for (const family of ['', '6']) {
    let table: string;
    try {
      table = readFileSync(`/proc/net/${protocol}${family}`, 'utf8');
    } catch {
      continue; // no IPv6 in this kernel
    }
    for (const line of table.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const [local, remote, state, , , , uid, , inode] = fields.slice(1);
      if (!local || !remote || state !== RECEIVING_STATE[protocol] || !inode) continue;
      if (protocol === 'udp' && !/^0+:0000$/.test(remote)) continue;
      const [hexAddress, hexPort] = local.split(':');
      if (!hexAddress || !hexPort || Number.parseInt(hexPort, 16) !== port) continue;
      found.push({ protocol, address: decodeAddress(hexAddress), port, uid: Number(uid), inode: Number(inode) });
    }
  }
  if (found.length === 0) return [];
  const owners = socketOwners(new Set(found.map((f) => f.inode)));
  return found.map((f) => {
    const pid = owners.get(f.inode) ?? null;
    return { ...f, pid, command: pid === null ? null : commandOf(pid) };
  });
}

/** /proc/net prints each 32-bit word of the address in host byte order. */
function decodeAddress(hex: string): string {
  const bytes = Buffer.from(hex, 'hex');
  if (endianness() === 'LE') for (let i = 0; i < bytes.length; i += 4) bytes.subarray(i, i + 4).reverse();
  if (bytes.length === 4) return [...bytes].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return compressIpv6(groups);
}

function compressIpv6(groups: string[]): string {
  let best = { start: -1, length: 0 };
  for (let i = 0; i < groups.length; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > best.length && j - i > 1) best = { start: i, length: j - i };
    i = j;
  }
  if (best.start < 0) return groups.join(':');
  const head = groups.slice(0, best.start).join(':');
  const tail = groups.slice(best.start + best.length).join(':');
  return `${head}::${tail}`;
}

/** inode -> pid, from the socket links in /proc/PID/fd that we may read. */
function socketOwners(inodes: Set<number>): Map<number, number> {
  const owners = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${entry}/fd`);
    } catch {
      continue; // gone, or not ours to look at
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = readlinkSync(`/proc/${entry}/fd/${fd}`);
      } catch {
        continue;
      }
      const match = /^socket:\[(\d+)\]$/.exec(target);
      if (match && inodes.has(Number(match[1])) && !owners.has(Number(match[1]))) {
        owners.set(Number(match[1]), Number(entry));
      }
    }
    if (owners.size === inodes.size) break;
  }
  return owners;
}

function commandOf(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return null;
  }
}
