import type { Style } from '../report/style.js';
import { plainStyle } from '../report/style.js';

/**
 * Where output goes and how it looks. Results go to stdout; logs, live
 * counters and spinners go to stderr.
 */
export interface Terminal {
  out(text: string): void;
  err(text: string): void;
  style: Style;
  /** Whether stderr may show spinners and live lines. */
  interactive: boolean;
  /** Columns to fit prose and tables into: $COLUMNS, else the terminal's, else 80 (see `outputColumns`). */
  columns: number;
}

export type ColorMode = 'auto' | 'always' | 'never';
export const COLOR_MODES: readonly ColorMode[] = ['auto', 'always', 'never'];

/** Set once from the global --color flag, before any command opens its terminal. */
let colorFlag: ColorMode = 'auto';
export function setColorMode(mode: ColorMode): void {
  colorFlag = mode;
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * The colour policy, by hand because no library does all of it: chalk's
 * supports-color ignores NO_COLOR and sniffs process.argv for its own flags.
 * Order: the --color flag, then --json (machine output is never painted),
 * NO_COLOR, FORCE_COLOR, TERM=dumb, and finally whether stdout is a terminal.
 */
export function colorLevel(options: { json?: boolean; flag?: ColorMode; env?: Env; stdoutIsTTY?: boolean }): 0 | 1 {
  const env = options.env ?? process.env;
  const flag = options.flag ?? colorFlag;
  if (options.json) return 0;
  if (flag === 'never') return 0;
  if (flag === 'always') return 1;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return 0;
  const force = env.FORCE_COLOR;
  if (force !== undefined) return force === '0' || force === 'false' ? 0 : 1;
  if (env.TERM === 'dumb') return 0;
  return (options.stdoutIsTTY ?? process.stdout.isTTY === true) ? 1 : 0;
}

/**
 * Spinners and live lines need a terminal that can move the cursor: a TTY
 * with a real width (ora divides by the column count, and spins forever at
 * 100 % CPU when a wrapper reports 0 columns), not TERM=dumb, not CI.
 */
export function usableTerminal(stream: { isTTY?: boolean; columns?: number }, env: Env = process.env): boolean {
  return (
    stream.isTTY === true &&
    typeof stream.columns === 'number' &&
    stream.columns > 0 &&
    env.TERM !== 'dumb' &&
    env.CI === undefined
  );
}

/** The width reports are laid out for when stdout is not a terminal: logs and CI output stay stable. */
export const DEFAULT_COLUMNS = 80;

/**
 * The width to fit reports into. COLUMNS, when it is a positive whole number,
 * wins, as for commander, cliui and ls, and also when stdout is a pipe (the
 * way to ask for a width in a log, and how the tests force one); then the
 * terminal's own width; then DEFAULT_COLUMNS.
 */
export function outputColumns(
  stream: { isTTY?: boolean; columns?: number } = process.stdout,
  env: Env = process.env,
): number {
  const asked = env.COLUMNS?.trim() ?? '';
  if (/^[1-9][0-9]*$/.test(asked)) return Number(asked);
  if (stream.isTTY === true && typeof stream.columns === 'number' && stream.columns > 0) return stream.columns;
  return DEFAULT_COLUMNS;
}

export async function openTerminal(options: { json?: boolean }): Promise<Terminal> {
  const output = watchClosedOutput();
  let style = plainStyle;
  if (colorLevel(options) > 0) {
    const { Chalk } = await import('chalk');
    const chalk = new Chalk({ level: 1 });
    style = chalk as unknown as Style;
  }
  return {
    out: (text) => output.closed.stdout || process.stdout.write(`${text}\n`),
    err: (text) => output.closed.stderr || process.stderr.write(`${text}\n`),
    style,
    interactive: !options.json && usableTerminal(process.stderr),
    columns: outputColumns(),
  };
}

export interface StatusLine {
  update(text: string): void;
  /** Prints a finished line above the spinner, which keeps running. */
  log(text: string): void;
  stop(): void;
}

/** One ora spinner on stderr when interactive; on a plain stderr, only `log` prints. */
export async function statusLine(terminal: Terminal, text: string): Promise<StatusLine> {
  if (!terminal.interactive) return { update() {}, log: (line) => terminal.err(line), stop() {} };
  const { default: ora } = await import('ora');
  const spinner = ora({ text, stream: process.stderr, discardStdin: false }).start();
  return {
    update: (next) => {
      spinner.text = next;
    },
    log: (line) => {
      const current = spinner.text;
      spinner.stop();
      terminal.err(line);
      spinner.start(current);
    },
    stop: () => spinner.stop(),
  };
}

interface ClosedOutput {
  /** Aborted once stdout or stderr has no reader any more. */
  gone: AbortSignal;
  closed: { stdout: boolean; stderr: boolean };
}
let closedOutput: ClosedOutput | undefined;

/**
 * A reader that went away (`reuseport serve | head -1`, a closed terminal):
 * commands stop as for Ctrl-C, and nothing more is written to that stream.
 * One watch per process, shared by every command.
 */
export function watchClosedOutput(): ClosedOutput {
  if (closedOutput) return closedOutput;
  const controller = new AbortController();
  const watch: ClosedOutput = { gone: controller.signal, closed: { stdout: false, stderr: false } };
  for (const name of ['stdout', 'stderr'] as const) {
    // EPIPE, or a write after the stream was destroyed: either way nobody reads it any more.
    // Never removed: a late error on the way out must not become an uncaught exception.
    process[name].on('error', () => {
      watch.closed[name] = true;
      controller.abort();
    });
  }
  closedOutput = watch;
  return watch;
}

/** Signals that mean "stop now, but report": Ctrl-C, kill, and a closed terminal. */
const INTERRUPTS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/**
 * Ctrl-C, SIGTERM and SIGHUP abort the returned signal instead of killing the
 * process, so that commands can stop their workers and still report. Call
 * `release` when done.
 */
export function interruptSignal(): { signal: AbortSignal; release(): void } {
  const controller = new AbortController();
  const abort = () => controller.abort();
  for (const name of INTERRUPTS) process.on(name, abort);
  const gone = watchClosedOutput().gone;
  gone.addEventListener('abort', abort);
  return {
    signal: controller.signal,
    release: () => {
      for (const name of INTERRUPTS) process.off(name, abort);
      gone.removeEventListener('abort', abort);
    },
  };
}
