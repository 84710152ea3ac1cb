/**
 * Text that came from outside the tool (a scenario's title, an id, a file
 * name, an error that quotes one) must not drive the terminal: an ESC
 * sequence can repaint a line as a fake PASSED, BEL rings, and bidi
 * overrides reorder what the reader sees. Every such character is shown as
 * a visible escape instead.
 */

// Controls (C0, DEL, C1), format characters (the bidi embeddings, overrides,
// isolates and marks, zero-width characters, Unicode tags) and the line and
// paragraph separators: everything that steers the display instead of showing.
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/gu;

function visible(char: string): string {
  const code = char.codePointAt(0) ?? 0;
  if (char === '\x1b') return '\\e';
  if (char === '\t') return '\\t';
  if (char === '\r') return '\\r';
  if (char === '\n') return '\\n';
  if (code <= 0xff) return `\\x${code.toString(16).padStart(2, '0')}`;
  return code <= 0xffff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\u{${code.toString(16)}}`;
}

/** One line of untrusted text, safe to print. */
export function safeText(text: string): string {
  return text.replace(UNSAFE, visible);
}

/** Untrusted prose: line breaks and tabs stay, everything else unsafe is escaped. */
export function safeProse(text: string): string {
  return text.replace(UNSAFE, (char) => (char === '\n' || char === '\t' ? char : visible(char)));
}

/**
 * A name from a file (an unknown key), for an error message: shortened to
 * `max` characters, quoted, with quotes and backslashes escaped so the quoting
 * cannot be broken, and every unsafe character escaped as safeText does.
 */
export function quoteName(text: string, max = 32): string {
  const chars = [...text];
  const short = chars.length > max ? `${chars.slice(0, max - 1).join('')}…` : text;
  return `"${safeText(short.replace(/[\\"]/g, '\\$&'))}"`;
}
