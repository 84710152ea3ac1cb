// The package as users get it: `npm pack` (which prebuilds the helper), then
// the tarball installed in a clean folder with npm --ignore-scripts and with
// pnpm 10 (which skips build scripts). Both must run `scenario all`.
// The pack runs in a copy of the checkout, so the dist/ these tests run from is
// never rebuilt under them. Global installs go to a prefix inside the temp folder:
// from that tarball (what README gives for installing from a checkout), and from
// a git URL (npm before 12 cannot: npm/cli#8440).
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { isRoot, ROOT, runShipped } from './helpers.js';

const execFileAsync = promisify(execFile);
// Bounds against a hang, not a speed test: on a machine with a load average of
// 40, one `npm pack` took over 3 minutes and a 180 s bound failed a sound install.
const NPM = {
  timeout: 600_000,
  maxBuffer: 16 * 1024 * 1024,
  env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false', npm_config_update_notifier: 'false' },
};

const canNamespace = isRoot && spawnSync('unshare', ['--net', 'true']).status === 0;
const skipScenarios = canNamespace ? false : 'needs root and `unshare --net` to run scenario all as users would';
const npmVersion = spawnSync('npm', ['--version'], { encoding: 'utf8' }).stdout?.trim() ?? '';
const hasNpm = npmVersion !== '';
const hasGit = spawnSync('git', ['--version']).status === 0;
const OFFLINE = /ENOTFOUND|ECONNREFUSED|EAI_AGAIN|ETIMEDOUT/;

let work = '';
let tarball = '';
let packError: string | null = hasNpm ? null : 'npm is not on PATH';

/** A copy of what `npm pack` needs, with the checkout's node_modules linked in unless told not to. */
function copyCheckout(to: string, { linkModules = true } = {}): void {
  for (const entry of [
    'package.json',
    'package-lock.json',
    'tsconfig.json',
    'LICENSE',
    'bin',
    'src',
    'test',
    'scenarios',
    'scripts',
    'docs',
  ]) {
    if (existsSync(join(ROOT, entry))) cpSync(join(ROOT, entry), join(to, entry), { recursive: true });
  }
  mkdirSync(join(to, 'native'));
  for (const file of readdirSync(join(ROOT, 'native')).filter((f) => /\.(c|h|gyp)$/.test(f))) {
    cpSync(join(ROOT, 'native', file), join(to, 'native', file));
  }
  if (linkModules) symlinkSync(join(ROOT, 'node_modules'), join(to, 'node_modules'));
}

