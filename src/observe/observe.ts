/**
 * observe(): read what this instance owns from the kernel into the KernelState shape,
 * plus the host facts IPAM needs and the foreign names a plan must not collide with.
 *
 * Sources: one rtnetlink dump each of links, addresses and routes of the host
 * namespace; three dumps inside each container namespace (in-process through the setns
 * addon, 32 at a time; one `ip -j -batch` process each without it); one `nft -j list
 * table` per table. Any failure fails the whole observation: a partial view would plan
 * deletions. The daemon keeps the same reads in memory instead (live.ts) and shapes
 * them with the same assemble().
 *
 * Filtered out by rule: IPv6 link-local addresses (fe80::/10, kernel-made), routes
 * other than default routes in the main table of container namespaces.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { netnsEtc } from '../dns/config.js';
import { observeResolver } from '../dns/service.js';
import { BRIDGE_FAMILY, FAMILY, parseNft } from '../firewall/rules.js';
import { mapLimit } from '../kernel/exec.js';
import type { HostNetlink, NlAddr, NlLink, NlRoute } from '../kernel/netlink.js';
import { listNetns, NETNS_DIR, type NsView, readNs } from '../kernel/netns.js';
import { nftListTable } from '../kernel/nft.js';
import { readSysctl } from '../kernel/sysctl.js';
import { ObjectMemo, patchRecord, sameData } from '../model/intern.js';
import { maskedCidr } from '../model/ip.js';
import { nftTableName, parseAlias } from '../model/names.js';
import type {
  BridgeState,
  ContainerLinkState,
  KernelState,
  NamespaceState,
  NftState,
  ResolverState,
  RouteState,
  VethState,
} from '../model/state.js';
import type { HostFacts } from '../spec/ipam.js';

export interface Observation {
  readonly state: KernelState;
  /** The host's /etc/resolv.conf (containers' resolv.conf and the resolver's upstreams derive from it). */
  readonly resolvConf: string;
  readonly host: HostFacts;
  /** Names that exist but are not ours: a plan that wants them is a clash. */
  readonly foreign: {
    readonly hostLinks: readonly string[];
    readonly netns: readonly string[];
    /** container → interface names in its namespace that tether did not make (when it has any). */
    readonly nsLinks: Readonly<Record<string, readonly string[]>>;
  };
}

export const MANAGED_SYSCTLS = ['net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding'];

const isLinkLocal = (cidr: string) => /^fe[89ab][0-9a-f]:/i.test(cidr);

function hostResolvConf(): string {
  try {
    return readFileSync('/etc/resolv.conf', 'utf8');
  } catch {
    return '';
  }
}

function nameservers(text: string): string[] {
  return text
    .split('\n')
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((x): x is string => !!x && !x.includes('%'));
}

/** resolv.conf and hosts files of the instance's directories under /etc/netns (tether writes no others). */
export function ownFiles(instance: string): Record<string, string> {
  const out: Record<string, string> = {};
  const base = netnsEtc();
  if (!existsSync(base)) return out;
  for (const d of readdirSync(base)) {
    if (!d.startsWith(`${instance}-`)) continue;
    for (const f of ['resolv.conf', 'hosts']) {
      const p = join(base, d, f);
      try {
        out[p] = readFileSync(p, 'utf8');
      } catch {
        /* absent */
      }
    }
  }
  return out;
}

function ephemeralRange(): [number, number] {
  const [lo, hi] = (readSysctl('net.ipv4.ip_local_port_range') ?? '').split(/\s+/).map(Number);
  return lo && hi && lo <= hi ? [lo, hi] : [49153, 65535];
}

function ulaSeed(): string {
  try {
    return readFileSync('/etc/machine-id', 'utf8').trim() || hostname();
  } catch {
    return hostname();
  }
}

/** Namespaces to read: the instance's named ones, and attached paths the manifests name. */
export interface ObserveScope {
  readonly instance: string;
  /** container → attached namespace path (from the desired spec). */
  readonly attached: Readonly<Record<string, string>>;
}

