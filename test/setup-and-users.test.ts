import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { isRoot, ROOT, runAsNobody, runtimeCopy, ServeProcess } from './helpers.js';

test('without a C toolchain the install step still succeeds and says what to do', (t) => {
  // A copy, so that the real build is left alone; an empty PATH hides make, cc and python.
  const dir = mkdtempSync(join(tmpdir(), 'reuseport-nocc-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'scripts'));
  cpSync(join(ROOT, 'scripts', 'build-native.mjs'), join(dir, 'scripts', 'build-native.mjs'));
  cpSync(join(ROOT, 'native'), join(dir, 'native'), { recursive: true, filter: (src) => !src.includes('/build') });
  const result = spawnSync(process.execPath, [join(dir, 'scripts', 'build-native.mjs')], {
    encoding: 'utf8',
    env: { PATH: join(dir, 'no-tools-here'), HOME: dir },
  });
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stderr, /no prebuilt native helper fits .*, and compiling it failed/);
  assert.match(result.stderr, /install gcc, make and python3, then run `npm rebuild reuseport`/);
  // The loader reads why, to say it when the helper is missing.
  assert.ok(existsSync(join(dir, 'native', 'build', 'install-error.txt')));
});

test('--user works from a checkout the other user cannot read', {
  skip: !isRoot && 'needs root to switch users',
}, async (t) => {
  const copy = await runtimeCopy(0o700);
  t.after(() => copy.remove());
  const serve = new ServeProcess(
    ['--host', '127.0.0.1', '--port', '0', '--workers', '2', '--user', 'nobody'],
    copy.dir,
  );
  t.after(() => serve.stop());
  const { events } = await serve.listening(2);
  assert.deepEqual(
    events.map((e) => e.uid),
    [65534, 65534],
  );
  assert.equal((await serve.stop()).code, 0);
});

test('--user as a non-root user is a usage error', { skip: !isRoot && 'needs root to become nobody' }, async (t) => {
  const copy = await runtimeCopy(0o755);
  t.after(() => copy.remove());
  const result = await runAsNobody(copy.dir, ['serve', '--user', 'daemon', '--port', '0']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /^reuseport: --user needs root/);
  assert.equal(result.stderr.trim().split('\n').length, 1);
});
