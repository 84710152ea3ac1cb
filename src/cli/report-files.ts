/**
 * Report files written after a run (--html, --markdown, $GITHUB_STEP_SUMMARY).
 * Checked before the run, so that a typo in a path costs nothing, and
 * written whole: a reader never sees half a report, even if the run is
 * killed while writing.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, appendFile, lstat, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isErrnoException, UsageError } from '../errors.js';
import { safeText } from '../report/untrusted-text.js';

const REPORT_EXAMPLE: Record<string, string> = {
  '--junit': 'report.xml',
  '--html': 'report.html',
  '--markdown': 'summary.md',
};

/**
 * Throws a UsageError (exit 2) unless `file` can be created or replaced. The
 * report is renamed into place, so what counts is the folder: whatever sits
 * at the path (a symlink another user planted included) is replaced, never
 * followed.
 */
export async function checkWritable(file: string, flag: string): Promise<void> {
  if (file.trim() === '')
    throw new UsageError(
      `${flag} needs a file name, got an empty one; give a path such as ${flag} ${REPORT_EXAMPLE[flag] ?? 'report.txt'}`,
    );
  const absolute = path.resolve(file);
  const info = await lstat(absolute).catch(() => undefined);
  if (info?.isDirectory()) throw new UsageError(`${flag} ${safeText(file)} is a directory; give a file name`);
  try {
    await access(path.dirname(absolute), constants.W_OK);
  } catch (err) {
    const why = isErrnoException(err) && err.code === 'ENOENT' ? 'its folder does not exist' : 'it is not writable';
    throw new UsageError(`cannot write ${flag} ${safeText(file)}: ${why}`);
  }
}

/** Writes a temporary file beside `file`, then renames it over `file`. */
export async function writeFileAtomic(file: string, content: string, flag: string): Promise<void> {
  const absolute = path.resolve(file);
  const temporary = path.join(
    path.dirname(absolute),
    `.${path.basename(absolute)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
  );
  try {
    await writeFile(temporary, content, { flag: 'wx' });
    await rename(temporary, absolute);
  } catch (err) {
    await rm(temporary, { force: true });
    throw new UsageError(`cannot write ${flag} ${safeText(file)}: ${describe(err)}`, 'EREPORTFILE');
  }
}

/** Appends to a file someone else owns (a CI step summary); it is never replaced. */
export async function appendReport(file: string, content: string, what: string): Promise<void> {
  try {
    await appendFile(file, content);
  } catch (err) {
    throw new UsageError(`cannot append to ${what} ${safeText(file)}: ${describe(err)}`, 'EREPORTFILE');
  }
}

function describe(err: unknown): string {
  return isErrnoException(err) ? (err.code ?? err.message) : String(err);
}
