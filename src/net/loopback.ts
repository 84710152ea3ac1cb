import { isIP } from 'node:net';
import { ReuseportError } from '../errors.js';
import { loadNativeHelper } from './native.js';

/** How `lo` gets configured inside a private namespace: the native helper, else iproute2's `ip`. */
export type LoopbackTool = 'native helper' | 'ip';

export function loopbackTool(): LoopbackTool {
  return loadNativeHelper().helper?.netns ? 'native helper' : 'ip';
}

/**
 * Brings `lo` up and puts each address on it (/32 or /128), in the network
 * namespace this process runs in. Uses the native helper's ioctl and netlink
 * calls, so minimal images without iproute2 work; `ip` is the fallback for a
 * missing helper. Throws ReuseportError ENETSETUP.
 */
export async function configureLoopback(addresses: readonly string[]): Promise<void> {
  const netns = loadNativeHelper().helper?.netns;
  if (netns) {
    let step = 'bring lo up';
    try {
      netns.linkUp('lo');
      for (const address of addresses) {
        step = `add ${address} to lo`;
        netns.addAddress('lo', address, isIP(address) === 6 ? 128 : 32);
      }
    } catch (err) {
      throw new ReuseportError(`cannot ${step} in the namespace: ${(err as Error).message}`, { code: 'ENETSETUP' });
    }
    return;
  }
  const { execa } = await import('execa');
  const commands = ['link set lo up'];
  for (const address of addresses) {
    commands.push(isIP(address) === 6 ? `addr add ${address}/128 dev lo nodad` : `addr add ${address}/32 dev lo`);
  }
  try {
    await execa('ip', ['-batch', '-'], { input: `${commands.join('\n')}\n`, timeout: 10_000 });
  } catch (err) {
    const e = err as { code?: string; stderr?: string; shortMessage?: string };
    const why =
      e.code === 'ENOENT'
        ? 'the native helper is not available and `ip` (iproute2) is not installed'
        : (e.stderr || e.shortMessage || '').trim();
    throw new ReuseportError(`cannot set up the namespace's lo: ${why}`, { code: 'ENETSETUP' });
  }
}
