/**
 * Reading scenario files: YAML or JSON, parsed with the `yaml` package so that
 * every issue carries a line and column, then validated by schema.ts.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { type Document, isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { isErrnoException, UsageError } from '../errors.js';
import { type Locator, type PathSegment, type Scenario, type SourcePosition, validateScenario } from './schema.js';

/** File extensions tried, in this order, when a bare scenario name is resolved. */
export const SCENARIO_EXTENSIONS = ['.yaml', '.yml', '.json'] as const;

export interface ScenarioIssue {
  /** The file as shown in messages: relative to the current directory when inside it, else absolute. */
  file: string;
  /** 1-based. */
  line: number;
  /** 1-based. */
  column: number;
  message: string;
}

/** A scenario file that cannot be used: every problem found, each with its position. */
export class ScenarioFileError extends UsageError {
  readonly issues: ScenarioIssue[];
  /** Absolute path of the file. */
  readonly file: string;
  constructor(file: string, issues: ScenarioIssue[]) {
    super(issues.map(formatIssue).join('\n'), 'ESCENARIO');
    this.name = 'ScenarioFileError';
    this.file = file;
    this.issues = issues;
  }
}

/** `file:line:col: message` */
export function formatIssue(issue: ScenarioIssue): string {
  return `${issue.file}:${issue.line}:${issue.column}: ${issue.message}`;
}

/** The scenario name a file must declare: its base name without .yaml/.yml/.json. */
export function scenarioNameOf(file: string): string {
  const base = path.basename(file);
  const ext = path.extname(base).toLowerCase();
  return (SCENARIO_EXTENSIONS as readonly string[]).includes(ext) ? base.slice(0, -ext.length) : base;
}

/** Read, parse and validate a scenario file. Throws ScenarioFileError (bad content) or UsageError (unreadable). */
export async function loadScenario(file: string): Promise<Scenario> {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (err) {
    throw unreadable(absolute, err);
  }
  return parseScenario(text, absolute);
}

/**
 * Parse and validate scenario text. `file` gives the name check (base name),
 * the format (.json is checked as strict JSON first) and Scenario.file.
 */
export function parseScenario(text: string, file: string): Scenario {
  const absolute = path.resolve(file);
  const shown = displayPath(absolute);
  const lineCounter = new LineCounter();
  const at = (offset: number): SourcePosition => {
    const pos = lineCounter.linePos(Math.max(0, Math.min(offset, text.length)));
    return { line: pos.line, column: pos.col };
  };
  const issue = (pos: SourcePosition, message: string): ScenarioIssue => ({ file: shown, ...pos, message });

  if (path.extname(absolute).toLowerCase() === '.json') {
    const jsonIssue = strictJsonIssue(text);
    if (jsonIssue)
      throw new ScenarioFileError(absolute, [issue(positionIn(text, jsonIssue.offset), jsonIssue.message)]);
  }

  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const issues: ScenarioIssue[] = [];
  for (const e of [...doc.errors, ...doc.warnings]) issues.push(issue(at(e.pos[0]), plainYamlMessage(e.message)));
  // A syntax error makes the rest unreliable; duplicate keys and unknown tags do not.
  const fatal = doc.errors.some((e) => e.code !== 'DUPLICATE_KEY');
  if (!fatal) {
    let data: unknown;
    let converted = true;
    try {
      data = doc.toJS({ maxAliasCount: 1000 });
    } catch (err) {
      converted = false;
      issues.push(issue({ line: 1, column: 1 }, err instanceof Error ? err.message : String(err)));
    }
    if (converted) {
      const result = validateScenario(data, {
        file: absolute,
        expectedName: scenarioNameOf(absolute),
        locate: makeLocator(doc, at),
      });
      if (!result.ok) for (const i of result.issues) issues.push(issue({ line: i.line, column: i.column }, i.message));
      else if (issues.length === 0) return result.scenario;
    }
  }
  issues.sort((a, b) => a.line - b.line || a.column - b.column);
  throw new ScenarioFileError(absolute, issues);
}

/** Scenario files (.yaml, .yml, .json) directly in `dir`, as absolute paths sorted by file name. */
export async function listScenarioFiles(dir: string): Promise<string[]> {
  const absolute = path.resolve(dir);
  let names: string[];
  try {
    names = await readdir(absolute);
  } catch (err) {
    throw new UsageError(`cannot list scenarios in ${absolute}: ${errorText(err)}`);
  }
  return filterScenarioNames(names).map((n) => path.join(absolute, n));
}

/**
 * A bare name (`priority`: letters, digits, dashes) is looked up in
 * `scenariosDir` as priority.yaml, then .yml, then .json. Anything else
 * (contains a slash, or ends in .yaml/.yml/.json) is a path, used as is.
 * Returns an absolute path; throws UsageError for an unknown name (listing the
 * available ones) or a missing file.
 */
