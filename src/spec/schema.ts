/**
 * Phase 2 of loading: validate each document against the shipped JSON Schema
 * (`schema/tether.schema.json`, the same file editors use), and turn every ajv error
 * into a plain sentence at the file:line:col of the offending node.
 */
import { existsSync, readFileSync } from 'node:fs';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import type { SpecProblem } from '../model/errors.js';
import type { ParsedFile, Path, Sources } from './read.js';

/** From src/spec/ when run from source, from dist/ when run from the bundle. */
export const SCHEMA_URL = [
  new URL('../../schema/tether.schema.json', import.meta.url),
  new URL('../schema/tether.schema.json', import.meta.url),
].find((u) => existsSync(u))!;

/** The name rule, quoted in messages the way Docker quotes it. */
export const NAME_CHARS = '[a-zA-Z0-9][a-zA-Z0-9_.-]';

let compiled: ValidateFunction | undefined;

/** The schema as shipped (parsed JSON). */
export function loadSchema(): Record<string, unknown> {
  return JSON.parse(readFileSync(SCHEMA_URL, 'utf8')) as Record<string, unknown>;
}

function validator(): ValidateFunction {
  if (!compiled) {
    const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true, verbose: true });
    compiled = ajv.compile(loadSchema());
  }
  return compiled;
}

/** Validate every non-empty document; one problem per distinct finding. */
export function validateSchema(files: readonly ParsedFile[], sources: Sources): SpecProblem[] {
  const problems: SpecProblem[] = [];
  const validate = validator();
  for (const f of files) {
    if (f.data === null || f.data === undefined) continue;
    if (validate(f.data)) continue;
    const seen = new Set<string>();
    for (const e of validate.errors ?? []) {
      const p = toProblem(e, f, sources);
      if (!p) continue;
      const id = `${p.path}\u0000${p.message}`;
      if (seen.has(id)) continue;
      seen.add(id);
      problems.push(p);
    }
  }
  return problems;
}

function toProblem(e: ErrorObject, f: ParsedFile, sources: Sources): SpecProblem | undefined {
  const path = pointerToPath(e.instancePath, f.data);
  const value = valueAt(f.data, path);
  const at = (p: Path, key = false) => sources.ref({ file: f.path, path: p }, { key });
  const dotted = (p: Path) => formatPath(p);

  // propertyNames failures arrive twice: once from the inner keyword (with propertyName
  // set), once as "propertyNames". The inner one is the useful one.
  if (e.keyword === 'propertyNames') return undefined;
  const propertyName = (e as ErrorObject & { propertyName?: string }).propertyName;
  if (propertyName !== undefined) {
    const kind = nameKind(path);
    const keyPath = [...path, propertyName];
    return {
      message: `invalid ${kind} name '${propertyName}': only ${NAME_CHARS} are allowed`,
      src: at(keyPath, true),
      path: dotted(keyPath),
    };
  }

  switch (e.keyword) {
    case 'additionalProperties': {
      const key = String((e.params as { additionalProperty: string }).additionalProperty);
      const keyPath = [...path, key];
      const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
      const hint = suggest(key, known);
      return {
        message: `unknown key '${key}' ${inPhrase(path)}${hint ? ` (did you mean '${hint}'?)` : ''}`,
        src: at(keyPath, true),
        path: dotted(keyPath),
      };
    }
    case 'type': {
      const t = (e.params as { type: string | string[] }).type;
      const types = (Array.isArray(t) ? t : String(t).split(',')).map(typeWord);
      if (path.length === 0) {
        return {
          message: `a manifest must be a mapping (keys such as networks and containers), got ${describeValue(value)}`,
          src: at(path),
          path: '',
        };
      }
      return {
        message: `${subject(path)} must be ${orList(types)}, got ${describeValue(value)}`,
        src: at(path),
        path: dotted(path),
      };
    }
    case 'enum': {
      const allowed = (e.params as { allowedValues: unknown[] }).allowedValues.map(String);
      return { message: enumMessage(path, value, allowed), src: at(path), path: dotted(path) };
    }
    case 'required': {
      const missing = (e.params as { missingProperty: string }).missingProperty;
      return { message: `${subject(path)} needs the key '${missing}'`, src: at(path), path: dotted(path) };
    }
    case 'uniqueItems': {
      const { i, j } = e.params as { i: number; j: number };
      const later = Math.max(i, j);
      const itemPath = [...path, later];
      return {
        message: `${subject(path)} lists ${JSON.stringify(valueAt(f.data, itemPath))} twice`,
        src: at(itemPath),
        path: dotted(itemPath),
      };
    }
    case 'pattern':
      return {
        message: `${subject(path)} must match ${(e.params as { pattern: string }).pattern}, got ${describeValue(value)}`,
        src: at(path),
        path: dotted(path),
      };
    default:
      return { message: `${subject(path)} ${e.message ?? 'is invalid'}`, src: at(path), path: dotted(path) };
  }
}

