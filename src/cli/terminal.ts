import type { Style } from '../report/style.js';
import { plainStyle } from '../report/style.js';

/**
 * Where output goes and how it looks. Results go to stdout; logs, live
 * counters and spinners to stderr. Colour is off for NO_COLOR, --json or a
 * stdout that is not a terminal; chalk does not read NO_COLOR itself.
 */
export interface Terminal {
  out(text: string): void;
  err(text: string): void;
  style: Style;
  /** Whether stderr may show spinners and live lines. */
  interactive: boolean;
}

export async function openTerminal(options: { json?: boolean }): Promise<Terminal> {
  const noColor = process.env.NO_COLOR !== undefined && process.env.NO_COLOR !== '';
  const colour = !options.json && !noColor && process.stdout.isTTY === true;
  let style = plainStyle;
  if (colour) {
    const { Chalk } = await import('chalk');
    const chalk = new Chalk({ level: 1 });
    style = chalk as unknown as Style;
  }
  return {
    out: (text) => process.stdout.write(`${text}\n`),
    err: (text) => process.stderr.write(`${text}\n`),
    style,
    interactive: !options.json && process.stderr.isTTY === true && process.env.CI === undefined,
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
  return {
    signal: controller.signal,
    release: () => {
      for (const name of INTERRUPTS) process.off(name, abort);
    },
  };
}
