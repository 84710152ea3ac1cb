// Writes dist/scenario.schema.json, the JSON Schema of scenario files, from the
// one definition of the format (src/scenario/schema.ts, compiled). Run after
// tsc by `npm run build`, `prepare` (so `npm ci` and installs from git get it)
// and `npm test`; generated, never committed, so it cannot drift.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { scenarioJsonSchema } = await import(join(root, 'dist', 'src', 'scenario', 'schema.js'));
writeFileSync(join(root, 'dist', 'scenario.schema.json'), `${JSON.stringify(scenarioJsonSchema(), null, 2)}\n`);
