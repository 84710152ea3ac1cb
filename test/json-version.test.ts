// Every --json document of every command carries a `version`: the commands
// are read from the CLI's own definition, so a new --json command without a
// case here fails the test.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Command } from 'commander';
import { buildProgram } from '../src/cli/program.js';
import { COMPARE_EXECUTABLE_RELATIVE_PATH, COMPARE_SCALE_ENV } from '../src/compare/run.js';
import { closedPort, noNetnsVia, ROOT, runCli, ServeProcess } from './helpers.js';

/** `serve`, `scenario run`, …: every command (at any depth) that has a --json option. */
function commandsWithJson(command: Command, prefix: string[] = []): string[] {
  return command.commands.flatMap((sub) => {
    const path = [...prefix, sub.name()];
    const own = sub.options.some((o) => o.long === '--json') ? [path.join(' ')] : [];
    return [...own, ...commandsWithJson(sub, path)];
  });
}

/** The JSON documents one command prints with --json (serve prints one per line), or why it cannot run here. */
type Documents = unknown[] | { skipped: string };

function parsed(stdout: string, what: string): unknown[] {
  try {
    return [JSON.parse(stdout)];
  } catch {
    throw new Error(`${what} --json did not print one JSON document: ${stdout.slice(0, 500)}`);
  }
}

const CASES: Record<string, () => Promise<Documents>> = {
  serve: async () => {
    const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '1']);
    try {
      await serve.listening(1);
    } finally {
      await serve.stop();
    }
    return serve.events;
  },
  load: async () =>
    parsed((await runCli(['load', '--json', '--port', String(await closedPort()), '-n', '1'])).stdout, 'load'),
  reconcile: async () => {
    const dir = mkdtempSync(join(tmpdir(), 'reuseport-reconcile-'));
    try {
      const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '1']);
      let load: string;
      try {
        const { port } = await serve.listening(1);
        load = (await runCli(['load', '--json', '--port', String(port), '-n', '1'])).stdout;
      } finally {
        await serve.stop();
      }
      writeFileSync(join(dir, 'serve.json'), serve.stdout);
      writeFileSync(join(dir, 'load.json'), load);
      const result = await runCli(['reconcile', '--json', join(dir, 'serve.json'), join(dir, 'load.json')]);
      return parsed(result.stdout, 'reconcile');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
  doctor: async () => parsed((await runCli(['doctor', '--json'])).stdout, 'doctor'),
  'scenario list': async () => parsed((await runCli(['scenario', 'list', '--json'])).stdout, 'scenario list'),
  'scenario check': async () =>
    parsed((await runCli(['scenario', 'check', 'load-balance', '--json'])).stdout, 'scenario check'),
  'scenario run': async () =>
    parsed((await runCli(['scenario', 'run', 'load-balance', '--isolation', 'host', '--json'])).stdout, 'scenario run'),
  'scenario all': async () => {
    // Every scenario at full length would take minutes; where no namespace can be made, each is skipped at once.
    const via = noNetnsVia();
    if (!via) return { skipped: 'cannot make a user namespace that refuses network namespaces' };
    return parsed(
      (await runCli(['scenario', 'all', '--isolation', 'netns', '--json'], { via })).stdout,
      'scenario all',
    );
  },
  compare: async () => {
    if (!existsSync(join(ROOT, COMPARE_EXECUTABLE_RELATIVE_PATH))) {
      return { skipped: `${COMPARE_EXECUTABLE_RELATIVE_PATH} is not built` };
    }
    const result = await runCli(['compare', '--phases', 'slow', '--models', 'reuseport', '--json'], {
      env: { [COMPARE_SCALE_ENV]: '0.01' },
    });
    return parsed(result.stdout, 'compare');
  },
};

test('every --json document of every command carries a version', { timeout: 120_000 }, async (t) => {
  const commands = commandsWithJson(buildProgram({ exitCode: 0 }));
  assert.deepEqual(commands.sort(), Object.keys(CASES).sort(), 'a case for each command with --json');
  for (const command of commands) {
    const documents = await CASES[command]!();
    if ('skipped' in documents) {
      t.diagnostic(`${command}: not run (${documents.skipped})`);
      continue;
    }
    assert.ok(documents.length > 0, `${command} printed something`);
    for (const document of documents) {
      const version = (document as { version?: unknown }).version;
      assert.ok(Number.isInteger(version) && (version as number) >= 1, `${command} --json carries a version`);
    }
  }
});
