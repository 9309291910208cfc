/**
 * JSON text that reuses the text of frozen parts. The daemon writes files in parts (the
 * resolver's per-container parts, the record's container files) after each edit, and most
 * of their objects are the frozen ones kept from the edit before: their text is made once
 * and kept with the object.
 */

import { shortHash } from './names.js';

const omitted = (v: unknown) => v === undefined || typeof v === 'function' || typeof v === 'symbol';

const compactTexts = new WeakMap<object, string>();

/**
 * Exactly JSON.stringify(v) for plain data (no toJSON, no cycles), keeping the text of
 * each frozen object for the next call.
 */
export function compactJson(x: unknown): string {
  if (x === null || typeof x !== 'object') return JSON.stringify(x) ?? 'undefined';
  const frozen = Object.isFrozen(x);
  if (frozen) {
    const known = compactTexts.get(x);
    if (known !== undefined) return known;
  }
  let text: string;
  if (Array.isArray(x)) {
    const items: string[] = [];
    for (const v of x) items.push(omitted(v) ? 'null' : compactJson(v));
    text = `[${items.join(',')}]`;
  } else {
    const items: string[] = [];
    for (const k of Object.keys(x)) {
      const v = (x as Record<string, unknown>)[k];
      if (!omitted(v)) items.push(`${JSON.stringify(k)}:${compactJson(v)}`);
    }
    text = `{${items.join(',')}}`;
  }
  if (frozen) compactTexts.set(x, text);
  return text;
}

/** A file's text and its short hash (names.ts shortHash), per object it was made for. */
const fileTexts = new WeakMap<object, { readonly text: string; readonly hash: string }>();

/**
 * `value()` as a JSON file (compactJson and a newline) with its short hash, made once per
 * `key`: the part files the daemon writes (record, resolver) are rewritten when their
 * object is new, and their index names each by its hash.
 */
export function jsonFile(
  key: object,
  value: () => unknown,
): { readonly text: string; readonly hash: string } {
  let t = fileTexts.get(key);
  if (!t) {
    const text = `${compactJson(value())}\n`;
    fileTexts.set(key, (t = { text, hash: shortHash(text) }));
  }
  return t;
}
