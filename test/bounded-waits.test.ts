// The suite's own waits are bounded: a changed message or a process that
// never ends fails its test with what it waited for, instead of hanging.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { childClosed, isAlive, ServeProcess, waitGone } from './helpers.js';

test('ServeProcess.waitFor fails after its timeout, naming what it waited for, while serve runs on', {
  timeout: 60_000,
}, async (t) => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '1']);
  t.after(() => serve.stop());
  await serve.listening(1);
  await assert.rejects(
    serve.waitFor((e) => e.event === 'no-such-event', 1, 500),
    /timed out after \d+ ms waiting for 1 matching serve events \(0 so far\)/,
  );
  assert.ok(isAlive(serve.child.pid!), 'serve itself is left to the test to stop');
});

test('childClosed fails after its timeout, naming what it waited for, and kills the child', async () => {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
  await assert.rejects(childClosed(child, 'a process that never ends', 500), /waiting for a process that never ends/);
  assert.deepEqual(await waitGone([child.pid!]), [], 'the child was killed');
});

test('childClosed gives the exit code and signal of a child that ends in time', async () => {
  const child = spawn(process.execPath, ['-e', 'process.exitCode = 3'], { stdio: 'ignore' });
  assert.deepEqual(await childClosed(child, 'a short process'), { code: 3, signal: null });
});
