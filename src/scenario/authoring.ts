/**
 * The lab author's kit: check files without running them, write a starter
 * file, show a shipped scenario. Returns data; src/cli prints it.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isErrnoException, UsageError } from '../errors.js';
import { displayPath } from '../text-file.js';
import {
  parseScenario,
  readScenarioText,
  resolveScenario,
  ScenarioFileError,
  type ScenarioIssue,
  scenarioNameOf,
} from './scenario-file.js';

/** The JSON Schema of scenario files, written next to the compiled code at build time. */
export const SCENARIO_SCHEMA_FILE = fileURLToPath(new URL('../../scenario.schema.json', import.meta.url));

export interface CheckedFile {
  /** As given, or as shown in messages when it resolved to a file. */
  file: string;
  ok: boolean;
  /** The scenario's name and title, when it is valid. */
  name?: string;
  title?: string;
  errors: ScenarioIssue[];
}

/** Validates each file (names of shipped scenarios or paths) without running anything; every mistake of every file. */
export async function checkScenarios(namesOrPaths: string[], scenariosDir: string): Promise<CheckedFile[]> {
  return Promise.all(
    namesOrPaths.map(async (given): Promise<CheckedFile> => {
      let absolute: string;
      try {
        absolute = await resolveScenario(given, scenariosDir);
      } catch (err) {
        if (!(err instanceof UsageError)) throw err;
        return { file: given, ok: false, errors: [{ file: given, line: 1, column: 1, message: err.message }] };
      }
      const shown = displayPath(absolute);
      try {
        const scenario = parseScenario(await readScenarioText(absolute), absolute);
        return { file: shown, ok: true, name: scenario.name, title: scenario.title, errors: [] };
      } catch (err) {
        if (err instanceof ScenarioFileError) return { file: shown, ok: false, errors: err.issues };
        if (err instanceof UsageError) {
          return { file: shown, ok: false, errors: [{ file: shown, line: 1, column: 1, message: err.message }] };
        }
        throw err;
      }
    }),
  );
}

/** NAME (→ ./NAME.yaml) or a path ending in .yaml/.yml; the scenario name is the base name. */
export function starterTarget(nameOrPath: string, cwd: string): { file: string; name: string } {
  const file = /\.ya?ml$/i.test(nameOrPath) ? path.resolve(cwd, nameOrPath) : path.resolve(cwd, `${nameOrPath}.yaml`);
  const name = scenarioNameOf(file);
  if (!/^[a-z0-9-]+$/.test(name)) {
    throw new UsageError(
      `a scenario name is lowercase letters, digits and dashes (like my-first-lab), and the file is NAME.yaml`,
    );
  }
  return { file, name };
}

/** A commented starter scenario that validates and runs as it is (no root needed). */
export function starterScenario(name: string, schemaFile = SCENARIO_SCHEMA_FILE): string {
  return `# yaml-language-server: $schema=${schemaFile}
# A reuseport scenario. Check it:  reuseport scenario check ${name}.yaml
# Run it:                         reuseport scenario run ./${name}.yaml
# Every key is described in docs/scenarios.md; an editor with the YAML
# extension completes and checks keys through the $schema line above.

name: ${name} # must equal the file name without .yaml
title: Two sockets share one port, and together they serve every connection

# Optional prose, printed in the report when present:
# article: What the article (or your lesson) claims.
# lookFor: What to look for in the output.
# explanation: How the kernel produces the result.

servers:
  - id: W # steps and expectations name servers by id
    address: 0.0.0.0 # the wildcard; 127.0.0.1 works too
    port: 6000 # inside the scenario's own network namespace, so it cannot clash
    replicas: 2 # two worker processes, each with its own socket
    reuseport: true # SO_REUSEPORT before bind(); set false and the second bind fails

steps:
  - start: [W]
  - traffic:
      id: hello # expectations name traffic by id
      target: 127.0.0.1 # loopback, or an address listed under network.addresses
      port: 6000
      connections: 200

expect:
  - bind: W
    outcome: ok # every replica bound; an errno name such as EADDRINUSE is allowed too
  - traffic: hello
    all: W # every connection was served by one of W's replicas
`;
}

/** Writes the starter file; never overwrites one that exists. */
export async function createStarterScenario(nameOrPath: string, cwd: string): Promise<{ file: string; name: string }> {
  const target = starterTarget(nameOrPath, cwd);
  try {
    await writeFile(target.file, starterScenario(target.name), { flag: 'wx' });
  } catch (err) {
    if (isErrnoException(err) && err.code === 'EEXIST') {
      throw new UsageError(`${displayPath(target.file)} already exists; it is left as it is (choose another name)`);
    }
    const why = isErrnoException(err) ? (err.code ?? err.message) : String(err);
    throw new UsageError(`cannot write ${displayPath(target.file)}: ${why}`);
  }
  return target;
}

/** The text of a shipped scenario, by name. */
export async function shippedScenarioText(name: string, scenariosDir: string): Promise<{ file: string; text: string }> {
  if (!/^[a-z0-9-]+$/.test(name)) {
    throw new UsageError('scenario show takes the name of a shipped scenario (see `reuseport scenario list`)');
  }
  const file = await resolveScenario(name, scenariosDir);
  return { file, text: await readScenarioText(file) };
}
