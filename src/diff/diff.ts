/**
 * diff(desired, actual) → Plan. Pure, total and deterministic: objects are visited in
 * sorted order; deletions come first (reverse dependency order), then creations and
 * updates (dependency order), then the nft changes.
 */

import { listChanges, patchedKeys } from '../model/intern.js';
import { type KernelState, linkOn, type NamespaceState, type VethState } from '../model/state.js';
import type { Action, LinkChange, Plan } from './plan.js';

const keys = <T>(o: Readonly<Record<string, T>>) => Object.keys(o).sort();
/** The items of `a` not in `b`, in `a`'s order (through a Set when `b` is big: nft sets hold thousands). */
function minus(a: readonly string[], b: readonly string[]): string[] {
  if (a.length === 0 || b.length <= 8) return a.filter((x) => !b.includes(x));
  const drop = new Set(b);
  return a.filter((x) => !drop.has(x));
}

/**
 * [a minus b, b minus a] of two strictly ascending lists (the sets' elements, thousands
 * at scale) in one walk; undefined when either list is not strictly ascending.
 */
export function sortedDifferences(
  a: readonly string[],
  b: readonly string[],
): [string[], string[]] | undefined {
  if (a === b) return [[], []];
  if (!ascending(a) || !ascending(b)) return undefined;
  const onlyA: string[] = [];
  const onlyB: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x < y) {
      onlyA.push(x);
      i++;
    } else if (y < x) {
      onlyB.push(y);
      j++;
    } else {
      i++;
      j++;
    }
  }
  for (; i < a.length; i++) onlyA.push(a[i]!);
  for (; j < b.length; j++) onlyB.push(b[j]!);
  return [onlyA, onlyB];
}

function ascending(xs: readonly string[]): boolean {
  for (let k = 1; k < xs.length; k++) if (!(xs[k - 1]! < xs[k]!)) return false;
  return true;
}

