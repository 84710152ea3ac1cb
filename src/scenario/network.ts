import { writeFile } from 'node:fs/promises';
import { ReuseportError } from '../errors.js';
import { configureLoopback } from '../net/loopback.js';
import type { NetworkSpec } from './schema.js';

/**
 * Prepares the private namespace this process runs in: lo up, the scenario's
 * addresses on lo (native helper, `ip` as fallback), its sysctls. Never called on the host.
 */
export async function setUpNamespace(network: NetworkSpec): Promise<void> {
  await configureLoopback(network.addresses.map(({ address }) => address));
  for (const [key, value] of Object.entries(network.sysctls)) {
    try {
      await writeFile(`/proc/sys/${key.replaceAll('.', '/')}`, `${value}\n`);
    } catch (err) {
      throw new ReuseportError(`cannot set ${key}=${value} in the namespace: ${(err as Error).message}`, {
        code: 'ENETSETUP',
      });
    }
  }
}
