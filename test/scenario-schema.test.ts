import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { UsageError } from '../src/errors.js';
import {
  listScenarioFiles,
  loadScenario,
  parseScenario,
  resolveScenario,
  ScenarioFileError,
  scenarioNameOf,
} from '../src/scenario/scenario-file.js';
import { hostAddress, isLoopback, isWildcard, type Scenario, validateScenario } from '../src/scenario/schema.js';

/** The directory whose package.json is named "reuseport" (this file runs from dist/test/). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'reuseport') {
      return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find the reuseport repository root');
    dir = parent;
  }
}

const ROOT = repoRoot();
const SCENARIOS = path.join(ROOT, 'scenarios');
let tmp = '';

before(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'reuseport-scenario-test-'));
});
after(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Copy without `file` and without every `line` field, for comparing two sources of the same scenario. */
function withoutPositions(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutPositions);
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (k !== 'line' && k !== 'file') out[k] = withoutPositions(v);
    return out;
  }
  return value;
}

/** A small valid scenario; line numbers matter to the tests below. */
const BASE = [
  'name: demo', //                           1
  'title: Demo', //                          2
  'article: What the article says.', //      3
  'lookFor: What to look for.', //           4
  'explanation: Why it happens.', //         5
  'network:', //                             6
  '  addresses:', //                         7
  '    - address: 10.0.0.2', //              8
  '      hostStandIn: 127.0.0.2', //         9
  'servers:', //                             10
  '  - id: A', //                            11
  '    address: 10.0.0.2', //                12
  '    port: 6000', //                       13
  '  - id: B', //                            14
  '    address: 0.0.0.0', //                 15
  '    port: 6000', //                       16
  '    replicas: 2', //                      17
  'steps:', //                               18
  '  - start: [A, B]', //                    19
  '  - traffic:', //                         20
  '      id: t', //                          21
  '      target: 10.0.0.2', //               22
  '      port: 6000', //                     23
  '      connections: 10', //                24
  'expect:', //                              25
  '  - bind: A', //                          26
  '    outcome: ok', //                      27
  '  - traffic: t', //                       28
  '    all: A', //                           29
];

/** BASE with some lines replaced (1-based line number → new text; an array inserts several lines). */
function variant(changes: Record<number, string | string[]> = {}): string {
  return `${BASE.flatMap((text, i) => changes[i + 1] ?? [text]).join('\n')}\n`;
}

function write(name: string, text: string): string {
  const file = path.join(tmp, name);
  writeFileSync(file, text);
  return file;
}

async function issuesOf(file: string): Promise<ScenarioFileError['issues']> {
  try {
    await loadScenario(file);
  } catch (err) {
    assert.ok(err instanceof ScenarioFileError, `expected a ScenarioFileError, got ${String(err)}`);
    return err.issues;
  }
  assert.fail(`${file} was accepted`);
}