/** A namespace to read: a named one of the instance, or an attached path of a container. */
export interface NsTarget {
  readonly name?: string;
  readonly path: string;
  /** Set for an attached path (the container is known from the manifests, not the alias). */
  readonly container?: string;
}

/** The instance's named namespaces and the attached paths the manifests name. */
export function nsTargets(
  scope: ObserveScope,
  names: Iterable<string> = instanceNetns(scope.instance),
): NsTarget[] {
  const targets: NsTarget[] = [];
  for (const n of names) targets.push({ name: n, path: `${NETNS_DIR}/${n}` });
  for (const [container, path] of Object.entries(scope.attached)) targets.push({ path, container });
  return targets;
}

/** The names in /run/netns that belong to `instance`. */
export function instanceNetns(instance: string): string[] {
  const prefix = `${instance}-`;
  return listNetns().filter((n) => n.startsWith(prefix));
}

/** Read one namespace; an attached one that does not exist (yet) is absent, a named one must read. */
export async function readTarget(t: NsTarget): Promise<NsView | undefined> {
  try {
    return await readNs(t.path);
  } catch (e) {
    if (t.container) return undefined;
    throw e;
  }
}

/** What an observation is assembled from: the host and namespaces parts shaped, nft, files. */
export interface ObservedParts {
  readonly host: HostPart;
  readonly namespaces: NamespacesPart;
  readonly nft: NftState;
  readonly files: Readonly<Record<string, string>>;
}

/** Everything, afresh: the one-shot commands' observation. */
export async function observe(nl: HostNetlink, scope: ObserveScope): Promise<Observation> {
  const [links, addrs, routes, inetTable, bridgeTable] = await Promise.all([
    nl.links(),
    nl.addrs(),
    nl.routes(),
    nftListTable(FAMILY, nftTableName(scope.instance)),
    nftListTable(BRIDGE_FAMILY, nftTableName(scope.instance)),
  ]);
  const targets = nsTargets(scope);
  const views = await mapLimit(targets, 32, readTarget);
  return assemble(scope.instance, {
    host: hostPart(scope.instance, links, addrs, routes),
    namespaces: namespacesPart(
      scope.instance,
      targets.map((target, i) => ({ target, view: views[i] })),
    ),
    nft: parseNft(inetTable, bridgeTable),
    files: ownFiles(scope.instance),
  });
}

/** The host namespace's part of an observation: what its links, addresses and routes say. */
export interface HostPart {
  readonly bridges: Readonly<Record<string, BridgeState>>;
  readonly veths: Readonly<Record<string, VethState>>;
  /** Host links that are not tether's, sorted. */
  readonly foreignLinks: readonly string[];
  /** Subnets the host's own links and link routes use (IPAM stays clear of them). */
  readonly reserved4: ReadonlySet<string>;
  readonly reserved6: ReadonlySet<string>;
}

/** The namespaces' part of an observation. */
export interface NamespacesPart {
  readonly namespaces: Readonly<Record<string, NamespaceState>>;
  /** Named namespaces of the instance's prefix that are not tether's, sorted. */
  readonly foreign: readonly string[];
  readonly nsLinks: Readonly<Record<string, readonly string[]>>;
}

/**
 * The observation from its shaped parts (hostPart: ownership by alias, IPAM's reserved
 * subnets, foreign links; namespacesPart), with the few cheap facts no event reports read
 * directly (sysctls, resolv.conf, the resolver's state). The daemon shapes the parts only
 * when what they come from changed, or patches them.
 */
export function assemble(instance: string, parts: ObservedParts): Observation {
  const { host, namespaces: ns } = parts;
  const facts = readDirectFacts(instance, Object.keys(host.bridges));
  return {
    state: {
      bridges: host.bridges,
      veths: host.veths,
      namespaces: ns.namespaces,
      sysctls: facts.sysctls,
      nft: parts.nft,
      files: parts.files,
      resolver: facts.resolver,
    },
    resolvConf: facts.resolvConf,
    host: hostFacts(host, facts),
    foreign: { hostLinks: host.foreignLinks, netns: ns.foreign, nsLinks: ns.nsLinks },
  };
}

