import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { test } from 'node:test';
import { isRoot, runCli, scenarioFile } from './helpers.js';

const canNamespace =
  spawnSync('unshare', isRoot ? ['--net', 'true'] : ['--net', '--map-root-user', 'true']).status === 0;
const ISOLATION = canNamespace ? ['--isolation', 'netns'] : ['--isolation', 'host'];

test('--brief: one line per scenario that passed, and a failed one in full', async (t) => {
  // A wrong expectation on purpose: the second replica binds fine, the file says it must not.
  const wrong = scenarioFile(
    t,
    'brief-wrong',
    `servers:
  - { id: W, address: 127.0.0.1, port: 6000, replicas: 2, reuseport: true }
steps:
  - start: [W]
expect:
  - { bind: W, outcome: EADDRINUSE }
`,
  );
  const result = await runCli(['scenario', 'run', 'load-balance', wrong, '--brief', ...ISOLATION], {
    env: { COLUMNS: '200' },
  });
  assert.equal(result.code, 1, result.stderr);
  const lines = result.stdout.split('\n');
  assert.match(lines[0]!, /^PASSED load-balance \(\d+\.\d s\)$/, 'the passed scenario is one line');
  assert.ok(!result.stdout.includes('━━ load-balance'), 'and not its full report');
  assert.ok(result.stdout.includes('━━ brief-wrong'), 'the failed one is reported in full');
  assert.match(result.stdout, /expected: EADDRINUSE/);
  assert.match(result.stdout, /2 scenarios: 1 passed, 1 failed/);
});

test('a bad scenario file on `scenario run` still gives --json and --junit, with the mistakes as structured items', async (t) => {
  const bad = scenarioFile(t, 'bad-file', 'servers: 3\n');
  const junit = `${bad}.junit.xml`;
  t.after(() => rmSync(junit, { force: true }));
  const result = await runCli(['scenario', 'run', bad, '--json', '--junit', junit]);
  assert.equal(result.code, 2);
  const doc = JSON.parse(result.stdout) as {
    version: number;
    ok: boolean;
    errors: { file: string; line: number; column: number; message: string }[];
  };
  assert.equal(doc.version, 1);
  assert.equal(doc.ok, false);
  assert.ok(doc.errors.length >= 3, 'every mistake: steps and expect missing, servers not a list');
  for (const e of doc.errors) {
    assert.ok(e.file.endsWith('bad-file.yaml') && e.line >= 1 && e.column >= 1 && e.message.length > 0);
  }
  const xml = readFileSync(junit, 'utf8');
  assert.equal((xml.match(/<testcase /g) ?? []).length, doc.errors.length);
  assert.match(xml, /<error message="servers must be a non-empty list/);
});