describe('shipped scenarios', () => {
  it("the shipped scenario files: the article's three first, in its order, then the rest by name", async () => {
    const files = await listScenarioFiles(SCENARIOS);
    assert.deepEqual(
      files.map((f) => path.basename(f)),
      [
        'load-balance.yaml',
        'priority.yaml',
        'cross-user.yaml',
        'bindtodevice-order.yaml',
        'bound-not-listening.yaml',
        'cbpf-steering.yaml',
        'dual-stack.yaml',
        'group-change-remap.yaml',
        'incoming-cpu.yaml',
        'listener-close-migrates.yaml',
        'listener-close-resets.yaml',
        'netns-isolation.yaml',
        'reuseaddr-is-not-reuseport.yaml',
        'reuseport-after-bind.yaml',
        'stalled-worker.yaml',
        'sticky-4tuple.yaml',
        'udp-balance.yaml',
        'udp-connected-member.yaml',
        'udp-reuseaddr-only.yaml',
      ],
    );
  });

  for (const name of ['load-balance', 'priority', 'cross-user']) {
    it(`${name} validates`, async () => {
      const file = path.join(SCENARIOS, `${name}.yaml`);
      const s = await loadScenario(file);
      assert.equal(s.name, name);
      assert.equal(s.file, file);
      assert.ok(path.isAbsolute(s.file));
      for (const text of [s.title, s.article, s.lookFor, s.explanation]) {
        assert.ok(text !== undefined && text.length > 10);
        assert.equal(text, text.trimEnd());
      }
    });
  }

  it('load-balance: defaults are filled in', async () => {
    const s = await loadScenario(path.join(SCENARIOS, 'load-balance.yaml'));
    assert.deepEqual(s.requires, []);
    assert.deepEqual(s.network, { addresses: [], sysctls: {} });
    assert.deepEqual(withoutPositions(s.servers), [
      { id: 'W', address: '0.0.0.0', port: 6000, protocol: 'tcp', replicas: 5, reuseport: true, binder: 'auto' },
    ]);
    assert.equal(s.servers[0]!.reuseaddr, undefined);
    assert.equal(s.servers[0]!.user, undefined);
    assert.deepEqual(withoutPositions(s.steps), [
      { kind: 'start', servers: ['W'] },
      {
        kind: 'traffic',
        traffic: { id: 'lb', target: '127.0.0.1', port: 6000, protocol: 'tcp', connections: 1000, concurrency: 32 },
      },
    ]);
    assert.deepEqual(withoutPositions(s.expect), [
      { kind: 'bind', server: 'W', outcome: 'ok' },
      { kind: 'balanced', traffic: 'lb', over: ['W'], pValue: 0.000001, everyMember: true },
    ]);
    for (const item of [...s.steps, ...s.expect, ...s.servers]) assert.ok(item.line > 0);
  });

  it('priority: steps, expectations and stand-ins', async () => {
    const s = await loadScenario(path.join(SCENARIOS, 'priority.yaml'));
    assert.deepEqual(s.requires, []);
    assert.deepEqual(s.network.addresses, [
      { address: '10.0.0.2', hostStandIn: '127.0.0.2' },
      { address: '10.0.0.3', hostStandIn: '127.0.0.3' },
    ]);
    assert.equal(hostAddress(s.network, '10.0.0.3'), '127.0.0.3');
    assert.equal(hostAddress(s.network, '127.0.0.1'), '127.0.0.1');
    assert.deepEqual(
      s.servers.map((x) => [x.id, x.address, x.reuseport]),
      [
        ['A', '10.0.0.2', true],
        ['B', '0.0.0.0', true],
        ['C', '127.0.0.1', true],
        ['A-plain', '10.0.0.2', false],
        ['B-plain', '0.0.0.0', false],
        ['C-plain', '127.0.0.1', false],
      ],
    );
    assert.deepEqual(
      s.steps.map((x) =>
        x.kind === 'traffic'
          ? `traffic ${x.traffic.id} ${x.traffic.concurrency}`
          : `${x.kind} ${'servers' in x ? x.servers : ''}`,
      ),
      [
        'start A,B,C',
        'traffic to-10.0.0.2 64',
        'traffic to-10.0.0.3 64',
        'traffic to-127.0.0.1 64',
        'stop A,B,C',
        'start A-plain,B-plain,C-plain',
      ],
    );
    assert.deepEqual(withoutPositions(s.expect), [
      { kind: 'bind', server: 'A', outcome: 'ok' },
      { kind: 'bind', server: 'B', outcome: 'ok' },
      { kind: 'bind', server: 'C', outcome: 'ok' },
      { kind: 'all', traffic: 'to-10.0.0.2', server: 'A' },
      { kind: 'all', traffic: 'to-10.0.0.3', server: 'B' },
      { kind: 'all', traffic: 'to-127.0.0.1', server: 'C' },
      { kind: 'bind', server: 'A-plain', outcome: 'ok' },
      { kind: 'bind', server: 'B-plain', outcome: 'EADDRINUSE' },
      { kind: 'bind', server: 'C-plain', outcome: 'ok' },
    ]);
  });

  it('cross-user: requires root; users and expectations', async () => {
    const s = await loadScenario(path.join(SCENARIOS, 'cross-user.yaml'));
    assert.deepEqual(s.requires, ['root']);
    assert.deepEqual(
      s.servers.map((x) => [x.id, x.user]),
      [
        ['A', 65534],
        ['R', 0],
        ['O', 65533],
        ['A2', 65534],
      ],
    );
    assert.deepEqual(withoutPositions(s.expect), [
      { kind: 'bind', server: 'A', outcome: 'ok' },
      { kind: 'bind', server: 'R', outcome: 'EADDRINUSE' },
      { kind: 'bind', server: 'O', outcome: 'EADDRINUSE' },
      { kind: 'bind', server: 'A2', outcome: 'ok' },
      { kind: 'balanced', traffic: 'shared', over: ['A', 'A2'], pValue: 0.000001, everyMember: true },
    ]);
  });

  it('a JSON file equivalent to a YAML one validates to the same object (except file and lines)', async () => {
    for (const name of ['load-balance', 'priority', 'cross-user']) {
      const yamlFile = path.join(SCENARIOS, `${name}.yaml`);
      const data: unknown = parseYaml(readFileSync(yamlFile, 'utf8'));
      const jsonFile = write(`${name}.json`, JSON.stringify(data, null, 2));
      const fromYaml = await loadScenario(yamlFile);
      const fromJson = await loadScenario(jsonFile);
      assert.equal(fromJson.file, jsonFile);
      assert.deepEqual(withoutPositions(fromJson), withoutPositions(fromYaml));
      assert.ok(fromJson.steps.every((step) => step.line > 0));
    }
  });
});