before(
  async () => {
    if (packError) return;
    work = mkdtempSync(join(tmpdir(), 'reuseport-install-'));
    const checkout = join(work, 'checkout');
    mkdirSync(checkout);
    copyCheckout(checkout);
    try {
      const { stdout } = await execFileAsync('npm', ['pack', '--json', '--pack-destination', work], {
        ...NPM,
        cwd: checkout,
      });
      const [packed] = JSON.parse(stdout) as { filename: string }[];
      tarball = join(work, packed?.filename ?? '');
    } catch (err) {
      packError = `npm pack failed: ${(err as Error).message.split('\n')[0]}`;
    }
  },
  { timeout: 900_000 },
);

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A clean project folder holding only a package.json. */
function project(name: string): string {
  const dir = join(work, name);
  mkdirSync(dir);
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify({ name, version: '1.0.0', private: true })}\n`);
  return dir;
}

/** A clean project with the tarball installed by npm, its scripts skipped. */
async function npmInstallTarball(name: string): Promise<string> {
  const dir = project(name);
  await execFileAsync('npm', ['install', '--ignore-scripts', '--prefer-offline', tarball], { ...NPM, cwd: dir });
  return dir;
}

type Outcome = { code: number; stdout: string; stderr: string };

function settle(run: Promise<{ stdout: string; stderr: string }>): Promise<Outcome> {
  return run.then(
    (r) => ({ code: 0, ...r }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({
      code: typeof e.code === 'number' ? e.code : 1,
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    }),
  );
}

function cli(dir: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Outcome> {
  const bin = join(dir, 'node_modules', 'reuseport', 'bin', 'reuseport.js');
  return settle(
    execFileAsync(process.execPath, [bin, ...args], {
      cwd: dir,
      timeout: 300_000,
      env: { ...process.env, NO_COLOR: '1', ...env },
    }),
  );
}

async function nativeCheck(dir: string): Promise<{ status: string; meaning: string }> {
  const { stdout } = await cli(dir, ['doctor', '--json']);
  const check = (JSON.parse(stdout) as { checks: { id: string; status: string; meaning: string }[] }).checks.find(
    (c) => c.id === 'binder.native',
  );
  assert.ok(check);
  return check;
}

async function assertScenarioAllPasses(dir: string): Promise<void> {
  const result = await runShipped(['scenario', 'all', '--json'], (args) => cli(dir, args));
  const doc = JSON.parse(result.stdout) as {
    summary: { total: number; passed: number };
    scenarios: { isolation: string }[];
  };
  assert.equal(result.code, 0, result.stderr || result.stdout);
  assert.ok(doc.summary.total >= 3);
  assert.equal(doc.summary.passed, doc.summary.total);
  assert.ok(doc.scenarios.every((s) => s.isolation === 'netns'));
}

test('npm pack ships the LICENSE, the compiled CLI and a prebuilt linux-x64 glibc helper, and no tests', async (t) => {
  if (packError) return t.skip(packError);
  const files = spawnSync('tar', ['tzf', tarball], { encoding: 'utf8' }).stdout.split('\n');
  for (const file of [
    'package/LICENSE',
    'package/dist/src/cli/main.js',
    'package/dist/scenario.schema.json',
    'package/native/prebuilds/linux-x64/node.glibc.node',
    'package/native/netns.c',
  ]) {
    assert.ok(files.includes(file), `${file} is in the tarball`);
  }
  assert.ok(!files.some((f) => f.startsWith('package/dist/test/') || f.startsWith('package/src/')));
  assert.ok(
    !existsSync(join(work, 'checkout', 'native', 'prebuilds')),
    'postpack removed the prebuilds from the checkout',
  );
});

test('npm install --ignore-scripts of the tarball: the prebuilt helper loads and scenario all passes', {
  timeout: 900_000,
}, async (t) => {
  if (packError) return t.skip(packError);
  const dir = await npmInstallTarball('with-npm');
  assert.ok(!existsSync(join(dir, 'node_modules', 'reuseport', 'native', 'build')), 'nothing was compiled');
  assert.equal((await nativeCheck(dir)).status, 'ok');
  if (skipScenarios) return t.skip(skipScenarios);
  await assertScenarioAllPasses(dir);
});

test('pnpm 10 (build scripts not approved) installs the tarball: the prebuilt helper loads and scenario all passes', {
  timeout: 900_000,
}, async (t) => {
  if (packError) return t.skip(packError);
  const dir = project('with-pnpm');
  try {
    await execFileAsync('npm', ['exec', '--yes', '--prefer-offline', 'pnpm@10', '--', 'install', tarball], {
      ...NPM,
      cwd: dir,
    });
  } catch (err) {
    const message = (err as { stderr?: string }).stderr ?? '';
    if (OFFLINE.test(message)) return t.skip('pnpm@10 cannot be fetched from the npm registry');
    throw err;
  }
  assert.match(realpathSync(join(dir, 'node_modules', 'reuseport')), /\.pnpm/);
  assert.equal((await nativeCheck(dir)).status, 'ok');
  if (skipScenarios) return t.skip(skipScenarios);
  await assertScenarioAllPasses(dir);
});

test('with no prebuild that fits and no install script run, the remedy says `npm rebuild reuseport`, and that works', {
  timeout: 900_000,
}, async (t) => {
  if (packError) return t.skip(packError);
  const dir = await npmInstallTarball('no-prebuild');
  // What a machine the prebuild does not fit (arm64, musl) sees.
  rmSync(join(dir, 'node_modules', 'reuseport', 'native', 'prebuilds'), { recursive: true });
  const missing = await nativeCheck(dir);
  assert.notEqual(missing.status, 'ok');
  assert.match(
    missing.meaning,
    /install script that compiles one did not run.*run `npm rebuild reuseport` in the project/,
  );
  await execFileAsync('npm', ['rebuild', 'reuseport'], { ...NPM, cwd: dir });
  assert.equal((await nativeCheck(dir)).status, 'ok', 'the remedy built the helper');
});

/** `npm install -g --prefix <work>/<name> …`, as a user would type it, into a prefix of its own. */
function npmInstallGlobal(name: string, args: string[]): Promise<Outcome & { prefix: string }> {
  const prefix = join(work, name);
  return settle(
    execFileAsync('npm', ['install', '--global', '--prefix', prefix, '--prefer-offline', ...args], {
      ...NPM,
      cwd: work,
    }),
  ).then((outcome) => ({ ...outcome, prefix }));
}

/** The `reuseport` that a global install put on PATH. */
function globalCli(prefix: string, args: string[]): Promise<Outcome> {
  return settle(
    execFileAsync(join(prefix, 'bin', 'reuseport'), args, {
      cwd: work,
      timeout: 60_000,
      env: { ...process.env, NO_COLOR: '1' },
    }),
  );
}

async function assertGlobalCliWorks(prefix: string): Promise<void> {
  const version = await globalCli(prefix, ['--version']);
  assert.equal(version.code, 0, version.stderr);
  assert.equal(version.stdout.trim(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  const doctor = await globalCli(prefix, ['doctor', '--json']);
  const checks = (JSON.parse(doctor.stdout) as { checks: { id: string; status: string }[] }).checks;
  assert.equal(checks.find((c) => c.id === 'binder.native')?.status, 'ok', doctor.stdout);
}

test('npm install -g of the packed tarball into a fresh prefix: `reuseport --version` and `doctor` work', {
  timeout: 900_000,
}, async (t) => {
  if (packError) return t.skip(packError);
  const { code, stderr, prefix } = await npmInstallGlobal('global-tarball', [tarball]);
  assert.equal(code, 0, stderr);
  await assertGlobalCliWorks(prefix);
});

test('npm install -g of a git+file URL: installs on npm >= 12; before, stops at once naming npm/cli#8440 and leaves no command', {
  timeout: 900_000,
}, async (t) => {
  if (!hasNpm) return t.skip('npm is not on PATH');
  if (!hasGit) return t.skip('git is not on PATH');
  // A repository holding this working tree as committed, so what is tested is what a clone gets.
  const repo = join(work, 'git-repo');
  mkdirSync(repo);
  copyCheckout(repo, { linkModules: false });
  const git = (...args: string[]) =>
    execFileAsync('git', ['-c', 'user.name=reuseport', '-c', 'user.email=dev@reuseport', ...args], { cwd: repo });
  await git('init', '--quiet');
  await git('add', '--all');
  await git('commit', '--quiet', '--message', 'reuseport as a clone sees it');
  const fixed = Number(npmVersion.split('.')[0]) >= 12;
  const outcome = await npmInstallGlobal('global-git', [
    ...(fixed ? ['--allow-git=root'] : []),
    // npm 11 leaves pieces of its clone in the cache's tmp/ (the outer install writes
    // through the link the inner one made); a cache of its own keeps them in `work`.
    '--cache',
    join(work, 'npm-cache'),
    `git+file://${repo}`,
  ]);
  if (outcome.code !== 0 && OFFLINE.test(outcome.stderr))
    return t.skip('the dependencies cannot be fetched from the npm registry');
  if (fixed) {
    assert.equal(outcome.code, 0, outcome.stderr);
    // npm 12 runs no install script of a git package unasked: the README's rebuild compiles the helper.
    await execFileAsync(
      'npm',
      ['rebuild', '--global', '--prefix', outcome.prefix, '--dangerously-allow-all-scripts', 'reuseport'],
      { ...NPM, cwd: work },
    );
    await assertGlobalCliWorks(outcome.prefix);
    return;
  }
  assert.notEqual(outcome.code, 0);
  assert.match(
    outcome.stderr,
    new RegExp(
      `reuseport: npm ${npmVersion.replaceAll('.', '\\.')} cannot install a git URL globally \\(https://github\\.com/npm/cli/issues/8440\\); use npm >= 12`,
    ),
  );
  assert.ok(!existsSync(join(outcome.prefix, 'bin', 'reuseport')), 'no command is left behind');
});
