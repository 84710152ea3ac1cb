import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';

export interface UserIdentity {
  uid: number;
  gid: number;
  name: string;
}

/** The highest uid a user can have: (uid_t)-1 = 4294967295 means "no change" to setuid() and chown(). */
export const MAX_UID = 0xfffffffe;

/**
 * Resolves a user name or numeric uid through /etc/passwd. A numeric uid with
 * no passwd entry is allowed (the cross-user experiment only needs a distinct
 * uid); its gid is taken to be the same number. Messages name no flag: the
 * caller says where the value came from.
 */
export function resolveUser(spec: string | number, passwdPath = '/etc/passwd'): UserIdentity {
  const text = String(spec).trim();
  if (/^[-+]?\d+$/.test(text) && !(/^\d+$/.test(text) && Number(text) <= MAX_UID)) {
    throw new UsageError(
      `${shorten(text)} is not a valid uid: uids go from 0 to ${MAX_UID} (${MAX_UID + 1} is (uid_t)-1, "no change"); give a user name or a uid in that range`,
    );
  }
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
  if (byNumber) return { uid: Number(text), gid: Number(text), name: text };
  throw new UsageError(`no user named "${shorten(text)}" in ${passwdPath}; give an existing name or a numeric uid`);
}

/** A name as typed, cut short and with control characters escaped: it goes to a terminal. */
function shorten(text: string): string {
  const cut = text.length > 40 ? `${text.slice(0, 40)}…` : text;
  return JSON.stringify(cut).slice(1, -1);
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
