import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { classifyOrder } from '../src/compare/analyze.js';
import type { CompareReport } from '../src/compare/compare.js';
import { MODELS, PHASES } from '../src/compare/protocol.js';
import { COMPARE_EXECUTABLE_RELATIVE_PATH, COMPARE_SCALE_ENV } from '../src/compare/run.js';
import { CLI, descendants, netNamespaces, ROOT, runCli, waitGone } from './helpers.js';

const built = existsSync(join(ROOT, COMPARE_EXECUTABLE_RELATIVE_PATH));
const skip = !built && `${COMPARE_EXECUTABLE_RELATIVE_PATH} is not built (no C toolchain)`;
/** Short phases: a tenth of the default lengths. */
const SHORT = { [COMPARE_SCALE_ENV]: '0.1' };

let report: CompareReport;
let exitCode: number | null;

before(async () => {
  if (!built) return;
  const result = await runCli(['compare', '--json'], { env: SHORT, timeoutMs: 60_000 });
  exitCode = result.code;
  report = JSON.parse(result.stdout) as CompareReport;
});

test('compare --json parses and carries every figure of every model and phase', { skip }, () => {
  assert.equal(exitCode, 0);
  assert.equal(report.version, 1);
  assert.deepEqual(report.models, [...MODELS]);
  assert.deepEqual(report.phases, [...PHASES]);
  assert.ok(report.cores >= 1);
  for (const phase of ['order', 'light', 'stall'] as const) {
    assert.deepEqual(
      report.figures[phase].map((f) => f.model),
      [...MODELS],
      phase,
    );
  }
  assert.deepEqual(
    report.figures.heavy.map((f) => f.model),
    [...MODELS],
  );
  for (const heavy of report.figures.heavy) {
    assert.equal(heavy.rounds.length, report.setup.heavyRounds, heavy.model);
    assert.ok(heavy.ratioToSharedFifo !== null && heavy.ratioToSharedFifo.stdev > 0, heavy.model);
  }
  // One raw run per model in order, light and stall, and one per model per heavy round.
  assert.equal(report.raw.length, MODELS.length * (3 + report.setup.heavyRounds));
  for (const light of report.figures.light) {
    assert.ok(light.connectionsPerSecond > 0 && light.serverCpuUsPerConnection > 0, light.model);
    assert.equal(light.perWorker.reduce((a, b) => a + b, 0) > 0, true);
  }
  const ids = report.verdicts.map((v) => v.id);
  for (const id of [
    'order.lifo',
    'order.fifo',
    'light.nginx',
    'light.dispatcher',
    'heavy.cloudflare',
    'stall.reuseport',
  ]) {
    assert.ok(ids.includes(id), id);
  }
  for (const verdict of report.verdicts) {
    assert.ok(['reproduced', 'not reproduced here', 'unclear'].includes(verdict.status), verdict.id);
    assert.match(verdict.measured, /\d/, verdict.id);
  }
});

test('each model is that model: one listener when shared, one per worker for reuseport, fds passed by the dispatchers', {
  skip,
}, () => {
  for (const f of report.figures.order) {
    const expectedListeners = f.model === 'reuseport' ? report.workers : 1;
    assert.equal(f.evidence.listeners, expectedListeners, `${f.model} listening sockets`);
    const dispatched = f.model === 'dispatcher' || f.model === 'dispatcher-least-loaded';
    assert.equal(f.evidence.fdsPassed, dispatched ? f.connections : 0, `${f.model} descriptors passed`);
    assert.equal(f.evidence.processes, report.workers + (dispatched ? 1 : 0), `${f.model} processes`);
  }
});

test('the order fingerprint tells FIFO from LIFO from random', { skip }, () => {
  const of = (model: string) => report.figures.order.find((f) => f.model === model)!;
  assert.equal(of('shared-lifo').classification, 'one worker');
  assert.equal(of('shared-fifo').classification, 'rotation');
  assert.equal(of('dispatcher').classification, 'rotation');
  assert.equal(of('reuseport').classification, 'random');
});

test('classifyOrder: one worker, rotation, random and mixed', () => {
  assert.equal(classifyOrder(0.99, 1, 4, 200), 'one worker');
  assert.equal(classifyOrder(0.01, 0.95, 4, 200), 'rotation');
  assert.equal(classifyOrder(0.26, 0.25, 4, 200), 'random');
  assert.equal(classifyOrder(0.5, 0.3, 4, 200), 'mixed');
  assert.equal(classifyOrder(1, 1, 1, 200), 'single worker');
});

test('every stopped worker was resumed, and no process or namespace is left', { skip }, async () => {
  for (const stall of report.figures.stall) {
    assert.equal(stall.resumed, true, stall.model);
    assert.ok(stall.stoppedForMs > 0, stall.model);
  }
  assert.ok(report.pids.length >= MODELS.length * report.workers);
  assert.deepEqual(await waitGone(report.pids), []);
  if (report.isolation.kind === 'netns') assert.ok(!netNamespaces().has(report.netns), 'the namespace is gone');
});

test('Ctrl-C during a stall resumes and removes every process', { skip }, async () => {
  const child = spawn(process.execPath, [CLI, 'compare', '--phases', 'stall', '--models', 'reuseport'], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: '1' },
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  // Wait (bounded) until one of its descendants is stopped (state T).
  const deadline = Date.now() + 20_000;
  let seen: number[] = [];
  let stopped = false;
  while (!stopped && Date.now() < deadline && child.exitCode === null) {
    seen = [...new Set([...seen, ...descendants(child.pid!)])];
    stopped = seen.some((pid) => {
      try {
        return /^State:\s+T/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
      } catch {
        return false;
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.ok(stopped, 'a worker was stopped');
  child.kill('SIGINT');
  assert.equal(await exited, 130);
  assert.deepEqual(await waitGone(seen), []);
});

async function assertUsage(args: string[], pattern: RegExp, env?: NodeJS.ProcessEnv): Promise<void> {
  const result = await runCli(args, env ? { env } : {});
  assert.equal(result.code, 2, result.stderr);
  const lines = result.stderr.trim().split('\n');
  assert.equal(lines.length, 1, result.stderr);
  assert.match(lines[0]!, pattern);
  assert.equal(result.stdout, '');
}

test('compare: an unknown model is a one-line usage error', () =>
  assertUsage(
    ['compare', '--models', 'reuseport,fastest'],
    /--models takes a comma-separated list of .*"fastest" is not one/,
  ));

test('compare: an unknown phase is a one-line usage error', () =>
  assertUsage(['compare', '--phases', 'warp'], /--phases takes a comma-separated list of order, light, heavy, stall/));

test('compare: --workers 0 is a one-line usage error', () =>
  assertUsage(['compare', '--workers', '0'], /--workers must be a whole number from 1 to 64/));

test('compare: a bad REUSEPORT_COMPARE_SCALE is a one-line usage error', () =>
  assertUsage(['compare'], /REUSEPORT_COMPARE_SCALE must be a number from 0\.01 to 1/, {
    [COMPARE_SCALE_ENV]: 'fast',
  }));
