// Which implementation moves the bytes: the one place that decides it, for
// `serve`, `load` and scenarios alike. Light on purpose (no sockets, no addon):
// the CLI checks REUSEPORT_ENGINE through it before any command runs.
import { UsageError } from '../errors.js';
import type { Protocol } from './address.js';

/**
 * `builtin`: Node's own net/dgram (a net.Server or dgram socket per worker, a
 * socket per load connection); `native`: the C helper (its serve thread, which
 * accepts TCP connections or answers UDP datagrams; its epoll load client).
 * The names match the binders'.
 */
export type EngineName = 'builtin' | 'native';
/** What a user may ask for: a concrete engine, or `auto` (native wherever it applies). */
export type EngineRequest = 'auto' | EngineName;

export const ENGINE_ENV = 'REUSEPORT_ENGINE';
/** Accepted spellings; `node` is the old name of `builtin`. */
export const ENGINE_SPELLINGS = ['auto', 'builtin', 'native', 'node'] as const;

/** Where a request came from, to name it in an error. */
export interface EngineSource {
  engine: EngineRequest;
  /** `--engine`, `REUSEPORT_ENGINE`, or null when nobody asked (auto). */
  from: string | null;
}

function parseSpelling(value: string, from: string): EngineRequest {
  if (value === 'node') return 'builtin';
  if (value === 'auto' || value === 'builtin' || value === 'native') return value;
  const shown = JSON.stringify(value.length > 20 ? `${value.slice(0, 20)}…` : value);
  throw new UsageError(`${from} must be auto, builtin or native, got ${shown}`);
}

/** The `--engine` flag's value parser: throws UsageError (exit 2) on anything else. */
export function parseEngineFlag(value: string): EngineRequest {
  return parseSpelling(value.trim(), '--engine');
}

/**
 * What was asked for: the flag when given, else REUSEPORT_ENGINE when set and
 * not empty, else auto. A bad REUSEPORT_ENGINE throws UsageError even when the
 * flag overrides it, so a typo never goes unnoticed.
 */
export function requestedEngine(flag?: EngineRequest, env: NodeJS.ProcessEnv = process.env): EngineSource {
  const raw = env[ENGINE_ENV]?.trim();
  const fromEnv = raw === undefined || raw === '' ? undefined : parseSpelling(raw, ENGINE_ENV);
  if (flag !== undefined) return { engine: flag, from: '--engine' };
  if (fromEnv !== undefined) return { engine: fromEnv, from: ENGINE_ENV };
  return { engine: 'auto', from: null };
}

export interface EngineContext {
  requested: EngineSource;
  /** Both engines serve and load TCP and UDP alike; the worker's needs below depend on it. */
  protocol: Protocol;
  /** The binder the worker's socket is opened with; absent for `load`, which binds nothing. */
  binder?: 'builtin' | 'native';
  helperAvailable: boolean;
  /** Why the helper is unavailable, for the remedy. */
  helperReason?: string;
  /**
   * The serving socket has SO_INCOMING_CPU set and its worker reports each
   * accepted socket's SO_INCOMING_CPU: only Node's accept hands the worker
   * those sockets (the native serve thread greets and closes them itself).
   */
  incomingCpu?: boolean;
  /** The worker connect()s its UDP socket to one peer: the native serve thread never does. */
  connectedUdp?: boolean;
}

/** The engine to run, and why, in words a report can quote. */
export interface EngineChoice {
  engine: EngineName;
  reason: string;
}

/** What the worker does that only the builtin engine can, or null when nothing. */
function builtinOnly(context: EngineContext): string | null {
  if (context.incomingCpu && context.protocol === 'tcp') {
    return "its worker reports each accepted socket's SO_INCOMING_CPU, and only Node's accept hands it the sockets";
  }
  if (context.connectedUdp && context.protocol === 'udp') {
    return 'its worker connect()s its UDP socket to one peer, which the native serve thread never does';
  }
  return null;
}

/**
 * The engine to run and why, or a UsageError saying why the one asked for
 * cannot run and what to do instead. Both native engines run TCP and UDP; a
 * `serve` worker's thread needs a socket the helper opened (the native
 * binder), and some workers need Node's own socket (builtinOnly).
 */
export function chooseEngine(context: EngineContext): EngineChoice {
  const { requested, binder, helperAvailable } = context;
  const from = requested.from ?? 'the default';
  if (requested.engine === 'builtin') return { engine: 'builtin', reason: `asked for by ${from}` };
  const needsBuiltin = builtinOnly(context);
  if (requested.engine === 'auto') {
    if (needsBuiltin) return { engine: 'builtin', reason: needsBuiltin };
    if (binder === 'builtin') return { engine: 'builtin', reason: "auto: the socket is Node's (binder builtin)" };
    if (!helperAvailable) {
      return {
        engine: 'builtin',
        reason: `auto: the native helper is unavailable (${context.helperReason ?? 'not built'})`,
      };
    }
    return { engine: 'native', reason: 'auto: the native helper is available' };
  }
  const asked = requested.from === ENGINE_ENV ? `${ENGINE_ENV}=native` : '--engine native';
  if (needsBuiltin) {
    const instead = requested.from === ENGINE_ENV ? `set ${ENGINE_ENV}=auto` : 'use --engine auto';
    throw new UsageError(`${asked} cannot serve this socket: ${needsBuiltin}; ${instead} (or builtin)`, 'ENOENGINE');
  }
  if (binder === 'builtin') {
    throw new UsageError(
      `${asked} accepts on a socket the native helper opened: add --binder native, or use --engine builtin`,
      'ENOENGINE',
    );
  }
  if (!helperAvailable) {
    throw new UsageError(
      `${asked} needs the native helper, which is unavailable (${context.helperReason ?? 'not built'}); or use --engine builtin`,
      'ENOENGINE',
    );
  }
  return { engine: 'native', reason: `asked for by ${from}` };
}

/** chooseEngine's engine, for callers that report no reason. */
export function decideEngine(context: EngineContext): EngineName {
  return chooseEngine(context).engine;
}
