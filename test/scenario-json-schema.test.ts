import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import ajvModule from 'ajv/dist/2020.js';
import { parse as parseYaml } from 'yaml';
import { listScenarioFiles } from '../src/scenario/scenario-file.js';
import { scenarioJsonSchema, validateScenario } from '../src/scenario/schema.js';
import { ROOT } from './helpers.js';

// ajv is CommonJS: its class is the module itself, or its default, depending on the loader.
const Ajv2020 = ((ajvModule as unknown as { default?: unknown }).default ?? ajvModule) as typeof ajvModule.default;
const SHIPPED_SCHEMA = path.join(ROOT, 'dist', 'scenario.schema.json');

function shippedSchema(): Record<string, unknown> {
  return JSON.parse(readFileSync(SHIPPED_SCHEMA, 'utf8')) as Record<string, unknown>;
}

function compile() {
  const ajv = new Ajv2020({ allErrors: true });
  return ajv.compile(shippedSchema());
}

const GOOD = {
  name: 'demo',
  title: 'Demo',
  servers: [{ id: 'W', address: '0.0.0.0', port: 6000, replicas: 2 }],
  steps: [{ start: ['W'] }, { traffic: { id: 't', target: '127.0.0.1', port: 6000, connections: 10 } }],
  expect: [
    { bind: 'W', outcome: 'ok' },
    { traffic: 't', all: 'W' },
  ],
};

/** The mistakes docs/scenarios.md describes, each as a change to GOOD. */
const BAD: [string, (s: Record<string, unknown> & typeof GOOD) => unknown][] = [
  ['an unknown top-level key', (s) => ({ ...s, tittle: 'x' })],
  ['an unknown server key', (s) => ({ ...s, servers: [{ ...s.servers[0], replica: 2 }] })],
  ['a missing title', ({ title: _, ...s }) => s],
  ['replicas over 64', (s) => ({ ...s, servers: [{ ...s.servers[0], replicas: 65 }] })],
  ['a port as text', (s) => ({ ...s, servers: [{ ...s.servers[0], port: 'six' }] })],
  ['empty steps', (s) => ({ ...s, steps: [] })],
  ['a step with two keys', (s) => ({ ...s, steps: [{ start: ['W'], stop: ['W'] }] })],
  ['an unknown step', (s) => ({ ...s, steps: [{ strat: ['W'] }] })],
  ['an expectation with two checks', (s) => ({ ...s, expect: [{ traffic: 't', all: 'W', share: { server: 'W' } }] })],
  ['share without min or max', (s) => ({ ...s, expect: [{ traffic: 't', share: { server: 'W' } }] })],
  ['a bad protocol', (s) => ({ ...s, servers: [{ ...s.servers[0], protocol: 'sctp' }] })],
  ['an IPv6 zone id', (s) => ({ ...s, servers: [{ ...s.servers[0], address: 'fe80::1%lo' }] })],
  ['a sysctl outside net.*', (s) => ({ ...s, network: { sysctls: { 'kernel.pid_max': 5 } } })],
  ['an outcome that is not an errno name', (s) => ({ ...s, expect: [{ bind: 'W', outcome: 'failed' }] })],
];

describe('the shipped JSON Schema, read by a real consumer (ajv)', () => {
  it('the shipped file is the one generated from the format definition', () => {
    assert.deepEqual(shippedSchema(), scenarioJsonSchema());
  });

  it('accepts every shipped scenario', async () => {
    const validate = compile();
    const files = await listScenarioFiles(path.join(ROOT, 'scenarios'));
    assert.ok(files.length >= 3);
    for (const file of files) {
      const data: unknown = parseYaml(readFileSync(file, 'utf8'));
      assert.ok(validate(data), `${file}: ${JSON.stringify(validate.errors)}`);
    }
  });

  it('accepts a minimal scenario with a $schema key', () => {
    const validate = compile();
    assert.ok(validate({ $schema: '../dist/scenario.schema.json', ...GOOD }), JSON.stringify(validate.errors));
  });

  for (const [what, change] of BAD) {
    it(`rejects ${what}, as the tool does`, () => {
      const data = change(structuredClone(GOOD) as Record<string, unknown> & typeof GOOD);
      assert.equal(compile()(data), false);
      assert.equal(validateScenario(data).ok, false);
    });
  }
});

describe('docs/scenarios.md documents the format', () => {
  it('every key in the JSON Schema is documented', () => {
    const docs = readFileSync(path.join(ROOT, 'docs', 'scenarios.md'), 'utf8');
    const keys = new Set<string>();
    const walk = (node: unknown) => {
      if (Array.isArray(node)) node.forEach(walk);
      else if (node !== null && typeof node === 'object') {
        const obj = node as Record<string, unknown>;
        if (obj.properties && typeof obj.properties === 'object') {
          for (const key of Object.keys(obj.properties)) keys.add(key);
        }
        for (const value of Object.values(obj)) walk(value);
      }
    };
    walk(scenarioJsonSchema());
    assert.ok(keys.size > 30, `only ${keys.size} keys found`);
    const missing = [...keys].filter((k) => !docs.includes(`\`${k}\``));
    assert.deepEqual(missing, []);
  });
});
