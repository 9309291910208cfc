/**
 * Keeping yesterday's objects: after an edit the daemon's stages (resolve, desired state,
 * diff) remember their work per object identity. Interning a freshly computed record
 * against the previous one hands them the previous object wherever nothing changed; a
 * record patched from the previous one (patchRecord) also tells the next stage which
 * entries changed, so one edit costs one container's work.
 */

/** Structural equality of plain data: objects (own enumerable keys), arrays, primitives. */
export function sameData(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameData(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k)) return false;
    if (!sameData((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

/**
 * Object.freeze through every array and plain object, stopping at what is frozen already
 * (a frozen object is taken as frozen all the way down) and at class instances.
 */
export function freezeData<T>(x: T): T {
  if (x === null || typeof x !== 'object' || Object.isFrozen(x)) return x;
  const proto = Object.getPrototypeOf(x);
  if (!Array.isArray(x) && proto !== Object.prototype && proto !== null) return x;
  Object.freeze(x);
  for (const v of Object.values(x)) freezeData(v);
  return x;
}

/** The same items in the same order, compared by identity. */
export const sameItems = (x: readonly unknown[], y: readonly unknown[]): boolean =>
  x.length === y.length && x.every((v, i) => v === y[i]);

/**
 * Results remembered per object: the result made last for `key`, as long as it is asked
 * for with the same `inputs` (compared item by item, by identity; strings and numbers by
 * value). An entry lives as long as its key object.
 */
export class ObjectMemo<K extends object, V> {
  private readonly entries = new WeakMap<K, { readonly inputs: readonly unknown[]; readonly value: V }>();

  get(key: K, inputs: readonly unknown[]): V | undefined {
    const hit = this.entries.get(key);
    return hit && sameItems(hit.inputs, inputs) ? hit.value : undefined;
  }

  set(key: K, inputs: readonly unknown[], value: V): V {
    this.entries.set(key, { inputs, value });
    return value;
  }

  /** The remembered result, or `make()`'s, remembered. */
  of(key: K, inputs: readonly unknown[], make: () => V): V {
    const hit = this.entries.get(key);
    if (hit && sameItems(hit.inputs, inputs)) return hit.value;
    return this.set(key, inputs, make());
  }
}

/** `old` when it is equal to `next` as data, else `next`, frozen: a kept object is shared. */
export function keepIfSame<T>(old: T | undefined, next: T): T {
  return old !== undefined && sameData(old, next) ? old : freezeData(next);
}

/**
 * `next`, with each value replaced by the value of the same key in `prev` when the two
 * are equal as data. The values are frozen: a kept object is shared between results.
 */
export function internRecord<T>(
  next: Readonly<Record<string, T>>,
  prev: Readonly<Record<string, T>> | undefined,
): Record<string, T> {
  const out: Record<string, T> = {};
  for (const [k, v] of Object.entries(next)) {
    const old = prev && Object.hasOwn(prev, k) ? prev[k] : undefined;
    out[k] = keepIfSame(old, v);
  }
  return out;
}

/**
 * Records made by patching an earlier one: per record, the records it was patched from
 * (nearest first, a few at most) with the keys whose entries differ from each. The desired
 * world holds records of one entry per container; after an edit a stage patches the few
 * entries that changed, and the stage after it asks patchedKeys which ones those are
 * instead of visiting every entry. The earlier records are held weakly: a chain of
 * patches keeps no record alive.
 */
const patches = new WeakMap<
  object,
  readonly { readonly from: WeakRef<object>; readonly keys: readonly string[] }[]
>();
const MAX_PATCHES = 4;

/**
 * The entries of the last record of each chain of patches, in its order: a record is
 * copied from them (a quarter of the cost of visiting a big record's own keys), and the
 * next patch takes them over.
 */
const entriesOf = new WeakMap<object, Map<string, unknown>>();

/**
 * `base` with `changes` applied (an undefined value deletes the key): `base` itself when
 * no entry changes, else a fresh record (without prototype: building one of thousands of
 * entries costs a fraction of building an ordinary object). Kept keys keep their place;
 * new ones follow, in the order of `changes`.
 */
export function patchRecord<T>(
  base: Readonly<Record<string, T>>,
  changes: ReadonlyMap<string, T | undefined>,
): Readonly<Record<string, T>> {
  const keys: string[] = [];
  for (const [k, v] of changes) {
    const had = Object.hasOwn(base, k);
    if (v === undefined ? had : !had || base[k] !== v) keys.push(k);
  }
  if (!keys.length) return base;
  let entries = entriesOf.get(base) as Map<string, T> | undefined;
  if (entries) entriesOf.delete(base);
  else {
    entries = new Map();
    for (const k in base) entries.set(k, base[k]!);
  }
  for (const k of keys) {
    const v = changes.get(k);
    if (v === undefined) entries.delete(k);
    else entries.set(k, v);
  }
  const out: Record<string, T> = Object.create(null);
  for (const [k, v] of entries) out[k] = v;
  entriesOf.set(out, entries);
  const before = patches.get(base) ?? [];
  patches.set(out, [
    { from: new WeakRef(base), keys },
    ...before.slice(0, MAX_PATCHES - 1).map((p) => ({ from: p.from, keys: [...keys, ...p.keys] })),
  ]);
  return out;
}

/**
 * The keys whose entries differ between `from` and `to`, when `to` was made from `from`
 * by at most `depth` patchRecord calls (a key may be listed more than once); undefined
 * when it was not. With depth 1, `to` holds `from`'s kept keys in their order and its new
 * keys after them, in the order listed (except for keys that are array indexes, which
 * objects hold first, in ascending order).
 */
export function patchedKeys(from: object, to: object, depth = 1): readonly string[] | undefined {
  if (from === to) return [];
  const found = patches.get(to)?.slice(0, depth);
  return found?.find((p) => p.from.deref() === from)?.keys;
}

/**
 * As patchedKeys with depth 1, also for records not made by patchRecord, found then by
 * visiting both: undefined when `to` does not hold `from`'s kept keys in their order with
 * its new keys after them.
 */
export function recordChanges(
  from: Readonly<Record<string, unknown>>,
  to: Readonly<Record<string, unknown>>,
): readonly string[] | undefined {
  const known = patchedKeys(from, to);
  if (known) return known;
  const next = Object.keys(to);
  const out: string[] = [];
  let j = 0;
  for (const k in from) {
    if (!Object.hasOwn(to, k)) out.push(k);
    else if (next[j++] !== k) return undefined;
    else if (to[k] !== from[k]) out.push(k);
  }
  for (; j < next.length; j++) {
    if (Object.hasOwn(from, next[j]!)) return undefined;
    out.push(next[j]!);
  }
  return out;
}

/** Sorted lists made from another (held weakly) by taking some items out and putting others in. */
const listPatches = new WeakMap<
  readonly string[],
  {
    readonly from: WeakRef<readonly string[]>;
    readonly gone: readonly string[];
    readonly added: readonly string[];
  }
>();

/** Remembers that `to` is `from` without `gone` and with `added` (items of neither list in both). */
export function notePatchedList(
  from: readonly string[],
  to: readonly string[],
  gone: readonly string[],
  added: readonly string[],
): void {
  listPatches.set(to, { from: new WeakRef(from), gone, added });
}

/** [items of `from` not in `to`, items of `to` not in `from`] when `to` was noted as patched from `from`. */
export function listChanges(
  from: readonly string[],
  to: readonly string[],
): readonly [readonly string[], readonly string[]] | undefined {
  const p = listPatches.get(to);
  return p?.from.deref() === from ? [p.gone, p.added] : undefined;
}
