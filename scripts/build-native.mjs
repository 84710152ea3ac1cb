// The native helper, the way bufferutil and similar addons ship theirs:
//
//   node scripts/build-native.mjs             `install`: nothing to do when a prebuilt
//                                              binary in native/prebuilds/ loads here; else
//                                              compile native/build/Release with node-gyp
//   node scripts/build-native.mjs --prebuild  `prepack`: prebuildify --napi into
//                                              native/prebuilds/<platform>-<arch>/
//   node scripts/build-native.mjs --clean-prebuilds   `postpack`: remove them again, so a
//                                              checkout never loads a stale prebuild
//
// A failed compile must not fail `npm install`: the builtin binder (Node >= 22.12)
// may still be usable. The reason is left in native/build/install-error.txt, where
// the loader (src/net/native.ts) finds it and says what to do.
// `npm rebuild reuseport --build-from-source` compiles even when a prebuild fits.
import { spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const nativeDir = join(root, 'native');
const prebuildsDir = join(nativeDir, 'prebuilds');
const INSTALL_ERROR = join(nativeDir, 'build', 'install-error.txt');
const require = createRequire(join(root, 'package.json'));

/** node-gyp: the one npm names, else npm's bundled copy beside this Node, else PATH. */
function nodeGyp() {
  const bundled = join(
    dirname(process.execPath),
    '..',
    'lib',
    'node_modules',
    'npm',
    'node_modules',
    'node-gyp',
    'bin',
    'node-gyp.js',
  );
  const script = process.env.npm_config_node_gyp || (existsSync(bundled) ? bundled : null);
  return script ? [process.execPath, [script]] : ['node-gyp', []];
}

/** This Node's own headers, so node-gyp never downloads any (npm points there too). */
function nodedir() {
  const local = join(dirname(process.execPath), '..');
  if (process.env.npm_config_nodedir) return process.env.npm_config_nodedir;
  return existsSync(join(local, 'include', 'node', 'node_api.h')) ? local : null;
}

function describe(result) {
  if (result.error) return result.error.message;
  return (result.stderr || '').trim().split('\n').slice(-3).join(' | ') || `exit ${result.status}`;
}

/** The prebuilt binary node-gyp-build would pick on this machine, if it loads; else null. */
function loadablePrebuild() {
  if (!existsSync(prebuildsDir)) return null;
  // Resolve among prebuilds only: a build/Release left in a checkout does not count.
  const child = spawnSync(
    process.execPath,
    [
      '-e',
      'const p = require(process.argv[1]).path(process.argv[2]); require(p); console.log(p)',
      require.resolve('node-gyp-build'),
      nativeDir,
    ],
    { encoding: 'utf8', env: { ...process.env, PREBUILDS_ONLY: '1' } },
  );
  return child.status === 0 ? child.stdout.trim() : null;
}

function install() {
  const forced = process.env.npm_config_build_from_source === 'true';
  if (!forced && loadablePrebuild()) return;
  const [command, args] = nodeGyp();
  const dir = nodedir();
  const result = spawnSync(
    command,
    [...args, 'rebuild', '--directory', nativeDir, ...(dir ? [`--nodedir=${dir}`] : [])],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      encoding: 'utf8',
    },
  );
  if (result.status === 0) {
    rmSync(INSTALL_ERROR, { force: true });
    return;
  }
  const reason = describe(result);
  mkdirSync(dirname(INSTALL_ERROR), { recursive: true });
  writeFileSync(INSTALL_ERROR, `${reason}\n`);
  process.stderr.write(
    `reuseport: no prebuilt native helper fits ${process.platform}-${process.arch}, and compiling it failed (${reason}).\n` +
      'reuseport: it is needed on Node < 22.12 and makes serve and load faster on every Node; install gcc, make and python3, then run `npm rebuild reuseport`.\n',
  );
}

function prebuild() {
  const [command, args] = nodeGyp();
  const dir = nodedir();
  const prebuildify = join(dirname(require.resolve('prebuildify/package.json')), 'bin.js');
  // Built from a copy of the sources: prebuildify moves its output out of
  // build/Release, and a checkout's own build must stay where it is.
  const work = mkdtempSync(join(tmpdir(), 'reuseport-prebuild-'));
  try {
    for (const file of readdirSync(nativeDir).filter((f) => /\.(c|h|gyp)$/.test(f))) {
      copyFileSync(join(nativeDir, file), join(work, file));
    }
    // --target this Node: with NAPI_VERSION 8 the binary loads on every later Node too,
    // and this Node's headers are at hand (prebuildify's default target would download).
    const result = spawnSync(
      process.execPath,
      [prebuildify, '--napi', '--strip', '--tag-libc', '--target', process.versions.node, '--cwd', work],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        encoding: 'utf8',
        env: {
          ...process.env,
          PREBUILD_NODE_GYP: command === process.execPath ? args[0] : command,
          ...(dir ? { npm_config_nodedir: dir } : {}),
        },
      },
    );
    if (result.status !== 0) {
      process.stderr.write(`reuseport: prebuildify failed: ${describe(result)}\n`);
      process.exit(1);
    }
    rmSync(prebuildsDir, { recursive: true, force: true });
    cpSync(join(work, 'prebuilds'), prebuildsDir, { recursive: true });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const built = loadablePrebuild();
  if (built === null) {
    process.stderr.write('reuseport: the prebuilt helper does not load on this machine\n');
    process.exit(1);
  }
  process.stderr.write(`reuseport: prebuilt ${built.slice(root.length + 1)}\n`);
}

const mode = process.argv[2];
if (mode === '--prebuild') prebuild();
else if (mode === '--clean-prebuilds') rmSync(prebuildsDir, { recursive: true, force: true });
else install();
