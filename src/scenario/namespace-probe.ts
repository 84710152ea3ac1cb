import { probeNamespace } from '../net/doctor.js';
import type { IsolationChoice } from './runner.js';

export type NamespaceProbe = Awaited<ReturnType<typeof probeNamespace>>;

/**
 * Asks whether private namespaces can be made here (null with --isolation
 * host). It starts a process under unshare, so the CLI starts it first and
 * lets it run while the scenario modules load and the files are checked.
 * Light on purpose: no schema, no zod.
 */
export function startNamespaceProbe(isolation: IsolationChoice): Promise<NamespaceProbe | null> {
  return isolation === 'host' ? Promise.resolve(null) : probeNamespace();
}
