import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { KernelError, ReuseportError } from '../errors.js';
import { loadNativeHelper } from './native.js';

/** How `lo` gets configured inside a private namespace: the native helper, else iproute2's `ip`. */
export type LoopbackTool = 'native helper' | 'ip';

export function loopbackTool(): LoopbackTool {
  return loadNativeHelper().helper?.netns ? 'native helper' : 'ip';
}

/** rtm_type of a route the kernel delivers on this host (RTN_LOCAL, include/uapi/linux/rtnetlink.h). */
const RTN_LOCAL = 2;
/** An added address that is still not routed locally after this long fails the set-up. */
export const ADDRESS_READY_TIMEOUT_MS = 10_000;
/** Between two asks; the kernel's work item usually runs within one. */
const ASK_PAUSE_MS = 5;

/** The kernel's answer to "which route would a connect() to this address take?". */
type RouteAnswer = { local: true } | { local: false; answer: string };

/**
 * Resolves once the kernel routes every address locally, the one definition
 * of "an address we put on lo is usable". For IPv6 the RTM_NEWADDR answer comes
 * before that: addrconf_dad_start() only queues the work item that clears the
 * tentative state and inserts the address's local route (addrconf_dad_work ->
 * addrconf_dad_begin -> addrconf_dad_completed -> __ipv6_ifa_notify ->
 * ip6_ins_rt, net/ipv6/addrconf.c), even with nodad on lo; until it runs a
 * connect() gets ENETUNREACH (see native/netns.c). IPv4 routes are inserted
 * inside the request (fib_inetaddr_event -> fib_add_ifaddr), so they pass at
 * the first ask. The kernel does announce the insertion (RTM_NEWROUTE to
 * RTNLGRP_IPV6_ROUTE), but waiting for it would need a netlink listener opened
 * before the address is added and read from the event loop; asking the route,
 * bounded in time with a short pause, asks exactly what a connect() would get.
 */
async function waitUntilRoutedLocally(
  addresses: readonly string[],
  askRoute: (address: string) => Promise<RouteAnswer>,
): Promise<void> {
  const deadline = Date.now() + ADDRESS_READY_TIMEOUT_MS;
  for (const address of addresses) {
    for (;;) {
      const route = await askRoute(address);
      if (route.local) break;
      if (Date.now() >= deadline) {
        throw new ReuseportError(
          `${address} on the namespace's lo is not usable after ${ADDRESS_READY_TIMEOUT_MS / 1000} s: the kernel's route to it is ${route.answer}, not local`,
          { code: 'ENETSETUP' },
        );
      }
      await sleep(ASK_PAUSE_MS);
    }
  }
}

/**
 * Brings `lo` up and puts each address on it (/32 or /128), in the network
 * namespace this process runs in, and returns once every address is usable
 * (routed locally, see waitUntilRoutedLocally). Uses the native helper's ioctl
 * and netlink calls, so minimal images without iproute2 work; `ip` is the
 * fallback for a missing helper. Throws ReuseportError ENETSETUP.
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
    await waitUntilRoutedLocally(addresses, async (address) => {
      try {
        const type = netns.routeType(address);
        return type === RTN_LOCAL ? { local: true } : { local: false, answer: `of rtm_type ${type}` };
      } catch (err) {
        if (err instanceof KernelError && err.code === 'ENETUNREACH') return { local: false, answer: err.message };
        throw new ReuseportError(`cannot ask the route to ${address} in the namespace: ${(err as Error).message}`, {
          code: 'ENETSETUP',
        });
      }
    });
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
  await waitUntilRoutedLocally(addresses, async (address) => {
    const route = await execa('ip', ['route', 'get', address], { reject: false, timeout: 10_000 });
    return route.exitCode === 0 && route.stdout.startsWith('local ')
      ? { local: true }
      : { local: false, answer: `"${(route.stdout || route.stderr || route.shortMessage || 'no answer').trim()}"` };
  });
}