export async function resolveScenario(nameOrPath: string, scenariosDir: string): Promise<string> {
  if (isPathLike(nameOrPath)) {
    const absolute = path.resolve(nameOrPath);
    const info = await stat(absolute).catch((err: unknown) => {
      throw new UsageError(`scenario file ${nameOrPath} not found: ${errorText(err)}`);
    });
    if (!info.isFile()) throw new UsageError(`scenario ${nameOrPath} is not a file`);
    return absolute;
  }
  const dir = path.resolve(scenariosDir);
  for (const ext of SCENARIO_EXTENSIONS) {
    const candidate = path.join(dir, `${nameOrPath}${ext}`);
    const info = await stat(candidate).catch(() => undefined);
    if (info?.isFile()) return candidate;
  }
  const available = await listScenarioFiles(dir).catch(() => [] as string[]);
  throw unknownName(nameOrPath, dir, available);
}

// ---------------------------------------------------------------------------

function isPathLike(nameOrPath: string): boolean {
  if (nameOrPath.includes('/') || nameOrPath.includes(path.sep)) return true;
  if (nameOrPath === '.' || nameOrPath === '..') return true;
  const ext = path.extname(nameOrPath).toLowerCase();
  return (SCENARIO_EXTENSIONS as readonly string[]).includes(ext);
}

function unknownName(name: string, dir: string, available: string[]): UsageError {
  const names = [...new Set(available.map(scenarioNameOf))];
  const list = names.length > 0 ? `available: ${names.join(', ')}` : `no scenario files in ${dir}`;
  return new UsageError(`unknown scenario "${name}" (${list}); or give a path to a .yaml, .yml or .json file`);
}

function filterScenarioNames(names: string[]): string[] {
  return names
    .filter(
      (n) => !n.startsWith('.') && (SCENARIO_EXTENSIONS as readonly string[]).includes(path.extname(n).toLowerCase()),
    )
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function unreadable(file: string, err: unknown): UsageError {
  return new UsageError(`cannot read scenario file ${displayPath(file)}: ${errorText(err)}`);
}

function errorText(err: unknown): string {
  if (isErrnoException(err)) {
    if (err.code === 'ENOENT') return 'no such file or directory';
    if (err.code === 'EACCES') return 'permission denied';
    if (err.code === 'EISDIR') return 'is a directory';
    if (err.code === 'ENOTDIR') return 'not a directory';
    return err.code ?? err.message;
  }
  return err instanceof Error ? err.message : String(err);
}

function displayPath(absolute: string): string {
  const rel = path.relative(process.cwd(), absolute);
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel) ? rel : absolute;
}

/** yaml's messages sometimes end with " at line N, column M" even without prettyErrors; the position is given separately. */
function plainYamlMessage(message: string): string {
  return message.replace(/ at line \d+, column \d+:?[\s\S]*$/, '').trim();
}

/**
 * JSON.parse says where strict JSON breaks (V8: "... at position N" or "Unexpected end of JSON input").
 * Returns undefined for valid JSON.
 */
function strictJsonIssue(text: string): { offset: number; message: string } | undefined {
  try {
    JSON.parse(text);
    return undefined;
  } catch (err) {
    const raw = err instanceof Error ? err.message : String(err);
    const m = /position (\d+)/.exec(raw);
    const offset = m ? Number(m[1]) : text.length;
    const message = raw
      .replace(/ in JSON at position \d+.*$/s, '')
      .replace(/, ".*" is not valid JSON$/s, '')
      .trim();
    return { offset, message: `invalid JSON: ${message}` };
  }
}

/**
 * Locate a path in the parsed document: for 'key', the key's position; for
 * 'value', the value's (or, for an empty value, its key's). A path that stops
 * existing resolves to its deepest existing ancestor.
 */
function makeLocator(doc: Document, at: (offset: number) => SourcePosition): Locator {
  const start = (node: { range?: [number, number, number] | null } | null | undefined): SourcePosition =>
    node?.range ? at(node.range[0]) : { line: 1, column: 1 };
  const deref = (node: unknown): unknown => (isAlias(node) ? node.resolve(doc) : node);

  return (segments: readonly PathSegment[], target: 'key' | 'value'): SourcePosition => {
    let node = deref(doc.contents) as Node | null;
    let here = start(node);
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i]!;
      const last = i === segments.length - 1;
      if (isMap(node)) {
        const pair = node.items.find((p) => {
          const key = isScalar(p.key) ? p.key.value : p.key;
          return key !== null && key !== undefined && String(key) === String(seg);
        });
        if (!pair) return here;
        const keyNode = isScalar(pair.key) || isMap(pair.key) || isSeq(pair.key) ? pair.key : null;
        const keyPos = start(keyNode);
        if (last && target === 'key') return keyPos;
        const value = deref(pair.value) as Node | null;
        const empty =
          value === null || value === undefined || (isScalar(value) && value.value === null && isEmptyRange(value));
        if (empty) return keyPos;
        node = value;
        here = start(node);
      } else if (isSeq(node) && typeof seg === 'number') {
        const item = deref(node.items[seg]) as Node | null;
        if (!item) return here;
        node = item;
        here = start(node);
      } else {
        return here;
      }
    }
    return here;
  };
}

/** 1-based line and column of a character offset. */
function positionIn(text: string, offset: number): SourcePosition {
  const before = text.slice(0, Math.max(0, Math.min(offset, text.length)));
  const lastNewline = before.lastIndexOf('\n');
  let line = 1;
  for (const ch of before) if (ch === '\n') line++;
  return { line, column: before.length - lastNewline };
}

function isEmptyRange(node: { range?: [number, number, number] | null }): boolean {
  return !node.range || node.range[0] === node.range[1];
}
