/** sortedSet (firewall/elements.ts): a set's elements merged from the last list equal a fresh sort. */
import { describe, expect, it } from 'vitest';
import { sortedSet } from '../../src/firewall/elements.js';

describe('sortedSet', () => {
  it('equals the sorted distinct elements after every change, over 5000 changes', () => {
    let seed = 99;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    let raw: string[] = [];
    for (let i = 0; i < 5000; i++) {
      const next = raw.filter(() => rnd() < 0.9);
      for (let k = Math.floor(rnd() * 4); k > 0; k--)
        next.splice(Math.floor(rnd() * (next.length + 1)), 0, `10.0.${Math.floor(rnd() * 30)}.1 . 80`);
      if (rnd() < 0.7) raw = next;
      const got = sortedSet('test', [...raw]);
      expect(got).toEqual([...new Set(raw)].sort());
    }
  });

  it('hands back the same frozen list while the contributions are the same', () => {
    const a = sortedSet('same', ['b', 'a', 'b']);
    expect(sortedSet('same', ['b', 'a', 'b'])).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    expect(sortedSet('same', ['a', 'b'])).toEqual(['a', 'b']);
  });
});
