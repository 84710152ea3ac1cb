import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { DEFAULT_COLUMNS, outputColumns } from '../src/cli/terminal.js';
import { renderTable, stripAnsi } from '../src/report/table.js';
import { fitLines, paragraphs } from '../src/report/wrap.js';
import { ROOT, runCli, ServeProcess } from './helpers.js';

const WIDTHS = [40, 80];

/** Every line of `text` fits `columns`, colour codes taking no room. */
function assertFits(text: string, columns: number, what: string): void {
  for (const line of text.split('\n')) {
    const width = [...stripAnsi(line)].length;
    assert.ok(width <= columns, `${what} at ${columns} columns: a line is ${width} wide:\n${line}`);
  }
}

/**
 * The paragraph that starts with `label` and runs until a line that is not
 * indented under it, as one line: it must be `expected` word for word, so
 * no word was split or lost by the wrapping.
 */
function paragraphAt(text: string, label: string): { joined: string; lines: number } {
  const lines = text.split('\n');
  const start = lines.findIndex((line) => line.startsWith(label));
  assert.ok(start >= 0, `"${label}" is in the report`);
  let end = start + 1;
  while (end < lines.length && /^ {2}\S/.test(lines[end]!)) end++;
  return {
    joined: lines
      .slice(start, end)
      .map((l) => l.trim())
      .join(' '),
    lines: end - start,
  };
}

test('COLUMNS sets the width, also on a pipe; then the terminal; then 80', () => {
  assert.equal(outputColumns({ isTTY: false }, { COLUMNS: '40' }), 40);
  assert.equal(outputColumns({ isTTY: true, columns: 120 }, { COLUMNS: '60' }), 60);
  assert.equal(outputColumns({ isTTY: true, columns: 120 }, {}), 120);
  assert.equal(outputColumns({ isTTY: false, columns: 120 }, {}), DEFAULT_COLUMNS, 'a pipe is laid out for 80');
  assert.equal(outputColumns({ isTTY: true, columns: 0 }, {}), DEFAULT_COLUMNS);
  for (const junk of ['0', '-5', 'wide', '', '40x']) {
    assert.equal(outputColumns({ isTTY: false }, { COLUMNS: junk }), DEFAULT_COLUMNS, `COLUMNS=${junk} is ignored`);
  }
});

test('a table wider than the columns shrinks its bars, then stacks each row as label: value lines', () => {
  const header = ['worker', 'listener', 'connections', ''];
  const rows = [
    ['1', '127.0.0.1:6000', '600', { value: 600, max: 600, width: 30 }],
    ['2', '127.0.0.1:6000', '400', { value: 400, max: 600, width: 30 }],
  ];
  const wide = renderTable(header, rows, [], 200);
  assert.match(wide, /█{30}/, 'room to spare: the bar keeps its width');
  const shrunk = renderTable(header, rows, [], 50);
  assertFits(shrunk, 50, 'shrunk table');
  assert.match(shrunk.split('\n')[0]!, /^worker {2}listener/, 'still one line per row');
  const stacked = renderTable(header, rows, [], 30);
  assertFits(stacked, 30, 'stacked table');
  assert.deepEqual(stacked.split('\n').slice(0, 3), [
    'worker: 1',
    '  listener:    127.0.0.1:6000',
    '  connections: 600',
  ]);
});

test('fitLines wraps only the lines that are too wide, at word boundaries, hanging under their indent', () => {
  const prose = `   ${'word '.repeat(20).trim()}`;
  const fitted = fitLines(`short\n${prose}`, 40);
  assertFits(fitted, 40, 'fitted prose');
  const [first, ...rest] = fitted.split('\n');
  assert.equal(first, 'short');
  assert.ok(rest.length > 1 && rest.slice(1).every((line) => line.startsWith('     word')), fitted);
  assert.equal(rest.join(' ').replace(/\s+/g, ' ').trim(), prose.trim());
  assert.equal(paragraphs('one\ntwo  three\n\nfour\n'), 'one two three\n\nfour');
});

