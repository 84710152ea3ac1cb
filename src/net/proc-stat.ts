import { readFileSync } from 'node:fs';

/**
 * The fields of /proc/PID/stat after the command name, which may itself hold
 * spaces and parentheses, so the split starts after the last ')': [0] is the
 * state letter (proc(5) field 3), [1] the parent pid, [17] the thread count.
 * Null when the process is gone (or not visible).
 */
export function procStatFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** The one-letter state (R, S, T, Z, ...), or null when the process is gone. */
export function processState(pid: number): string | null {
  return procStatFields(pid)?.[0] ?? null;
}
