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
  /** Both engines serve and load TCP and UDP alike; kept so every caller states it. */
  protocol: Protocol;
  /** The binder `serve` resolved; absent for `load`, which binds nothing. */
  binder?: 'builtin' | 'native';
  helperAvailable: boolean;
  /** Why the helper is unavailable, for the remedy. */
  helperReason?: string;
}

/**
 * The engine to run, or a UsageError saying why the one asked for cannot run
 * and what to do instead. Both native engines run TCP and UDP; a `serve`
 * worker's thread needs a socket the helper opened (the native binder).
 */
export function decideEngine(context: EngineContext): EngineName {
  const { requested, binder, helperAvailable } = context;
  if (requested.engine === 'builtin') return 'builtin';
  const applies = binder !== 'builtin' && helperAvailable;
  if (requested.engine === 'auto') return applies ? 'native' : 'builtin';
  const asked = requested.from === ENGINE_ENV ? `${ENGINE_ENV}=native` : '--engine native';
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
  return 'native';
}