for (const columns of WIDTHS) {
  test(`scenario run priority fits ${columns} columns: the article and why paragraphs wrap at word boundaries`, {
    timeout: 240_000,
  }, async () => {
    const result = await runCli(['scenario', 'run', 'priority'], {
      env: { COLUMNS: String(columns) },
      timeoutMs: 200_000,
    });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assertFits(result.stdout, columns, 'scenario report');
    const scenario = parse(readFileSync(join(ROOT, 'scenarios', 'priority.yaml'), 'utf8')) as Record<string, string>;
    for (const [label, field] of [
      ['The article:', 'article'],
      ['Why:', 'explanation'],
    ] as const) {
      const paragraph = paragraphAt(result.stdout, label);
      assert.equal(paragraph.joined, `${label} ${paragraphs(scenario[field]!)}`, `${label} word for word`);
      assert.ok(paragraph.lines > 1, `${label} is wrapped over several lines`);
    }
  });
}

test('load against a real serve fits 40 and 80 columns: the table stacks at 40, stays a table at 80', {
  timeout: 120_000,
}, async () => {
  const serve = new ServeProcess(['--host', '127.0.0.1', '--port', '0', '--workers', '2']);
  try {
    const { port } = await serve.listening(2);
    for (const columns of WIDTHS) {
      const result = await runCli(['load', '--port', String(port), '-n', '200', '--workers', '2'], {
        env: { COLUMNS: String(columns) },
      });
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assertFits(result.stdout, columns, 'load report');
      const balance = paragraphAt(result.stdout, 'balance over');
      assert.match(balance.joined, /^balance over 200 connections: chi-square \d+\.\d+, df 1, p /);
      assert.match(balance.joined, /all 2 workers used$/);
      if (columns === 40) assert.match(result.stdout, /^worker: 1\n {2}pid: +\d+$/m, 'stacked rows');
      else assert.match(result.stdout, /^worker +pid +listener +connections/m, 'one line per worker');
    }
  } finally {
    await serve.stop();
  }
});

test('load hints wrap at word boundaries in 40 columns', async () => {
  // Port 1 on loopback: nothing listens there, so every connection is refused and load gives a hint.
  const result = await runCli(['load', '--port', '1', '-n', '3'], { env: { COLUMNS: '40' } });
  assert.equal(result.code, 1, result.stderr);
  assertFits(result.stdout, 40, 'load report');
  const hint = paragraphAt(result.stdout, 'hint:');
  assert.ok(hint.lines > 1, result.stdout);
  assert.match(hint.joined, /^hint: nothing listens on 127\.0\.0\.1:1 \(ECONNREFUSED\): start `reuseport serve` first/);
});

test('doctor fits 40 and 80 columns through the real CLI', async () => {
  for (const columns of WIDTHS) {
    const result = await runCli(['doctor'], { env: { COLUMNS: String(columns) } });
    assert.ok(result.code === 0 || result.code === 1, result.stderr);
    assertFits(result.stdout, columns, 'doctor');
    assert.match(result.stdout, /^(Ready|Not ready)/m);
  }
});

test('compare (short scale, order phase) fits 40 and 80 columns, its advice wrapped at word boundaries', {
  timeout: 240_000,
}, async () => {
  for (const columns of WIDTHS) {
    const result = await runCli(['compare', '--phases', 'order'], {
      env: { COLUMNS: String(columns), REUSEPORT_COMPARE_SCALE: '0.1' },
      timeoutMs: 200_000,
    });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assertFits(result.stdout, columns, 'compare report');
    assert.match(result.stdout, /^model: reuseport$/m, 'the order table stacks its rows to fit');
    const advice = paragraphAt(result.stdout, '- epoll with EPOLLEXCLUSIVE');
    assert.equal(
      advice.joined,
      '- epoll with EPOLLEXCLUSIVE on a shared socket concentrates connections on one worker: good for cache warmth at low load, bad for balance.',
    );
    assert.ok(advice.lines > 1, 'wrapped over several lines');
  }
});

test('every --help fits 80 columns', async () => {
  const commands = [
    [],
    ['serve'],
    ['load'],
    ['doctor'],
    ['compare'],
    ['completion'],
    ['scenario'],
    ['scenario', 'list'],
    ['scenario', 'run'],
    ['scenario', 'all'],
    ['scenario', 'check'],
    ['scenario', 'init'],
    ['scenario', 'show'],
  ];
  for (const command of commands) {
    const result = await runCli([...command, '--help']);
    assert.equal(result.code, 0, `${command.join(' ')}: ${result.stderr}`);
    assertFits(result.stdout, 80, `reuseport ${command.join(' ')} --help`);
  }
});
