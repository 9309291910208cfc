/** compactJson is JSON.stringify, also for frozen (cached) parts. */
import { describe, expect, it } from 'vitest';
import { compactJson } from '../../src/model/json.js';

describe('compactJson', () => {
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
    it(`compactJson matches JSON.stringify (case ${i})`, () => {
      expect(compactJson(v)).toBe(JSON.stringify(v));
      expect(compactJson(v)).toBe(JSON.stringify(v));
    });
  }
});