/** IPAM's host facts; the same object while its inputs are the same (IPAM memoises on it). */
let lastFacts: { part: HostPart; facts: DirectFacts; out: HostFacts } | undefined;
function hostFacts(part: HostPart, facts: DirectFacts): HostFacts {
  const last = lastFacts;
  if (
    last?.part === part &&
    last.facts.resolvConf === facts.resolvConf &&
    last.facts.ulaSeed === facts.ulaSeed &&
    sameData(last.facts.ephemeralPorts, facts.ephemeralPorts)
  )
    return last.out;
  const reserved4 = new Set(part.reserved4);
  const reserved6 = new Set(part.reserved6);
  for (const ns of nameservers(facts.resolvConf)) {
    if (ns.includes(':')) reserved6.add(`${ns}/128`);
    else reserved4.add(`${ns}/32`);
  }
  const out: HostFacts = {
    reserved4: [...reserved4].sort(),
    reserved6: [...reserved6].sort(),
    ulaSeed: facts.ulaSeed,
    ephemeralPorts: facts.ephemeralPorts,
  };
  lastFacts = { part, facts, out };
  return out;
}

/** What a host link is to this instance, by its alias and kind. */
export interface LinkKind {
  readonly kind: 'bridge' | 'veth' | 'foreign';
  readonly name: string;
}

function linkKind(instance: string, l: NlLink): LinkKind & { alias?: ReturnType<typeof parseAlias> } {
  const a = parseAlias(instance, l.alias);
  if (a?.kind === 'net' && l.kind === 'bridge') return { kind: 'bridge', name: l.name, alias: a };
  if (a?.kind === 'ep' && l.kind === 'veth') return { kind: 'veth', name: l.name, alias: a };
  return { kind: 'foreign', name: l.name };
}

/**
 * The host part after some links changed (undefined: deleted) and nothing else did, made
 * from `part` by patching its veths and foreign names; `kinds` (index → what each link
 * was, as hostPart filled it) is brought up to date. Undefined, with `kinds` untouched,
 * when a change reaches further: a bridge (its veths' master names, its addresses), a
 * link becoming or ceasing to be tether's (its addresses and routes count as reserved or
 * not), a foreign link coming, going or renamed (it may be a veth's master).
 */
export function patchHostPart(
  instance: string,
  part: HostPart,
  changes: ReadonlyMap<number, NlLink | undefined>,
  kinds: Map<number, LinkKind>,
  linkAt: (index: number) => NlLink | undefined,
): HostPart | undefined {
  const next = new Map<number, ReturnType<typeof linkKind> | undefined>();
  for (const [index, l] of changes) {
    const was = kinds.get(index);
    const now = l && linkKind(instance, l);
    if (was?.kind === 'bridge' || now?.kind === 'bridge') return undefined;
    if (was && now && (was.kind === 'foreign') !== (now.kind === 'foreign')) return undefined;
    // A foreign link may be a veth's master (a foreign bridge): its name is in that veth's state.
    if ((was?.kind === 'foreign' || now?.kind === 'foreign') && was?.name !== now?.name) return undefined;
    next.set(index, now);
  }
  const veths = new Map<string, VethState | undefined>();
  const foreignGone = new Set<string>();
  const foreignNew: string[] = [];
  for (const [index, now] of next) {
    const was = kinds.get(index);
    if (was?.kind === 'veth') veths.set(was.name, undefined);
    else if (was?.kind === 'foreign') foreignGone.add(was.name);
    if (now?.kind === 'veth' && now.alias?.kind === 'ep') {
      const l = changes.get(index)!;
      const master = l.master ? linkAt(l.master)?.name : undefined;
      veths.set(now.name, vethStateOf(l, now.alias, master));
    } else if (now?.kind === 'foreign') foreignNew.push(now.name);
    if (now) kinds.set(index, { kind: now.kind, name: now.name });
    else kinds.delete(index);
  }
  let foreignLinks = part.foreignLinks;
  if (foreignGone.size || foreignNew.length) {
    const kept = foreignLinks.filter((n) => !foreignGone.has(n));
    foreignLinks = [...kept, ...foreignNew].sort();
  }
  return { ...part, veths: patchRecord(part.veths, veths), foreignLinks };
}

