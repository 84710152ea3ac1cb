/**
 * Reading scenario files: YAML or JSON, parsed with the `yaml` package so that
 * every issue carries a line and column, then validated by schema.ts.
 *
 * A file handed to the tool may be anything (`scenario run /etc/shadow`), so
 * nothing here quotes its content: the YAML parser's own messages (some of
 * which quote the source) are replaced by fixed texts, and a file that is not a
 * scenario mapping gets one line that says so.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  type YAMLError,
} from 'yaml';
import { UsageError } from '../errors.js';
import { resolveUser } from '../net/users.js';
import { displayPath, fileErrorText, readTextFile, TextFileError } from '../text-file.js';
import { type Locator, type PathSegment, type Scenario, type SourcePosition, validateScenario } from './schema.js';

/** File extensions tried, in this order, when a bare scenario name is resolved. */
export const SCENARIO_EXTENSIONS = ['.yaml', '.yml', '.json'] as const;

/** The shipped scenarios are under 6 KiB; a file 40 times that size is not a scenario someone wrote. */
export const MAX_SCENARIO_FILE_BYTES = 256 * 1024;

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

/** `file:line:col: message` (the form editors and CI problem matchers read). */
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
  return parseScenario(await readScenarioText(absolute), absolute);
}

/** The text of a scenario file, refusing what cannot be one (src/text-file.ts). */
export async function readScenarioText(absolute: string): Promise<string> {
  try {
    return await readTextFile(absolute, MAX_SCENARIO_FILE_BYTES);
  } catch (err) {
    if (!(err instanceof TextFileError)) throw err;
    const { problem } = err;
    if (problem.kind === 'unreadable') {
      throw new UsageError(`cannot read scenario file ${displayPath(absolute)}: ${problem.why}`);
    }
    const message =
      problem.kind === 'not-regular'
        ? 'not a regular file; a scenario is a .yaml, .yml or .json file'
        : problem.kind === 'too-large'
          ? `larger than ${problem.maxBytes / 1024} KiB, the limit for a scenario file`
          : 'not a text file (it contains NUL bytes); a scenario is YAML or JSON text';
    throw new ScenarioFileError(absolute, [{ file: displayPath(absolute), line: 1, column: 1, message }]);
  }
}

export interface ParseOptions {
  /** Whether a server's `user` exists; by default, looked up in /etc/passwd (numeric uids always exist). */
  userExists?: (user: string | number) => boolean;
}

/**
 * Parse and validate scenario text. `file` gives the name check (base name),
 * the format (.json is checked as strict JSON first) and Scenario.file.
 */
export function parseScenario(text: string, file: string, options: ParseOptions = {}): Scenario {
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
  // Not a mapping at all (a passwd line, KEY=value, prose): one line, whatever else is wrong with it.
  if (doc.contents !== null && !isMap(doc.contents)) {
    const kind = isSeq(doc.contents) ? 'a list' : 'text';
    throw new ScenarioFileError(absolute, [
      issue(
        { line: 1, column: 1 },
        `the file is not a YAML mapping (it reads as ${kind}); a scenario file is a mapping with name, title, servers, steps and expect`,
      ),
    ]);
  }
  const issues: ScenarioIssue[] = [];
  for (const e of [...doc.errors, ...doc.warnings]) issues.push(issue(at(e.pos[0]), yamlMessage(e)));
  // A syntax error makes the rest unreliable; duplicate keys and unknown tags do not.
  const fatal = doc.errors.some((e) => e.code !== 'DUPLICATE_KEY');
  if (!fatal) {
    let data: unknown;
    let converted = true;
    try {
      data = doc.toJS({ maxAliasCount: 1000 });
    } catch {
      converted = false;
      issues.push(issue({ line: 1, column: 1 }, 'YAML aliases expand too much (more than 1000); write the items out'));
    }
    if (converted) {
      const result = validateScenario(data, {
        file: absolute,
        expectedName: scenarioNameOf(absolute),
        locate: makeLocator(doc, at),
        userExists: options.userExists ?? userInPasswd,
      });
      if (!result.ok) for (const i of result.issues) issues.push(issue({ line: i.line, column: i.column }, i.message));
      else if (issues.length === 0) return result.scenario;
    }
  }
  issues.sort((a, b) => a.line - b.line || a.column - b.column);
  throw new ScenarioFileError(absolute, issues);
}

function userInPasswd(user: string | number): boolean {
  try {
    resolveUser(user);
    return true;
  } catch {
    return false;
  }
}

