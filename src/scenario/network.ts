import { writeFile } from 'node:fs/promises';
import { ReuseportError } from '../errors.js';
import { configureLoopback } from '../net/loopback.js';
import type { NetworkSpec } from './schema.js';

const PORT_RANGE_SYSCTL = 'net.ipv4.ip_local_port_range';
/** Nothing else lives in the namespace, so every unprivileged port can be a source port. */
export const WIDE_PORT_RANGE = '1024 65535';

/**
 * Prepares the private namespace this process runs in: lo up, the scenario's
 * addresses on lo (native helper, `ip` as fallback), its sysctls. Never called on the host.
 */
export async function setUpNamespace(network: NetworkSpec): Promise<void> {
  await configureLoopback(network.addresses.map(({ address }) => address));
  // A fresh namespace starts with 32768-60999. Every port a client can use is
  // another distinct 4-tuple, hence another independent draw for `balanced`
  // (see expect.ts); the scenario's own sysctls may still set something else.
  const sysctls = { [PORT_RANGE_SYSCTL]: WIDE_PORT_RANGE, ...network.sysctls };
  for (const [key, value] of Object.entries(sysctls)) {
    try {
      await writeFile(`/proc/sys/${key.replaceAll('.', '/')}`, `${value}\n`);
    } catch (err) {
      throw new ReuseportError(`cannot set ${key}=${value} in the namespace: ${(err as Error).message}`, {
        code: 'ENETSETUP',
      });
    }
  }
}
