import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { resolveBinder } from '../src/net/binder.js';
import { spawnWorker } from '../src/net/worker-pool.js';
import { ROOT } from './helpers.js';

/**
 * The static imports reachable from a compiled entry point: the modules a
 * process loads before its first line runs. Dynamic `import()` is not
 * followed: a step that needs a package loads it when it runs.
 */
function staticImports(entry: string): { modules: string[]; packages: Map<string, string> } {
  const modules = new Set<string>();
  const packages = new Map<string, string>();
  const visit = (file: string) => {
    if (modules.has(file)) return;
    modules.add(file);
    const source = readFileSync(file, 'utf8');
    for (const match of source.matchAll(/^\s*(?:import|export)\s(?:[^;'"]*?\sfrom\s)?['"]([^'"]+)['"]/gm)) {
      const specifier = match[1]!;
      if (specifier.startsWith('.')) visit(resolve(dirname(file), specifier));
      else if (!specifier.startsWith('node:')) packages.set(specifier, relative(ROOT, file));
    }
  };
  visit(join(ROOT, entry));
  return { modules: [...modules], packages };
}

// Each scenario starts one runner and one worker per replica: a package in their
// imports is paid on every one of those boots (zod alone: 90 ms of CPU on Node 20).
for (const entry of ['dist/src/scenario/inner-main.js', 'dist/src/net/worker-main.js']) {
  test(`${entry} loads no third-party package before it starts`, () => {
    const { modules, packages } = staticImports(entry);
    assert.ok(modules.length > 3, `the import graph was followed (${modules.length} modules)`);
    assert.deepEqual(
      [...packages].map(([name, from]) => `${name} (imported by ${from})`),
      [],
      'pass plain data to these processes, or import the package where a step needs it',
    );
  });
}

test('workers start without NODE_EXTRA_CA_CERTS, which Node 20 would parse on every boot, and keep the rest', async (t) => {
  const saved = { certs: process.env.NODE_EXTRA_CA_CERTS, marker: process.env.REUSEPORT_TEST_MARKER };
  process.env.NODE_EXTRA_CA_CERTS = '/nonexistent/extra-ca.pem';
  process.env.REUSEPORT_TEST_MARKER = 'kept';
  const binder = await resolveBinder('auto');
  const worker = spawnWorker(
    { workerId: 1, protocol: 'tcp', address: '127.0.0.1', port: 0, reusePort: true, binder, engine: 'builtin' },
    () => {},
  );
  for (const [name, value] of [
    ['NODE_EXTRA_CA_CERTS', saved.certs],
    ['REUSEPORT_TEST_MARKER', saved.marker],
  ] as const) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
  t.after(() => worker.stop(1000));
  const bound = await worker.bound;
  assert.ok(bound.ok, bound.ok ? '' : bound.explanation);
  const environ = readFileSync(`/proc/${worker.pid}/environ`, 'utf8').split('\0');
  assert.ok(environ.includes('REUSEPORT_TEST_MARKER=kept'), 'the rest of the environment is passed on');
  assert.equal(
    environ.find((v) => v.startsWith('NODE_EXTRA_CA_CERTS=')),
    undefined,
  );
});
