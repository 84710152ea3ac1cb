/**
 * Second network namespaces inside a scenario's own (`namespace: other` on a
 * server or a traffic step). Each is held by an agent: a Node process started
 * with `unshare --net`, which brings its lo up and runs the traffic steps
 * that name its namespace (a socket lives in the namespace of the thread that
 * created it). Workers enter it with nsenter (worker-pool.ts, `netns`).
 *
 * Nothing is left behind: a namespace lives as long as a process is in it.
 * The agent exits when its IPC channel closes, that is when the inner runner
 * exits in any way, SIGKILL included; its workers exit the same way.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ReuseportError } from '../errors.js';
import { hardenedExecArgv } from '../process-hardening.js';
import type { ResolvedTraffic, SentTraffic } from './steering-run.js';

const AGENT_MAIN = fileURLToPath(new URL('./netns-agent-main.js', import.meta.url));
/** Booting Node on two busy cores; the agent answers at once after that. */
const AGENT_READY_TIMEOUT_MS = 30_000;

/** What the runner asks an agent, and what it answers. */
export type ToAgent = { type: 'traffic'; seq: number; spec: ResolvedTraffic; deadlineMs: number };
export type FromAgent =
  | { type: 'ready' }
  | { type: 'setup-failed'; message: string }
  | { type: 'traffic-done'; seq: number; sent: SentTraffic }
  | { type: 'traffic-failed'; seq: number; message: string };

interface Agent {
  child: ChildProcess;
  pending: Map<number, (answer: FromAgent) => void>;
  exited: Promise<void>;
}

export class SecondNamespaces {
  readonly #agents = new Map<string, Agent>();
  #seq = 0;

  /** Starts one agent per name, each in a fresh namespace; resolves once every lo is up. */
  static async open(names: readonly string[]): Promise<SecondNamespaces> {
    const namespaces = new SecondNamespaces();
    try {
      await Promise.all(names.map((name) => namespaces.#start(name)));
    } catch (err) {
      await namespaces.close();
      throw err;
    }
    return namespaces;
  }

  #start(name: string): Promise<void> {
    const child = spawn('unshare', ['--net', '--', process.execPath, ...hardenedExecArgv(), AGENT_MAIN], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'json',
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      if (stderr.length < 4096) stderr += chunk;
    });
    const pending = new Map<number, (answer: FromAgent) => void>();
    // 'exit', not 'close': the agent's stderr pipe was seen to never report its end after the exit.
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    this.#agents.set(name, { child, pending, exited });
    return new Promise((resolve, reject) => {
      const fail = (why: string) =>
        reject(new ReuseportError(`cannot make namespace "${name}": ${why}`, { code: 'ENETSETUP' }));
      const timer = setTimeout(
        () => fail(`no answer within ${AGENT_READY_TIMEOUT_MS / 1000} s`),
        AGENT_READY_TIMEOUT_MS,
      );
      child.once('error', (err) => fail(err.message));
      void exited.then(() => {
        clearTimeout(timer);
        fail(stderr.trim().split('\n').slice(-1)[0] || 'its process exited');
        for (const answer of pending.values()) answer({ type: 'traffic-failed', seq: -1, message: 'the agent exited' });
      });
      child.on('message', (message: FromAgent) => {
        if (message.type === 'ready') {
          clearTimeout(timer);
          resolve();
        } else if (message.type === 'setup-failed') fail(message.message);
        else {
          pending.get(message.seq)?.(message);
          pending.delete(message.seq);
        }
      });
    });
  }

  /** /proc/PID/ns/net of the agent: what nsenter --net enters. */
  pathOf(name: string): string {
    const agent = this.#agents.get(name);
    if (!agent?.child.pid) throw new ReuseportError(`no namespace "${name}"`, { code: 'EINTERNAL' });
    return `/proc/${agent.child.pid}/ns/net`;
  }

  /** Runs a traffic step in the named namespace. */
  async send(name: string, spec: ResolvedTraffic, deadlineMs: number): Promise<SentTraffic> {
    const agent = this.#agents.get(name);
    if (!agent) throw new ReuseportError(`no namespace "${name}"`, { code: 'EINTERNAL' });
    const seq = ++this.#seq;
    const answer = await new Promise<FromAgent>((resolve) => {
      agent.pending.set(seq, resolve);
      const message: ToAgent = { type: 'traffic', seq, spec, deadlineMs };
      agent.child.send(message);
    });
    if (answer.type === 'traffic-done') return answer.sent;
    const why = answer.type === 'traffic-failed' ? answer.message : answer.type;
    throw new ReuseportError(`traffic ${spec.id} in namespace "${name}" failed: ${why}`, { code: 'ENETSETUP' });
  }

  /** Ends every agent (by closing its channel, then by pid) and waits for them. */
  async close(): Promise<void> {
    await Promise.all(
      [...this.#agents.values()].map(async ({ child, exited }) => {
        if (child.connected) child.disconnect();
        const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
        await exited;
        clearTimeout(timer);
      }),
    );
    this.#agents.clear();
  }
}
