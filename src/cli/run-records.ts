/**
 * The files `reconcile` reads: what `serve --json` and `load --json` wrote.
 * Either may be anything a user names (the other kind, a scenario run,
 * /etc/shadow), so each mistake is one line that names the file, what was
 * expected and what to do, and never quotes what the file holds.
 */
import path from 'node:path';
import { UsageError } from '../errors.js';
import type { LoadResult } from '../net/load-client.js';
import type { ServeCounts } from '../net/reconcile.js';
import { LOAD_JSON_VERSION } from '../report/load-report.js';
import { SERVE_JSON_VERSION } from '../report/serve-report.js';
import { displayPath, readTextFile, TextFileError } from '../text-file.js';

/** A serve that ran for days writes a stats line per worker every 250 ms at most; this holds weeks of that. */
const MAX_RECORD_BYTES = 64 * 1024 * 1024;

type Kind = 'serve' | 'load';

const PRODUCER: Record<Kind, string> = {
  serve: 'the output of `reuseport serve --json` (one JSON event a line)',
  load: 'the output of `reuseport load --json` (one JSON document)',
};

const ORDER = 'give `reuseport reconcile` the serve file first, then the load file';

class RecordError extends UsageError {
  constructor(
    file: string,
    kind: Kind,
    what: string,
    remedy = `give the file that \`reuseport ${kind} --json\` was redirected into`,
  ) {
    super(`${displayPath(file)} ${what}; expected ${PRODUCER[kind]}: ${remedy}`, 'ERECORD');
  }
}

/** The parsed JSON values: one document, or one per line (NDJSON); null when neither parses. */
function jsonValues(text: string): unknown[] | null {
  try {
    return [JSON.parse(text)];
  } catch {
    // Not one document: perhaps one per line.
  }
  const lines = text.split('\n').filter((line) => line.trim() !== '');
  if (lines.length === 0) return null;
  try {
    return lines.map((line) => JSON.parse(line) as unknown);
  } catch {
    return null;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Which of our commands wrote these values, if either did. */
function kindOf(values: unknown[]): Kind | null {
  if (values.every((v) => isObject(v) && typeof v.event === 'string')) return 'serve';
  const [only] = values;
  if (values.length === 1 && isObject(only) && Array.isArray(only.perWorker) && 'attributed' in only) return 'load';
  return null;
}

async function readRecord(file: string, kind: Kind): Promise<unknown[]> {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = await readTextFile(absolute, MAX_RECORD_BYTES);
  } catch (err) {
    if (!(err instanceof TextFileError)) throw err;
    const { problem } = err;
    const what =
      problem.kind === 'unreadable'
        ? `cannot be read (${problem.why})`
        : problem.kind === 'not-regular'
          ? 'is not a regular file'
          : problem.kind === 'too-large'
            ? `is larger than ${problem.maxBytes / 1024 / 1024} MiB`
            : 'is not a text file (it contains NUL bytes)';
    throw new RecordError(absolute, kind, what);
  }
  const values = jsonValues(text);
  if (values === null) throw new RecordError(absolute, kind, 'is not JSON');
  const found = kindOf(values);
  if (found === null) throw new RecordError(absolute, kind, 'is JSON, but not from reuseport serve or load');
  if (found !== kind) throw new RecordError(absolute, kind, `is the output of \`reuseport ${found} --json\``, ORDER);
  const versions = values.map((v) => (v as { version?: unknown }).version);
  const expected = kind === 'serve' ? SERVE_JSON_VERSION : LOAD_JSON_VERSION;
  if (versions.some((v) => v !== expected)) {
    const other = versions.find((v) => v !== expected);
    const what = Number.isInteger(other)
      ? `is version ${other}, and this reuseport reads version ${expected}`
      : 'has no valid version';
    throw new RecordError(absolute, kind, what, 'reconcile with the reuseport that wrote it');
  }
  return values;
}

const isCount = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0;
const isProtocol = (v: unknown) => v === 'tcp' || v === 'udp';

/** Each worker's final exact count from serve's `stopped` event. */
export async function readServeCounts(file: string): Promise<ServeCounts> {
  const values = (await readRecord(file, 'serve')) as Record<string, unknown>[];
  const stopped = values.find((v) => v.event === 'stopped');
  const absolute = path.resolve(file);
  if (!stopped) {
    throw new RecordError(
      absolute,
      'serve',
      'has no "stopped" event (serve was still running, or was killed, when it was written)',
      "stop serve with Ctrl-C or SIGTERM, so that it writes every worker's final count, and reconcile that file",
    );
  }
  const workers = stopped.workers;
  const valid =
    isCount(stopped.port) &&
    isProtocol(stopped.protocol) &&
    Array.isArray(workers) &&
    workers.every(
      (w) => isObject(w) && isCount(w.workerId) && (w.pid === null || isCount(w.pid)) && isCount(w.accepted),
    );
  if (!valid)
    throw new RecordError(absolute, 'serve', 'has a "stopped" event without port, protocol and workers\' counts');
  return {
    port: stopped.port as number,
    protocol: stopped.protocol as ServeCounts['protocol'],
    workers: (workers as Record<string, unknown>[]).map((w) => ({
      workerId: w.workerId as number,
      pid: w.pid as number | null,
      accepted: w.accepted as number,
    })),
  };
}

/** The load's tally, with the fields reconciliation reads checked. */
export async function readLoadResult(file: string): Promise<LoadResult> {
  const [doc] = (await readRecord(file, 'load')) as Record<string, unknown>[];
  const target = doc!.target;
  const valid =
    isProtocol(doc!.protocol) &&
    isObject(target) &&
    isCount(target.port) &&
    ['attributed', 'silent', 'inFlight', 'unrecognized', 'failed', 'notStarted', 'connections'].every((k) =>
      isCount(doc![k]),
    ) &&
    Array.isArray(doc!.failures) &&
    doc!.failures.every((f) => isObject(f) && typeof f.code === 'string' && isCount(f.count)) &&
    (doc!.perWorker as unknown[]).every(
      (w) => isObject(w) && isCount(w.pid) && isCount(w.workerId) && isCount(w.count),
    );
  if (!valid) throw new RecordError(path.resolve(file), 'load', 'lacks counts that reconciling needs');
  return doc as unknown as LoadResult;
}
