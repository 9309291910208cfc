/**
 * The elements each nft set and map should hold for a resolved world. Pure.
 * Key strings follow nft's text: "a . b . c" for concatenations, "key : value" for maps.
 */
import { notePatchedList, ObjectMemo, sameItems } from '../model/intern.js';
import { canonicalIp } from '../model/ip.js';
import type { Resolved, ResolvedContainer, ResolvedNetwork } from '../model/resolved.js';
import { SETS } from './rules.js';

const isNat = (mode: string) => mode === 'nat' || mode === 'nat-unprotected';

export function desiredSets(r: Resolved, usedBridges: ReadonlySet<string>): Record<string, string[]> {
  const sets: Record<string, string[]> = Object.fromEntries(SETS.map((s) => [s.name, [] as string[]]));
  const add = (name: string, key: string) => sets[name]!.push(key);
  for (const n of Object.values(r.networks)) {
    if (!usedBridges.has(n.bridge)) continue;
    const s = n.spec;
    add('bridges', n.bridge);
    add('samebridge', `${n.bridge} . ${n.bridge}`);
    if (s.internal) add('internal', n.bridge);
    for (const [v, fc, mode, hostIp] of [
      ['4', n.v4, s.gatewayModeV4, s.hostIpv4],
      ['6', n.v6, s.gatewayModeV6, s.hostIpv6],
    ] as const) {
      if (!fc) continue;
      add(`subnets${v}`, fc.subnet);
      if (s.internal) continue;
      if (mode === 'nat-unprotected') add(`unprotected${v}`, n.bridge);
      if (mode === 'routed') add(`routednet${v}`, fc.subnet);
      if (s.masquerade && isNat(mode)) {
        if (hostIp) add(`snat${v}`, `${fc.subnet} : ${canonicalIp(hostIp)}`);
        else add(`masq${v}`, fc.subnet);
      }
    }
  }
  for (const c of Object.values(r.containers))
    for (const [set, key] of elementsOf(c, r.networks)) add(set, key);
  const counts = new Map<string, Map<string, number>>();
  for (const k of Object.keys(sets)) {
    const count = new Map<string, number>();
    for (const key of sets[k]!) count.set(key, (count.get(key) ?? 0) + 1);
    counts.set(k, count);
    sets[k] = sortedSet(k, sets[k]!);
  }
  lastWorld = { sets, counts };
  return sets;
}

/**
 * The last sets made (by desiredSets or patchedSets) and how many times each element was
 * contributed: a container's element leaves its set when no one contributes it any more.
 */
let lastWorld:
  | {
      readonly sets: Readonly<Record<string, readonly string[]>>;
      readonly counts: Map<string, Map<string, number>>;
    }
  | undefined;

/**
 * `prev` (the last sets made) with the elements of some containers taken out (`gone`) and
 * of others put in (`added`), as desiredSets would make them for the world after that
 * change; undefined when `prev` is not the last sets made. Unchanged sets keep their list.
 */
export function patchedSets(
  prev: Readonly<Record<string, readonly string[]>>,
  gone: readonly (readonly [string, string])[],
  added: readonly (readonly [string, string])[],
): Readonly<Record<string, readonly string[]>> | undefined {
  if (lastWorld?.sets !== prev) return undefined;
  const { counts } = lastWorld;
  // Per touched set: whether each touched element was in it before.
  const before = new Map<string, Map<string, boolean>>();
  const touch = (set: string, key: string, by: number) => {
    const count = counts.get(set)!;
    const n = count.get(key) ?? 0;
    let seen = before.get(set);
    if (!seen) before.set(set, (seen = new Map()));
    if (!seen.has(key)) seen.set(key, n > 0);
    if (n + by > 0) count.set(key, n + by);
    else count.delete(key);
  };
  for (const [set, key] of gone) touch(set, key, -1);
  for (const [set, key] of added) touch(set, key, 1);
  let sets: Record<string, readonly string[]> | undefined;
  for (const [set, seen] of before) {
    const count = counts.get(set)!;
    const out = new Set<string>();
    const put: string[] = [];
    for (const [key, was] of seen) {
      const is = count.has(key);
      if (was && !is) out.add(key);
      if (!was && is) put.push(key);
    }
    if (!out.size && !put.length) continue;
    sets ??= { ...prev };
    const gone = [...out].sort();
    sets[set] = Object.freeze(edited(prev[set]!, gone, put.sort()));
    notePatchedList(prev[set]!, sets[set]!, gone, put);
  }
  if (!sets) return prev;
  lastWorld = { sets, counts };
  return sets;
}

