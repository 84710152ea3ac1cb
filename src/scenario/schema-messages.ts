/**
 * Turning zod's issues into the messages scenario authors read.
 *
 * zod's own texts ("Invalid input: expected number, received string") are
 * never shown. Each schema in schema.ts carries, as its zod error, either the
 * rule it checks ("an integer from 1 to 64") or a marker (below) for the two
 * cases that need more than a rule: unknown keys (which keys were allowed, for
 * did-you-mean hints) and unions (which branch the author meant).
 *
 * Messages never quote a string value from the file: a file handed to the tool
 * may be anything (/etc/shadow), so a message names at most a key or an id,
 * shortened, with control and bidi characters escaped (quoteName). Numbers and
 * booleans are shown; strings are described by kind ("got a string").
 */
import type * as z from 'zod';
import { quoteName } from '../untrusted-text.js';

export type PathSegment = string | number;
type Path = PathSegment[];

/** How a keyed union reads in messages: a step is exactly one of start/stop/traffic. */
export interface KeyedUnionInfo {
  /** What one item is called: "step". */
  what: string;
  /** The keys that pick the branch, in branch order. */
  selectors: readonly string[];
  /** Every key of each branch, in branch order. */
  branchKeys: readonly (readonly string[])[];
  /** Said when no selector is present: "needs one of: start, stop, traffic". */
  none: string;
  /** Said after "has both X and Y; ". */
  onlyOne: string;
}

type Marker = { keys: string[] } | { typed: string } | { keyed: string };
const MARK = '\u0000';

export function marker(m: Marker): string {
  return MARK + JSON.stringify(m);
}

function decode(message: string): Marker | undefined {
  return message.startsWith(MARK) ? (JSON.parse(message.slice(1)) as Marker) : undefined;
}

export interface RawIssue {
  path: Path;
  target: 'key' | 'value';
  message: string;
}

/**
 * zod issues (paths relative to `base`) to messages, at most one per path:
 * the first mistake in a value is the one worth reading.
 */
export function translateIssues(
  issues: readonly z.core.$ZodIssue[],
  data: unknown,
  keyed: ReadonlyMap<string, KeyedUnionInfo>,
): RawIssue[] {
  const out: RawIssue[] = [];
  const seen = new Set<string>();
  /** `also` tells apart several issues that belong at one place (each missing key of a mapping). */
  const emit = (path: Path, target: 'key' | 'value', message: string, also = '') => {
    const id = `${target}:${JSON.stringify(path)}:${also}`;
    if (seen.has(id)) return;
    seen.add(id);
    out.push({ path, target, message });
  };
  const walk = (list: readonly z.core.$ZodIssue[], base: Path) => {
    for (const issue of list) {
      const path: Path = [...base, ...issue.path.map((p) => (typeof p === 'number' ? p : String(p)))];
      const value = valueAt(data, path);
      const m = decode(issue.message);
      if (m && 'keys' in m && issue.code === 'unrecognized_keys') {
        for (const key of issue.keys) emit([...path, key], 'key', unknownKey(key, path, m.keys));
      } else if (m && 'keyed' in m && issue.code === 'invalid_union') {
        const info = keyed.get(m.keyed);
        if (info) keyedUnion(info, issue.errors, path, value, emit, walk);
      } else if (m && 'typed' in m && issue.code === 'invalid_union') {
        // The branch that takes this kind of value (a string, a list...) says what is wrong inside it.
        const takers = issue.errors.filter(
          (errs) => !errs.some((e) => e.code === 'invalid_type' && e.path.length === 0),
        );
        if (takers.length === 1) walk(takers[0]!, path);
        else emit(path, 'value', `${formatPath(path)} must be ${m.typed}, got ${describe(value)}`);
      } else if (value === undefined && isMissingKey(data, path)) {
        const parent = path.slice(0, -1);
        const key = quoteName(String(path[path.length - 1]));
        emit(
          parent,
          'value',
          parent.length === 0
            ? `missing required top-level key ${key}`
            : `missing required key ${key} in ${formatPath(parent)}`,
          key,
        );
      } else if (issue.code === 'invalid_key') {
        const key = String(path[path.length - 1]);
        emit(path, 'key', `${quoteName(key)} in ${formatPath(path.slice(0, -1))} must be ${issue.issues[0]?.message}`);
      } else {
        const hint =
          issue.code === 'invalid_value' && typeof value === 'string'
            ? didYouMean(
                value,
                issue.values.map((v) => String(v)),
              )
            : '';
        emit(path, 'value', `${formatPath(path)} must be ${issue.message}, got ${describe(value)}${hint}`);
      }
    }
  };
  walk(issues, []);
  return out;
}

