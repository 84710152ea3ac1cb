// `prepare`: compiles the TypeScript into dist/ and writes the scenario JSON
// Schema beside it. npm runs it in a checkout (`npm ci`, `npm pack`, installs
// from git) and, for a linked package such as pnpm's, on `npm rebuild` too,
// where only dist/ ships and there is nothing to do.
//
// npm before 12 cannot install a git URL globally (npm/cli#8440, #6984): the
// `npm install` it runs in the clone to prepare it inherits `--global`, so it
// installs the clone itself into the global folder, over the package the outer
// install is unpacking there, and the outer install then fails on a file it can
// no longer find. Nothing this script does can undo that, so it stops first with
// the reason and what works. npm 12 passes `--global=false` (npm/pacote#494).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

function fail(message) {
  process.stderr.write(`reuseport: ${message}\n`);
  process.exit(1);
}

function run(command, args) {
  const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) {
    fail(`\`${args.join(' ')}\` failed (${result.error?.message ?? `exit ${result.status ?? result.signal}`})`);
  }
}

// An installed package: no sources, dist/ came built in the tarball.
if (!existsSync(join(root, 'tsconfig.json'))) process.exit(0);
// pacote marks the npm it runs to prepare a git dependency with _PACOTE_NO_PREPARE_.
if (process.env._PACOTE_NO_PREPARE_ !== undefined && process.env.npm_config_global === 'true') {
  const npm = /\bnpm\/(\S+)/.exec(process.env.npm_config_user_agent ?? '')?.[1] ?? 'before 12';
  fail(
    `npm ${npm} cannot install a git URL globally (https://github.com/npm/cli/issues/8440); ` +
      'use npm >= 12 with `--allow-git=root`, or a checkout: ' +
      '`git clone <url> reuseport && cd reuseport && npm ci && npm install -g "$(npm pack --silent)"`',
  );
}
if (!existsSync(tsc)) {
  fail('typescript is missing: building from source needs the devDependencies; run `npm ci` without --omit=dev');
}
run(process.execPath, [tsc, '-p', 'tsconfig.json']);
run(process.execPath, [join(root, 'scripts', 'write-scenario-schema.mjs')]);
