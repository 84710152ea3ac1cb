/**
 * Report files written after a run (--html, --markdown, $GITHUB_STEP_SUMMARY).
 * Checked before the run, so that a typo in a path costs nothing, and
 * written whole: a reader never sees half a report, even if the run is
 * killed while writing.
 */
import { randomBytes } from 'node:crypto';
import { appendFile, lstat, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isErrnoException, UsageError } from '../errors.js';
import { safeText } from '../untrusted-text.js';

const REPORT_EXAMPLE: Record<string, string> = {
  '--junit': 'report.xml',
  '--html': 'report.html',
  '--markdown': 'summary.md',
};

/**
 * Throws a UsageError (exit 2) unless `file` can be created or replaced. The
 * report is renamed into place, so what counts is the folder: whatever sits
 * at the path (a symlink another user planted included) is replaced, never
 * followed. The folder is tried by creating (and removing) a file in it, as
 * the write will: access(2) says yes to root everywhere, also in /proc.
 */
export async function checkWritable(file: string, flag: string): Promise<void> {
  if (file.trim() === '')
    throw new UsageError(
      `${flag} needs a file name, got an empty one; give a path such as ${flag} ${REPORT_EXAMPLE[flag] ?? 'report.txt'}`,
    );
  const absolute = path.resolve(file);
  const info = await lstat(absolute).catch(() => undefined);
  if (info?.isDirectory()) throw new UsageError(`${flag} ${safeText(file)} is a directory; give a file name`);
  const folder = path.dirname(absolute);
  const trial = temporaryBeside(absolute);
  try {
    await writeFile(trial, '', { flag: 'wx' });
  } catch (err) {
    const code = isErrnoException(err) ? err.code : undefined;
    const folderExists = await stat(folder).then(
      (s) => s.isDirectory(),
      () => false,
    );
    const why =
      code === 'ENOTDIR'
        ? 'a part of its folder path is a file, not a folder'
        : !folderExists
          ? 'its folder does not exist'
          : `no file can be created in ${safeText(folder)} (${describe(err)})`;
    throw new UsageError(`cannot write ${flag} ${safeText(file)}: ${why}; give a path in a writable folder`);
  }
  await rm(trial, { force: true });
}

/** A name for a temporary file in the folder of `absolute`, that nothing else uses. */
function temporaryBeside(absolute: string): string {
  return path.join(
    path.dirname(absolute),
    `.${path.basename(absolute)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
  );
}

/** Writes a temporary file beside `file`, then renames it over `file`. */
export async function writeFileAtomic(file: string, content: string, flag: string): Promise<void> {
  const temporary = temporaryBeside(path.resolve(file));
  try {
    await writeFile(temporary, content, { flag: 'wx' });
    await rename(temporary, path.resolve(file));
  } catch (err) {
    // The folder may have gone, or turned into a file: nothing to remove then.
    await rm(temporary, { force: true }).catch(() => {});
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
