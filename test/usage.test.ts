import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isRoot, runCli } from './helpers.js';

/** Every usage error: exit 2, one line on stderr that names the problem, no stack trace, nothing on stdout. */
async function assertUsageError(args: string[], pattern: RegExp, env?: NodeJS.ProcessEnv): Promise<void> {
  const result = await runCli(args, env ? { env } : {});
  assert.equal(result.code, 2, `exit code for ${args.join(' ')}: ${result.stderr}`);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, `one line for ${args.join(' ')}: ${result.stderr}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, /\n\s+at /);
  assert.equal(result.stdout, '');
}

test('a port out of range', () =>
  assertUsageError(['serve', '--port', '70000'], /--port must be a port number from 0 to 65535, got "70000"/));

test('a port that is not a number', () => assertUsageError(['load', '--port', 'http'], /--port must be a port number/));

test('a host that is not an IP address', () =>
  assertUsageError(['serve', '--host', 'localhost'], /--host must be an IPv4 or IPv6 address/));

test('an address not on this machine (EADDRNOTAVAIL)', () =>
  // 192.0.2.0/24 is TEST-NET-1: never assigned, and bind() sends nothing.
  assertUsageError(
    ['serve', '--host', '192.0.2.1', '--port', '0', '--workers', '1'],
    /192\.0\.2\.1 is not an address of this machine \(EADDRNOTAVAIL\)/,
  ));

test('a privileged port as non-root (EACCES)', { skip: !isRoot && 'needs root to run the CLI as nobody' }, async () => {
  const { spawnSync } = await import('node:child_process');
  const { CLI } = await import('./helpers.js');
  const access = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, CLI, '--version'], { encoding: 'utf8' });
  if (access.status !== 0) return; // The checkout is not readable by nobody; covered by the scenario as-nobody test.
  const result = spawnSync(
    'runuser',
    ['-u', 'nobody', '--', process.execPath, CLI, 'serve', '--host', '127.0.0.1', '--port', '80', '--workers', '1'],
    { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } },
  );
  assert.equal(result.status, 2, result.stderr);
  assert.match(result.stderr, /port 80 is privileged .* \(EACCES\)/);
  assert.equal(result.stderr.trim().split('\n').length, 1);
});

test('N <= 0', () => assertUsageError(['load', '--connections', '0'], /--connections must be a whole number from 1/));

test('workers <= 0', () => assertUsageError(['serve', '--workers', '-1'], /--workers must be a whole number from 1/));

test('concurrency greater than N', () =>
  assertUsageError(
    ['load', '--connections', '10', '--concurrency', '20'],
    /--concurrency \(20\) cannot exceed --connections \(10\)/,
  ));

test('an unknown option', () => assertUsageError(['serve', '--wrokers', '2'], /unknown option '--wrokers'/));

test('an unknown command', () => assertUsageError(['srve'], /unknown command 'srve'/));

test('an unknown protocol', () => assertUsageError(['serve', '--protocol', 'sctp'], /--protocol must be tcp or udp/));

test('a bad binder choice', () => assertUsageError(['serve', '--binder', 'magic'], /--binder/));

test('a scenario that does not exist', () => assertUsageError(['scenario', 'run', 'nope'], /nope/));

test('--help is useful and exits 0', async () => {
  const result = await runCli(['--help']);
  assert.equal(result.code, 0);
  for (const word of ['serve', 'load', 'scenario', 'doctor', 'Exit codes'])
    assert.match(result.stdout, new RegExp(word));
  const serveHelp = await runCli(['serve', '--help']);
  assert.match(serveHelp.stdout, /--no-reuseport/);
  assert.match(serveHelp.stdout, /accept success/);
});

test('doctor --json reports every item', async () => {
  const result = await runCli(['doctor', '--json']);
  assert.equal(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as { checks: { id: string; status: string }[]; ready: boolean };
  assert.deepEqual(
    report.checks.map((c) => c.id),
    [
      'kernel',
      'node',
      'binder.builtin',
      'binder.native',
      'root',
      'netns',
      'sysctl.tcp_migrate_req',
      'sysctl.ip_local_port_range',
      'nofile',
      'scenarios.kernel',
    ],
  );
  assert.equal(report.ready, true);
});

test('with neither binder, one clear error names both remedies', async () => {
  const result = await runCli(['serve', '--port', '0', '--binder', 'native'], {
    env: { REUSEPORT_NATIVE_DISABLE: '1' },
  });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /Node >= 22\.12/);
  assert.match(result.stderr, /reuseport doctor/);
  assert.equal(result.stderr.trim().split('\n').length, 1);
});