export function diff(desired: KernelState, actual: KernelState, table: string): Plan {
  const del: Action[] = [];
  const add: Action[] = [];

  // Per container: its namespace, its veths and what is inside (memoised, see containerDiff).
  const vethDel: Action[] = [];
  const nsDel: [string, readonly Action[]][] = [];
  const netnsDel: [string, Action][] = [];
  const netnsCreate: [string, Action][] = [];
  const vethAdd: Action[] = [];
  const nsAdd: [string, readonly Action[]][] = [];
  const byName = (x: Action, y: Action) => cmp((x as { name: string }).name, (y as { name: string }).name);
  const byFirst = <T>(x: readonly [string, T], y: readonly [string, T]) => cmp(x[0], y[0]);
  for (const [c, out] of [...containerDiffs(desired, actual)].sort(byFirst)) {
    vethDel.push(...out.vethDel);
    if (out.nsDel.length) nsDel.push([c, out.nsDel]);
    if (out.netnsDel) netnsDel.push([c, out.netnsDel]);
    if (out.netnsCreate) netnsCreate.push([c, out.netnsCreate]);
    vethAdd.push(...out.vethAdd);
    if (out.nsAdd.length) nsAdd.push([c, out.nsAdd]);
  }
  del.push(...vethDel.sort(byName));
  for (const [, actions] of nsDel.sort(byFirst)) del.push(...actions);

  // Bridges.
  for (const b of keys(actual.bridges)) {
    const a = actual.bridges[b]!;
    const d = desired.bridges[b];
    if (!d || d.network !== a.network) del.push({ op: 'bridge.delete', network: a.network, name: b });
    else for (const cidr of minus(a.addrs, d.addrs)) del.push({ op: 'addr.del', dev: b, cidr });
  }
  for (const [, a] of netnsDel.sort(byFirst)) del.push(a);

  // Creations and updates.
  for (const [, a] of netnsCreate.sort(byFirst)) add.push(a);
  for (const b of keys(desired.bridges)) {
    const d = desired.bridges[b]!;
    const a = actual.bridges[b];
    const fresh = !a || a.network !== d.network;
    if (fresh) add.push({ op: 'bridge.create', network: d.network, name: b, mtu: d.mtu });
    else {
      const change: LinkChange = {};
      if (d.mtu !== undefined && d.mtu !== a.mtu) change.mtu = d.mtu;
      if (!a.up) change.up = true;
      if (Object.keys(change).length) add.push({ op: 'link.set', name: b, change });
    }
    for (const cidr of fresh ? d.addrs : minus(d.addrs, a!.addrs)) add.push({ op: 'addr.add', dev: b, cidr });
  }
  // sysctls after the bridges they may name (route_localnet is per bridge)
  for (const k of keys(desired.sysctls)) {
    const want = desired.sysctls[k]!;
    if (actual.sysctls[k] !== want)
      add.push({ op: 'sysctl.set', key: k, value: want, from: actual.sysctls[k] });
  }
  add.push(...vethAdd.sort(byName));
  for (const [, actions] of nsAdd.sort(byFirst)) add.push(...actions);

  // nftables: replace the table when its skeleton differs, else element adds/deletes.
  const nft: Action[] = [];
  const dn = desired.nft;
  const an = actual.nft;
  if (!dn.skeleton) {
    if (an.skeleton) nft.push({ op: 'nft.table.delete', table });
  } else {
    const replace = an.skeleton !== undefined && an.skeleton !== dn.skeleton;
    if (!an.skeleton) nft.push({ op: 'nft.table.create', table });
    if (replace) nft.push({ op: 'nft.table.replace', table });
    const fresh = !an.skeleton || replace;
    for (const set of keys(dn.sets)) {
      const want = dn.sets[set]!;
      const have = fresh ? [] : (an.sets[set] ?? []);
      const [gone, added] = listChanges(have, want) ??
        sortedDifferences(have, want) ?? [minus(have, want), minus(want, have)];
      for (const key of gone) nft.push({ op: 'nft.element.delete', table, set, key });
      for (const key of added) nft.push({ op: 'nft.element.add', table, set, key });
    }
  }
  // Files (resolv.conf, hosts) and the resolver: after the kernel objects they describe.
  const rest: Action[] = [];
  // (Thousands of files, nearly all unchanged: sort only the ones that are not.)
  const pending = [...filesToWrite(desired.files, actual.files)];
  for (const path of pending.filter((p) => !Object.hasOwn(desired.files, p)).sort())
    rest.push({ op: 'file.delete', path });
  for (const path of pending.filter((p) => Object.hasOwn(desired.files, p)).sort())
    rest.push({
      op: 'file.write',
      path,
      content: desired.files[path]!,
      exists: Object.hasOwn(actual.files, path),
    });
  const dr = desired.resolver;
  const ar = actual.resolver;
  if (!dr) {
    if (ar) rest.push({ op: 'resolver.stop' });
  } else if (!ar?.running || ar.config !== dr.config) {
    // A resolver that serves the observed index has its parts: write the ones that differ.
    const had = ar?.running ? partHashes(ar.config) : {};
    const want = partHashes(dr.config, dr.partHashes);
    // The containers whose part hashes differ (the ones patched, when the desired index's
    // hashes were patched from the running one's).
    const names = new Set<string>();
    changedKeys(had, want, names);
    const parts: Record<string, string> = {};
    const removeParts: string[] = [];
    for (const name of [...names].sort()) {
      const now = Object.hasOwn(want, name) ? want[name] : undefined;
      const before = Object.hasOwn(had, name) ? had[name] : undefined;
      if (now !== undefined && now !== before) parts[name] = dr.parts![name]!;
      if (now === undefined && before !== undefined) removeParts.push(name);
    }
    rest.push({
      op: 'resolver.reload',
      config: dr.config,
      parts,
      removeParts: ar?.running ? removeParts : 'others',
      networks: dr.networks ?? 0,
      proxies: dr.proxies ?? 0,
      start: !ar?.running,
    });
  }
  return { actions: [...del, ...add, ...nft, ...rest] };
}

const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Container → part hash, from a resolver index (nothing from one unreadable), or as the
 * desired state gives them. The last two are kept: the observed index of one edit is the
 * desired one of the edit before.
 */
const indexes: { text: string; parts: Readonly<Record<string, string>> }[] = [];
function partHashes(
  index: string,
  given?: Readonly<Record<string, string>>,
): Readonly<Record<string, string>> {
  const known = indexes.find((x) => x.text === index);
  if (known) return known.parts;
  let parts: Readonly<Record<string, string>> = given ?? {};
  if (!given) {
    try {
      parts = (JSON.parse(index) as { parts?: Record<string, string> }).parts ?? {};
    } catch {
      /* nothing known */
    }
  }
  indexes.unshift({ text: index, parts });
  indexes.length = Math.min(indexes.length, 2);
  return parts;
}

/**
 * The files of the last two states diffed and the paths among them to write or delete: the
 * next diff looks again only at the paths whose entries changed.
 */
let lastFiles:
  | { desired: KernelState['files']; actual: KernelState['files']; pending: ReadonlySet<string> }
  | undefined;

