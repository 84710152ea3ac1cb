/**
 * Text that came from outside the tool (a scenario's title, an id, a file
 * name, an error that quotes one) must not drive the terminal: an ESC
 * sequence can repaint a line as a fake PASSED, BEL rings, and bidi
 * overrides reorder what the reader sees. Every such character is shown as
 * a visible escape instead.
 */

// C0 controls and DEL, C1 controls, and the Unicode bidi embedding,
// override and isolate marks (plus LRM, RLM and ALM).
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

function visible(char: string): string {
  const code = char.codePointAt(0) ?? 0;
  if (char === '\x1b') return '\\e';
  if (char === '\t') return '\\t';
  if (char === '\r') return '\\r';
  if (char === '\n') return '\\n';
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/** One line of untrusted text, safe to print. */
export function safeText(text: string): string {
  return text.replace(UNSAFE, visible);
}

/** Untrusted prose: line breaks and tabs stay, everything else unsafe is escaped. */
export function safeProse(text: string): string {
  return text.replace(UNSAFE, (char) => (char === '\n' || char === '\t' ? char : visible(char)));
}
