/**
 * JSON text that reuses the text of frozen parts. The daemon writes the same large
 * documents (the resolver configuration, the record of the last apply) after each edit,
 * and most of their objects are the frozen ones kept from the edit before: their text is
 * made once and kept with the object.
 */

const INDEX = /^(?:0|[1-9]\d*)$/;
const isIndex = (k: string) => INDEX.test(k) && Number(k) < 4294967295;
const omitted = (v: unknown) => v === undefined || typeof v === 'function' || typeof v === 'symbol';

/** Text per frozen object, per depth (the indentation depends on it). */
const prettyTexts = new WeakMap<object, Map<number, string>>();

/**
 * JSON with sorted keys, two-space indented, ending in a newline: exactly JSON.stringify
 * of a key-sorted copy with indent 2 (integer-like keys first, as JSON.stringify orders
 * them). Used where the text is compared or hashed (the resolver configuration).
 */
export function canonicalJson(v: unknown): string {
  return `${pretty(v, 0)}\n`;
}

function pretty(x: unknown, depth: number): string {
  if (x === null || typeof x !== 'object') return JSON.stringify(x) ?? 'undefined';
  const frozen = Object.isFrozen(x);
  const known = frozen ? prettyTexts.get(x)?.get(depth) : undefined;
  if (known !== undefined) return known;
  const pad = '  '.repeat(depth + 1);
  const items: string[] = [];
  let text: string;
  if (Array.isArray(x)) {
    for (const v of x) items.push(pad + (omitted(v) ? 'null' : pretty(v, depth + 1)));
    text = items.length ? `[\n${items.join(',\n')}\n${'  '.repeat(depth)}]` : '[]';
  } else {
    const keys = Object.keys(x).sort();
    const ordered = [
      ...keys.filter(isIndex).sort((a, b) => Number(a) - Number(b)),
      ...keys.filter((k) => !isIndex(k)),
    ];
    for (const k of ordered) {
      const v = (x as Record<string, unknown>)[k];
      if (!omitted(v)) items.push(`${pad}${JSON.stringify(k)}: ${pretty(v, depth + 1)}`);
    }
    text = items.length ? `{\n${items.join(',\n')}\n${'  '.repeat(depth)}}` : '{}';
  }
  if (frozen) {
    let byDepth = prettyTexts.get(x);
    if (!byDepth) prettyTexts.set(x, (byDepth = new Map()));
    byDepth.set(depth, text);
  }
  return text;
}

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