/** The paths whose file is to be written (missing or other text) or deleted (not wanted). */
function filesToWrite(desired: KernelState['files'], actual: KernelState['files']): ReadonlySet<string> {
  const differs = (path: string) =>
    Object.hasOwn(desired, path)
      ? !Object.hasOwn(actual, path) || actual[path] !== desired[path]
      : Object.hasOwn(actual, path);
  let pending: Set<string>;
  if (lastFiles) {
    const dirty = new Set<string>();
    changedKeys(lastFiles.desired, desired, dirty);
    changedKeys(lastFiles.actual, actual, dirty);
    pending = new Set(lastFiles.pending);
    for (const path of dirty) {
      if (differs(path)) pending.add(path);
      else pending.delete(path);
    }
  } else {
    pending = new Set();
    for (const path in desired) if (differs(path)) pending.add(path);
    for (const path in actual) if (!Object.hasOwn(desired, path)) pending.add(path);
  }
  lastFiles = { desired, actual, pending };
  return pending;
}

/** One container's part of both states: its namespace and its veths (in record order). */
interface ContainerPart {
  readonly d?: NamespaceState;
  readonly a?: NamespaceState;
  readonly dVeths: readonly VethState[];
  readonly aVeths: readonly VethState[];
}

/** One container's actions, by the place they take in the plan. */
interface ContainerDiff {
  /** veth.delete, sorted by name. */
  readonly vethDel: readonly Action[];
  /** route.del and addr.del inside its surviving namespace. */
  readonly nsDel: readonly Action[];
  readonly netnsDel?: Action;
  readonly netnsCreate?: Action;
  /** veth.create and link.set of its host veths, sorted by name. */
  readonly vethAdd: readonly Action[];
  /** link.set, addr.add and route.add inside its namespace. */
  readonly nsAdd: readonly Action[];
}

/**
 * The last states diffed and their containers' actions (only containers that have some).
 * A container's actions are a function of its namespace objects and of the veth entries
 * of its own names, so a container whose objects are all the very ones of the last diff
 * has the same actions: the next diff looks again only at the containers whose objects
 * changed. The daemon keeps unchanged containers' objects (observe.ts nsStateOf,
 * desired.ts), so a reconcile after one edit diffs that container only, and finds it out
 * by identity checks, without grouping every container's objects.
 */
let last:
  | {
      desired: KernelState;
      actual: KernelState;
      diffs: ReadonlyMap<string, ContainerDiff>;
      /** Per state: container → the names of its veths. */
      vethsOf: readonly [VethsOf, VethsOf];
    }
  | undefined;
type VethsOf = Map<string, Set<string>>;

/** Container → its actions, for the containers that have some. */
function containerDiffs(desired: KernelState, actual: KernelState): ReadonlyMap<string, ContainerDiff> {
  let dirty: Set<string>;
  let vethsOf: readonly [VethsOf, VethsOf];
  if (last) {
    vethsOf = last.vethsOf;
    dirty = changedContainers(last.desired, last.actual, desired, actual, vethsOf);
  } else {
    vethsOf = [indexVeths(desired.veths), indexVeths(actual.veths)];
    dirty = new Set([
      ...Object.keys(desired.namespaces),
      ...Object.keys(actual.namespaces),
      ...vethsOf[0].keys(),
      ...vethsOf[1].keys(),
    ]);
  }
  const diffs = new Map(last?.diffs ?? []);
  // By name: when a state has two veths of a container on one network, the last by name
  // is the one its actions are about.
  const vethsIn = (s: KernelState, index: VethsOf, c: string) =>
    [...(index.get(c) ?? [])].sort().map((name) => s.veths[name]!);
  for (const c of dirty) {
    const g: ContainerPart = {
      d: Object.hasOwn(desired.namespaces, c) ? desired.namespaces[c] : undefined,
      a: Object.hasOwn(actual.namespaces, c) ? actual.namespaces[c] : undefined,
      dVeths: vethsIn(desired, vethsOf[0], c),
      aVeths: vethsIn(actual, vethsOf[1], c),
    };
    const out = containerDiff(c, g, desired.veths, actual.veths);
    const some =
      out.vethDel.length ||
      out.nsDel.length ||
      out.netnsDel ||
      out.netnsCreate ||
      out.vethAdd.length ||
      out.nsAdd.length;
    if (some) diffs.set(c, out);
    else diffs.delete(c);
  }
  last = { desired, actual, diffs, vethsOf };
  return diffs;
}

