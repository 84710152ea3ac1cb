import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { colorLevel, usableTerminal } from '../src/cli/terminal.js';
import { quoteName, safeProse, safeText } from '../src/untrusted-text.js';
import { CLI, childClosed, isRoot, runCli } from './helpers.js';

test('colour: --color wins over the environment, then --json, NO_COLOR, FORCE_COLOR, TERM=dumb, the TTY', () => {
  const tty = { stdoutIsTTY: true };
  assert.equal(colorLevel({ ...tty, env: {} }), 1);
  assert.equal(colorLevel({ stdoutIsTTY: false, env: {} }), 0);
  assert.equal(colorLevel({ ...tty, env: { NO_COLOR: '1' } }), 0);
  assert.equal(colorLevel({ ...tty, env: { NO_COLOR: '' } }), 1, 'an empty NO_COLOR does not count (no-color.org)');
  assert.equal(colorLevel({ stdoutIsTTY: false, env: { FORCE_COLOR: '1' } }), 1);
  assert.equal(colorLevel({ ...tty, env: { FORCE_COLOR: '0' } }), 0);
  assert.equal(colorLevel({ ...tty, env: { TERM: 'dumb' } }), 0);
  assert.equal(colorLevel({ ...tty, env: { NO_COLOR: '1' }, flag: 'always' }), 1);
  assert.equal(colorLevel({ ...tty, env: { FORCE_COLOR: '1' }, flag: 'never' }), 0);
  assert.equal(colorLevel({ ...tty, env: {}, flag: 'always', json: true }), 0, 'JSON is never painted');
});

test('spinners need a terminal with a width: 0 columns, TERM=dumb or CI turn them off', () => {
  assert.equal(usableTerminal({ isTTY: true, columns: 80 }, {}), true);
  assert.equal(usableTerminal({ isTTY: true, columns: 0 }, {}), false);
  assert.equal(usableTerminal({ isTTY: true, columns: 80 }, { TERM: 'dumb' }), false);
  assert.equal(usableTerminal({ isTTY: true, columns: 80 }, { CI: 'true' }), false);
  assert.equal(usableTerminal({ isTTY: false, columns: 80 }, {}), false);
});

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0;

/**
 * Runs the CLI on a pseudo-terminal that reports 0 columns (`stty cols 0` under script(1)). With `stopOn`, waits
 * for that output and then sends SIGTERM to the CLI (script's child: the shell execs it).
 */
function stillRunning(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(CLI);
  } catch {
    return false;
  }
}

async function underZeroColumns(args: string[], stopOn?: RegExp): Promise<{ code: number | null; bytes: number }> {
  const { CI: _ci, ...env } = process.env;
  const inner = `stty cols 0; exec ${[process.execPath, CLI, ...args].map((a) => JSON.stringify(a)).join(' ')}`;
  const child = spawn('script', ['-qec', inner, '/dev/null'], {
    env: { ...env, TERM: 'xterm' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let bytes = 0;
  let text = '';
  let cli: number | undefined;
  child.stdout.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (text.length < 65536) text += chunk.toString('utf8');
    // script's only child: the shell, which exec'd the CLI before it could print.
    cli ??=
      Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(' ')[0]) || undefined;
    if (cli && stopOn?.test(text)) {
      stopOn = undefined;
      process.kill(cli, 'SIGTERM');
    }
  });
  try {
    const { code } = await childClosed(child, `${args[0]} under a 0-column terminal to exit`, 60_000);
    return { code, bytes };
  } finally {
    // A spinner stuck at 0 columns ignored SIGTERM and outlived script(1): leave nothing behind when this fails.
    if (cli && stillRunning(cli)) process.kill(cli, 'SIGKILL');
  }
}

// Under ora, 0 columns made every spinner loop forever at 100 % CPU, writing about 1.5 MB/s.
const zeroColumnRuns: { args: string[]; code: number; stopOn?: RegExp }[] = [
  // Port 1 on loopback: nothing listens there, so every connection is refused at once.
  { args: ['load', '--port', '1', '-n', '3'], code: 1 },
  { args: ['scenario', 'run', 'scenarios/priority.yaml'], code: 0 },
  { args: ['serve', '--port', '0', '-w', '2'], code: 0, stopOn: /(succeeded, pid is \d+[\s\S]*){2}/ },
  { args: ['compare', '--phases', 'order', '-w', '2'], code: 0 },
];

