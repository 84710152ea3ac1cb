import path from 'node:path';
import { checkScenarios, createStarterScenario, shippedScenarioText } from '../scenario/authoring.js';
import { formatIssue } from '../scenario/scenario-file.js';
import { safeProse } from '../untrusted-text.js';
import { SCENARIOS_DIR } from './scenario-command.js';
import { openTerminal } from './terminal.js';

/** Exit 0 when every file is a valid scenario, 2 otherwise; mistakes as `file:line:col: message`. */
export async function scenarioCheckCommand(files: string[], options: { json: boolean }): Promise<number> {
  const terminal = await openTerminal(options);
  const checked = await checkScenarios(files, SCENARIOS_DIR);
  const bad = checked.filter((c) => !c.ok);
  if (options.json) {
    terminal.out(
      JSON.stringify(
        {
          version: 1,
          ok: bad.length === 0,
          files: checked.map((c) => ({ file: c.file, ok: c.ok, name: c.name ?? null, errors: c.errors })),
        },
        null,
        2,
      ),
    );
    return bad.length === 0 ? 0 : 2;
  }
  for (const c of checked) {
    if (c.ok) terminal.out(`${c.file}: ok (${c.name})`);
    // No "reuseport:" prefix: editors and CI problem matchers read these lines as they are.
    else for (const issue of c.errors) terminal.err(formatIssue(issue));
  }
  if (bad.length > 0) {
    const mistakes = bad.reduce((n, c) => n + c.errors.length, 0);
    terminal.err(
      `reuseport: ${mistakes} mistake${mistakes === 1 ? '' : 's'} in ${bad.length} of ${checked.length} file${checked.length === 1 ? '' : 's'}`,
    );
    return 2;
  }
  return 0;
}

export async function scenarioInitCommand(name: string): Promise<number> {
  const terminal = await openTerminal({});
  const { file } = await createStarterScenario(name, process.cwd());
  const shown = path.relative(process.cwd(), file) || file;
  terminal.out(
    `wrote ${shown}: check it with \`reuseport scenario check ${shown}\`, run it with \`reuseport scenario run ./${shown}\``,
  );
  return 0;
}

export async function scenarioShowCommand(name: string): Promise<number> {
  const terminal = await openTerminal({});
  const { text } = await shippedScenarioText(name, SCENARIOS_DIR);
  // A file is shown as it is, except for what could drive the terminal (ESC, BEL, bidi overrides).
  terminal.out(safeProse(text.replace(/\n$/, '')));
  return 0;
}