/**
 * Per set: the elements contributed last time (in contribution order, repeats included)
 * and the sorted list made of them. Thousands of elements at scale, nearly all the same
 * from one edit to the next: a set contributed the same way gets the same list (which diff
 * then compares by identity), and a changed one is merged from the last sorted list
 * instead of sorted again.
 */
const lastSets = new Map<string, { raw: readonly string[]; sorted: string[]; members: Set<string> }>();

export function sortedSet(name: string, raw: string[]): string[] {
  const prev = lastSets.get(name);
  if (prev && sameItems(prev.raw, raw)) return prev.sorted;
  const members = new Set(raw);
  let sorted: string[];
  if (!prev) sorted = [...members].sort();
  else {
    const kept = prev.sorted.filter((k) => members.has(k));
    const added = [...members].filter((k) => !prev.members.has(k)).sort();
    sorted = mergeSorted(kept, added);
  }
  Object.freeze(sorted);
  lastSets.set(name, { raw, sorted, members });
  return sorted;
}

/** An ascending list without some of its items and with others, by binary search (a few of thousands). */
function edited(list: readonly string[], gone: readonly string[], added: readonly string[]): string[] {
  const out = list.slice();
  const at = (x: string) => {
    let lo = 0;
    let hi = out.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (out[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  for (const x of gone) out.splice(at(x), 1);
  for (const x of added) out.splice(at(x), 0, x);
  return out;
}

/** Two ascending lists with no element in common, as one ascending list. */
function mergeSorted(a: readonly string[], b: readonly string[]): string[] {
  if (b.length === 0) return [...a];
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) out.push(a[i]! < b[j]! ? a[i++]! : b[j++]!);
  while (i < a.length) out.push(a[i++]!);
  while (j < b.length) out.push(b[j++]!);
  return out;
}

/**
 * One container's elements, remembered per resolved container (kept by resolve() while
 * unchanged) and the networks it is on.
 */
const parts = new ObjectMemo<ResolvedContainer, readonly [string, string][]>();

/** One container's [set, element] pairs. */
export function elementsOf(
  c: ResolvedContainer,
  networks: Resolved['networks'],
): readonly (readonly [string, string])[] {
  const nets = c.endpoints.map((e) => networks[e.network]!);
  return parts.of(c, nets, () => containerElements(c, nets));
}

function containerElements(c: ResolvedContainer, nets: readonly ResolvedNetwork[]): [string, string][] {
  const out: [string, string][] = [];
  const add = (name: string, key: string) => out.push([name, key]);
  c.endpoints.forEach((e, i) => {
    if (!nets[i]!.spec.icc) add('noicc_ports', e.hostVeth);
  });
  for (const p of c.ports) {
    const v = String(p.family);
    const cip = canonicalIp(p.containerIp);
    const inner = `${cip} . ${p.protocol} . ${p.containerPort}`;
    if (p.mode === 'routed') {
      add(`routed${v}`, inner);
      continue;
    }
    // No host port: nothing to NAT. proxy: served in userland (IPv6 → an IPv4-only
    // container). ::1: IPv6 loopback cannot be DNAT'd out of `lo`; the userland proxy
    // serves it (nat-output lets ::1 through untouched).
    if (!p.hostPort || p.proxy || p.hostIp === '::1') continue;
    const any = p.hostIp === '0.0.0.0' || p.hostIp === '::';
    const key = any
      ? `${p.protocol} . ${p.hostPort}`
      : `${canonicalIp(p.hostIp)} . ${p.protocol} . ${p.hostPort}`;
    const map = any ? `dnatany${v}` : `dnat${v}`;
    add(`${map}_addr`, `${key} : ${cip}`);
    add(`${map}_port`, `${key} : ${p.containerPort}`);
    add(`published${v}`, inner);
  }
  return out;
}
