/**
 * The line a worker sends on every TCP connection (and in reply to every UDP
 * datagram). It names the worker so that any client, `nc` included, can see
 * who served it, and so that `load` can attribute each connection.
 */
export interface WorkerIdentity {
  workerId: number;
  pid: number;
  /** The listening socket's own address, as `host:port`. */
  local: string;
  /** The accepted socket's SO_INCOMING_CPU, when the worker reports it (servers with `incomingCpu`). */
  incomingCpu?: number;
}

const GREETING = /^reuseport worker=(\d+) pid=(\d+) local=(\S+)(?: cpu=(-?\d+))?$/;

export function formatGreeting(who: WorkerIdentity): string {
  const cpu = who.incomingCpu !== undefined ? ` cpu=${who.incomingCpu}` : '';
  return `reuseport worker=${who.workerId} pid=${who.pid} local=${who.local}${cpu}\n`;
}

export function parseGreeting(text: string): WorkerIdentity | null {
  const line = text.split('\n', 1)[0]?.trim() ?? '';
  const match = GREETING.exec(line);
  if (!match) return null;
  const who: WorkerIdentity = { workerId: Number(match[1]), pid: Number(match[2]), local: match[3]! };
  if (match[4] !== undefined) who.incomingCpu = Number(match[4]);
  return who;
}

/** The key under which `load` tallies a worker. */
export function workerKey(who: WorkerIdentity): string {
  return `${who.pid}/${who.workerId}`;
}
