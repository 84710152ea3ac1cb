/**
 * The Node cluster models of `reuseport compare --with-node`, run by the
 * reuseport-compare executable as
 * `node node-cluster.js <rr|none|reuseport> WORKERS <light|heavy|slow> BURN_ITERATIONS SLOW_EVERY SLOW_SLEEP_MS`
 * (native/compare_node.c). Not imported by the CLI: it is a program of its own.
 *
 * - rr: cluster's default SCHED_RR. The primary accepts every connection and
 *   hands it to a worker over IPC: a dispatcher.
 * - none: SCHED_NONE. The primary passes the listening handle to every
 *   worker; each polls it with libuv's (non-exclusive) epoll.
 * - reuseport: each worker binds its own SO_REUSEPORT socket (`reusePort`,
 *   Node >= 22.12 / 23.1; `exclusive` keeps the primary out of it).
 *
 * Workers run the C models' handler (handle_connection in compare_server.c)
 * step for step: heavy burns the executable's calibrated iterations of the
 * same C loop through the addon (cpuBurn), slow makes worker 0 sleep on every
 * SLOW_EVERY-th request, both blocking the worker as they block a C worker;
 * then a two-byte reply naming the worker, and the server closes first. When
 * every worker listens, the primary prints one line,
 * "PORT PRIMARY_PID WORKER_PID...", on stdout; a failure is "error WHAT".
 * Then it takes commands on stdin, "handler KIND ITERATIONS", and answers
 * "ok" once every worker runs that handler, so one cluster serves every phase.
 */
import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { loadNativeHelper } from '../net/native.js';
import { hardenProcess } from '../process-hardening.js';

type Policy = 'rr' | 'none' | 'reuseport';
type HandlerKind = 'light' | 'heavy' | 'slow';
type WorkerMessage = { port: number } | { error: string } | { switched: HandlerKind };
/** From the primary: run another handler from now on (the slow parameters stay those of the command line). */
type PrimaryMessage = { handler: Pick<HandlerSpec, 'kind' | 'burnIterations'> };

interface HandlerSpec {
  kind: HandlerKind;
  burnIterations: number;
  slowEvery: number;
  slowSleepMs: number;
}

const INDEX_ENV = 'REUSEPORT_COMPARE_WORKER';
const PORT_ENV = 'REUSEPORT_COMPARE_PORT';

function isHandlerKind(text: string | undefined): text is HandlerKind {
  return text === 'light' || text === 'heavy' || text === 'slow';
}

/** The addon's cpuBurn (native/compare_burn.c), or why it cannot be had. */
function cpuBurn(): ((iterations: number) => void) | string {
  const loaded = loadNativeHelper();
  if (loaded.helper === null) return `no native helper for the heavy handler: ${loaded.reason}`;
  const burn = (loaded.helper.exports as { cpuBurn?: unknown }).cpuBurn;
  return typeof burn === 'function'
    ? (burn as (iterations: number) => void)
    : 'this build of the native helper has no cpuBurn: run `npm rebuild reuseport`';
}

/** The work before the reply, as the C handler does it; a string when it cannot be done here. */
function handlerWork(spec: HandlerSpec, index: number): (() => void) | string {
  if (spec.kind === 'heavy') {
    const burn = cpuBurn();
    return typeof burn === 'string' ? burn : () => burn(spec.burnIterations);
  }
  if (spec.kind === 'slow' && index === 0) {
    // A blocking sleep, as nanosleep() blocks a C worker: its event loop accepts nothing meanwhile.
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    let handled = 0;
    return () => {
      if (++handled % spec.slowEvery === 0) Atomics.wait(sleeper, 0, 0, spec.slowSleepMs);
    };
  }
  return () => {};
}

