// `auto` prefers the native helper on every Node; REUSEPORT_BINDER overrides it.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { UsageError } from '../src/errors.js';
import { BINDER_ENV, probeBuiltin, resolveBinder } from '../src/net/binder.js';
import { loadNativeHelper } from '../src/net/native.js';

const execFileAsync = promisify(execFile);
const helperLoads = loadNativeHelper().helper !== null;

/** resolveBinder('auto') in a fresh process with `env` (the helper is loaded once per process). */
async function autoIn(env: NodeJS.ProcessEnv): Promise<string> {
  const script =
    'import(process.argv[1]).then((m) => m.resolveBinder("auto")).then((b) => console.log(b), (e) => console.log("error: " + e.message));';
  const { stdout } = await execFileAsync(
    process.execPath,
    ['-e', script, new URL('../src/net/binder.js', import.meta.url).href],
    {
      env: { ...process.env, [BINDER_ENV]: '', ...env },
      timeout: 10_000,
    },
  );
  return stdout.trim();
}

test('auto picks the native binder whenever the helper loads, whatever the Node version', {
  skip: helperLoads ? false : 'the native helper is not available',
}, async () => {
  assert.equal(await resolveBinder('auto', {}), 'native');
});

test('auto falls back to the builtin binder when the helper is missing', async (t) => {
  if (!(await probeBuiltin()).ok) return t.skip(`Node ${process.version} has no builtin reusePort`);
  assert.equal(await autoIn({ REUSEPORT_NATIVE_DISABLE: '1' }), 'builtin');
});

test('REUSEPORT_BINDER=builtin makes auto try the builtin binder first, and native where it is missing', async () => {
  const builtin = (await probeBuiltin()).ok;
  const expected = builtin ? 'builtin' : helperLoads ? 'native' : null;
  if (expected === null) await assert.rejects(resolveBinder('auto', { [BINDER_ENV]: 'builtin' }));
  else assert.equal(await resolveBinder('auto', { [BINDER_ENV]: 'builtin' }), expected);
});

test('REUSEPORT_BINDER with an unknown value is a usage error', async () => {
  await assert.rejects(resolveBinder('auto', { [BINDER_ENV]: 'fast' }), UsageError);
});

test('an explicit --binder is not overridden by REUSEPORT_BINDER', {
  skip: helperLoads ? false : 'the native helper is not available',
}, async () => {
  assert.equal(await resolveBinder('native', { [BINDER_ENV]: 'builtin' }), 'native');
});
