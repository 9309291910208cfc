/*
 * parseManifests parses without yaml's (quadratic) duplicate-key check and parses again
 * with it only when a document has errors or may repeat a key. Whatever the document,
 * the outcome must be the one yaml's own check gives: same problems at the same places,
 * same warnings, same data.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LineCounter, parseDocument } from 'yaml';
import { parseManifests } from '../../src/spec/read.js';

/** What parseManifests reports, computed with yaml's duplicate-key check always on. */
function reference(text: string) {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, merge: true, uniqueKeys: true });
  const at = (offset: number) => lineCounter.linePos(offset);
  return {
    errors: doc.errors.map((e) => ({ code: e.code, ...at(e.pos[0]) })),
    warnings: doc.warnings.map((w) => ({ message: w.message, ...at(w.pos[0]) })),
    data: outcome(() => (doc.errors.length === 0 ? (doc.toJS({ maxAliasCount: 1000 }) ?? null) : null)),
  };
}

/** A value, or the message it was thrown with (an alias to nothing throws in toJS). */
function outcome<T>(f: () => T): T | { throws: string } {
  try {
    return f();
  } catch (err) {
    return { throws: String(err) };
  }
}

function actual(text: string) {
  const r = outcome(() => parseManifests([{ path: 'm.yaml', text }]));
  if ('throws' in r) return { problems: [], warnings: [], data: r };
  return {
    problems: r.problems.map((p) => `${p.src?.line}:${p.src?.col} ${p.message}`),
    warnings: r.warnings.map((w) => `${w.src?.line}:${w.src?.col} ${w.message}`),
    data: r.files[0]!.data,
  };
}

const key = fc.constantFrom('a', 'b', 'a', '"a"', "'a'", '1', '01', '1.0', '.nan', '.NaN', 'null', '~', '<<');
const scalar = fc.constantFrom('1', 'x', '"q"', '*A', '[]', '{}', '', '!!str 2', '!foo z', '&A v');

/** Small YAML documents built from the pieces that decide key equality. */
const yamlDoc: fc.Arbitrary<string> = fc.letrec((tie) => ({
  flowMap: fc
    .array(fc.tuple(key, scalar), { maxLength: 4 })
    .map((kv) => `{ ${kv.map(([k, v]) => `${k}: ${v}`).join(', ')} }`),
  block: fc
    .array(fc.tuple(key, fc.oneof(scalar, tie('flowMap'), tie('nested'))), { minLength: 1, maxLength: 4 })
    .map((kv) => kv.map(([k, v]) => `${k}: ${v}`)),
  nested: fc
    .tuple(fc.constantFrom('', '&A ', '!!map '), tie('block') as fc.Arbitrary<string[]>)
    .map(([prefix, lines]) => `${prefix}\n${lines.map((l) => `  ${l.replace(/\n/g, '\n  ')}`).join('\n')}`),
  doc: fc
    .tuple(tie('block') as fc.Arbitrary<string[]>, fc.constantFrom('', '# c\n', '---\n', '\n---\nz: 1\n'))
    .map(([lines, tail]) => `${lines.join('\n')}\n${tail}`),
})).doc;

describe('parseManifests and duplicate keys', () => {
  it('reports exactly what yaml with uniqueKeys reports', () => {
    fc.assert(
      fc.property(yamlDoc, (text) => {
        const ref = reference(text);
        const got = actual(text);
        expect(got.data).toEqual(ref.data);
        if (ref.data && typeof ref.data === 'object' && 'throws' in ref.data) return;
        expect(got.problems.map((p) => p.split(' ')[0])).toEqual(ref.errors.map((e) => `${e.line}:${e.col}`));
        expect(got.problems.filter((p) => p.includes('appears twice')).length).toBe(
          ref.errors.filter((e) => e.code === 'DUPLICATE_KEY').length,
        );
        expect(got.warnings.map((w) => w.split(' ')[0])).toEqual(
          ref.warnings.map((w) => `${w.line}:${w.col}`),
        );
      }),
      { numRuns: 3000 },
    );
  });

  it('finds duplicates at any depth, in block and flow mappings', () => {
    const dup = (text: string) => actual(text).problems.filter((p) => p.includes('appears twice'));
    expect(dup('a: 1\nb: 2\na: 3\n')).toEqual([
      '3:1 YAML syntax error: this key appears twice in the same mapping',
    ]);
    expect(dup('a:\n  b: { c: 1, c: 2 }\n')).toEqual([
      '2:14 YAML syntax error: this key appears twice in the same mapping',
    ]);
    expect(dup('a: [ { x: 1 }, { y: 1, "y": 2 } ]\n')).toHaveLength(1);
    expect(dup('? { k: 1, k: 2 }\n: v\n')).toHaveLength(1);
    expect(dup('a: 1\n"a": 2\n')).toHaveLength(1);
    expect(dup('1: x\n"1": y\n')).toEqual([]);
    expect(dup('base: &B { x: 1 }\nc:\n  <<: *B\n  <<: *B\n')).toEqual([]);
  });
});
