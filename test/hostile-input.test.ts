// Hostile input reaches the terminal escaped and never echoed: scenario text
// with ESC, BEL and bidi overrides, /proc/self/environ, and report paths that
// cannot be written, also by root.
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { type CliResult, ROOT, runCli, tempDir } from './helpers.js';

/** Raw ESC, BEL, CR and RIGHT-TO-LEFT OVERRIDE: any of them on a terminal can fake what it shows. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding raw control characters is the point.
const RAW = /[\x1b\x07\r\u202e]/;

/**
 * A scenario whose title and prose carry an ESC sequence that repaints the
 * line as PASSED, BEL and a right-to-left override. The YAML escapes keep
 * the file itself printable; the comment carries the raw bytes, for `show`.
 */
const HOSTILE = `# raw: \x1b[2K\x07 \u202e
name: hostile
title: "\\e[2K\\rPASSED \\a\\u202eevil"
article: "art \\e[31m red \\u202e"
lookFor: "look \\a"
explanation: "why \\e]0;title\\a"
servers:
  - { id: A, address: 127.0.0.1, port: 6000 }
steps:
  - start: [A]
expect:
  - bind: A
    outcome: ok
`;

/** Its terminal output holds no raw control or bidi character, and shows the title escaped. */
function assertEscaped(result: CliResult, what: string): void {
  const output = result.stdout + result.stderr;
  assert.doesNotMatch(output, RAW, `${what}: no raw ESC, BEL, CR or bidi override`);
  assert.match(output, /\\e\[2K/, `${what}: the ESC is shown as \\e`);
}

/**
 * A copy of the package whose shipped scenarios include `file`: `scenario
 * list` and `show` read only the package's own folder. Code is copied (a
 * symlinked bin would resolve back here); dependencies are linked.
 */
function packageWith(t: { after(fn: () => void): void }, name: string, text: string): string {
  const dir = tempDir(t);
  for (const part of ['package.json', 'bin', 'dist', 'scenarios'])
    cpSync(join(ROOT, part), join(dir, part), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  mkdirSync(join(dir, 'native'));
  symlinkSync(join(ROOT, 'native', 'build'), join(dir, 'native', 'build'));
  writeFileSync(join(dir, 'scenarios', `${name}.yaml`), text);
  return join(dir, 'bin', 'reuseport.js');
}

test('a scenario run shows a title and prose with ESC, BEL and a bidi override escaped', async (t) => {
  const file = join(tempDir(t), 'hostile.yaml');
  writeFileSync(file, HOSTILE);
  for (const brief of [[], ['--brief']]) {
    const result = await runCli(['scenario', 'run', file, '--isolation', 'host', ...brief]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    if (brief.length === 0) assertEscaped(result, 'scenario run');
    else assert.doesNotMatch(result.stdout + result.stderr, RAW, 'scenario run --brief');
  }
});

test('scenario list, show and check show hostile scenario text escaped', async (t) => {
  const cli = packageWith(t, 'hostile', HOSTILE);
  const list = await runCli(['scenario', 'list'], { cli });
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /^hostile +/m, 'the planted scenario is listed');
  assertEscaped(list, 'scenario list');
  const show = await runCli(['scenario', 'show', 'hostile'], { cli });
  assert.equal(show.code, 0, show.stderr);
  assertEscaped(show, 'scenario show');
  const check = await runCli(['scenario', 'check', 'hostile'], { cli });
  assert.equal(check.code, 0, check.stderr);
  assert.doesNotMatch(check.stdout + check.stderr, RAW, 'scenario check');
});

test('scenario check names a hostile unknown key escaped', async (t) => {
  const file = join(tempDir(t), 'hostile.yaml');
  writeFileSync(file, HOSTILE.replace('servers:', '"x\\e[2K\\u202e": 1\nservers:'));
  const result = await runCli(['scenario', 'check', file]);
  assert.equal(result.code, 2, result.stdout + result.stderr);
  assert.doesNotMatch(result.stdout + result.stderr, RAW, 'no raw ESC or bidi override');
  assert.match(result.stdout + result.stderr, /unknown top-level key "x\\e\[2K\\u202e"/, 'the key is named, escaped');
});

test('scenario run /proc/self/environ is refused in one line without its contents', async () => {
  const secret = `reuseport-secret-${process.pid}-${Date.now()}`;
  const result = await runCli(['scenario', 'run', '/proc/self/environ'], { env: { REUSEPORT_TEST_SECRET: secret } });
  assert.equal(result.code, 2, result.stdout + result.stderr);
  assert.equal(result.stderr.trim().split('\n').length, 1, result.stderr);
  const output = result.stdout + result.stderr;
  assert.doesNotMatch(output, new RegExp(secret), 'the value of an environment variable is not echoed');
  assert.doesNotMatch(output, /REUSEPORT_TEST_SECRET|PATH=/, 'nor any name of one');
});

test('--junit into a folder nothing can be created in (even by root) exits 2 before the run', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'plain-file');
  writeFileSync(file, 'not a folder\n');
  // /proc refuses new files to root too; a path through a file is never a folder.
  for (const junit of ['/proc/reuseport-report.xml', join(file, 'report.xml')]) {
    const result = await runCli(['scenario', 'run', 'load-balance', '--junit', junit]);
    assert.equal(result.code, 2, `${junit}: ${result.stdout}${result.stderr}`);
    assert.equal(result.stdout, '', `${junit}: nothing ran`);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0]!, /^reuseport: cannot write --junit .*; give a path in a writable folder$/);
  }
  assert.deepEqual(readdirSync(dir), ['plain-file'], 'no temporary file left');
});
