// Builds the native SO_REUSEPORT helper. A missing C toolchain must not fail
// `npm install`: the builtin binder (Node >= 22.12) may still be usable, and
// `reuseport doctor` explains what is missing.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'native');
const result = spawnSync('node-gyp', ['rebuild', '--directory', nativeDir], {
  stdio: ['ignore', 'ignore', 'pipe'],
  encoding: 'utf8',
  shell: false,
});
if (result.status !== 0) {
  const reason = result.error ? result.error.message : (result.stderr || '').trim().split('\n').slice(-3).join(' | ');
  process.stderr.write(
    `reuseport: the native helper was not built (${reason || 'node-gyp failed'}).\n` +
      'reuseport: it is needed on Node < 22.12; install a C toolchain (gcc, make, python3) and run `npm rebuild reuseport`, or use Node >= 22.12.\n',
  );
}
