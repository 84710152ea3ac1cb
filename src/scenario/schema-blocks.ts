/**
 * Building blocks of the scenario format: each carries the rule it checks as
 * its zod error. Shared by schema.ts and the format modules that add to it
 * (format-steering.ts), so that each rule is written once.
 */
import { isIP } from 'node:net';
import * as z from 'zod';
import { marker } from './schema-messages.js';

export const SERVER_ID_RE = /^[A-Za-z][A-Za-z0-9_-]*$/;
export const TRAFFIC_ID_RE = /^[A-Za-z0-9._-]+$/;
const IP_RULE = 'an IPv4 or IPv6 address literal';

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

export const fraction = z
  .number({ error: 'a number from 0 to 1' })
  .min(0, { error: 'a number from 0 to 1' })
  .max(1, { error: 'a number from 0 to 1' });
export const flag = z.boolean({ error: 'true or false' });

export function oneOfValues<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: `one of ${values.join(', ')}` });
}

/** A union whose branch is chosen by the kind of value (a string, a list...); `rule` when no branch fits. */
export function oneOf<const T extends readonly [z.ZodType, ...z.ZodType[]]>(options: T, rule: string) {
  return z.union(options, { error: marker({ typed: rule }) });
}

export const serverId = matching(SERVER_ID_RE, 'a server id like A or web-1 ([A-Za-z][A-Za-z0-9_-]*)');
export const trafficId = matching(TRAFFIC_ID_RE, 'a traffic id made of [A-Za-z0-9._-]');
export const port = integer(1, 65535);

export const ipLiteral = z
  .string({ error: IP_RULE })
  .regex(/^[^%]*$/, { error: 'an address without a zone id ("%lo"): scenarios only use lo, so there is none to name' })
  .regex(/^[0-9A-Fa-f:.]+$/, { error: IP_RULE })
  .refine((v) => isIP(v) !== 0, { error: IP_RULE })
  .meta({ description: 'An IPv4 or IPv6 address literal, without a zone id.' });
