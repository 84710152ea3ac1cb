import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';

export interface UserIdentity {
  uid: number;
  gid: number;
  name: string;
}

/**
 * Resolves a user name or numeric uid through /etc/passwd. A numeric uid with
 * no passwd entry is allowed (the cross-user experiment only needs a distinct
 * uid); its gid is taken to be the same number.
 */
export function resolveUser(spec: string | number, passwdPath = '/etc/passwd'): UserIdentity {
  const text = String(spec).trim();
  let passwd = '';
  try {
    passwd = readFileSync(passwdPath, 'utf8');
  } catch {
    // No passwd file: only numeric uids can be resolved.
  }
  const byNumber = /^\d+$/.test(text);
  for (const line of passwd.split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name === undefined || uid === undefined || gid === undefined) continue;
    if (byNumber ? uid === text : name === text) return { uid: Number(uid), gid: Number(gid), name };
  }
  if (byNumber && Number(text) <= 0xfffffffe) return { uid: Number(text), gid: Number(text), name: text };
  throw new UsageError(`--user: no user named "${text}" in ${passwdPath}; give an existing name or a numeric uid`);
}

/**
 * Becomes `user` for good. Called before the socket is created: the kernel
 * records a socket's owner uid at socket() time, and the cross-user bind check
 * compares those owners.
 */
export function dropPrivileges(user: UserIdentity): void {
  if (typeof process.setuid !== 'function' || typeof process.getuid !== 'function') return;
  if (process.getuid() === user.uid) return;
  process.setgroups?.([user.gid]);
  process.setgid?.(user.gid);
  process.setuid(user.uid);
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}
