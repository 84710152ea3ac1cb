// Builds the native SO_REUSEPORT helper. A missing C toolchain must not fail
// `npm install`: the builtin binder (Node >= 22.12) may still be usable, and
// `reuseport doctor` explains what is missing.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');
// Inside npm scripts npm names its own node-gyp; run directly, look beside npm.
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
const gyp = process.env.npm_config_node_gyp || (existsSync(bundled) ? bundled : null);
const [command, args] = gyp ? [process.execPath, [gyp]] : ['node-gyp', []];
// Headers come from this Node's own install (npm is set up to point there); never downloaded.
const localHeaders = join(dirname(process.execPath), '..');
const nodedir =
  process.env.npm_config_nodedir ||
  (existsSync(join(localHeaders, 'include', 'node', 'node_api.h')) ? localHeaders : null);
const result = spawnSync(
  command,
  [...args, 'rebuild', '--directory', nativeDir, ...(nodedir ? [`--nodedir=${nodedir}`] : [])],
  {
    stdio: ['ignore', 'ignore', 'pipe'],
    encoding: 'utf8',
    shell: false,
  },
);
if (result.status !== 0) {
  const reason = result.error ? result.error.message : (result.stderr || '').trim().split('\n').slice(-3).join(' | ');
  process.stderr.write(
    `reuseport: the native helper was not built (${reason || 'node-gyp failed'}).\n` +
      'reuseport: it is needed on Node < 22.12; install a C toolchain (gcc, make, python3) and run `npm rebuild reuseport`, or use Node >= 22.12.\n',
  );
}
