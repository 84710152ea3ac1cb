import { readFileSync } from 'node:fs';
import { Command, Option } from 'commander';
import { UsageError } from '../errors.js';
import { parseCount, parseHost, parsePort, parseProtocol } from '../net/address.js';
import type { BinderChoice } from '../net/binder.js';
import type { EngineChoice } from '../net/native.js';

/** Shared by every action: the exit code the one exit point will use. */
export interface RunContext {
  exitCode: number;
}

// Spelled out here rather than imported from net/, which would load sockets and the addon just for --help.
const BINDERS = ['auto', 'builtin', 'native'];
const ENGINES = ['auto', 'node', 'native'];

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string })
      .version;
  } catch {
    return 'unknown';
  }
}

export function buildProgram(context: RunContext): Command {
  const program = new Command('reuseport')
    .description(
      'A lab for Linux SO_REUSEPORT: several processes bind one port, and the kernel picks which one gets each connection.',
    )
    .version(packageVersion(), '-V, --version')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({ outputError: () => {} })
    .addHelpText(
      'after',
      `
Examples:
  reuseport scenario all                       run the article's three experiments, with a verdict
  reuseport serve --workers 5 --port 6000      five processes share 0.0.0.0:6000 (terminal 1)
  reuseport load --port 6000 -n 1000           1000 connections, tallied per worker (terminal 2)
  reuseport doctor                             what this machine can run

Exit codes: 0 ok, 1 an expectation or run failed, 2 bad usage or bad input.`,
    );

  program
    .command('serve')
    .description('start worker processes that share one address:port and count what they accept')
    .option('--host <ip>', 'address to bind (0.0.0.0 and :: are wildcards)', (v) => parseHost(v), '0.0.0.0')
    .option('--port <n>', 'port to bind (0 lets the kernel choose)', (v) => parsePort(v), 6000)
    .option(
      '-w, --workers <n>',
      'worker processes, each with its own socket',
      (v) => parseCount(v, '--workers', 256),
      5,
    )
    .option('--protocol <tcp|udp>', 'tcp or udp', (v) => parseProtocol(v), 'tcp')
    .option('--no-reuseport', 'bind without SO_REUSEPORT (a second worker then fails)')
    .option('--user <name|uid>', 'as root: create the sockets as this user (the kernel records the owner at socket())')
    .addOption(
      new Option('--binder <kind>', 'how SO_REUSEPORT is set: Node reusePort (builtin) or the C helper (native)')
        .choices(BINDERS)
        .default('auto'),
    )
    .addOption(
      new Option(
        '--engine <kind>',
        "who accepts: the C helper's accept loop (native), a net.Server (node), or native where it applies (auto: the default, unless $REUSEPORT_ENGINE says otherwise)",
      ).choices(ENGINES),
    )
    .option('--json', 'print NDJSON events (listening, stats, error, exit, stopped) instead of text')
    .addHelpText(
      'after',
      `
Each worker prints "Start server on HOST:PORT succeeded, pid is PID" when it listens, answers every
connection with "reuseport worker=ID pid=PID local=HOST:PORT" and closes it. Ctrl-C, SIGTERM or SIGHUP
stops all workers and prints "Server HOST:PORT (PID) accept success: N" for each (exact, also for a
worker that died). Exit 0 after a clean stop, 1 if a worker died, could not bind, or had to be killed
because it did not stop within 3 s, 2 for bad input.`,
    )
    .action(async (options) => {
      const { serveCommand } = await import('./serve-command.js');
      context.exitCode = await serveCommand({
        host: options.host,
        port: options.port,
        workers: options.workers,
        protocol: options.protocol,
        reusePort: options.reuseport,
        binder: options.binder as BinderChoice,
        ...(options.engine ? { engine: options.engine as EngineChoice } : {}),
        ...(options.user !== undefined ? { user: String(options.user) } : {}),
        json: options.json === true,
      });
    });

  program
    .command('load')
    .description('open N client connections (or UDP datagrams) and tally which worker answered each')
    .option('--host <ip>', 'address to connect to', (v) => parseHost(v), '127.0.0.1')
    .option('--port <n>', 'port to connect to', (v) => parsePort(v), 6000)
    .option(
      '-n, --connections <n>',
      'connections to open (datagrams for udp)',
      (v) => parseCount(v, '--connections'),
      1000,
    )
    .option('-c, --concurrency <n>', 'at most this many in flight (default: min(64, N))', (v) =>
      parseCount(v, '--concurrency', 100_000),
    )
    .option('--protocol <tcp|udp>', 'tcp or udp', (v) => parseProtocol(v), 'tcp')
    .option('--source-port <n>', 'fixed client source port (needs --concurrency 1)', (v) =>
      parsePort(v, '--source-port'),
    )
    .option(
      '--timeout <ms>',
      'how long each connection waits for its greeting',
      (v) => parseCount(v, '--timeout', 600_000),
      2000,
    )
    .option(
      '--deadline <s>',
      'stop the whole run after this many seconds',
      (v) => parseCount(v, '--deadline', 3600),
      120,
    )
    .addOption(
      new Option(
        '--engine <kind>',
        "TCP client: the C helper's epoll loop (native), net.Socket (node), or native where available (auto: the default, unless $REUSEPORT_ENGINE says otherwise)",
      ).choices(ENGINES),
    )
    .option('--json', 'print one JSON document instead of text')
    .addHelpText(
      'after',
      `
A connection is attributed to the worker named in its greeting; one with no greeting (any other TCP
server, e.g. \`nc -l\`) is counted as unattributed. Failures are grouped by errno. Exit 0 when every
connection succeeded, 1 otherwise, 2 for bad input.`,
    )
    .action(async (options) => {
      const connections: number = options.connections;
      const concurrency: number = options.concurrency ?? Math.min(64, connections);
      if (concurrency > connections) {
        throw new UsageError(`--concurrency (${concurrency}) cannot exceed --connections (${connections})`);
      }
      if (options.sourcePort !== undefined && concurrency !== 1) {
        throw new UsageError('--source-port needs --concurrency 1: one source port carries one connection at a time');
      }
      const { loadCommand } = await import('./load-command.js');
      context.exitCode = await loadCommand({
        host: options.host,
        port: options.port,
        protocol: options.protocol,
        connections,
        concurrency,
        ...(options.sourcePort !== undefined ? { sourcePort: options.sourcePort } : {}),
        replyTimeoutMs: options.timeout,
        deadlineMs: options.deadline * 1000,
        ...(options.engine ? { engine: options.engine as EngineChoice } : {}),
        json: options.json === true,
      });
    });

  program
    .command('doctor')
    .description('report what this machine can run, and what each item means for the experiments')
    .option('--json', 'print one JSON document instead of text')
    .action(async (options) => {
      const { doctorCommand } = await import('./doctor-command.js');
      context.exitCode = await doctorCommand({ json: options.json === true });
    });

  const scenario = program
    .command('scenario')
    .description(
      "run the article's experiments from scenarios/*.yaml, each in its own network namespace, with a verdict",
    );
  scenario
    .command('list')
    .description('list the shipped scenarios')
    .option('--json', 'print JSON')
    .action(async (options) => {
      const { scenarioListCommand } = await import('./scenario-command.js');
      context.exitCode = await scenarioListCommand({ json: options.json === true });
    });
  const runFlags = (command: Command) =>
    command
      .option('--json', 'print one JSON document instead of the report')
      .option('--junit <file>', 'also write JUnit XML to this file')
      .option('--strict', 'skipped scenarios fail the run (exit 1)')
      .addOption(
        new Option(
          '--isolation <kind>',
          'netns: a private network namespace per scenario; host: the host loopback with stand-ins',
        )
          .choices(['auto', 'netns', 'host'])
          .default('auto'),
      )
      .addOption(new Option('--binder <kind>', 'force one binder for every server').choices(['builtin', 'native']))
      .addHelpText(
        'after',
        `
Exit codes: 0 every expectation holds (skips allowed unless --strict), 1 an expectation failed or a
scenario could not run, 2 a bad scenario file or usage, 130 interrupted.`,
      );
  const runAction = async (names: string[] | 'all', options: Record<string, unknown>) => {
    const { scenarioRunCommand } = await import('./scenario-command.js');
    context.exitCode = await scenarioRunCommand(names, {
      json: options.json === true,
      ...(typeof options.junit === 'string' ? { junit: options.junit } : {}),
      strict: options.strict === true,
      isolation: options.isolation as 'auto' | 'netns' | 'host',
      ...(typeof options.binder === 'string' ? { binder: options.binder as 'builtin' | 'native' } : {}),
    });
  };
  runFlags(scenario.command('run').description('run scenarios by name (see `scenario list`) or file path'))
    .argument('<scenario...>', 'scenario names or .yaml/.json files')
    .action((names: string[], options) => runAction(names, options));
  runFlags(scenario.command('all').description('run every shipped scenario')).action((options) =>
    runAction('all', options),
  );

  return program;
}