export function hostPart(
  instance: string,
  links: Iterable<NlLink>,
  addrs: Iterable<NlAddr>,
  routes: Iterable<NlRoute>,
  /** Filled with what each link is (index → kind and name), for patchHostPart. */
  kinds?: Map<number, LinkKind>,
): HostPart {
  const byIndex = new Map<number, NlLink>();
  for (const l of links) byIndex.set(l.index, l);
  const owned = new Set<number>();
  const bridges: Record<string, BridgeState> = {};
  const veths: Record<string, VethState> = {};
  const foreignLinks: string[] = [];
  const addrsOf = new Map<number, string[]>();
  for (const x of addrs) {
    if (isLinkLocal(x.cidr)) continue;
    const list = addrsOf.get(x.index);
    if (list) list.push(x.cidr);
    else addrsOf.set(x.index, [x.cidr]);
  }
  for (const l of byIndex.values()) {
    const { kind, alias: a } = linkKind(instance, l);
    kinds?.set(l.index, { kind, name: l.name });
    if (kind === 'bridge' && a?.kind === 'net') {
      owned.add(l.index);
      const mine = [...(addrsOf.get(l.index) ?? [])];
      bridges[l.name] = { name: l.name, network: a.network, mtu: l.mtu, addrs: mine.sort(), up: l.up };
    } else if (kind === 'veth' && a?.kind === 'ep') {
      owned.add(l.index);
      veths[l.name] = vethStateOf(l, a, l.master ? byIndex.get(l.master)?.name : undefined);
    } else {
      foreignLinks.push(l.name);
    }
  }

  const reserved4 = new Set<string>();
  const reserved6 = new Set<string>();
  for (const r of routes) {
    if (r.oif !== undefined && owned.has(r.oif)) continue;
    if (r.table !== 254 || r.dstLen === 0 || !r.dst || r.type !== 'UNICAST') continue;
    if (r.family === 4 && r.scope === 'LINK') reserved4.add(maskedCidr(`${r.dst}/${r.dstLen}`));
  }
  for (const a of addrs) {
    if (owned.has(a.index) || isLinkLocal(a.cidr) || a.scope === 254 /* host */) continue;
    if (byIndex.get(a.index)?.name === 'lo') continue;
    (a.family === 4 ? reserved4 : reserved6).add(maskedCidr(a.cidr));
  }
  return { bridges, veths, foreignLinks: foreignLinks.sort(), reserved4, reserved6 };
}

/** What a namespace path held when the namespaces part was shaped. */
export type NsKind = { readonly container: string } | { readonly foreign: string };

/** A namespace path to shape: its target and view (undefined: not read, or absent). */
export interface NsEntry {
  readonly target: NsTarget;
  readonly view: NsView | undefined;
}

export function namespacesPart(
  instance: string,
  entries: Iterable<NsEntry>,
  /** Filled with what each path holds, for patchNamespacesPart. */
  kinds?: Map<string, NsKind>,
): NamespacesPart {
  const namespaces: Record<string, NamespaceState> = {};
  const foreign: string[] = [];
  const nsLinks: Record<string, string[]> = {};
  for (const { target: t, view: v } of entries) {
    if (!v) continue;
    const ns = nsStateOf(instance, t, v);
    if (!ns) {
      foreign.push(t.name!);
      kinds?.set(t.path, { foreign: t.name! });
      continue;
    }
    namespaces[ns.state.container] = ns.state;
    if (ns.foreign.length) nsLinks[ns.state.container] = ns.foreign;
    kinds?.set(t.path, { container: ns.state.container });
  }
  return { namespaces, foreign: foreign.sort(), nsLinks };
}

