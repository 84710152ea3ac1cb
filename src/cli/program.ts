import { readFileSync } from 'node:fs';
import { Argument, Command, Option } from 'commander';
import { DEFAULT_PHASES, MODELS, PHASES, parseNameList } from '../compare/protocol.js';
import { UsageError } from '../errors.js';
import { parseCount, parseHost, parsePort, parseProtocol } from '../net/address.js';
import type { BinderChoice } from '../net/binder.js';
import { ENGINE_ENV, parseEngineFlag, requestedEngine } from '../net/engine.js';
import { wrapProse } from '../report/wrap.js';
import { COLOR_MODES, type ColorMode, setColorMode } from './terminal.js';

/** Shared by every action: the exit code the one exit point will use. */
export interface RunContext {
  exitCode: number;
}

// Spelled out here rather than imported from net/, which would load sockets and the addon just for --help.
const BINDERS = ['auto', 'builtin', 'native'];

/** Every environment variable the tool reads, said once; each command's help lists the ones it uses. */
const ENVIRONMENT = {
  REUSEPORT_ENGINE:
    'auto, builtin (or node) or native: the default for --engine (serve and load workers, scenario servers)',
  REUSEPORT_NATIVE_DISABLE: 'set (not 0): do not load the C helper, as on a machine without it',
  NO_COLOR: 'set and not empty: no colour (https://no-color.org)',
  FORCE_COLOR: '0 turns colour off, anything else on, even when piped',
  TERM: 'dumb: no colour, no spinner',
  CI: 'set: no spinner or live lines',
  COLUMNS: 'a width to fit reports into, also when piped (default: the terminal, else 80)',
  GITHUB_STEP_SUMMARY: 'a file: a Markdown summary table is appended to it after the run',
} as const;
type EnvironmentVariable = keyof typeof ENVIRONMENT;
const TERMINAL_ENV: EnvironmentVariable[] = ['NO_COLOR', 'FORCE_COLOR', 'TERM', 'CI', 'COLUMNS'];

/** The text after a command's options: its examples, then the environment it reads, within 80 columns. */
function helpFooter(examples: [string, string][], environment: EnvironmentVariable[], more = ''): string {
  return [
    `\nExamples:\n${twoColumns(examples)}`,
    environment.length > 0
      ? `Environment:\n${twoColumns(environment.map((name) => [name, ENVIRONMENT[name]]))}`
      : 'Environment: none is read.',
    ...(more ? [wrapProse(more, HELP_COLUMNS)] : []),
  ].join('\n\n');
}

const HELP_COLUMNS = 80;