function keyedUnion(
  info: KeyedUnionInfo,
  branches: readonly (readonly z.core.$ZodIssue[])[],
  path: Path,
  value: unknown,
  emit: (path: Path, target: 'key' | 'value', message: string) => void,
  walk: (list: readonly z.core.$ZodIssue[], base: Path) => void,
): void {
  const list = info.selectors.join(', ');
  if (!isPlainObject(value)) {
    emit(path, 'value', `${formatPath(path)} must be a mapping with one of: ${list}, got ${describe(value)}`);
    return;
  }
  const allKeys = [...new Set(info.branchKeys.flat())];
  const keys = Object.keys(value);
  const unknown = keys.filter((k) => !allKeys.includes(k));
  for (const key of unknown) {
    const hint = suggest(key, allKeys);
    const tail = hint ? ` (did you mean "${hint}"?)` : ` (a ${info.what} is one of: ${list})`;
    emit([...path, key], 'key', `unknown ${info.what} ${quoteName(key)} in ${formatPath(path)}${tail}`);
  }
  const present = info.selectors.filter((s) => keys.includes(s));
  if (present.length > 1) {
    emit(
      [...path, present[1]!],
      'key',
      `${formatPath(path)} has both "${present[0]}" and "${present[1]}"; ${info.onlyOne}`,
    );
    return;
  }
  if (present.length === 0) {
    if (unknown.length === 0) emit(path, 'value', `${formatPath(path)} ${info.none}`);
    return;
  }
  const index = info.selectors.indexOf(present[0]!);
  for (const issue of branches[index] ?? []) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys.filter((k) => !unknown.includes(k))) {
        emit([...path, key], 'key', `"${key}" does not go with "${present[0]}" in ${formatPath(path)}`);
      }
    } else {
      walk([issue], path);
    }
  }
}

function unknownKey(key: string, where: Path, allowed: readonly string[]): string {
  const hint = suggest(key, allowed);
  const tail = hint ? ` (did you mean "${hint}"?)` : ` (allowed: ${allowed.join(', ')})`;
  if (where.length === 0) return `unknown top-level key ${quoteName(key)}${tail}`;
  return `unknown key ${quoteName(key)} in ${formatPath(where)}${tail}`;
}

function didYouMean(word: string, candidates: readonly string[]): string {
  const hint = suggest(word, candidates);
  return hint ? ` (did you mean "${hint}"?)` : '';
}

function isMissingKey(data: unknown, path: Path): boolean {
  if (path.length === 0) return false;
  const parent = valueAt(data, path.slice(0, -1));
  return isPlainObject(parent) && !Object.hasOwn(parent, String(path[path.length - 1]));
}

export function valueAt(data: unknown, path: readonly PathSegment[]): unknown {
  let here = data;
  for (const seg of path) {
    if (Array.isArray(here) && typeof seg === 'number') here = here[seg];
    else if (isPlainObject(here) && Object.hasOwn(here, String(seg))) here = here[String(seg)];
    else return undefined;
  }
  return here;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** `servers[1].replicas`, `network.sysctls["net.ipv4.tcp_migrate_req"]`; `the scenario` for the root. */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_$][A-Za-z0-9_]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${quoteName(seg)}]`;
  }
  return out === '' ? 'the scenario' : out;
}

/** What a bad value is, without quoting it: strings are described, never echoed. */
export function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (typeof value === 'string') return value.trim() === '' ? 'an empty string' : 'a string';
  if (Array.isArray(value)) return value.length === 0 ? 'an empty list' : `a list of ${value.length}`;
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return typeof value;
}

/** The closest allowed word, if it is close enough to be a likely typo. */
export function suggest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = levenshtein(w, c.toLowerCase());
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  if (best === undefined) return undefined;
  // Short words (ids like A, B) only match when they differ in case.
  const longest = Math.max(word.length, best.length);
  const limit = longest <= 2 ? 0 : Math.max(1, Math.floor(longest / 3));
  return bestDistance <= limit ? best : undefined;
}

function levenshtein(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 16) return Math.abs(a.length - b.length);
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}
