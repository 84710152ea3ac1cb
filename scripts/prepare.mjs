// `prepare`: compiles the TypeScript into dist/. npm runs it in a checkout
// (`npm ci`, `npm pack`, installs from git) and, for a linked package such as
// pnpm's, on `npm rebuild` too, where only dist/ ships and there is nothing to do.
//
// `npm i -g <git url>` prepares the clone without installing its dependencies
// (npm/cli#8440), so there is no tsc: then the devDependencies are installed
// here first, with npm itself, into the clone only.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

function run(command, args, env = process.env) {
  const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], env });
  if (result.status !== 0) {
    process.stderr.write(
      `reuseport: \`${[command, ...args].join(' ')}\` failed (${result.error?.message ?? `exit ${result.status ?? result.signal}`})\n`,
    );
    process.exit(1);
  }
}

// An installed package: no sources, dist/ came built in the tarball.
if (!existsSync(join(root, 'tsconfig.json'))) process.exit(0);
if (!existsSync(tsc)) {
  // The outer `npm i -g` leaks its global location into this environment.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => !/^npm_config_(global|location|prefix)$/i.test(key)),
  );
  const npm = process.env.npm_execpath;
  const [command, prefix] = npm?.endsWith('.js') ? [process.execPath, [npm]] : ['npm', []];
  process.stderr.write(
    'reuseport: typescript is missing (a global install from git?); installing the devDependencies\n',
  );
  run(
    command,
    [
      ...prefix,
      'install',
      '--include=dev',
      '--ignore-scripts',
      '--no-save',
      '--no-audit',
      '--no-fund',
      '--global=false',
    ],
    env,
  );
}
run(process.execPath, [tsc, '-p', 'tsconfig.json']);
