/**
 * canonicalJson is JSON.stringify of a key-sorted copy, indent 2; compactJson is
 * JSON.stringify; both also for frozen (cached) parts.
 */
import { describe, expect, it } from 'vitest';
import { canonicalJson, compactJson } from '../../src/model/json.js';

function sortKeys(x: unknown): unknown {
  if (Array.isArray(x)) return x.map(sortKeys);
  if (!x || typeof x !== 'object') return x;
  const out: Record<string, unknown> = Object.create(null);
  for (const k of Object.keys(x).sort()) out[k] = sortKeys((x as Record<string, unknown>)[k]);
  return out;
}
const reference = (v: unknown) => `${JSON.stringify(sortKeys(v), null, 2)}\n`;

describe('canonicalJson', () => {
  const shared = Object.freeze({ b: [1, 2, Object.freeze({ z: 'é"\\n', a: null })], a: true });
  const cases: unknown[] = [
    null,
    0,
    'x',
    [],
    {},
    { b: 1, a: { d: [], c: {} } },
    { 10: 'ten', 9: 'nine', a: 1, '01': 'not an index', 4294967295: 'not an index either' },
    { a: undefined, b: [undefined, 1], c: Number.NaN, d: -0.5 },
    { dns: { endpoints: [shared, shared], networks: [{ listen: ['10.0.0.1'] }] }, proxies: [] },
    [[shared], { deeper: { still: [shared] } }],
  ];
  for (const [i, v] of cases.entries()) {
    it(`matches JSON.stringify of the key-sorted value (case ${i})`, () => {
      expect(canonicalJson(v)).toBe(reference(v));
      expect(canonicalJson(v)).toBe(reference(v)); // again, from the cache of frozen parts
    });
  }
  for (const [i, v] of cases.entries()) {
    it(`compactJson matches JSON.stringify (case ${i})`, () => {
      expect(compactJson(v)).toBe(JSON.stringify(v));
      expect(compactJson(v)).toBe(JSON.stringify(v));
    });
  }
});