function runWorker(policy: Policy, spec: HandlerSpec): void {
  const index = Number(process.env[INDEX_ENV]);
  const initial = handlerWork(spec, index);
  if (typeof initial === 'string') {
    process.send?.({ error: initial });
    return;
  }
  let work = initial;
  process.on('message', (message: PrimaryMessage) => {
    const next = handlerWork({ ...spec, ...message.handler }, index);
    if (typeof next === 'string') process.send?.({ error: next });
    else {
      work = next;
      process.send?.({ switched: message.handler.kind });
    }
  });
  const reply = Buffer.from([index, 10]);
  const server = net.createServer((socket) => {
    // A client that timed out resets; that is its business, not a crash.
    socket.on('error', () => {});
    work();
    socket.end(reply);
  });
  server.on('error', (err: NodeJS.ErrnoException) => process.send?.({ error: err.code ?? err.message }));
  const port = Number(process.env[PORT_ENV] ?? 0);
  const options = policy === 'reuseport' ? { reusePort: true, exclusive: true } : {};
  server.listen({ host: '127.0.0.1', port, backlog: 4096, ...options }, () =>
    process.send?.({ port: (server.address() as net.AddressInfo).port }),
  );
}

/** A command on the primary's stdin: "handler KIND ITERATIONS". */
function parseSwitch(line: string): PrimaryMessage | null {
  const [word, kind, iterations] = line.trim().split(' ');
  const burnIterations = Number(iterations);
  if (word !== 'handler' || !isHandlerKind(kind) || !Number.isSafeInteger(burnIterations) || burnIterations < 0) {
    return null;
  }
  return { handler: { kind, burnIterations } };
}

function runPrimary(policy: Policy, workers: number): void {
  cluster.schedulingPolicy = policy === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
  const pids: number[] = new Array(workers).fill(0);
  const started: Worker[] = [];
  let listening = 0;
  let switched = 0;
  let port = 0;
  const fail = (why: string) => {
    process.stdout.write(`error ${why}\n`);
    process.exit(1);
  };
  const start = (index: number, onPort?: (port: number) => void): Worker => {
    const worker = cluster.fork({ [INDEX_ENV]: String(index), [PORT_ENV]: String(port) });
    pids[index] = worker.process.pid ?? 0;
    started.push(worker);
    worker.on('message', (message: WorkerMessage) => {
      if ('error' in message) fail(`worker ${index}: ${message.error}`);
      else if ('switched' in message) {
        if (++switched === workers) process.stdout.write('ok\n');
      } else {
        listening++;
        onPort?.(message.port);
        if (listening === workers) process.stdout.write(`${message.port} ${process.pid} ${pids.join(' ')}\n`);
      }
    });
    worker.on('exit', (code, signal) => fail(`worker ${index} exited (${signal ?? code})`));
    return worker;
  };
  if (policy === 'reuseport') {
    // The first worker picks the port; the rest bind to it, each its own socket.
    start(0, (chosen) => {
      port = chosen;
      for (let i = 1; i < workers; i++) start(i);
    });
  } else {
    for (let i = 0; i < workers; i++) start(i);
  }
  // One command at a time: the executable waits for "ok" before it sends the next.
  createInterface({ input: process.stdin }).on('line', (line) => {
    const command = parseSwitch(line);
    if (command === null || listening < workers) fail('bad command (or workers not listening yet)');
    else {
      switched = 0;
      for (const worker of started) worker.send(command);
    }
  });
}

/** The arguments compare_node.c passes, or null when they are not what it passes. */
function parseArguments(args: readonly string[]): { policy: Policy; workers: number; spec: HandlerSpec } | null {
  const [policy, workers, kind, ...numbers] = args;
  const [burnIterations, slowEvery, slowSleepMs] = numbers.map(Number);
  const whole = (n: number | undefined, min: number): n is number => Number.isSafeInteger(n) && (n as number) >= min;
  if (policy !== 'rr' && policy !== 'none' && policy !== 'reuseport') return null;
  if (!isHandlerKind(kind)) return null;
  if (!whole(Number(workers), 1) || !whole(burnIterations, 0) || !whole(slowEvery, 1) || !whole(slowSleepMs, 0)) {
    return null;
  }
  return { policy, workers: Number(workers), spec: { kind, burnIterations, slowEvery, slowSleepMs } };
}

// The primary and every worker run this file: each makes SIGUSR1 harmless first (it runs as root under compare).
hardenProcess();
const parsed = parseArguments(process.argv.slice(2));
if (parsed === null) {
  process.stdout.write('error bad arguments (see the top of node-cluster.ts)\n');
  process.exitCode = 2;
} else if (cluster.isPrimary) {
  runPrimary(parsed.policy, parsed.workers);
} else {
  runWorker(parsed.policy, parsed.spec);
}
