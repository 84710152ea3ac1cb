import { writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { ReuseportError } from '../errors.js';
import type { NetworkSpec } from './schema.js';

/**
 * Prepares the private namespace this process runs in: lo up, the scenario's
 * addresses on lo, its sysctls. Never called on the host.
 */
export async function setUpNamespace(network: NetworkSpec): Promise<void> {
  const { execa } = await import('execa');
  const commands = ['link set lo up'];
  for (const { address } of network.addresses) {
    commands.push(isIP(address) === 6 ? `addr add ${address}/128 dev lo nodad` : `addr add ${address}/32 dev lo`);
  }
  try {
    await execa('ip', ['-batch', '-'], { input: `${commands.join('\n')}\n`, timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: string; shortMessage?: string };
    throw new ReuseportError(`cannot set up the namespace's lo: ${(e.stderr || e.shortMessage || '').trim()}`, {
      code: 'ENETSETUP',
    });
  }
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
