import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, ReuseportError } from '../errors.js';
import { safeText } from '../untrusted-text.js';
import { buildProgram, type RunContext } from './program.js';

interface CommanderLikeError {
  code: string;
  exitCode: number;
  message: string;
}

function isCommanderError(err: unknown): err is CommanderLikeError {
  const code = (err as { code?: unknown } | null)?.code;
  return err instanceof Error && typeof code === 'string' && code.startsWith('commander.');
}

/** Runs the CLI and returns the exit code; bin/reuseport.js is the one place that exits. */
export async function run(argv: string[]): Promise<number> {
  const context: RunContext = { exitCode: EXIT_OK };
  const program = buildProgram(context);
  try {
    await program.parseAsync(argv);
    return context.exitCode;
  } catch (err) {
    if (isCommanderError(err)) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT_OK;
      // Asked for (`reuseport help`) exits 0; shown because no subcommand was given, it is a usage mistake.
      if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
      const message = err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
      process.stderr.write(`reuseport: ${safeText(message)} (see \`reuseport --help\`)\n`);
      return EXIT_USAGE;
    }
    if (err instanceof ReuseportError) {
      const issues = fileIssues(err);
      if (issues) {
        process.stderr.write(issues);
        return err.exitCode;
      }
      process.stderr.write(`reuseport: ${safeText(err.message)}\n`);
      return err.exitCode;
    }
    const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
    process.stderr.write(`reuseport: internal error: ${message}\n`);
    return EXIT_FAILURE;
  }
}

interface FileIssue {
  file: string;
  line: number;
  column: number;
  message: string;
}

/**
 * Mistakes in a scenario file, one per line as `file:line:col: message` with
 * no prefix: the form editors and CI problem matchers (GitHub's, VS Code's
 * $tsc-like ones) turn into annotations. Null for any other error.
 */
function fileIssues(err: ReuseportError): string | null {
  const issues = (err as { issues?: unknown }).issues;
  if (!Array.isArray(issues) || issues.length === 0) return null;
  const lines = (issues as FileIssue[]).map((i) => `${safeText(i.file)}:${i.line}:${i.column}: ${safeText(i.message)}`);
  const remedy = 'docs/scenarios.md describes the format';
  // One mistake is one line, with its remedy; several get a closing count.
  if (lines.length === 1) return `${lines[0]} (${remedy})\n`;
  const files = new Set((issues as FileIssue[]).map((i) => i.file)).size;
  const where = files === 1 ? 'the scenario file' : `${files} scenario files`;
  return `${lines.join('\n')}\nreuseport: ${issues.length} mistakes in ${where}; fix them and run again (${remedy})\n`;
}
