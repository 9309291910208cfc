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
import { ObjectMemo, sameData } from '../model/intern.js';
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
    /** container → interface names in its namespace that tether did not make. */
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

/** What observe() reads from the kernel, before it is shaped into a KernelState. */
export interface RawObservation {
  readonly links: readonly NlLink[];
  readonly addrs: readonly NlAddr[];
  readonly routes: readonly NlRoute[];
  readonly nft: NftState;
  /** The namespaces read, each with its view (undefined: an attached path that is absent). */
  readonly namespaces: readonly { readonly target: NsTarget; readonly view: NsView | undefined }[];
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
    links,
    addrs,
    routes,
    nft: parseNft(inetTable, bridgeTable),
    namespaces: targets.map((target, i) => ({ target, view: views[i] })),
    files: ownFiles(scope.instance),
  });
}

/**
 * Shape what was read into the observation: ownership by alias, IPAM's reserved subnets,
 * foreign names. Also reads the few cheap facts no event reports (sysctls, resolv.conf,
 * the resolver's state). Pure but for those reads.
 */
export function assemble(instance: string, raw: RawObservation): Observation {
  const { links, addrs, routes } = raw;
  const byIndex = new Map(links.map((l) => [l.index, l]));
  const owned = new Set<number>();
  const bridges: Record<string, BridgeState> = {};
  const veths: Record<string, VethState> = {};
  const foreignHost: string[] = [];
  const addrsOf = new Map<number, string[]>();
  for (const x of addrs) {
    if (isLinkLocal(x.cidr)) continue;
    const list = addrsOf.get(x.index);
    if (list) list.push(x.cidr);
    else addrsOf.set(x.index, [x.cidr]);
  }
  for (const l of links) {
    const a = parseAlias(instance, l.alias);
    if (a?.kind === 'net' && l.kind === 'bridge') {
      owned.add(l.index);
      const mine = [...(addrsOf.get(l.index) ?? [])];
      bridges[l.name] = { name: l.name, network: a.network, mtu: l.mtu, addrs: mine.sort(), up: l.up };
    } else if (a?.kind === 'ep' && l.kind === 'veth') {
      owned.add(l.index);
      veths[l.name] = vethStateOf(l, a, l.master ? byIndex.get(l.master)?.name : undefined);
    } else {
      foreignHost.push(l.name);
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
  const facts = readDirectFacts(instance, Object.keys(bridges));
  const resolvConf = facts.resolvConf;
  for (const ns of nameservers(resolvConf)) {
    if (ns.includes(':')) reserved6.add(`${ns}/128`);
    else reserved4.add(`${ns}/32`);
  }

  const namespaces: Record<string, NamespaceState> = {};
  const foreignNetns: string[] = [];
  const nsLinks: Record<string, string[]> = {};
  for (const { target: t, view: v } of raw.namespaces) {
    if (!v) continue;
    const ns = nsStateOf(instance, t, v);
    if (!ns) {
      foreignNetns.push(t.name!);
      continue;
    }
    namespaces[ns.state.container] = ns.state;
    nsLinks[ns.state.container] = ns.foreign;
  }

  return {
    state: {
      bridges,
      veths,
      namespaces,
      sysctls: facts.sysctls,
      nft: raw.nft,
      files: raw.files,
      resolver: facts.resolver,
    },
    resolvConf,
    host: {
      reserved4: [...reserved4].sort(),
      reserved6: [...reserved6].sort(),
      ulaSeed: facts.ulaSeed,
      ephemeralPorts: facts.ephemeralPorts,
    },
    foreign: { hostLinks: foreignHost.sort(), netns: foreignNetns.sort(), nsLinks },
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