describe('validation errors', () => {
  it('the base test scenario is valid', async () => {
    const s = await loadScenario(write('demo.yaml', variant()));
    assert.equal(s.steps[1]!.line, 20);
    assert.equal(s.expect[1]!.line, 28);
    assert.equal(s.servers[1]!.line, 14);
  });

  it('an unknown key is reported at its exact line and column, with a suggestion', async () => {
    const file = write('demo.yaml', variant({ 17: '    replica: 2' }));
    const issues = await issuesOf(file);
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.line, 17);
    assert.equal(issues[0]!.column, 5);
    assert.equal(issues[0]!.message, 'unknown key "replica" in servers[1] (did you mean "replicas"?)');
  });

  it('an unknown top-level key and an unknown key in a traffic step', async () => {
    const file = write(
      'demo.yaml',
      variant({ 2: ['title: Demo', 'tittle: typo'], 24: ['      connections: 10', '      rate: 5'] }),
    );
    const issues = await issuesOf(file);
    assert.deepEqual(
      issues.map((i) => [i.line, i.column]),
      [
        [3, 1],
        [26, 7],
      ],
    );
    assert.match(issues[0]!.message, /unknown top-level key "tittle" \(did you mean "title"\?\)/);
    assert.match(issues[1]!.message, /unknown key "rate" in steps\[1\]\.traffic/);
  });

  it('several mistakes give several issues, each with its line, and one message line each', async () => {
    const file = write(
      'demo.yaml',
      variant({ 13: '    port: 70000', 17: '    replicas: five', 24: '      connections: 0' }),
    );
    let error: ScenarioFileError | undefined;
    try {
      await loadScenario(file);
    } catch (err) {
      if (err instanceof ScenarioFileError) error = err;
    }
    assert.ok(error, 'expected a ScenarioFileError');
    assert.ok(error instanceof UsageError);
    assert.equal(error.exitCode, 2);
    assert.deepEqual(
      error.issues.map((i) => [i.line, i.column]),
      [
        [13, 11],
        [17, 15],
        [24, 20],
      ],
    );
    assert.equal(error.issues[1]!.message, 'servers[1].replicas must be an integer from 1 to 64, got a string');
    const lines = error.message.split('\n');
    assert.equal(lines.length, 3);
    assert.ok(lines[1]!.endsWith('demo.yaml:17:15: servers[1].replicas must be an integer from 1 to 64, got a string'));
    assert.ok(
      lines.every(
        (l, i) =>
          l ===
          `${error.issues[i]!.file}:${error.issues[i]!.line}:${error.issues[i]!.column}: ${error.issues[i]!.message}`,
      ),
    );
  });

  it('an unknown server in expect is reported at its line', async () => {
    const issues = await issuesOf(write('demo.yaml', variant({ 26: '  - bind: Z' })));
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.line, 26);
    assert.match(issues[0]!.message, /unknown server "Z"/);
  });

  it('a duplicated traffic id is reported at the second one, naming the first line', async () => {
    const issues = await issuesOf(
      write(
        'demo.yaml',
        variant({
          24: [
            '      connections: 10',
            '  - traffic:',
            '      id: t',
            '      target: 127.0.0.1',
            '      port: 6000',
            '      connections: 5',
          ],
        }),
      ),
    );
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.line, 26);
    assert.match(issues[0]!.message, /duplicate traffic id "t" \(first used at line 20\)/);
  });

  it('an unknown traffic id in expect is an error', async () => {
    const issues = await issuesOf(write('demo.yaml', variant({ 28: '  - traffic: nope' })));
    assert.deepEqual(
      issues.map((i) => i.line),
      [28],
    );
    assert.match(issues[0]!.message, /unknown traffic id "nope"/);
  });

  it('a non-loopback target that is not declared is refused, with the reason', async () => {
    const issues = await issuesOf(write('demo.yaml', variant({ 22: '      target: 192.0.2.7' })));
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.line, 22);
    assert.match(issues[0]!.message, /192\.0\.2\.7 is neither a loopback address nor declared in network\.addresses/);
    assert.match(issues[0]!.message, /never sends traffic off this machine's loopback/);
  });

  it('an expectation about a server that no step starts is an error', async () => {
    const issues = await issuesOf(write('demo.yaml', variant({ 19: '  - start: [A]', 26: '  - bind: B' })));
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.line, 26);
    assert.match(issues[0]!.message, /server "B" is never started by any step/);
  });

  it('a step naming an unknown server, and stopping a server that is not running', async () => {
    const issues = await issuesOf(
      write('demo.yaml', variant({ 19: ['  - start: [A, B, Q]', '  - stop: [A]', '  - stop: [A]'] })),
    );
    assert.deepEqual(
      issues.map((i) => [i.line, i.column]),
      [
        [19, 19],
        [21, 12],
      ],
    );
    assert.match(issues[0]!.message, /unknown server "Q"/);
    assert.match(issues[1]!.message, /server "A" is not running/);
  });

  it('a step with two keys, and an expectation with two checks', async () => {
    const issues = await issuesOf(
      write(
        'demo.yaml',
        variant({ 19: '  - { start: [A, B], stop: [A] }', 29: ['    all: A', '    share: { server: A, min: 1 }'] }),
      ),
    );
    assert.deepEqual(
      issues.map((i) => i.line),
      [19, 30],
    );
    assert.match(issues[0]!.message, /has both "start" and "stop"/);
    assert.match(issues[1]!.message, /has both "all" and "share"/);
  });

  it('the name must match the file base name', async () => {
    const issues = await issuesOf(write('other.yaml', variant()));
    assert.equal(issues.length, 1);
    assert.deepEqual([issues[0]!.line, issues[0]!.column], [1, 7]);
    assert.match(issues[0]!.message, /name must equal the file's base name "other", got "demo"/);
  });

  it('missing required keys are reported on the enclosing mapping', async () => {
    const issues = await issuesOf(write('demo.yaml', variant({ 2: [], 13: [] })));
    assert.deepEqual(
      issues.map((i) => [i.line, i.message]),
      [
        [1, 'missing required top-level key "title"'],
        [10, 'missing required key "port" in servers[0]'],
      ],
    );
  });

  it('YAML syntax errors and duplicate keys carry positions', async () => {
    const syntax = await issuesOf(write('demo.yaml', variant({ 19: '  - start: [A, B' })));
    assert.ok(syntax.length >= 1);
    assert.ok(syntax.every((i) => i.line >= 19));
    const dup = await issuesOf(write('demo.yaml', variant({ 13: ['    port: 6000', '    port: 6001'] })));
    assert.deepEqual(
      dup.map((i) => i.line),
      [14],
    );
    assert.match(dup[0]!.message, /unique/);
  });

  it('invalid JSON is reported with its position', async () => {
    const issues = await issuesOf(write('broken.json', '{\n  "name": "broken",\n}\n'));
    assert.equal(issues.length, 1);
    assert.deepEqual([issues[0]!.line, issues[0]!.column], [3, 1]);
    assert.match(issues[0]!.message, /^invalid JSON/);
  });

  it('hostStandIn must be loopback and must not collide with an address used directly', async () => {
    const notLoopback = await issuesOf(write('demo.yaml', variant({ 9: '      hostStandIn: 192.168.1.10' })));
    assert.deepEqual(
      notLoopback.map((i) => i.line),
      [9],
    );
    assert.match(notLoopback[0]!.message, /must be a loopback address/);
    const clash = await issuesOf(
      write('demo.yaml', variant({ 9: '      hostStandIn: 127.0.0.1', 22: '      target: 127.0.0.1' })),
    );
    assert.deepEqual(
      clash.map((i) => i.line),
      [9],
    );
    assert.match(clash[0]!.message, /indistinguishable/);
  });

  it('sourcePort forces concurrency 1', async () => {
    const ok = await loadScenario(
      write('demo.yaml', variant({ 24: ['      connections: 10', '      sourcePort: 40000'] })),
    );
    const step = ok.steps[1]!;
    assert.ok(step.kind === 'traffic');
    assert.equal(step.traffic.sourcePort, 40000);
    assert.equal(step.traffic.concurrency, 1);
    const bad = await issuesOf(
      write('demo.yaml', variant({ 24: ['      connections: 10', '      sourcePort: 40000', '      concurrency: 4'] })),
    );
    assert.deepEqual(
      bad.map((i) => i.line),
      [26],
    );
  });

  it('requires is computed: netns for an address without stand-in or a sysctl, root for a user', async () => {
    const a = await loadScenario(write('demo.yaml', variant({ 9: [] })));
    assert.deepEqual(a.requires, ['netns']);
    assert.deepEqual(a.network.addresses, [{ address: '10.0.0.2' }]);
    const b = await loadScenario(
      write(
        'demo.yaml',
        variant({ 9: ['      hostStandIn: 127.0.0.2', '  sysctls:', '    net.ipv4.tcp_migrate_req: 1'] }),
      ),
    );
    assert.deepEqual(b.requires, ['netns']);
    assert.deepEqual(b.network.sysctls, { 'net.ipv4.tcp_migrate_req': '1' });
    const c = await loadScenario(write('demo.yaml', variant({ 13: ['    port: 6000', '    user: nobody'] })));
    assert.deepEqual(c.requires, ['root']);
    assert.equal(c.servers[0]!.user, 'nobody');
    const sysctlOnHost = await issuesOf(
      write('demo.yaml', variant({ 9: ['      hostStandIn: 127.0.0.2', '  sysctls:', '    kernel.pid_max: 5'] })),
    );
    assert.deepEqual(
      sysctlOnHost.map((i) => i.line),
      [11],
    );
  });
});

