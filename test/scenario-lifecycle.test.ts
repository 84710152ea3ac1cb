// Lifecycle steps, held connections and outcome expectations (issue 7):
// validation of good and bad files (with their lines), and real runs whose
// expectations fail on purpose (exit 1, observed against expected).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { describe, test } from 'node:test';
import { loadScenario, ScenarioFileError } from '../src/scenario/scenario-file.js';
import { isRoot, runCli, scenarioFile } from './helpers.js';

const canNamespace =
  spawnSync('unshare', isRoot ? ['--net', 'true'] : ['--net', '--map-root-user', 'true']).status === 0;
const isolation = canNamespace ? [] : ['--isolation', 'host'];
const [major, minor] = os.release().split('.').map(Number);
const migrateReq = (major! > 5 || (major === 5 && minor! >= 14)) && canNamespace;
const noMigrate = !migrateReq && 'needs Linux 5.14+ (tcp_migrate_req) and a network namespace';

/** The mistakes of a file, as "line: message". */
async function mistakes(file: string): Promise<string[]> {
  try {
    await loadScenario(file);
    return [];
  } catch (err) {
    assert.ok(err instanceof ScenarioFileError, String(err));
    return err.issues.map((i) => `${i.line}: ${i.message}`);
  }
}

// Lines: name 1, title 2, article 3, lookFor 4, explanation 5; bodies start at line 6.
const SERVERS = `servers:
  - { id: W, address: 127.0.0.1, port: 0, replicas: 2, backlog: 4 }
  - { id: U, address: 127.0.0.1, port: 6001, protocol: udp }
`; // lines 6-8

