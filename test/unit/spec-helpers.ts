/**
 * Helpers for the loader tests (test/unit/spec-*.test.ts).
 *
 * Conventions: container-side subnets are 172.18.0.0/16-like (IPv6: fd00::/8 ULA);
 * "outside" addresses come only from 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and
 * 2001:db8::/32.
 */
import { formatRef, SpecError, type SpecProblem } from '../../src/model/errors.js';
import type { Spec } from '../../src/model/spec.js';
import { loadSpecFromStrings } from '../../src/spec/load.js';

/** Strip the common indentation of a template literal, and its first newline. */
export function yaml(strings: TemplateStringsArray, ...values: unknown[]): string {
  let s = strings.reduce((acc, str, i) => acc + str + (i < values.length ? String(values[i]) : ''), '');
  s = s.replace(/^\n/, '');
  const indents = s
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => /^ */.exec(l)![0].length);
  const cut = Math.min(...indents);
  return s
    .split('\n')
    .map((l) => l.slice(cut))
    .join('\n')
    .replace(/[ \t]+$/, '');
}

type Input = string | { path: string; text: string }[];

const asFiles = (input: Input) => (typeof input === 'string' ? [{ path: 'm.yaml', text: input }] : input);

export function load(input: Input): Spec {
  return loadSpecFromStrings(asFiles(input));
}

/** The SpecError's problems, or a test failure if the input loads. */
export function problemsOf(input: Input): SpecProblem[] {
  try {
    loadSpecFromStrings(asFiles(input));
  } catch (e) {
    if (e instanceof SpecError) return [...e.problems];
    throw e;
  }
  throw new Error('expected a SpecError, but the manifests loaded');
}

/** Problems as "file:line:col: message", with " [other: file:line:col]" for conflicts. */
export function errorsOf(input: Input): string[] {
  return problemsOf(input).map(
    (p) =>
      `${p.src ? `${formatRef(p.src)}: ` : ''}${p.message}${p.other ? ` [other: ${formatRef(p.other)}]` : ''}`,
  );
}

/** Deep copy without `src` fields, for comparing models. */
export function withoutSrc<T>(v: T): T {
  return JSON.parse(JSON.stringify(v, (k, x) => (k === 'src' ? undefined : x)));
}