/**
 * The namespaces part after the entries of some paths changed (undefined: the path is no
 * longer a target), made from `part` by patching; `kinds` (path → what it held, as
 * namespacesPart filled it) is brought up to date. Undefined, with `kinds` untouched, when
 * two paths claim one container (the full shape decides by target order).
 */
export function patchNamespacesPart(
  instance: string,
  part: NamespacesPart,
  changes: ReadonlyMap<string, NsEntry | undefined>,
  kinds: Map<string, NsKind>,
): NamespacesPart | undefined {
  const holder = new Map<string, string | undefined>(); // container → path, as patched
  const holderOf = (c: string) => {
    if (holder.has(c)) return holder.get(c);
    // Unchanged paths keep their containers: a container held by a path not in `changes`.
    for (const [path, k] of kinds)
      if ('container' in k && k.container === c && !changes.has(path)) return path;
    return undefined;
  };
  const now = new Map<string, { kind: NsKind; state?: ReturnType<typeof nsStateOf> } | undefined>();
  for (const [path, entry] of changes) {
    const was = kinds.get(path);
    if (was && 'container' in was) {
      // Another path that keeps this container: the full shape decides which one shows.
      if (holderOf(was.container) !== undefined) return undefined;
      holder.set(was.container, undefined);
    }
    if (!entry?.view) {
      now.set(path, undefined);
      continue;
    }
    const ns = nsStateOf(instance, entry.target, entry.view);
    now.set(
      path,
      ns ? { kind: { container: ns.state.container }, state: ns } : { kind: { foreign: entry.target.name! } },
    );
  }
  for (const [path, x] of now) {
    if (!x?.state) continue;
    const c = x.state.state.container;
    const other = holderOf(c);
    if (other !== undefined && other !== path) return undefined;
    holder.set(c, path);
  }
  const nsChanges = new Map<string, NamespaceState | undefined>();
  const linkChanges = new Map<string, readonly string[] | undefined>();
  const foreignGone = new Set<string>();
  const foreignNew: string[] = [];
  for (const path of now.keys()) {
    const was = kinds.get(path);
    if (was && 'container' in was && !nsChanges.has(was.container)) {
      nsChanges.set(was.container, undefined);
      linkChanges.set(was.container, undefined);
    } else if (was && 'foreign' in was) foreignGone.add(was.foreign);
  }
  for (const [path, x] of now) {
    if (x?.state) {
      nsChanges.set(x.state.state.container, x.state.state);
      linkChanges.set(x.state.state.container, x.state.foreign.length ? x.state.foreign : undefined);
    } else if (x && 'foreign' in x.kind) foreignNew.push(x.kind.foreign);
    if (x) kinds.set(path, x.kind);
    else kinds.delete(path);
  }
  let foreign = part.foreign;
  if (foreignGone.size || foreignNew.length)
    foreign = [...foreign.filter((n) => !foreignGone.has(n)), ...foreignNew].sort();
  return {
    namespaces: patchRecord(part.namespaces, nsChanges),
    foreign,
    nsLinks: patchRecord(part.nsLinks, linkChanges),
  };
}

/** The managed sysctls: forwarding, and route_localnet of each owned bridge. */
function readSysctls(bridges: readonly string[]): Record<string, string> {
  const sysctls: Record<string, string> = {};
  for (const k of [...MANAGED_SYSCTLS, ...bridges.map((b) => `net.ipv4.conf.${b}.route_localnet`)]) {
    const v = readSysctl(k);
    if (v !== undefined) sysctls[k] = v;
  }
  return sysctls;
}

/** What an observation reads directly every time: no notification reports their change. */
interface DirectFacts {
  readonly resolvConf: string;
  readonly sysctls: Readonly<Record<string, string>>;
  readonly resolver: ResolverState | undefined;
  readonly ulaSeed: string;
  readonly ephemeralPorts?: readonly [number, number];
}