/** Scenario files (.yaml, .yml, .json) directly in `dir`, as absolute paths sorted by file name. */
export async function listScenarioFiles(dir: string): Promise<string[]> {
  const absolute = path.resolve(dir);
  let names: string[];
  try {
    names = await readdir(absolute);
  } catch (err) {
    throw new UsageError(`cannot list scenarios in ${absolute}: ${fileErrorText(err)}`);
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
      throw new UsageError(`scenario file ${nameOrPath} not found: ${fileErrorText(err)}`);
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

/** The article's experiments, in the article's order: they come first, the rest ("beyond the article") by name. */
const ARTICLE_ORDER = ['load-balance', 'priority', 'cross-user'];

function filterScenarioNames(names: string[]): string[] {
  const rank = (n: string) => {
    const i = ARTICLE_ORDER.indexOf(scenarioNameOf(n));
    return i < 0 ? ARTICLE_ORDER.length : i;
  };
  return names
    .filter(
      (n) => !n.startsWith('.') && (SCENARIO_EXTENSIONS as readonly string[]).includes(path.extname(n).toLowerCase()),
    )
    .sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

/** The parser's own messages can quote the source; these say what is wrong without it. */
const YAML_MESSAGES: Record<YAMLError['code'], string> = {
  ALIAS_PROPS: 'an alias cannot have an anchor or a tag',
  BAD_ALIAS: 'an alias refers to no anchor defined before it',
  BAD_DIRECTIVE: 'a YAML directive (a line starting with %) is not understood',
  BAD_DQ_ESCAPE: 'a double-quoted string has an invalid escape',
  BAD_INDENT: 'the indentation is wrong here',
  BAD_PROP_ORDER: 'anchors and tags must come before the value',
  BAD_SCALAR_START: 'a plain value cannot start with this character; quote it',
  BLOCK_AS_IMPLICIT_KEY: 'a block value cannot be a key',
  BLOCK_IN_FLOW: 'block style cannot be used inside [ ] or { }',
  DUPLICATE_KEY: 'this key appears twice in the same mapping; keys must be unique',
  IMPOSSIBLE: 'the YAML cannot be read here',
  KEY_OVER_1024_CHARS: 'a key is longer than 1024 characters',
  MISSING_CHAR: 'a closing character is missing (a quote, ] or })',
  MULTILINE_IMPLICIT_KEY: 'a key must be on one line (is a colon or an indentation missing?)',
  MULTIPLE_ANCHORS: 'a value has more than one anchor',
  MULTIPLE_DOCS: 'the file holds more than one YAML document (a second ---); a scenario file is one document',
  MULTIPLE_TAGS: 'a value has more than one tag',
  NON_STRING_KEY: 'a key must be plain text',
  RESOURCE_EXHAUSTION: 'the YAML expands too much (aliases); write the items out',
  TAB_AS_INDENT: 'tabs cannot indent YAML; use spaces',
  TAG_RESOLVE_FAILED: 'a YAML tag (!something) is not understood; scenarios use plain values',
  UNEXPECTED_TOKEN: 'unexpected characters here (is a colon, a dash or a quote missing?)',
  BAD_COLLECTION_TYPE: 'a tag does not fit this kind of value',
};

function yamlMessage(e: YAMLError): string {
  return `YAML: ${YAML_MESSAGES[e.code] ?? 'the YAML cannot be read here'}`;
}

/**
 * Where strict JSON first breaks, and why, or undefined for valid JSON. A small
 * scanner rather than JSON.parse, whose messages quote the text and, on Node 20,
 * often give no position at all.
 */
export function strictJsonIssue(text: string): { offset: number; message: string } | undefined {
  let i = 0;
  const fail = (message: string, at = i): never => {
    throw { offset: at, message: `invalid JSON: ${message}` };
  };
  const space = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const literal = (word: string) => {
    if (text.startsWith(word, i)) i += word.length;
    else fail('expected a value (a string, number, object, list, true, false or null)');
  };
  const string = () => {
    i++; // opening quote
    for (;;) {
      if (i >= text.length) fail('a string is not closed');
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return;
      }
      if (c < 0x20) fail('a control character inside a string (a line break?) must be escaped');
      if (c === 0x5c) {
        const e = text[i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) fail('a \\u escape needs four hex digits');
          i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else fail('an invalid escape in a string');
      } else i++;
    }
  };
  const number = () => {
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400));
    if (!m || m[0] === '' || m[0] === '-')
      fail('expected a value (a string, number, object, list, true, false or null)');
    i += m![0].length;
  };
  /** An object or a list: items separated by commas, no trailing comma. */
  const container = (close: string, what: string, item: () => void) => {
    i++;
    space();
    if (text[i] === close) {
      i++;
      return;
    }
    for (;;) {
      item();
      space();
      if (text[i] === ',') {
        i++;
        space();
        if (text[i] === close) fail(`a comma before "${close}" (trailing commas are not JSON)`);
        continue;
      }
      if (text[i] === close) {
        i++;
        return;
      }
      fail(i >= text.length ? `${what} is not closed (missing "${close}")` : `expected "," or "${close}"`);
    }
  };
  const value = (depth: number): void => {
    if (depth > 200) fail('nested too deeply');
    space();
    const c = text[i];
    if (c === undefined) fail('the text ends where a value should be');
    if (c === '{') {
      container('}', 'an object', () => {
        space();
        if (text[i] !== '"') fail('expected a property name in double quotes');
        string();
        space();
        if (text[i] !== ':') fail('expected ":" after a property name');
        i++;
        value(depth + 1);
      });
      return;
    }
    if (c === '[') {
      container(']', 'a list', () => value(depth + 1));
      return;
    }
    if (c === '"') string();
    else if (c === 't') literal('true');
    else if (c === 'f') literal('false');
    else if (c === 'n') literal('null');
    else number();
  };
  try {
    if (text.charCodeAt(0) === 0xfeff) i = 1;
    value(0);
    space();
    if (i < text.length) fail('more text after the JSON value');
    return undefined;
  } catch (err) {
    return err as { offset: number; message: string };
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