/** Container → the names of its veths in `veths`. */
function indexVeths(veths: KernelState['veths']): VethsOf {
  const index: VethsOf = new Map();
  for (const name in veths) moveVeth(index, name, undefined, veths[name]);
  return index;
}

/** Moves a veth name in an index from the container of `was` to the one of `now`. */
function moveVeth(
  index: VethsOf,
  name: string,
  was: VethState | undefined,
  now: VethState | undefined,
): void {
  if (was) {
    const names = index.get(was.container);
    names?.delete(name);
    if (names && !names.size) index.delete(was.container);
  }
  if (now) {
    const names = index.get(now.container);
    if (names) names.add(name);
    else index.set(now.container, new Set([name]));
  }
}

/**
 * The containers whose namespace objects or veth entries differ between two pairs of
 * states; the veth indexes of the first pair are moved on to the second. A veth entry that
 * changed makes every container it belongs to in any of the four states dirty: each of
 * them looks it up by name.
 */
function changedContainers(
  d0: KernelState,
  a0: KernelState,
  d1: KernelState,
  a1: KernelState,
  vethsOf: readonly [VethsOf, VethsOf],
): Set<string> {
  const dirty = new Set<string>();
  changedKeys(d0.namespaces, d1.namespaces, dirty);
  changedKeys(a0.namespaces, a1.namespaces, dirty);
  const names = new Set<string>();
  changedKeys(d0.veths, d1.veths, names);
  changedKeys(a0.veths, a1.veths, names);
  const at = (s: KernelState, n: string) => (Object.hasOwn(s.veths, n) ? s.veths[n] : undefined);
  for (const n of names) {
    const [v0, w0, v1, w1] = [at(d0, n), at(a0, n), at(d1, n), at(a1, n)];
    for (const v of [v0, w0, v1, w1]) if (v) dirty.add(v.container);
    if (v0 !== v1) moveVeth(vethsOf[0], n, v0, v1);
    if (w0 !== w1) moveVeth(vethsOf[1], n, w0, w1);
  }
  return dirty;
}

/**
 * Adds to `into` the keys whose entries differ (by identity) between two records: the
 * keys patched when `y` was patched from `x` (desired.ts, a few patches back at most),
 * else found by visiting both.
 */
function changedKeys<T>(
  x: Readonly<Record<string, T>>,
  y: Readonly<Record<string, T>>,
  into: Set<string>,
): void {
  if (x === y) return;
  const known = patchedKeys(x, y, 4);
  if (known) {
    for (const k of known) into.add(k);
    return;
  }
  for (const k in y) if (y[k] !== x[k]) into.add(k);
  for (const k in x) if (!(k in y)) into.add(k);
}

