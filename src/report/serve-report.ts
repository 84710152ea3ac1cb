import { formatHostPort } from '../errors.js';
import type { WorkerExit } from '../net/worker-pool.js';

/** Every line of serve --json carries it; bump it when a line's shape changes incompatibly. */
export const SERVE_JSON_VERSION = 1;

/** The article's test-server lines, spelling fixed. */
export function startLine(address: string, port: number, pid: number): string {
  return `Start server on ${formatHostPort(address, port)} succeeded, pid is ${pid}`;
}

export function acceptLine(address: string, port: number, pid: number, accepted: number): string {
  return `Server ${formatHostPort(address, port)} (${pid}) accept success: ${accepted}`;
}

/**
 * A worker's final line: the article's, plus how it ended when that was not a
 * clean stop. Null for a worker that never had a socket (nothing to count).
 */
export function exitLine(address: string, port: number, exit: WorkerExit): string | null {
  if (exit.pid === null || exit.reason === 'bind-failed' || exit.reason === 'spawn-failed') return null;
  const line = acceptLine(address, port, exit.pid, exit.accepted);
  if (exit.reason === 'killed') return `${line} (killed: ${exit.detail ?? exit.signal})`;
  if (exit.reason === 'crashed') return `${line} (died: ${exit.detail ?? exit.signal ?? `exit code ${exit.exitCode}`})`;
  return line;
}