function enumMessage(path: Path, value: unknown, allowed: string[]): string {
  const last = path[path.length - 1];
  const v = typeof value === 'string' ? `'${value}'` : describeValue(value);
  if (last === 'driver' && path[0] === 'networks' && path.length === 3) {
    if (value === 'host' || value === 'none') {
      return `network '${path[1]}' cannot use driver '${value}': '${value}' is a predefined network (use network_mode: ${value} on the container)`;
    }
    return `driver ${v} of network '${path[1]}' is not supported: tether manages bridge networks only`;
  }
  if (last === 'network_mode') {
    return `network_mode ${v} of ${owner(path).owner} is not supported: use bridge, host or none`;
  }
  return `${subject(path)} must be ${orList(allowed.map((a) => `'${a}'`))}, got ${v}`;
}

/** instancePath is a JSON pointer; segments under arrays become numbers. */
export function pointerToPath(pointer: string, data: unknown): Path {
  if (pointer === '') return [];
  const out: (string | number)[] = [];
  let cur: unknown = data;
  for (const raw of pointer.slice(1).split('/')) {
    const seg = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (Array.isArray(cur)) {
      const i = Number(seg);
      out.push(i);
      cur = cur[i];
    } else {
      out.push(seg);
      cur = cur && typeof cur === 'object' ? (cur as Record<string, unknown>)[seg] : undefined;
    }
  }
  return out;
}

function valueAt(data: unknown, path: Path): unknown {
  let cur = data;
  for (const seg of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string | number, unknown>)[seg];
  }
  return cur;
}

/** `networks.alpine-net.ipam.config[0].subnet` */
export function formatPath(path: Path): string {
  let s = '';
  for (const seg of path) {
    if (typeof seg === 'number') s += `[${seg}]`;
    else s += s === '' ? seg : `.${seg}`;
  }
  return s;
}

/** Who owns a path: "network 'x'", "container 'y'", "daemon", and the rest of the path. */
export function owner(path: Path): { owner: string; rest: Path } {
  const [a, b] = path;
  if (a === 'networks' && b !== undefined) return { owner: `network '${b}'`, rest: path.slice(2) };
  if (a === 'containers' && b !== undefined) return { owner: `container '${b}'`, rest: path.slice(2) };
  if (a === 'services' && b !== undefined) return { owner: `service '${b}'`, rest: path.slice(2) };
  if (a === 'daemon') return { owner: 'daemon', rest: path.slice(1) };
  return { owner: '', rest: path };
}

/** "'ipam.config[0].subnet' in network 'x'", "network 'x'", "'networks'". */
export function subject(path: Path): string {
  const o = owner(path);
  if (o.owner === '') return `'${formatPath(o.rest)}'`;
  if (o.rest.length === 0) return o.owner;
  return `'${formatPath(o.rest)}' in ${o.owner}`;
}

function inPhrase(path: Path): string {
  const o = owner(path);
  if (o.owner === '') return o.rest.length === 0 ? 'at the top level' : `in '${formatPath(o.rest)}'`;
  if (o.rest.length === 0) return `in ${o.owner}`;
  return `in '${formatPath(o.rest)}' of ${o.owner}`;
}

function nameKind(path: Path): string {
  const last = path[path.length - 1];
  if (last === 'networks') return 'network';
  if (last === 'containers') return 'container';
  if (last === 'services') return 'service';
  return 'name';
}

function typeWord(t: string): string {
  switch (t) {
    case 'object':
      return 'a mapping';
    case 'array':
      return 'a list';
    case 'string':
      return 'a string';
    case 'integer':
      return 'a whole number';
    case 'number':
      return 'a number';
    case 'boolean':
      return 'true or false';
    case 'null':
      return 'empty';
    default:
      return t;
  }
}

export function describeValue(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
  if (typeof v === 'number') return `the number ${v}`;
  return String(v);
}

function orList(items: string[]): string {
  if (items.length <= 1) return items[0] ?? '';
  return `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}

/** The closest known key within a small edit distance, for "did you mean". */
function suggest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(key.length / 4)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0];
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j];
      prev[j] = Math.min(prev[j] + 1, prev[j - 1] + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length];
}
