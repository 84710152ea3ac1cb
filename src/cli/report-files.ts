/**
 * Report files written after a run (--html, --markdown, $GITHUB_STEP_SUMMARY).
 * Checked before the run, so that a typo in a path costs nothing, and
 * written whole: a reader never sees half a report, even if the run is
 * killed while writing.
 */
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { access, appendFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isErrnoException, UsageError } from '../errors.js';
import { safeText } from '../report/untrusted-text.js';

/** Throws a UsageError (exit 2) unless `file` can be created or replaced. */
export async function checkWritable(file: string, flag: string): Promise<void> {
  const absolute = path.resolve(file);
  const info = await stat(absolute).catch(() => undefined);
  if (info?.isDirectory()) throw new UsageError(`${flag} ${safeText(file)} is a directory; give a file name`);
  const target = info ? absolute : path.dirname(absolute);
  try {
    await access(target, constants.W_OK);
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