for (const run of zeroColumnRuns) {
  test(`a terminal that reports 0 columns: ${run.args.slice(0, 2).join(' ')} finishes instead of spinning forever`, {
    skip: !hasScript && 'needs script(1) from util-linux to make a pseudo-terminal',
  }, async () => {
    const { code, bytes } = await underZeroColumns(run.args, run.stopOn);
    assert.equal(code, run.code);
    assert.ok(bytes < 16384, `lines of output, not a spinner loop (${bytes} bytes)`);
  });
}

test('no subcommand is a usage mistake (exit 2); asking for help is not', async () => {
  assert.equal((await runCli([])).code, 2);
  assert.equal((await runCli(['scenario'])).code, 2);
  assert.equal((await runCli(['help'])).code, 0);
  assert.equal((await runCli(['--help'])).code, 0);
});

test('--color takes auto, always or never', async () => {
  const bad = await runCli(['--color', 'rainbow', 'doctor']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--color <when>.*auto, always, never/);
});

test('untrusted text cannot drive the terminal: ESC, BEL, C1 and bidi overrides are shown escaped', () => {
  assert.equal(safeText('\x1b[2K\rPASSED\x07'), '\\e[2K\\rPASSED\\x07');
  assert.equal(safeText('abc\u202edcba'), 'abc\\u202edcba');
  assert.equal(safeText('\u009b31m'), '\\x9b31m');
  assert.equal(safeText('plain café ✔'), 'plain café ✔');
  assert.equal(safeProse('line one\nline two\x1b[31m'), 'line one\nline two\\e[31m');
});

test('an error that quotes a user-given name escapes its control characters', async () => {
  const result = await runCli(['scenario', 'run', '\x1b[32mPASSED\x1b[0m']);
  assert.equal(result.code, 2);
  assert.ok(!result.stderr.includes('\x1b'), 'no raw ESC reaches stderr');
  assert.match(result.stderr, /\\e\[32mPASSED/);
});

/** Runs the CLI with a stdout nobody reads: its read end is closed before the first write (EPIPE). */
function runWithClosedStdout(args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

test('a closed stdout (`| head -1`): doctor, scenario list and load stop cleanly, with no stack trace', async () => {
  for (const args of [['doctor'], ['scenario', 'list'], ['load', '--port', '1', '-n', '5']]) {
    const result = await runWithClosedStdout(args);
    assert.notEqual(result.code, null, `${args.join(' ')} exited by itself`);
    assert.ok(result.code === 0 || result.code === 1, `${args.join(' ')}: exit ${result.code}`);
    assert.doesNotMatch(result.stderr, /\n\s+at |EPIPE|internal error/, args.join(' '));
  }
});

test('an errno the scenario expected is painted as an outcome that held (green), not as an error', {
  skip: !isRoot && 'cross-user needs root to create sockets as other users',
}, async () => {
  const result = await runCli(['scenario', 'run', 'cross-user'], { env: { NO_COLOR: '', FORCE_COLOR: '1' } });
  assert.equal(result.code, 0, result.stderr);
  const green = '\x1b[32m';
  const red = '\x1b[31m';
  assert.ok(result.stdout.includes(`${green}EADDRINUSE`), 'the expected EADDRINUSE is green');
  assert.ok(!result.stdout.includes(`${red}EADDRINUSE`), 'and never red');
});

test('names from a file are quoted, shortened and escaped the same way as every other untrusted text', () => {
  assert.equal(quoteName('a"b\\c\x1b[2K\u202e\u200b'), '"a\\"b\\\\c\\e[2K\\u202e\\u200b"');
  assert.equal(quoteName('x'.repeat(40), 8), '"xxxxxxx…"');
  assert.equal(safeText('tag\u{e0041}'), 'tag\\u{e0041}', 'a Unicode tag character (invisible) is shown');
});