function containerDiff(
  c: string,
  { d, a, dVeths, aVeths }: ContainerPart,
  desiredVeths: KernelState['veths'],
  actualVeths: KernelState['veths'],
): ContainerDiff {
  const vethDel: Action[] = [];
  const nsDel: Action[] = [];
  const vethAdd: Action[] = [];
  const nsAdd: Action[] = [];
  const haveVeth: VethIndex = new Map(aVeths.map((v) => [epKey(v.container, v.network), v]));
  const wantVeth: VethIndex = new Map(dVeths.map((v) => [epKey(v.container, v.network), v]));

  // A namespace tether created and no longer wants, or one now attached to a user namespace.
  const dying = !!a?.netnsName && (d ? d.attached : !a.attached);

  // Veths: delete those not wanted, or wanted differently (other peer name or namespace).
  const dyingVeth = new Set<string>();
  for (const av of [...aVeths].sort((x, y) => cmp(x.name, y.name))) {
    const dv = desiredVeths[av.name];
    const peerNow = a && linkOn(a, av.network);
    const peerWant = d && linkOn(d, av.network);
    const recreate = dv && (!peerNow || !peerWant || peerNow.name !== peerWant.name || dying);
    if (!dv || recreate) {
      dyingVeth.add(av.name);
      // A dying namespace takes its veths with it: the kernel removes all of a
      // namespace's interfaces in one batch (one RCU grace period instead of one per
      // veth), which apply waits for.
      if (!dying)
        vethDel.push({ op: 'veth.delete', container: av.container, network: av.network, name: av.name });
    }
  }

  // Inside a surviving namespace: routes and addresses to remove. (An address that goes can
  // take the default route through its subnet with it: "family dev" of each.)
  const addrGone = new Set<string>();
  if (a && d && !dying) {
    for (const r of a.routes) {
      const keep = d.routes.some((x) => x.family === r.family && x.via === r.via && x.dev === r.dev);
      const linkDying = isLinkDying(a, r.dev, dyingVeth, haveVeth);
      if (!keep && !linkDying)
        nsDel.push({
          op: 'route.del',
          container: c,
          nsPath: a.path,
          family: r.family,
          via: r.via,
          dev: r.dev,
        });
    }
    for (const name of keys(a.links)) {
      const dl = d.links[name];
      if (!dl || isLinkDying(a, name, dyingVeth, haveVeth)) continue;
      for (const cidr of minus(a.links[name]!.addrs, dl.addrs)) {
        nsDel.push({ op: 'addr.del', container: c, nsPath: a.path, dev: name, cidr });
        addrGone.add(`${cidr.includes(':') ? 6 : 4} ${name}`);
      }
    }
  }
  const netnsDel: Action | undefined = dying
    ? { op: 'netns.delete', container: c, name: a!.netnsName! }
    : undefined;
  const netnsCreate: Action | undefined =
    d && !d.attached && d.netnsName && (!a || dying)
      ? { op: 'netns.create', container: c, name: d.netnsName }
      : undefined;

  if (d) {
    for (const dv of [...dVeths].sort((x, y) => cmp(x.name, y.name))) {
      const av = actualVeths[dv.name];
      const peer = linkOn(d, dv.network)!;
      if (!av || dyingVeth.has(dv.name)) {
        vethAdd.push({
          op: 'veth.create',
          container: dv.container,
          network: dv.network,
          name: dv.name,
          peer: peer.name,
          nsPath: d.path,
          master: dv.master,
          mtu: dv.mtu,
          mac: peer.mac,
          ...(peer.addrs.some((a) => a.includes(':')) ? {} : { noIpv6: true as const }),
        });
        continue;
      }
      const change: LinkChange = {};
      if (dv.master !== av.master) change.master = dv.master;
      if (dv.mtu !== undefined && dv.mtu !== av.mtu) change.mtu = dv.mtu;
      if (!av.up) change.up = true;
      if (Object.keys(change).length) vethAdd.push({ op: 'link.set', name: dv.name, change });
    }
    const live = dying ? undefined : a;
    for (const name of keys(d.links)) {
      const dl = d.links[name]!;
      const veth = wantVeth.get(epKey(c, dl.network))!;
      const fresh = !live?.links[name] || dyingVeth.has(veth.name) || !actualVeths[veth.name];
      const al = fresh ? undefined : live!.links[name]!;
      if (al) {
        const change: LinkChange = {};
        if (dl.mac && dl.mac !== al.mac) change.mac = dl.mac;
        if (dl.mtu !== undefined && dl.mtu !== al.mtu) change.mtu = dl.mtu;
        if (!al.up) change.up = true;
        if (Object.keys(change).length)
          nsAdd.push({ op: 'link.set', container: c, nsPath: d.path, name, change });
      }
      for (const cidr of al ? minus(dl.addrs, al.addrs) : dl.addrs)
        nsAdd.push({ op: 'addr.add', container: c, nsPath: d.path, dev: name, cidr });
    }
    for (const r of d.routes) {
      const fresh =
        !live?.links[r.dev] ||
        dyingVeth.has(wantVeth.get(epKey(c, d.links[r.dev]?.network ?? ''))?.name ?? '');
      // The kernel drops a route when the address it goes through is deleted: put it back
      // (route.add replaces) after the new address.
      const have =
        !fresh &&
        !addrGone.has(`${r.family} ${r.dev}`) &&
        live!.routes.some((x) => x.family === r.family && x.via === r.via && x.dev === r.dev);
      if (!have)
        nsAdd.push({
          op: 'route.add',
          container: c,
          nsPath: d.path,
          family: r.family,
          via: r.via,
          dev: r.dev,
        });
    }
  }
  return { vethDel, nsDel, netnsDel, netnsCreate, vethAdd, nsAdd };
}

/** A link of a surviving namespace whose veth is being deleted or recreated. */
function isLinkDying(
  a: NamespaceState,
  dev: string,
  dyingVeth: ReadonlySet<string>,
  haveVeth: VethIndex,
): boolean {
  const v = haveVeth.get(epKey(a.container, a.links[dev]?.network ?? ''));
  return !!v && dyingVeth.has(v.name);
}

type VethIndex = ReadonlyMap<string, VethState>;
const epKey = (container: string, network: string) => `${container}\u0000${network}`;