describe('validation of lifecycle keys', () => {
  test('a file using every lifecycle key loads, with kinds and targets', async (t) => {
    const file = scenarioFile(
      t,
      'good',
      `${SERVERS}steps:
  - bind: [W#1, W#2]
  - { setsockopt: W#1, option: SO_REUSEPORT, value: true, id: opt }
  - listen: W
  - pause: W#2
  - hold: { id: held, target: 127.0.0.1, port: W, connections: 3, payload: abc, waitMs: 200 }
  - resume: W#2
  - { shutdown: W#1, id: down }
  - listen: W#1
  - traffic: { id: t, target: 127.0.0.1, port: W, connections: 4 }
  - { close: W#2, id: gone }
  - { settle: held, waitMs: 100 }
kernel: { version: ">=5.14", reason: because, older: something else }
expect:
  - { step: opt, outcome: ok, on: W#1 }
  - { step: gone, counters: { TCPMigrateReqSuccess: { min: 0 } }, timeWait: { port: W, max: 100 } }
  - { traffic: t, fails: { with: ECONNREFUSED, maxShare: 0.5 } }
  - { traffic: t, count: { on: W#2, min: 0 } }
  - { hold: held, state: served, by: W, exactly: 3 }
`,
    );
    const s = await loadScenario(file);
    assert.deepEqual(
      s.steps.map((x) => x.kind),
      [
        'lifecycle',
        'setsockopt',
        'lifecycle',
        'lifecycle',
        'hold',
        'lifecycle',
        'lifecycle',
        'lifecycle',
        'traffic',
        'lifecycle',
        'settle',
      ],
    );
    assert.deepEqual(s.steps[0]?.kind === 'lifecycle' && s.steps[0].targets, ['W#1', 'W#2']);
    assert.deepEqual(s.kernel, { version: '>=5.14', reason: 'because', older: 'something else' });
    assert.deepEqual(
      s.expect.map((e) => e.kind),
      ['step', 'step', 'fails', 'count', 'held'],
    );
  });

  test('a replica beyond the server replicas is reported at its line', async (t) => {
    const file = scenarioFile(t, 'bad', `${SERVERS}steps:\n  - bind: W#3\nexpect:\n  - { bind: W, outcome: ok }\n`);
    assert.deepEqual(await mistakes(file), ['10: steps[0].bind: W has 2 replica(s), so there is no #3']);
  });

  test('a lifecycle step on a UDP server, and backlog on one, are refused', async (t) => {
    const file = scenarioFile(
      t,
      'bad',
      `servers:\n  - { id: U, address: 127.0.0.1, port: 6001, protocol: udp, backlog: 3 }\nsteps:\n  - bind: U\nexpect:\n  - { bind: U, outcome: ok }\n`,
    );
    assert.deepEqual(await mistakes(file), [
      '7: servers[0].backlog needs a TCP server (lifecycle mode drives TCP listeners)',
      '9: steps[0].bind: lifecycle steps drive TCP listeners; U is UDP',
    ]);
  });

  test('a hold never settled, and a settle of an unknown hold, are reported', async (t) => {
    const file = scenarioFile(
      t,
      'bad',
      `${SERVERS}steps:\n  - hold: { id: held, target: 127.0.0.1, port: W, connections: 2 }\n  - settle: heldd\nexpect:\n  - { hold: held, state: waiting, exactly: 2 }\n`,
    );
    assert.deepEqual(await mistakes(file), [
      '10: hold "held" is never settled; add a later step "settle: held"',
      '11: no earlier hold step "heldd" (did you mean "held"?)',
    ]);
  });

  test('a hold to an address off loopback is refused by the never-leave-loopback rule', async (t) => {
    const file = scenarioFile(
      t,
      'bad',
      `${SERVERS}steps:\n  - hold: { id: h, target: 10.1.2.3, port: W, connections: 2 }\n  - settle: h\nexpect:\n  - { hold: h, state: served, exactly: 2 }\n`,
    );
    const found = await mistakes(file);
    assert.equal(found.length, 1);
    assert.match(found[0]!, /^10: steps\[0\]\.hold\.target 10\.1\.2\.3 is neither a loopback address nor declared/);
  });

  test('a step expectation naming an unknown step, or nothing to check, is reported', async (t) => {
    const file = scenarioFile(
      t,
      'bad',
      `${SERVERS}steps:\n  - { listen: W, id: listen-all }\nexpect:\n  - { step: listen-al, outcome: ok }\n  - { step: listen-all }\n`,
    );
    assert.deepEqual(await mistakes(file), [
      '12: unknown step id "listen-al" (did you mean "listen-all"?)',
      '13: expect[1] needs outcome, counters or timeWait',
    ]);
  });

  test('ranges: min above max, none given, exactly with others', async (t) => {
    const file = scenarioFile(
      t,
      'bad',
      `${SERVERS}steps:\n  - { listen: W }\n  - traffic: { id: t, target: 127.0.0.1, port: W, connections: 4 }\nexpect:\n  - { traffic: t, fails: { with: ETIMEDOUT, min: 3, max: 1 } }\n  - { traffic: t, count: { on: W#1 } }\n  - { traffic: t, count: { on: W#2, exactly: 1, max: 2 } }\n`,
    );
    assert.deepEqual(await mistakes(file), [
      '13: expect[0].fails.max must be >= min (3), got 1',
      '14: expect[1].count needs one of exactly, min, max, minShare, maxShare',
      '15: expect[2].count: exactly goes alone, not with max',
    ]);
  });

  test('setsockopt takes SO_REUSEPORT or SO_REUSEADDR; kernel needs >=MAJOR.MINOR', async (t) => {
    const file = scenarioFile(
      t,
      'bad',
      `kernel: { version: "5.14", reason: r, older: o }\n${SERVERS.replace(/^/, '')}steps:\n  - { setsockopt: W, option: SO_LINGER, value: true }\nexpect:\n  - { bind: W, outcome: ok }\n`,
    );
    const found = await mistakes(file);
    assert.equal(found.length, 2, found.join('\n'));
    assert.match(found[0]!, /^6: kernel\.version must be a minimum version like ">=\d+\.\d+"/);
    assert.match(found[1]!, /^11: steps\[0\]\.option must be one of SO_REUSEPORT, SO_REUSEADDR/);
  });

  test('a traffic port naming an unknown server is reported', async (t) => {
    const file = scenarioFile(
      t,
      'bad',
      `${SERVERS}steps:\n  - { listen: W }\n  - traffic: { id: t, target: 127.0.0.1, port: V, connections: 4 }\nexpect:\n  - { traffic: t, all: W }\n`,
    );
    assert.deepEqual(await mistakes(file), [
      '11: steps[1].traffic.port: unknown server "V" (a port, or the id of a server)',
    ]);
  });
});

/** Runs a scenario file that must fail: exit 1 and the named expectation marked failed with both sides. */
async function runFailing(file: string, extra: string[] = isolation) {
  const result = await runCli(['scenario', 'run', file, ...extra]);
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(result.stdout, /FAILED/);
  return result.stdout;
}

const BOUND_ONLY = `servers:
  - { id: W, address: 127.0.0.1, port: 0, replicas: 2 }
steps:
  - bind: [W#1, W#2]
  - traffic: { id: refused, target: 127.0.0.1, port: W, connections: 5 }
`; // lines 6-10

