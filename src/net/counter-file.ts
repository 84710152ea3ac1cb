import { closeSync, constants, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COUNTER_BYTES } from './worker-protocol.js';

/**
 * O_TMPFILE (Linux >= 3.11): an inode with no name from the first instant, so
 * nothing is left behind whoever is killed when. Node does not export the
 * constant; this is its value on every Linux architecture Node supports
 * (__O_TMPFILE | O_DIRECTORY from the generic fcntl.h).
 */
const O_TMPFILE = 0o20200000;
/** Filesystems without O_TMPFILE answer one of these; then a name is created and removed at once. */
const NO_TMPFILE = new Set(['EOPNOTSUPP', 'EISDIR', 'EINVAL', 'ENOTSUP']);

/** One worker's counter as the parent holds it: the fd goes to the worker, the parent reads it. */
export class CounterFile {
  private open = true;

  private constructor(readonly fd: number) {}

  /**
   * Opens an unnamed 8-byte counter holding 0, in the first of `directories`
   * this user may write (a TMPDIR that is not ours, e.g. after `runuser`, must
   * not stop a worker from starting). Throws the fs error (EMFILE, ENOSPC, ...).
   */
  static create(directories: readonly string[] = counterDirectories()): CounterFile {
    const fd = openInFirstWritable(directories);
    try {
      // Written, not truncated: the page exists now, so neither a mapping nor a later write can fail for space.
      writeCount(fd, 0);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    return new CounterFile(fd);
  }

  /** Throws once closed: the fd number may already belong to another file. */
  read(): number {
    if (!this.open) throw new Error('counter file read after close');
    return readCount(this.fd);
  }

  /** Idempotent. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    closeSync(this.fd);
  }
}

// One scratch word for every write: a worker counts each connection, and
// writeSync is synchronous, so nothing else can touch it in between.
const scratchWord = new BigUint64Array(1);
const scratchBytes = new Uint8Array(scratchWord.buffer);

/** The count as the native accept loop keeps it: a u64 in host byte order at offset 0. */
export function writeCount(fd: number, count: number): void {
  scratchWord[0] = BigInt(count);
  writeSync(fd, scratchBytes, 0, COUNTER_BYTES, 0);
}

export function readCount(fd: number): number {
  const word = new BigUint64Array(1);
  const bytes = new Uint8Array(word.buffer);
  const n = readSync(fd, bytes, 0, COUNTER_BYTES, 0);
  if (n !== COUNTER_BYTES) throw new Error(`counter file: read ${n} of ${COUNTER_BYTES} bytes`);
  return Number(word[0]);
}

/** Errors that say "not this folder", so the next one is tried. */
const NOT_HERE = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOENT', 'ENOTDIR']);

/** TMPDIR first, as users expect; then the two folders every Linux has for this. */
export function counterDirectories(): string[] {
  return [...new Set([tmpdir(), '/dev/shm', '/tmp'])];
}

function openInFirstWritable(directories: readonly string[]): number {
  let last: unknown = new Error('no folder for a counter file');
  for (const directory of directories) {
    try {
      return openUnnamed(directory);
    } catch (err) {
      if (!NOT_HERE.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
      last = err;
    }
  }
  throw last;
}

function openUnnamed(directory: string): number {
  try {
    return openSync(directory, constants.O_RDWR | O_TMPFILE, 0o600);
  } catch (err) {
    if (!NO_TMPFILE.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
  }
  // Web Crypto, not node:crypto: a worker imports this module too, and loading
  // OpenSSL up front would cost it about 2 MB of RSS for a name it never makes.
  const suffix = Buffer.from(globalThis.crypto.getRandomValues(new Uint8Array(6))).toString('hex');
  const path = join(directory, `reuseport-counter-${process.pid}-${suffix}`);
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600);
  unlinkSync(path);
  return fd;
}
