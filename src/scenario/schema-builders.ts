/**
 * The zod building blocks of the scenario format, each carrying the rule it
 * checks as its zod error (schema-messages.ts turns those into messages).
 * A module of its own so that schema.ts and format-lifecycle.ts share them
 * without importing each other.
 */
import * as z from 'zod';
import { marker } from './schema-messages.js';

export function mapping<S extends z.core.$ZodLooseShape>(shape: S, rule = 'a mapping') {
  const keys = Object.keys(shape);
  return z.strictObject(shape, { error: (iss) => (iss.code === 'unrecognized_keys' ? marker({ keys }) : rule) });
}

export function text(rule = 'a non-empty string') {
  return z.string({ error: rule }).regex(/\S/, { error: rule });
}

export function matching(re: RegExp, rule: string, maxLength = 64) {
  return z.string({ error: rule }).max(maxLength, { error: rule }).regex(re, { error: rule });
}

export function integer(min: number, max: number, rule = `an integer from ${min} to ${max}`) {
  return z.int({ error: rule }).min(min, { error: rule }).max(max, { error: rule });
}

export function oneOfValues<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: `one of ${values.join(', ')}` });
}

/** A union whose branch is chosen by the kind of value (a string, a list...); `rule` when no branch fits. */
export function oneOf<const T extends readonly [z.ZodType, ...z.ZodType[]]>(options: T, rule: string) {
  return z.union(options, { error: marker({ typed: rule }) });
}