describe('lifecycle runs that fail on purpose', () => {
  test('fails: a wrong count of ECONNREFUSED is observed against expected', async (t) => {
    const file = scenarioFile(
      t,
      'wrong-fails',
      `${BOUND_ONLY}expect:\n  - { traffic: refused, fails: { with: ECONNREFUSED, exactly: 4 } }\n`,
    );
    const out = await runFailing(file);
    assert.match(out, /✘ refused: exactly 4 ECONNREFUSED \(line 12\)/);
    assert.match(out, /expected: ECONNREFUSED exactly 4/);
    assert.match(out, /observed: ECONNREFUSED 5\/5 \(100%\) \(all failures: ECONNREFUSED 5\)/);
  });

  test('failures nobody expected still fail: a bound-only socket refuses every connection', async (t) => {
    const file = scenarioFile(t, 'unexpected-refusal', `${BOUND_ONLY}expect:\n  - { bind: W, outcome: ok }\n`);
    const out = await runFailing(file);
    assert.match(out, /✘ refused: every connection answered \(no expectation allows failures\)/);
    assert.match(out, /observed: 0\/5 answered; ECONNREFUSED 5/);
  });

  test('step outcome: a listen expected to succeed fails with EADDRINUSE', async (t) => {
    const file = scenarioFile(
      t,
      'wrong-outcome',
      `servers:\n  - { id: RA, address: 127.0.0.1, port: 0, replicas: 2, reuseport: false, reuseaddr: true }\nsteps:\n  - bind: RA\n  - listen: RA#1\n  - { listen: RA#2, id: second }\nexpect:\n  - { step: second, outcome: ok }\n`,
    );
    const out = await runFailing(file);
    assert.match(out, /✘ step second: outcome ok \(line 13\)/);
    assert.match(out, /expected: outcome ok/);
    assert.match(out, /observed: RA#2 EADDRINUSE/);
  });

  test('a step that fails without an expectation fails the scenario, named with its line', async (t) => {
    const file = scenarioFile(
      t,
      'unexpected-step',
      `servers:\n  - { id: A, address: 127.0.0.1, port: 0 }\nsteps:\n  - listen: A\nexpect:\n  - { bind: A, outcome: ok }\n`,
    );
    // listen before any bind: EBADF (no socket yet), and no step expectation names it.
    const out = await runFailing(file);
    assert.match(out, /✘ every lifecycle step succeeds \(no expectation says it may fail\)/);
    assert.match(out, /observed: listen A#1 \(line 9\): EBADF/);
  });

  test('count: a replica that is bound but not listening gets nothing', async (t) => {
    const file = scenarioFile(
      t,
      'wrong-count',
      `servers:\n  - { id: W, address: 127.0.0.1, port: 0, replicas: 2 }\nsteps:\n  - bind: [W#1, W#2]\n  - listen: W#1\n  - traffic: { id: t, target: 127.0.0.1, port: W, connections: 8 }\nexpect:\n  - { traffic: t, count: { on: W#2, min: 1 } }\n`,
    );
    const out = await runFailing(file);
    assert.match(out, /✘ t: W#2 gets at least 1 \(line 13\)/);
    assert.match(out, /observed: W#2 0\/8 \(0%\) \(W#1 8\)/);
  });

  test('timeWait: the server closes first, so its port has TIME_WAIT sockets', async (t) => {
    const file = scenarioFile(
      t,
      'wrong-timewait',
      `servers:\n  - { id: W, address: 127.0.0.1, port: 0 }\nsteps:\n  - start: W\n  - traffic: { id: t, target: 127.0.0.1, port: W, connections: 6 }\nexpect:\n  - { step: t, timeWait: { port: W, exactly: 0 } }\n`,
    );
    const out = await runFailing(file);
    assert.match(out, /✘ step t: TIME_WAIT on port W: exactly 0 \(line 12\)/);
    assert.match(out, /observed: [1-6] on port \d+/);
  });

  test('shutdown: a shut-down listener leaves its group and gets nothing', async (t) => {
    const file = scenarioFile(
      t,
      'wrong-shutdown',
      `servers:\n  - { id: W, address: 127.0.0.1, port: 0, replicas: 2 }\nsteps:\n  - start: W\n  - shutdown: W#1\n  - traffic: { id: t, target: 127.0.0.1, port: W, connections: 8 }\nexpect:\n  - { traffic: t, count: { on: W#1, min: 1 } }\n`,
    );
    const out = await runFailing(file);
    assert.match(out, /✘ t: W#1 gets at least 1 \(line 13\)/);
    assert.match(out, /observed: W#1 0\/8 \(0%\)/);
  });

  test('setsockopt: clearing SO_REUSEPORT on a listener does not keep the next one out, and starves it', async (t) => {
    // The bind bucket's fast path (tb->fastreuseport, fastuid) still admits B; B forms a group without A.
    const file = scenarioFile(
      t,
      'wrong-setsockopt',
      `servers:\n  - { id: A, address: 127.0.0.1, port: 6000 }\n  - { id: B, address: 127.0.0.1, port: 6000 }\nsteps:\n  - start: A\n  - { setsockopt: A, option: SO_REUSEPORT, value: false, id: clear }\n  - start: B\n  - traffic: { id: t, target: 127.0.0.1, port: 6000, connections: 8 }\nexpect:\n  - { step: clear, outcome: ok }\n  - { bind: B, outcome: EADDRINUSE }\n`,
    );
    const out = await runFailing(file);
    assert.match(out, /✘ B bind: EADDRINUSE \(line 16\)/);
    assert.match(out, /observed: ok/);
    assert.match(out, /✔ step clear: outcome ok/);
  });

  test('pause and hold: connections to a paused worker wait instead of being served', async (t) => {
    const file = scenarioFile(
      t,
      'wrong-pause',
      `servers:\n  - { id: W, address: 127.0.0.1, port: 0 }\nsteps:\n  - start: W\n  - pause: W\n  - hold: { id: h, target: 127.0.0.1, port: W, connections: 3, waitMs: 1000 }\n  - { settle: h, waitMs: 50 }\nexpect:\n  - { hold: h, state: served, exactly: 3 }\n`,
    );
    const out = await runFailing(file);
    assert.match(out, /✘ held h: served exactly 3 \(line 14\)/);
    assert.match(out, /observed: served 0\/3 \(0%\) — waiting 3/);
    assert.match(out, /✘ h: every held connection served, or in a state an expectation names/);
  });

  test('counters and held states: with migration, nothing is reset and TCPMigrateReqSuccess rises', {
    skip: noMigrate,
  }, async (t) => {
    const file = scenarioFile(
      t,
      'wrong-migrate',
      `network:\n  sysctls: { net.ipv4.tcp_migrate_req: 1 }\nservers:\n  - { id: W, address: 127.0.0.1, port: 0, replicas: 2 }\nsteps:\n  - bind: W#1\n  - listen: W#1\n  - pause: W#1\n  - hold: { id: q, target: 127.0.0.1, port: W, connections: 3, payload: abc }\n  - bind: W#2\n  - listen: W#2\n  - { close: W#1, id: c }\n  - settle: q\nexpect:\n  - { step: c, counters: { TCPMigrateReqSuccess: { exactly: 0 } } }\n  - { hold: q, state: reset, exactly: 3 }\n`,
    );
    const out = await runFailing(file, []);
    assert.match(out, /✘ step c: TCPMigrateReqSuccess \+exactly 0 \(line 20\)/);
    assert.match(out, /observed: TCPMigrateReqSuccess \+3/);
    assert.match(out, /✘ held q: reset exactly 3 \(line 21\)/);
    assert.match(out, /observed: reset 0\/3 \(0%\) — served 3; served by W#2 3/);
    // Served elsewhere with the bytes the clients sent: the every-run check passes.
    assert.match(out, /✔ q: every held connection served with its bytes intact/);
  });

  test('fchown before bind: a socket given to another uid keeps root out of the port', {
    skip: !isRoot && 'needs root (fchown to another uid)',
  }, async (t) => {
    const file = scenarioFile(
      t,
      'wrong-fchown',
      `servers:\n  - { id: A, address: 127.0.0.1, port: 6000, fchown: { uid: 65534, at: before-bind } }\n  - { id: B, address: 127.0.0.1, port: 6000 }\nsteps:\n  - start: A\n  - start: B\nexpect:\n  - { bind: B, outcome: ok }\n`,
    );
    const out = await runFailing(file);
    assert.match(out, /✘ B bind: ok \(line 13\)/);
    assert.match(out, /observed: EADDRINUSE/);
  });

  test('kernel: a scenario needing a newer kernel is skipped with the reason and what older ones do', async (t) => {
    const file = scenarioFile(
      t,
      'future',
      `kernel: { version: ">=99.0", reason: it needs the future, older: they do the past }\nservers:\n  - { id: A, address: 127.0.0.1, port: 0 }\nsteps:\n  - start: A\nexpect:\n  - { bind: A, outcome: ok }\n`,
    );
    const result = await runCli(['scenario', 'run', file, '--strict'], { env: { COLUMNS: '400' } });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, /SKIPPED/);
    assert.match(
      result.stdout,
      /needs Linux 99\.0 or later \(it needs the future\); this is Linux \S+\. Older kernels: they do the past/,
    );
  });
});