describe('validateScenario without a file', () => {
  it('validates plain data; positions are 0', () => {
    const data: unknown = parseYaml(variant());
    const result = validateScenario(data);
    assert.ok(result.ok);
    const s: Scenario = result.scenario;
    assert.equal(s.file, '');
    assert.equal(s.steps[0]!.line, 0);
    const bad = validateScenario({ ...(data as object), servers: [] });
    assert.ok(!bad.ok);
    assert.deepEqual(bad.issues[0]!.path, ['servers']);
  });

  it('parseScenario works on text', () => {
    const s = parseScenario(variant(), path.join(tmp, 'demo.yaml'));
    assert.equal(s.name, 'demo');
  });
});

describe('resolving and listing', () => {
  it('a bare name resolves in the scenarios directory', async () => {
    assert.equal(await resolveScenario('priority', SCENARIOS), path.join(SCENARIOS, 'priority.yaml'));
  });

  it('.yml and .json are tried after .yaml', async () => {
    const dir = path.join(tmp, 'dir');
    rmSync(dir, { recursive: true, force: true });
    const { mkdirSync } = await import('node:fs');
    mkdirSync(dir);
    writeFileSync(path.join(dir, 'x.json'), '{}');
    writeFileSync(path.join(dir, 'y.yml'), '');
    writeFileSync(path.join(dir, 'y.json'), '{}');
    writeFileSync(path.join(dir, 'notes.txt'), '');
    assert.equal(await resolveScenario('x', dir), path.join(dir, 'x.json'));
    assert.equal(await resolveScenario('y', dir), path.join(dir, 'y.yml'));
    assert.deepEqual(
      (await listScenarioFiles(dir)).map((f) => path.basename(f)),
      ['x.json', 'y.json', 'y.yml'],
    );
    assert.deepEqual(readdirSync(dir).length, 4);
  });

  it('a path is used as is', async () => {
    const file = write('demo.yaml', variant());
    assert.equal(await resolveScenario(file, SCENARIOS), file);
    await assert.rejects(resolveScenario(path.join(tmp, 'missing.yaml'), SCENARIOS), UsageError);
  });

  it('an unknown name is a UsageError listing the available names', async () => {
    await assert.rejects(resolveScenario('nope', SCENARIOS), (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.match(err.message, /unknown scenario "nope"/);
      assert.match(err.message, /load-balance, priority, cross-user, bindtodevice-order, bound-not-listening/);
      return true;
    });
  });

  it('scenarioNameOf strips the extension', () => {
    assert.equal(scenarioNameOf('/a/b/priority.yaml'), 'priority');
    assert.equal(scenarioNameOf('x.json'), 'x');
  });
});

