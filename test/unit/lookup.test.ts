/**
 * `container inspect` / `network inspect` names: Docker's lookup order (full ID, name,
 * unique ID prefix).
 */
import { describe, expect, it } from 'vitest';
import { lookUp } from '../../src/cli/views.js';

const items = [
  { name: 'z', id: 'a09d27d756ab' },
  { name: 'a', id: 'f550898a11f3' },
  { name: 'b', id: 'a0ffee000000' },
];
const find = (ref: string) =>
  lookUp(
    items,
    ref,
    (x) => x.name,
    (x) => x.id,
  )?.name;

describe('lookUp', () => {
  it('takes a name before an ID that merely starts with it', () => {
    expect(find('a')).toBe('a');
    expect(find('b')).toBe('b');
  });
  it('takes a full ID, then a unique ID prefix; an ambiguous prefix names nothing', () => {
    expect(find('f550898a11f3')).toBe('a');
    expect(find('f55')).toBe('a');
    expect(find('a09')).toBe('z');
    expect(find('a0')).toBeUndefined();
    expect(find('nope')).toBeUndefined();
  });
});
