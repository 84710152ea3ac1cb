/**
 * Reading a file a user names, refusing what cannot be one of ours: not a
 * regular file (a FIFO would block, /dev/zero never ends), too large, or
 * binary. A file handed to the tool may be anything (/etc/shadow), so callers
 * word their messages from `problem` and never quote what was read.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { isErrnoException } from './errors.js';

export type TextFileProblem =
  | { kind: 'unreadable'; why: string }
  | { kind: 'not-regular' }
  | { kind: 'too-large'; maxBytes: number }
  | { kind: 'binary' };

export class TextFileError extends Error {
  readonly problem: TextFileProblem;
  constructor(problem: TextFileProblem) {
    super(problem.kind);
    this.name = 'TextFileError';
    this.problem = problem;
  }
}

/** The text of `absolute`, at most `maxBytes`; throws TextFileError. */
export async function readTextFile(absolute: string, maxBytes: number): Promise<string> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(absolute, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw new TextFileError({ kind: 'unreadable', why: fileErrorText(err) });
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new TextFileError({ kind: 'not-regular' });
    // /proc files say size 0, so the limit is enforced on what is read, not on what stat says.
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > maxBytes) throw new TextFileError({ kind: 'too-large', maxBytes });
    }
    const bytes = buffer.subarray(0, length);
    if (bytes.includes(0)) throw new TextFileError({ kind: 'binary' });
    return bytes.toString('utf8');
  } catch (err) {
    if (err instanceof TextFileError) throw err;
    throw new TextFileError({ kind: 'unreadable', why: fileErrorText(err) });
  } finally {
    await handle.close();
  }
}

/** Why a file could not be opened or read, in words rather than an errno name where one is common. */
export function fileErrorText(err: unknown): string {
  if (isErrnoException(err)) {
    if (err.code === 'ENOENT') return 'no such file or directory';
    if (err.code === 'EACCES') return 'permission denied';
    if (err.code === 'EISDIR') return 'is a directory';
    if (err.code === 'ENOTDIR') return 'not a directory';
    return err.code ?? err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

/** The file as shown in messages: relative to the current directory when inside it, else absolute. */
export function displayPath(absolute: string): string {
  const rel = path.relative(process.cwd(), absolute);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : absolute;
}
