// Private namespaces where iproute2 is missing (minimal images): the native
// helper brings lo up and adds addresses itself. `ip` is hidden by running
// with a PATH that holds only `unshare`.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { loadNativeHelper } from '../src/net/native.js';
import { isRoot, runCli, unshareNetSkip, unsharePath } from './helpers.js';

const execFileAsync = promisify(execFile);

const unshare = unsharePath;
const skip =
  unshareNetSkip ||
  (loadNativeHelper().helper?.netns
    ? false
    : `the native helper is not available: ${loadNativeHelper().helper ? 'this build has no linkUp/addAddress' : 'not built'}`);

/** A PATH with `unshare` and nothing else: no `ip`, whatever the machine has. */
const binDir = mkdtempSync(join(tmpdir(), 'reuseport-noip-'));
if (unshare !== '') symlinkSync(unshare, join(binDir, 'unshare'));
const PATH_WITHOUT_IP = binDir;
after(() => rmSync(binDir, { recursive: true, force: true }));

test('with no ip on PATH, the helper brings lo up in a fresh namespace and 10.0.0.2 and fd00::2 answer', {
  skip,
  timeout: 20_000,
}, async () => {
  const script = `
    import net from 'node:net';
    import os from 'node:os';
    const { configureLoopback } = await import(process.argv[1]);
    const before = Object.keys(os.networkInterfaces());
    await configureLoopback(['10.0.0.2', 'fd00::2']);
    // libuv lists only interfaces that are up and running.
    const lo = (os.networkInterfaces().lo ?? []).map((a) => a.address).sort();
    const connects = async (host) => {
      const server = net.createServer((s) => s.end('hi'));
      await new Promise((r) => server.listen(0, host, r));
      const reply = await new Promise((resolve, reject) => {
        const c = net.connect(server.address().port, host);
        let data = '';
        c.on('data', (d) => { data += d; }).on('end', () => resolve(data)).on('error', reject);
      });
      server.close();
      return reply;
    };
    console.log(JSON.stringify({ before, lo, v4: await connects('10.0.0.2'), v6: await connects('fd00::2') }));`;
  const loopbackModule = new URL('../src/net/loopback.js', import.meta.url).href;
  const { stdout } = await execFileAsync(
    unshare,
    ['--net', '--', process.execPath, '--input-type=module', '-e', script, loopbackModule],
    { env: { ...process.env, PATH: PATH_WITHOUT_IP }, timeout: 15_000 },
  );
  const seen = JSON.parse(stdout) as { before: string[]; lo: string[]; v4: string; v6: string };
  assert.deepEqual(seen.before, [], 'a fresh namespace starts with lo down');
  assert.deepEqual(seen.lo, ['10.0.0.2', '127.0.0.1', '::1', 'fd00::2']);
  assert.equal(seen.v4, 'hi');
  assert.equal(seen.v6, 'hi');
});

test('with no ip on PATH, a scenario using 10.0.0.2 runs in its private namespace', {
  skip,
  timeout: 60_000,
}, async () => {
  const result = await runCli(['scenario', 'run', 'priority', '--json'], { env: { PATH: PATH_WITHOUT_IP } });
  const doc = JSON.parse(result.stdout) as { scenarios: { status: string; isolation: string; reason: string }[] };
  assert.equal(doc.scenarios[0]?.isolation, 'netns', doc.scenarios[0]?.reason);
  assert.equal(doc.scenarios[0]?.status, 'passed', result.stdout);
  assert.equal(result.code, 0);
});

test('with no ip on PATH, doctor finds the private namespace usable; without the helper it says what is missing', {
  skip,
  timeout: 30_000,
}, async () => {
  const netnsCheck = async (env: NodeJS.ProcessEnv) => {
    const result = await runCli(['doctor', '--json'], { env: { PATH: PATH_WITHOUT_IP, ...env } });
    const doc = JSON.parse(result.stdout) as {
      checks: { id: string; status: string; value: string; meaning: string }[];
    };
    return doc.checks.find((c) => c.id === 'netns');
  };
  const withHelper = await netnsCheck({});
  assert.equal(withHelper?.status, 'ok', withHelper?.meaning);
  assert.match(withHelper?.value ?? '', /lo set up by the native helper/);
  const withoutHelper = await netnsCheck({ REUSEPORT_NATIVE_DISABLE: '1' });
  assert.equal(withoutHelper?.status, 'warn');
  assert.match(withoutHelper?.meaning ?? '', /neither is `ip` \(iproute2\)/);
});

test('linkUp and addAddress report a failed call as a KernelError with errno and syscall', {
  skip: loadNativeHelper().helper?.netns ? false : 'the native helper (with linkUp/addAddress) is not available',
}, () => {
  const netns = loadNativeHelper().helper?.netns;
  assert.ok(netns);
  assert.throws(() => netns.linkUp('no-such-if0'), { code: 'ENODEV', syscall: 'ioctl SIOCGIFFLAGS' });
  assert.throws(() => netns.addAddress('no-such-if0', '10.0.0.2', 32), { code: 'ENODEV', syscall: 'if_nametoindex' });
  // NLM_F_EXCL: an address lo already has is refused, the host is left as it was.
  if (isRoot) assert.throws(() => netns.addAddress('lo', '127.0.0.1', 8), { code: 'EEXIST', syscall: 'RTM_NEWADDR' });
  assert.throws(() => netns.addAddress('lo', 'not-an-ip', 32), TypeError);
  assert.throws(() => netns.addAddress('lo', '10.0.0.2', 33), RangeError);
});
