/**
 * Keeping yesterday's objects: the daemon recomputes its desired world from scratch on
 * every edit, and the later stages (desired state, diff) remember their work per object
 * identity. Interning a freshly computed record against the previous one hands them the
 * previous object wherever nothing changed, so one edit costs one container's work.
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