function readDirectFacts(instance: string, bridges: readonly string[]): DirectFacts {
  return {
    resolvConf: hostResolvConf(),
    sysctls: readSysctls(bridges),
    resolver: observeResolver(instance),
    ulaSeed: ulaSeed(),
    ephemeralPorts: ephemeralRange(),
  };
}

/** Whether the directly read facts differ now from what `obs` read. */
export function directFactsChanged(instance: string, obs: Observation): boolean {
  const now = readDirectFacts(instance, Object.keys(obs.state.bridges));
  return (
    now.resolvConf !== obs.resolvConf ||
    !sameData(now.sysctls, obs.state.sysctls) ||
    !sameData(now.resolver, obs.state.resolver) ||
    now.ulaSeed !== obs.host.ulaSeed ||
    !sameData(now.ephemeralPorts, obs.host.ephemeralPorts)
  );
}

/**
 * A host veth's state, remembered per link object (the daemon keeps a link's object until
 * a notification replaces it) and master name, for the same reason as nsStateOf.
 */
const vethStates = new ObjectMemo<NlLink, VethState>();

function vethStateOf(
  l: NlLink,
  a: { container: string; network: string },
  master: string | undefined,
): VethState {
  return vethStates.of(l, [a.container, a.network, master], () => ({
    name: l.name,
    container: a.container,
    network: a.network,
    master,
    mtu: l.mtu,
    up: l.up,
  }));
}

/**
 * nsState, remembered per view: the daemon holds a namespace's view until a notification
 * makes it read the namespace again, so an unchanged namespace keeps its NamespaceState
 * object (which diff's per-container memo relies on) and costs a lookup.
 */
const nsStates = new ObjectMemo<NsView, ReturnType<typeof nsState> | undefined>();

/**
 * A namespace's state, and its foreign links; undefined for a named namespace that is not
 * tether's (its loopback carries no alias of this instance).
 */
function nsStateOf(instance: string, t: NsTarget, v: NsView): ReturnType<typeof nsState> | undefined {
  return nsStates.of(v, [instance, t.name, t.path, t.container], () => {
    let container = t.container;
    if (!container) {
      const lo = v.links.find((l) => l.ifname === 'lo');
      const a = parseAlias(instance, lo?.ifalias);
      if (a?.kind !== 'ns') return undefined;
      container = a.container;
    }
    return nsState(instance, container, t, v);
  });
}

function nsState(
  instance: string,
  container: string,
  t: NsTarget,
  v: NsView,
): { state: NamespaceState; foreign: string[] } {
  const links: Record<string, ContainerLinkState> = {};
  const foreign: string[] = [];
  for (const l of v.links) {
    const a = parseAlias(instance, l.ifalias);
    if (a?.kind === 'ep' && a.container === container) {
      links[l.ifname] = {
        name: l.ifname,
        network: a.network,
        mac: l.address?.toLowerCase(),
        mtu: l.mtu,
        addrs: l.addr_info
          .filter((x) => x.scope !== 'link' && !isLinkLocal(x.local))
          .map((x) => `${x.local}/${x.prefixlen}`)
          .sort(),
        up: l.flags.includes('UP'),
      };
    } else if (l.ifname !== 'lo') {
      foreign.push(l.ifname);
    }
  }
  const routes: RouteState[] = [];
  for (const r of v.routes) {
    if (r.dst !== 'default' || (r.table && r.table !== 'main') || !r.gateway || !r.dev || !links[r.dev])
      continue;
    if (r.type && r.type !== 'unicast') continue;
    routes.push({ family: r.gateway.includes(':') ? 6 : 4, dst: 'default', via: r.gateway, dev: r.dev });
  }
  routes.sort((a, b) => a.family - b.family);
  return {
    state: {
      container,
      netnsName: t.name,
      path: t.path,
      attached: !!t.container,
      links,
      routes,
    },
    foreign: foreign.sort(),
  };
}