/** Side by side when every pair fits; otherwise each description under its item. */
function twoColumns(pairs: [string, string][]): string {
  const width = Math.max(...pairs.map(([left]) => left.length));
  const indent = ' '.repeat(width + 4);
  if (width + 4 + 30 <= HELP_COLUMNS) {
    return pairs
      .map(([left, right]) => `  ${left.padEnd(width)}  ${wrapProse(right, HELP_COLUMNS, indent).trimStart()}`)
      .join('\n');
  }
  return pairs.map(([left, right]) => `  ${left}\n${wrapProse(right, HELP_COLUMNS, '      ')}`).join('\n');
}

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
    .addOption(
      new Option('--color <when>', 'colour in human output: auto follows NO_COLOR, FORCE_COLOR, TERM and the terminal')
        .choices(COLOR_MODES)
        .default('auto'),
    )
    .hook('preAction', (command) => setColorMode(command.opts().color as ColorMode))
    .exitOverride()
    // A bad REUSEPORT_ENGINE is the same one error whichever command runs.
    .hook('preAction', () => {
      requestedEngine();
    })
    .configureOutput({ outputError: () => {} })
    .addHelpText(
      'after',
      helpFooter(
        [
          ['reuseport scenario all', "run the article's three experiments, with a verdict"],
          ['reuseport serve --workers 5 --port 6000', 'five processes share 0.0.0.0:6000 (terminal 1)'],
          ['reuseport load --port 6000 -n 1000', '1000 connections, tallied per worker (terminal 2)'],
          ['reuseport reconcile serve.json load.json', "the workers' counts against load's tally, explained"],
          ['reuseport doctor', 'what this machine can run'],
          ['source <(reuseport completion bash)', 'tab completion in this shell'],
        ],
        ['REUSEPORT_ENGINE', 'REUSEPORT_NATIVE_DISABLE', ...TERMINAL_ENV, 'GITHUB_STEP_SUMMARY'],
        'Exit codes: 0 ok, 1 an expectation or run failed, 2 bad usage or bad input.',
      ),
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
    .option(
      '--engine <auto|builtin|native>',
      `who serves: the C helper's thread, accepting TCP or answering UDP in batches (native, needs --binder native), Node's net.Server or dgram (builtin), or native where it applies (auto: the default, unless $${ENGINE_ENV} says otherwise)`,
      (v) => parseEngineFlag(v),
    )
    .option('--json', 'print NDJSON events (listening, stats, error, exit, stopped) instead of text')
    .addHelpText(
      'after',
      helpFooter(
        [
          ['reuseport serve', 'five workers on 0.0.0.0:6000, until Ctrl-C'],
          ['reuseport serve -w 3 --port 7000 --protocol udp', 'three UDP workers'],
          ['reuseport serve --no-reuseport -w 2', 'see the second worker fail with EADDRINUSE'],
          ['sudo reuseport serve --user nobody', 'sockets owned by nobody'],
          ['reuseport serve --json | jq .', 'the events as JSON'],
        ],
        ['REUSEPORT_ENGINE', 'REUSEPORT_NATIVE_DISABLE', ...TERMINAL_ENV],
        'Each worker prints "Start server on HOST:PORT succeeded, pid is PID" when it listens, answers every ' +
          'connection with "reuseport worker=ID pid=PID local=HOST:PORT" and closes it. Ctrl-C, SIGTERM or SIGHUP ' +
          'stops all workers and prints "Server HOST:PORT (PID) accept success: N" for each (exact, also for a ' +
          'worker that died). Exit 0 after a clean stop, 1 if a worker died, could not bind, or had to be killed ' +
          'because it did not stop within 3 s, 2 for bad input.',
      ),
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
        ...(options.engine ? { engine: options.engine } : {}),
        ...(options.user !== undefined ? { user: String(options.user) } : {}),
        json: options.json === true,
      });
    });

  program
    .command('load')
    .description('open N client connections (or UDP datagrams) and tally which worker answered each')
    .option('--host <ip>', 'address to connect to', (v) => parseHost(v), '127.0.0.1')
    .option('--port <n>', 'port to connect to (not 0)', (v) => parsePort(v), 6000)
    .option(
      '-n, --connections <n>',
      'connections to open (datagrams for udp)',
      (v) => parseCount(v, '--connections'),
      1000,
    )
    .option('-c, --concurrency <n>', 'at most this many in flight (default: min(64, N); 1 with --source-port)', (v) =>
      parseCount(v, '--concurrency', 100_000),
    )
    .option('--protocol <tcp|udp>', 'tcp or udp', (v) => parseProtocol(v), 'tcp')
    .option('--source-port <n>', 'fixed client source port (implies --concurrency 1)', (v) =>
      parsePort(v, '--source-port'),
    )
    .option('-w, --workers <n>', 'how many workers serve the port: the verdict then names any that got nothing', (v) =>
      parseCount(v, '--workers', 256),
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
    .option(
      '--engine <auto|builtin|native>',
      `TCP and UDP client: the C helper's epoll loop (native), a Node socket per connection (builtin), or native where available (auto: the default, unless $${ENGINE_ENV} says otherwise)`,
      (v) => parseEngineFlag(v),
    )
    .option('--json', 'print one JSON document instead of text')
    .addHelpText(
      'after',
      helpFooter(
        [
          ['reuseport load', '1000 connections to 127.0.0.1:6000'],
          ['reuseport load --port 7000 -n 500 --protocol udp', '500 datagrams'],
          ['reuseport load --source-port 40000 -c 1 -n 10', 'one 4-tuple, ten times: always one worker'],
          ['reuseport load --json > tally.json', 'the tally as JSON'],
        ],
        ['REUSEPORT_ENGINE', 'REUSEPORT_NATIVE_DISABLE', ...TERMINAL_ENV],
        'Each connection is attributed (its greeting names the worker), connected but silent (no greeting ' +
          'within --timeout), unrecognized (answered without a greeting: not a reuseport worker), failed (by ' +
          'errno), or, when --deadline or Ctrl-C cuts the run, in flight or not started. The balance verdict ' +
          'is a chi-square test against 1/N per worker. Exit 0 when every connection was attributed, 1 ' +
          'otherwise, 2 for bad input.',
      ),
    )
    .action(async (options) => {
      const connections: number = options.connections;
      if (options.port === 0) {
        throw new UsageError('--port 0 means "any port" to a server, not a target: give the port `serve` printed');
      }
      const concurrency: number =
        options.concurrency ?? (options.sourcePort !== undefined ? 1 : Math.min(64, connections));
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
        ...(options.workers !== undefined ? { workers: options.workers } : {}),
        ...(options.engine ? { engine: options.engine } : {}),
        json: options.json === true,
      });
    });

  program
    .command('reconcile')
    .description("explain, after both ended, how serve's exact accept counts and load's tally differ")
    .argument('<serve>', 'what `reuseport serve --json` printed, through its "stopped" event')
    .argument('<load>', 'what `reuseport load --json` printed')
    .option('--json', 'print one JSON document instead of text')
    .addHelpText(
      'after',
      helpFooter(
        [
          ['reuseport serve --port 6000 --json > serve.json', 'terminal 1; Ctrl-C when the load is done'],
          ['reuseport load --port 6000 --json > load.json', 'terminal 2'],
          ['reuseport reconcile serve.json load.json', 'each difference, explained exactly'],
        ],
        TERMINAL_ENV,
        "Each worker's final count is set against the greetings the client read from it. A worker may have " +
          'accepted more: connections the client saw connect but got no greeting on (silent, in flight after ' +
          '--deadline or Ctrl-C, unrecognized, reset); the rest of those were never accepted. Serve counts every ' +
          "accept since it started, so this assumes the load was serve's only client: another client's " +
          'connections show up as unexplained. Exit 0 when every count is explained, 1 when a count is wrong, ' +
          'unknown or unexplained (or the files are from different runs), 2 for bad input.',
      ),
    )
    .action(async (serveFile: string, loadFile: string, options) => {
      const { reconcileCommand } = await import('./reconcile-command.js');
      context.exitCode = await reconcileCommand(serveFile, loadFile, { json: options.json === true });
    });

  program
    .command('doctor')
    .description('report what this machine can run, and what each item means for the experiments')
    .option('--json', 'print one JSON document instead of text')
    .addHelpText(
      'after',
      helpFooter(
        [
          ['reuseport doctor', 'each check, and what it means for the experiments'],
          ['reuseport doctor --json', 'the same as JSON'],
        ],
        ['REUSEPORT_NATIVE_DISABLE', ...TERMINAL_ENV],
        'Exit codes: 0 ready, 1 nothing can bind with SO_REUSEPORT here.',
      ),
    )
    .action(async (options) => {
      const { doctorCommand } = await import('./doctor-command.js');
      context.exitCode = await doctorCommand({ json: options.json === true });
    });

  const scenario = program
    .command('scenario')
    .description(
      "run the article's experiments from scenarios/*.yaml, each in its own network namespace, with a verdict",
    )
    .addHelpText(
      'after',
      helpFooter(
        [
          ['reuseport scenario list', 'the shipped scenarios'],
          ['reuseport scenario all', 'run them all'],
          ['reuseport scenario run priority', 'run one'],
        ],
        ['REUSEPORT_ENGINE', 'REUSEPORT_NATIVE_DISABLE', ...TERMINAL_ENV, 'GITHUB_STEP_SUMMARY'],
      ),
    );
  scenario
    .command('list')
    .description('list the shipped scenarios')
    .option('--json', 'print JSON')
    .addHelpText(
      'after',
      helpFooter(
        [
          ['reuseport scenario list', 'name, title and what each needs'],
          ['reuseport scenario list --json', 'the same as JSON'],
        ],
        TERMINAL_ENV,
      ),
    )
    .action(async (options) => {
      const { scenarioListCommand } = await import('./scenario-command.js');
      context.exitCode = await scenarioListCommand({ json: options.json === true });
    });
  const runFlags = (command: Command, examples: [string, string][]) =>
    command
      .option('--json', 'print one JSON document instead of the report')
      .option('--junit <file>', 'also write JUnit XML to this file')
      .option('--html <file>', 'also write a self-contained HTML report with charts to this file')
      .option('--markdown <file>', 'also write a Markdown summary table to this file')
      .option('--strict', 'skipped scenarios fail the run (exit 1)')
      .option('--brief', 'one line per scenario that passed or was skipped; failures in full')
      .addOption(
        new Option(
          '--isolation <kind>',
          'netns: a private network namespace per scenario; host: the host loopback with stand-ins',
        )
          .choices(['auto', 'netns', 'host'])
          .default('auto'),
      )
      .addOption(new Option('--binder <kind>', 'force one binder for every server').choices(['builtin', 'native']))
      .option(
        '-j, --jobs <n>',
        'scenarios run at once, each in its own namespace (default: 2 per CPU; 1 with --isolation host)',
        (v) => parseCount(v, '--jobs', 64),
      )
      .addHelpText(
        'after',
        helpFooter(
          examples,
          ['REUSEPORT_ENGINE', 'REUSEPORT_NATIVE_DISABLE', ...TERMINAL_ENV, 'GITHUB_STEP_SUMMARY'],
          'Exit codes: 0 every expectation holds (skips allowed unless --strict), 1 an expectation failed or a ' +
            'scenario could not run, 2 a bad scenario file or usage, 130 interrupted.',
        ),
      );
  const runAction = async (names: string[] | 'all', options: Record<string, unknown>) => {
    // First, so that its process under unshare runs while the scenario modules load and the files are checked.
    const { startNamespaceProbe } = await import('../scenario/namespace-probe.js');
    const namespaceProbe = startNamespaceProbe(options.isolation as 'auto' | 'netns' | 'host');
    namespaceProbe.catch(() => {}); // a failure surfaces where the run awaits it
    try {
      const { scenarioRunCommand } = await import('./scenario-command.js');
      context.exitCode = await scenarioRunCommand(names, {
        json: options.json === true,
        ...(typeof options.junit === 'string' ? { junit: options.junit } : {}),
        ...(typeof options.html === 'string' ? { html: options.html } : {}),
        ...(typeof options.markdown === 'string' ? { markdown: options.markdown } : {}),
        strict: options.strict === true,
        brief: options.brief === true,
        isolation: options.isolation as 'auto' | 'netns' | 'host',
        ...(typeof options.binder === 'string' ? { binder: options.binder as 'builtin' | 'native' } : {}),
        ...(typeof options.jobs === 'number' ? { jobs: options.jobs } : {}),
        namespaceProbe,
      });
    } finally {
      // Nothing left behind, whatever ended the command: the probe's process is gone first.
      await namespaceProbe.catch(() => null);
    }
  };
  runFlags(scenario.command('run').description('run scenarios by name (see `scenario list`) or file path'), [
    ['reuseport scenario run priority', 'one shipped scenario'],
    ['reuseport scenario run ./my-lab.yaml', 'your own file'],
    ['reuseport scenario run priority --isolation host', "on the host's loopback, without a namespace"],
    ['reuseport scenario run priority --html report.html', 'also a page with charts'],
  ])
    .argument('<scenario...>', 'scenario names or .yaml/.json files')
    .action((names: string[], options) => runAction(names, options));
  runFlags(scenario.command('all').description('run every shipped scenario'), [
    ['reuseport scenario all', 'every shipped scenario, with a verdict'],
    ['sudo reuseport scenario all --strict', 'as CI would: a skipped scenario fails'],
    ['reuseport scenario all --junit junit.xml --markdown summary.md', 'reports for a pipeline'],
    ['reuseport scenario all --json > run.json', 'the whole run as JSON'],
  ]).action((options) => runAction('all', options));

  scenario
    .command('check')
    .description('validate scenario files without running them: every mistake, as file:line:col')
    .argument('<scenario...>', 'scenario names or .yaml/.json files')
    .option('--json', 'print one JSON document: files[].errors[] with file, line, column, message')
    .addHelpText('after', '\nExit codes: 0 every file is a valid scenario, 2 otherwise.')
    .action(async (files: string[], options) => {
      const { scenarioCheckCommand } = await import('./scenario-authoring-command.js');
      context.exitCode = await scenarioCheckCommand(files, { json: options.json === true });
    });
  scenario
    .command('init')
    .description('write a commented starter scenario, NAME.yaml, in the current directory (never overwrites)')
    .argument('<name>', 'scenario name (lowercase letters, digits, dashes) or a path ending in .yaml')
    .action(async (name: string) => {
      const { scenarioInitCommand } = await import('./scenario-authoring-command.js');
      context.exitCode = await scenarioInitCommand(name);
    });
  scenario
    .command('show')
    .description('print a shipped scenario file, to start a new one from')
    .argument('<name>', 'a shipped scenario (see `scenario list`)')
    .action(async (name: string) => {
      const { scenarioShowCommand } = await import('./scenario-authoring-command.js');
      context.exitCode = await scenarioShowCommand(name);
    });

  program
    .command('completion')
    .description('print a shell completion script for bash, zsh or fish')
    .addArgument(new Argument('<shell>', 'the shell to complete in').choices(['bash', 'zsh', 'fish']))
    .addHelpText(
      'after',
      helpFooter(
        [
          ['source <(reuseport completion bash)', 'bash, in this shell'],
          ["echo 'source <(reuseport completion bash)' >> ~/.bashrc", 'bash, from now on'],
          ['source <(reuseport completion zsh)', 'zsh, in this shell'],
          ['reuseport completion fish > ~/.config/fish/completions/reuseport.fish', 'fish, from now on'],
        ],
        [],
      ),
    )
    .action(async (shell: string) => {
      const { completionCommand } = await import('./completion.js');
      context.exitCode = await completionCommand(shell, program);
    });

  program
    .command('compare')
    .description(
      'run SO_REUSEPORT, shared-listener and dispatcher models side by side, with verdicts against published figures',
    )
    .option('-w, --workers <n>', 'worker processes per model', (v) => parseCount(v, '--workers', 64), 4)
    .option('--models <list>', `comma-separated models (default: all): ${MODELS.join(', ')}`, (v) =>
      parseNameList(v, '--models', MODELS),
    )
    .option(
      '--phases <list>',
      `comma-separated phases: ${PHASES.join(', ')} (default: ${DEFAULT_PHASES.join(',')}; slow is opt-in)`,
      (v) => parseNameList(v, '--phases', PHASES),
    )
    .option(
      '--with-node',
      "also run Node's cluster models: round-robin, SCHED_NONE, and reusePort where this Node has it",
    )
    .addOption(
      new Option('--isolation <kind>', "netns: a fresh network namespace; host: the host's 127.0.0.1")
        .choices(['auto', 'netns', 'host'])
        .default('auto'),
    )
    .option('--json', 'print one versioned JSON document with every figure instead of the report')
    .option('--html <file>', 'also write a self-contained HTML page with latency histograms and per-worker bars')
    .addHelpText(
      'after',
      `\n${wrapProse(
        'Each model runs as real worker processes with the same C handler; every load is bounded and stays on ' +
          '127.0.0.1 in a fresh network namespace when one can be made. The default run is budgeted to 15 s on ' +
          '2 cores (20 s with --with-node); --json shows where the time went.\n' +
          'Exit codes: 0 the run completed (verdicts are findings, not failures), 1 a model could not run, ' +
          '2 bad usage, 130 interrupted.',
        HELP_COLUMNS,
      )}`,
    )
    .action(async (options) => {
      const { compareCommand } = await import('./compare-command.js');
      context.exitCode = await compareCommand({
        workers: options.workers,
        models: options.models ?? [...MODELS],
        phases: options.phases ?? [...DEFAULT_PHASES],
        isolation: options.isolation as 'auto' | 'netns' | 'host',
        withNode: options.withNode === true,
        json: options.json === true,
        ...(typeof options.html === 'string' ? { html: options.html } : {}),
      });
    });

  return program;
}
