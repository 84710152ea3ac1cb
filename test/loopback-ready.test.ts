// configureLoopback returns only once the addresses it added are usable. For
// IPv6 the kernel inserts the address's local route from a work item after
// RTM_NEWADDR has been answered (net/ipv6/addrconf.c, addrconf_dad_work), so a
// connect() at once used to fail with ENETUNREACH on a busy machine. Each test
// runs in a fresh `unshare --net` namespace and only sends to addresses it put
// on that namespace's lo.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { loadNativeHelper } from '../src/net/native.js';
import { unshareNetSkip, unsharePath } from './helpers.js';

const execFileAsync = promisify(execFile);

const unshare = unsharePath;
const nativeSkip =
  unshareNetSkip || (loadNativeHelper().helper?.netns ? false : 'the native helper (with routeType) is not available');
const ipSkip =
  unshareNetSkip ||
  (spawnSync('sh', ['-c', 'command -v ip']).status === 0 ? false : '`ip` (iproute2) is not installed');

const loopbackModule = new URL('../src/net/loopback.js', import.meta.url).href;

/**
 * Adds fd00::2, fd00::3, ... one call each and connects to port 1 of each
 * address as soon as the call returns. ECONNREFUSED is the answer wanted: the
 * SYN was routed locally and the stack answered with a reset.
 */
const connectAtOnce = `
  import net from 'node:net';
  const { configureLoopback } = await import(process.argv[1]);
  const count = Number(process.argv[2]);
  const failures = [];
  for (let i = 2; i < count + 2; i++) {
    const host = 'fd00::' + i.toString(16);
    await configureLoopback([host]);
    const outcome = await new Promise((resolve) => {
      const socket = net.connect(1, host);
      socket.on('connect', () => { socket.destroy(); resolve('connected'); });
      socket.on('error', (err) => resolve(err.code));
    });
    if (outcome !== 'ECONNREFUSED') failures.push(host + ' ' + outcome);
  }
  console.log(JSON.stringify({ failures }));`;

async function runInFreshNamespace(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const { stdout } = await execFileAsync(
    unshare,
    ['--net', '--', process.execPath, '--input-type=module', '-e', script, loopbackModule, ...args],
    { env: { ...process.env, ...env }, timeout: 60_000 },
  );
  return stdout;
}

test('50 IPv6 addresses added by the native helper each take a connect the moment configureLoopback returns', {
  skip: nativeSkip,
  timeout: 90_000,
}, async () => {
  const seen = JSON.parse(await runInFreshNamespace(connectAtOnce, ['50'])) as { failures: string[] };
  assert.deepEqual(seen.failures, []);
});

test('20 IPv6 addresses added through `ip` each take a connect the moment configureLoopback returns', {
  skip: ipSkip,
  timeout: 90_000,
}, async () => {
  const seen = JSON.parse(await runInFreshNamespace(connectAtOnce, ['20'], { REUSEPORT_NATIVE_DISABLE: '1' })) as {
    failures: string[];
  };
  assert.deepEqual(seen.failures, []);
});

test('routeType answers ENETUNREACH for an address not on lo and RTN_LOCAL for the ones configureLoopback added', {
  skip: nativeSkip,
  timeout: 60_000,
}, async () => {
  const script = `
    const { configureLoopback } = await import(process.argv[1]);
    const { loadNativeHelper } = await import(new URL('native.js', process.argv[1]).href);
    const netns = loadNativeHelper().helper.netns;
    const type = (address) => { try { return netns.routeType(address); } catch (err) { return err.code + ' ' + err.syscall; } };
    await configureLoopback(['10.0.0.2', 'fd00::2']);
    console.log(JSON.stringify({ absent: type('fd00::99'), v4: type('10.0.0.2'), v6: type('fd00::2'), lo6: type('::1') }));`;
  const seen = JSON.parse(await runInFreshNamespace(script, [])) as Record<string, unknown>;
  assert.deepEqual(seen, { absent: 'ENETUNREACH RTM_GETROUTE', v4: 2, v6: 2, lo6: 2 });
});
