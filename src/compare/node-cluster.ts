/**
 * The Node cluster models of `reuseport compare --with-node`, run by the
 * reuseport-compare executable as `node node-cluster.js <rr|none|reuseport> <workers>`
 * (native/compare_node.c). Not imported by the CLI: it is a program of its own.
 *
 * - rr: cluster's default SCHED_RR. The primary accepts every connection and
 *   hands it to a worker over IPC: a dispatcher.
 * - none: SCHED_NONE. The primary passes the listening handle to every
 *   worker; each polls it with libuv's (non-exclusive) epoll.
 * - reuseport: each worker binds its own SO_REUSEPORT socket (`reusePort`,
 *   Node >= 22.12 / 23.1; `exclusive` keeps the primary out of it).
 *
 * Workers run the same minimal handler as the C models: a two-byte reply
 * naming the worker, and the server closes first. When every worker listens,
 * the primary prints one line, "PORT PRIMARY_PID WORKER_PID...", on stdout.
 */
import cluster, { type Worker } from 'node:cluster';
import net from 'node:net';

type Policy = 'rr' | 'none' | 'reuseport';
type WorkerMessage = { port: number } | { error: string };

const INDEX_ENV = 'REUSEPORT_COMPARE_WORKER';
const PORT_ENV = 'REUSEPORT_COMPARE_PORT';

function runWorker(policy: Policy): void {
  const index = Number(process.env[INDEX_ENV]);
  const reply = Buffer.from([index, 10]);
  const server = net.createServer((socket) => {
    // A client that timed out resets; that is its business, not a crash.
    socket.on('error', () => {});
    socket.end(reply);
  });
  server.on('error', (err: NodeJS.ErrnoException) => process.send?.({ error: err.code ?? err.message }));
  const port = Number(process.env[PORT_ENV] ?? 0);
  const options = policy === 'reuseport' ? { reusePort: true, exclusive: true } : {};
  server.listen({ host: '127.0.0.1', port, backlog: 4096, ...options }, () =>
    process.send?.({ port: (server.address() as net.AddressInfo).port }),
  );
}

function runPrimary(policy: Policy, workers: number): void {
  cluster.schedulingPolicy = policy === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
  const pids: number[] = new Array(workers).fill(0);
  let listening = 0;
  let port = 0;
  const fail = (why: string) => {
    process.stdout.write(`error ${why}\n`);
    process.exit(1);
  };
  const start = (index: number, onPort?: (port: number) => void): Worker => {
    const worker = cluster.fork({ [INDEX_ENV]: String(index), [PORT_ENV]: String(port) });
    pids[index] = worker.process.pid ?? 0;
    worker.on('message', (message: WorkerMessage) => {
      if ('error' in message) fail(`worker ${index}: ${message.error}`);
      else {
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
}

const [policyText = 'rr', workersText = '4'] = process.argv.slice(2);
const policy: Policy = policyText === 'none' || policyText === 'reuseport' ? policyText : 'rr';
if (cluster.isPrimary) runPrimary(policy, Number(workersText));
else runWorker(policy);