describe('address helpers', () => {
  it('loopback and wildcard', () => {
    assert.ok(isLoopback('127.0.0.2'));
    assert.ok(isLoopback('::1'));
    assert.ok(isLoopback('0:0:0:0:0:0:0:1'));
    assert.ok(isLoopback('::ffff:127.0.0.1'));
    assert.ok(!isLoopback('10.0.0.2'));
    assert.ok(!isLoopback('::'));
    assert.ok(isWildcard('0.0.0.0'));
    assert.ok(isWildcard('0::0'));
    assert.ok(!isWildcard('127.0.0.1'));
  });
});

describe('layering', () => {
  it('src/scenario imports no terminal or CLI library', () => {
    const dir = path.join(ROOT, 'src', 'scenario');
    for (const name of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      const text = readFileSync(path.join(dir, name), 'utf8');
      assert.doesNotMatch(text, /from ['"](chalk|ora|commander)['"]/, name);
    }
  });
});

describe('hostile and careless input', () => {
  /** Every message of a rejected file, joined: what the user would see. */
  async function shown(file: string): Promise<string> {
    return (await issuesOf(file)).map((i) => `${i.file}:${i.line}:${i.column}: ${i.message}`).join('\n');
  }

  it('a KEY=value file gets one line and none of its content', async () => {
    const text = await shown(write('env.yaml', 'DB_PASSWORD=hunter2\nAPI_TOKEN=s3cr3t\n'));
    assert.equal(text.split('\n').length, 1);
    assert.match(text, /not a YAML mapping/);
    assert.doesNotMatch(text, /hunter2|s3cr3t|DB_PASSWORD/);
  });

  it('a passwd-like file, and a symlink to one, get one line without its lines', async () => {
    const lines = 'root:$6$saltsalt$hashhashhash:19000:0:99999:7:::\nalice:$6$abc$def:19001:0:99999:7:::\n';
    const file = write('shadow.yaml', lines);
    const link = path.join(tmp, 'link.yaml');
    rmSync(link, { force: true });
    const { symlinkSync } = await import('node:fs');
    symlinkSync(file, link);
    for (const f of [file, link]) {
      const text = await shown(f);
      assert.equal(text.split('\n').length, 1, text);
      assert.doesNotMatch(text, /hashhash|alice|\$6\$/);
    }
  });

  it('a mapping with none of the scenario keys gets one line, naming none of its keys', async () => {
    const text = await shown(write('conf.yaml', 'password: hunter2\nuser: alice\nhost: db\n'));
    assert.equal(text.split('\n').length, 1);
    assert.match(text, /not a scenario: none of its 3 top-level keys/);
    assert.doesNotMatch(text, /hunter2|alice|password/);
  });

  it('string values are never quoted; unknown keys are shortened and escaped', async () => {
    const longKey = `k${'x'.repeat(80)}\u001b[31m\u202e`;
    const file = write(
      'demo.yaml',
      variant({
        2: ['title: Demo', `${JSON.stringify(longKey)}: hunter2`, '"a\\u001b[31mb\\u202ec": 1'],
        17: '    replicas: topsecretvalue',
      }),
    );
    const text = await shown(file);
    assert.doesNotMatch(text, /hunter2|topsecretvalue/);
    assert.ok(!text.includes('\u001b') && !text.includes('\u202e'), 'a control or bidi character reached the message');
    assert.match(text, /unknown top-level key "kx{30}…"/);
    assert.match(text, /unknown top-level key "a\\e\[31mb\\u202ec"/);
    assert.match(text, /replicas must be an integer from 1 to 64, got a string/);
  });

  it('a file that is not regular, too large or binary is refused in one line', async () => {
    const big = write('big.yaml', `title: x\n# ${'y'.repeat(300 * 1024)}\n`);
    assert.match(await shown(big), /larger than 256 KiB/);
    const binary = write('bin.yaml', 'name: a\0b\n');
    assert.match(await shown(binary), /not a text file/);
    await assert.rejects(loadScenario('/dev/null'), /not a regular file/);
  });

  it('servers may not add up to more than 128 workers; the message says the limit', async () => {
    const issues = await issuesOf(
      write(
        'demo.yaml',
        variant({
          13: ['    port: 6000', '    replicas: 64'],
          17: ['    replicas: 64', '  - { id: C, address: 127.0.0.1, port: 7000 }'],
        }),
      ),
    );
    assert.equal(issues.length, 1);
    assert.equal(issues[0]!.line, 11);
    assert.match(issues[0]!.message, /129 worker processes .* at most 128/);
  });

  it('an unknown user is caught at load time, without naming a --user flag', async () => {
    const issues = await issuesOf(
      write('demo.yaml', variant({ 13: ['    port: 6000', '    user: no-such-user-here'] })),
    );
    assert.deepEqual(
      issues.map((i) => [i.line, i.column]),
      [[14, 11]],
    );
    assert.match(issues[0]!.message, /no user "no-such-user-here" on this machine/);
    assert.doesNotMatch(issues[0]!.message, /--user/);
    // A numeric uid without a passwd entry is fine (the cross-user scenario uses one).
    await loadScenario(write('demo.yaml', variant({ 13: ['    port: 6000', '    user: 65533'] })));
  });

  it('an IPv6 zone id is refused at load time', async () => {
    const issues = await issuesOf(write('demo.yaml', variant({ 22: '      target: fe80::1%lo' })));
    assert.deepEqual(
      issues.map((i) => i.line),
      [22],
    );
    assert.match(issues[0]!.message, /without a zone id/);
  });

  it('JSON errors are placed where the JSON breaks, not at the end of the file', async () => {
    const issues = await issuesOf(write('broken.json', '{\n  "name": "broken"\n  "title": "x",\n  "a": 1\n}\n'));
    assert.deepEqual([issues[0]!.line, issues[0]!.column], [3, 3]);
    assert.match(issues[0]!.message, /^invalid JSON: expected "," or "}"$/);
    const quote = await issuesOf(write('broken.json', '{\n  "name": \'x\'\n}\n'));
    assert.deepEqual([quote[0]!.line, quote[0]!.column], [2, 11]);
  });

  it('an empty list says so, and the multi-document error names no library call', async () => {
    const empty = await issuesOf(write('demo.yaml', variant({ 19: '  []', 20: [], 21: [], 22: [], 23: [], 24: [] })));
    assert.ok(empty.some((i) => i.message === 'steps must be a non-empty list of steps, got an empty list'));
    const multi = await shown(write('demo.yaml', `${variant()}---\nname: other\n`));
    assert.match(multi, /more than one YAML document/);
    assert.doesNotMatch(multi, /parseAllDocuments|YAML\./);
  });

  it('a top-level $schema key is accepted; article, lookFor and explanation are optional', async () => {
    const s = await loadScenario(
      write('demo.yaml', variant({ 1: ['$schema: ../dist/scenario.schema.json', 'name: demo'], 3: [], 4: [], 5: [] })),
    );
    assert.equal(s.article, undefined);
    assert.equal(s.lookFor, undefined);
    assert.equal(s.explanation, undefined);
    assert.equal(s.title, 'Demo');
  });
});
