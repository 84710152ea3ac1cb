import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { probeNamespace } from '../src/net/doctor.js';
import { CLI, isRoot, ROOT, runCli } from './helpers.js';

let tmp = '';
before(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'reuseport-authoring-test-'));
});
after(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The tutorial's examples: the ```yaml blocks of docs/scenarios.md whose first line is `# file: NAME.yaml`. */
function tutorialExamples(): { file: string; text: string }[] {
  const docs = readFileSync(path.join(ROOT, 'docs', 'scenarios.md'), 'utf8');
  const out: { file: string; text: string }[] = [];
  for (const m of docs.matchAll(/```yaml\n# file: (\S+\.yaml)\n([\s\S]*?)```/g)) out.push({ file: m[1]!, text: m[2]! });
  return out;
}

function writeExamples(): string[] {
  return tutorialExamples().map(({ file, text }) => {
    const target = path.join(tmp, file);
    writeFileSync(target, text);
    return target;
  });
}

describe('the tutorial in docs/scenarios.md', () => {
  it('has three worked examples', () => {
    assert.deepEqual(
      tutorialExamples().map((e) => e.file),
      ['two-workers.yaml', 'second-bind-fails.yaml', 'exact-beats-wildcard.yaml'],
    );
  });

  it('every example passes scenario check', async () => {
    const files = writeExamples();
    const r = await runCli(['scenario', 'check', ...files]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, 3);
  });

  it('every example runs and passes', async (t) => {
    const namespace = await probeNamespace();
    if (!isRoot || !namespace.ok) {
      t.skip(`needs root and a private network namespace (${namespace.ok ? 'not root' : namespace.reason})`);
      return;
    }
    const files = writeExamples();
    const r = await runCli(['scenario', 'run', '--json', ...files], { timeoutMs: 120_000 });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const report = JSON.parse(r.stdout) as { summary: { passed: number; total: number } };
    assert.deepEqual([report.summary.passed, report.summary.total], [3, 3]);
  });
});

describe('scenario check', () => {
  it('shows every mistake of every file, as file:line:col without a prefix, and exits 2', async () => {
    const a = path.join(tmp, 'a.yaml');
    writeFileSync(a, 'name: a\ntitle: A\nservers: []\nsteps: []\nexpect: []\n');
    const b = path.join(tmp, 'b.yaml');
    writeFileSync(b, 'name: b\ntitle: B\nservers:\n  - { id: W, address: 127.0.0.1, port: 6000, replica: 2 }\n');
    const r = await runCli(['scenario', 'check', a, b]);
    assert.equal(r.code, 2);
    const lines = r.stderr.trim().split('\n');
    const issueLines = lines.filter((l) => !l.startsWith('reuseport:'));
    assert.equal(issueLines.length, 6, r.stderr);
    assert.ok(
      issueLines.every((l) => /^\S+\.yaml:\d+:\d+: /.test(l)),
      r.stderr,
    );
    assert.ok(
      issueLines.some((l) => /b\.yaml:4:46: unknown key "replica" .*did you mean "replicas"/.test(l)),
      r.stderr,
    );
    assert.match(lines.at(-1)!, /^reuseport: 6 mistakes in 2 of 2 files$/);
  });

  it('--json gives structured errors', async () => {
    const a = path.join(tmp, 'a.yaml');
    writeFileSync(a, 'name: a\ntitle: A\nservers: []\nsteps: []\nexpect: []\n');
    const r = await runCli(['scenario', 'check', '--json', a, 'load-balance']);
    assert.equal(r.code, 2);
    const doc = JSON.parse(r.stdout) as {
      version: number;
      ok: boolean;
      files: { file: string; ok: boolean; errors: { file: string; line: number; column: number; message: string }[] }[];
    };
    assert.equal(doc.version, 1);
    assert.equal(doc.ok, false);
    assert.deepEqual(
      doc.files.map((f) => f.ok),
      [false, true],
    );
    assert.deepEqual(doc.files[0]!.errors[0], {
      file: doc.files[0]!.file,
      line: 3,
      column: 10,
      message: 'servers must be a non-empty list of servers, got an empty list',
    });
  });

  it('exits 0 for the shipped scenarios', async () => {
    const r = await runCli(['scenario', 'check', 'load-balance', 'priority', 'cross-user']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  });

  it('a scenario run of /etc/shadow-like content prints none of its lines', async () => {
    const secret = path.join(tmp, 'secret.txt');
    writeFileSync(secret, 'root:$6$topsecrethash:19000:0:99999:7:::\nPASSWORD=hunter2\n');
    const r = await runCli(['scenario', 'run', secret]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /topsecret|hunter2|PASSWORD/);
  });
});

describe('scenario init and show', () => {
  it('init writes a starter with the $schema line that checks clean', async () => {
    const r = await runCli(['scenario', 'init', 'my-lab'], { cwd: tmp });
    assert.equal(r.code, 0, r.stderr);
    const file = path.join(tmp, 'my-lab.yaml');
    const text = readFileSync(file, 'utf8');
    const modeline = /^# yaml-language-server: \$schema=(.+)$/m.exec(text);
    assert.ok(modeline, 'no $schema line');
    assert.ok(existsSync(modeline[1]!), `the $schema line points at ${modeline[1]}, which does not exist`);
    assert.match(text, /^name: my-lab /m);
    const check = await runCli(['scenario', 'check', file]);
    assert.equal(check.code, 0, check.stderr);
  });

  it('init never overwrites a file', async () => {
    const file = path.join(tmp, 'taken.yaml');
    writeFileSync(file, 'mine\n');
    const r = await runCli(['scenario', 'init', 'taken'], { cwd: tmp });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /already exists/);
    assert.equal(readFileSync(file, 'utf8'), 'mine\n');
  });

  it('init refuses a name that cannot be a scenario name', async () => {
    const r = await runCli(['scenario', 'init', 'My Lab'], { cwd: tmp });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /lowercase letters, digits and dashes/);
  });

  it('show prints a shipped scenario file as it is', async () => {
    const r = await runCli(['scenario', 'show', 'priority']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, readFileSync(path.join(ROOT, 'scenarios', 'priority.yaml'), 'utf8'));
  });

  it('show of an unknown name lists the shipped ones and exits 2', async () => {
    const r = await runCli(['scenario', 'show', 'nope']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown scenario "nope" \(available: .*priority/);
    assert.ok(CLI);
  });
});
