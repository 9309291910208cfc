/**
 * The desired KernelState, derived from the resolved world. Pure: after an edit the last
 * state is patched for the containers that changed, giving what a full derivation gives.
 */

import {
  type DnsSetting,
  dnsPartOf,
  dnsSetting,
  dnsWorld,
  partFile,
  type ResolverPart,
  resolverOf,
  resolverState,
} from '../dns/config.js';
import type { ProxySpec } from '../dns/proxy.js';
import { desiredSets, elementsOf, patchedSets } from '../firewall/elements.js';
import { skeletonFingerprint } from '../firewall/rules.js';
import { ObjectMemo, patchRecord, recordChanges } from '../model/intern.js';
import type { Resolved, ResolvedContainer, ResolvedNetwork } from '../model/resolved.js';
import type {
  BridgeState,
  ContainerLinkState,
  KernelState,
  NamespaceState,
  ResolverState,
  RouteState,
  VethState,
} from '../model/state.js';

/** Networks whose bridge exists: every user-defined one, and the default bridge when used. */
export function usedNetworks(r: Resolved): Set<string> {
  const used = new Set<string>();
  for (const n of Object.values(r.networks)) if (!n.spec.isDefault) used.add(n.name);
  for (const c of Object.values(r.containers)) for (const e of c.endpoints) used.add(e.network);
  return used;
}

export function desiredState(r: Resolved, hostResolvConf = ''): KernelState {
  const setting = dnsSetting(r, hostResolvConf);
  last = (last && patched(last, r, setting)) ?? full(r, hostResolvConf, setting);
  return last.state;
}

/**
 * What the last desiredState call was given and made. The next call, when only some
 * containers changed, patches it: an edit costs its containers' work, not the world's.
 */
interface Last {
  readonly r: Resolved;
  readonly setting: DnsSetting;
  readonly state: KernelState;
  /** Per default network (whose bridge exists only while used): its endpoints. */
  readonly defaultUsers: ReadonlyMap<string, number>;
}
let last: Last | undefined;

function full(r: Resolved, hostResolvConf: string, setting: DnsSetting): Last {
  const used = usedNetworks(r);
  const bridges: Record<string, BridgeState> = {};
  const bridgeOf: Record<string, string> = {};
  let v6 = false;
  for (const n of Object.values(r.networks)) {
    if (!used.has(n.name)) continue;
    const addrs: string[] = [];
    if (n.v4?.gateway && n.v4.onBridge) addrs.push(`${n.v4.gateway}/${n.v4.subnet.split('/')[1]}`);
    if (n.v6?.gateway && n.v6.onBridge) addrs.push(`${n.v6.gateway}/${n.v6.subnet.split('/')[1]}`);
    if (n.v6) v6 = true;
    bridges[n.bridge] = { name: n.bridge, network: n.name, mtu: n.spec.mtu, addrs: addrs.sort(), up: true };
    bridgeOf[n.name] = n.bridge;
  }
  const veths: Record<string, VethState> = {};
  const namespaces: Record<string, NamespaceState> = {};
  for (const c of Object.values(r.containers)) {
    if (c.mode === 'host') continue;
    const part = containerStateOf(c, r.networks);
    for (const v of part.veths) veths[v.name] = v;
    namespaces[c.name] = part.ns;
  }
  const sysctls: Record<string, string> = {};
  if (Object.keys(bridges).length) sysctls['net.ipv4.ip_forward'] = '1';
  if (v6) sysctls['net.ipv6.conf.all.forwarding'] = '1';
  // Host processes reach 127.0.0.1-bound published ports through OUTPUT DNAT, which needs
  // route_localnet on the bridge the DNAT'd packet leaves by (Docker does the same without
  // its userland proxy).
  for (const b of Object.values(bridges))
    if (b.addrs.some((a) => !a.includes(':'))) sysctls[`net.ipv4.conf.${b.name}.route_localnet`] = '1';
  const any = Object.keys(bridges).length > 0;
  const dns = dnsWorld(r, hostResolvConf);
  const state: KernelState = {
    bridges,
    veths,
    namespaces,
    sysctls,
    files: dns.files,
    resolver: resolverState(dns),
    nft: any
      ? { skeleton: skeletonFingerprint(), sets: desiredSets(r, new Set(Object.keys(bridges))) }
      : { sets: {} },
  };
  return { r, setting, state, defaultUsers: defaultUsers(r) };
}

/**
 * The last state with the containers that changed since the last world patched in, when
 * nothing else changed (the networks and the DNS setting: the bridges, sysctls and the
 * networks' elements are the same); undefined when it cannot be patched.
 */
function patched(prev: Last, r: Resolved, setting: DnsSetting): Last | undefined {
  if (r.instance !== prev.r.instance || setting.key !== prev.setting.key) return undefined;
  if (prev.r === r) return prev;
  if (recordChanges(prev.r.networks, r.networks)?.length !== 0) return undefined;
  const changed = recordChanges(prev.r.containers, r.containers);
  if (!changed) return undefined;
  const s = prev.state;
  const namespaces = new Map<string, NamespaceState | undefined>();
  const veths = new Map<string, VethState | undefined>();
  const files = new Map<string, string | undefined>();
  const dnsParts = new Map<string, ResolverPart | undefined>();
  const chosen = new Map<string, readonly ProxySpec[] | undefined>();
  let proxies = s.resolver?.proxies ?? 0;
  const gone: (readonly [string, string])[] = [];
  const added: (readonly [string, string])[] = [];
  const users = new Map(prev.defaultUsers);
  for (const name of changed) {
    const c0 = Object.hasOwn(prev.r.containers, name) ? prev.r.containers[name] : undefined;
    const c1 = Object.hasOwn(r.containers, name) ? r.containers[name] : undefined;
    for (const [c, by] of [
      [c0, -1],
      [c1, 1],
    ] as const) {
      if (!c) continue;
      for (const e of c.endpoints) if (users.has(e.network)) users.set(e.network, users.get(e.network)! + by);
      const part = c.mode === 'host' ? undefined : containerStateOf(c, r.networks);
      if (part) namespaces.set(name, by > 0 ? part.ns : undefined);
      for (const v of part?.veths ?? []) veths.set(v.name, by > 0 ? v : undefined);
      const dns = dnsPartOf(c, setting);
      for (const [path, text] of dns.files) files.set(path, by > 0 ? text : undefined);
      if (dns.resolver) {
        dnsParts.set(name, by > 0 ? dns.resolver : undefined);
        proxies += by * dns.resolver.proxies.length;
      }
      if (dns.chosen.length) chosen.set(name, by > 0 ? dns.chosen : undefined);
      (by > 0 ? added : gone).push(...elementsOf(c, r.networks));
    }
    if (!c1) namespaces.set(name, undefined);
    if (!dnsParts.get(name)) dnsParts.set(name, undefined);
    if (!chosen.get(name)) chosen.set(name, undefined);
    // A part new to an existing container would follow the others, not take its place.
    if (c0 && dnsParts.get(name) && !Object.hasOwn(s.resolver?.parts ?? {}, name)) return undefined;
    if (c0 && chosen.get(name) && !Object.hasOwn(s.resolver?.chosen ?? {}, name)) return undefined;
  }
  // A default network's bridge that comes or goes changes the bridges, sysctls and sets.
  for (const [n, k] of users) if ((k === 0) !== (prev.defaultUsers.get(n) === 0)) return undefined;
  let sets = s.nft.sets;
  if (s.nft.skeleton) {
    const patched = patchedSets(s.nft.sets, gone, added);
    if (!patched) return undefined;
    sets = patched;
  }
  const resolver = patchedResolver(prev, s.resolver, dnsParts, chosen, proxies);
  if (resolver === null) return undefined;
  const state: KernelState = {
    bridges: s.bridges,
    veths: patchRecord(s.veths, veths),
    namespaces: patchRecord(s.namespaces, namespaces),
    sysctls: s.sysctls,
    files: patchRecord(s.files, files),
    resolver,
    nft: sets === s.nft.sets ? s.nft : { ...s.nft, sets },
  };
  return { r, setting, state, defaultUsers: users };
}

/**
 * The last resolver state with some containers' parts and chosen ports replaced, holding
 * `proxies` proxies; null when it cannot be patched (a resolver that comes or goes).
 */
function patchedResolver(
  prev: Last,
  was: ResolverState | undefined,
  changes: ReadonlyMap<string, ResolverPart | undefined>,
  chosenChanges: ReadonlyMap<string, readonly ProxySpec[] | undefined>,
  proxies: number,
): ResolverState | undefined | null {
  const served = prev.setting.networks.length > 0;
  // Without served networks, a resolver is there for proxies only.
  if (!was) return served || proxies ? null : undefined;
  if (!served && !proxies) return null;
  const texts = new Map<string, string | undefined>();
  const hashes = new Map<string, string | undefined>();
  for (const [name, part] of changes) {
    const t = part && partFile(part);
    texts.set(name, t?.text);
    hashes.set(name, t?.hash);
  }
  const parts = patchRecord(was.parts ?? {}, texts);
  const partHashes = patchRecord(was.partHashes ?? {}, hashes);
  const chosen = patchRecord(was.chosen ?? {}, chosenChanges);
  if (partHashes === was.partHashes && parts === was.parts && chosen === was.chosen) return was;
  const dns = served ? { networks: prev.setting.networks, upstreams: prev.setting.upstreams } : null;
  return resolverOf(dns, parts, partHashes, chosen, proxies);
}

/** Per default network: how many endpoints are on it (its bridge exists while some are). */
function defaultUsers(r: Resolved): Map<string, number> {
  const users = new Map<string, number>();
  for (const n of Object.values(r.networks)) if (n.spec.isDefault) users.set(n.name, 0);
  for (const c of Object.values(r.containers))
    for (const e of c.endpoints) if (users.has(e.network)) users.set(e.network, users.get(e.network)! + 1);
  return users;
}

interface ContainerPart {
  readonly ns: NamespaceState;
  readonly veths: readonly VethState[];
}

/**
 * One container's namespace and host veths, remembered per resolved container (which
 * resolve() keeps while unchanged) and the networks it is on: the same objects come back,
 * and diff's own memo then skips the container.
 */
const parts = new ObjectMemo<ResolvedContainer, ContainerPart>();

function containerStateOf(c: ResolvedContainer, networks: Resolved['networks']): ContainerPart {
  const nets = c.endpoints.map((e) => networks[e.network]!);
  return parts.of(c, nets, () => containerState(c, nets));
}

function containerState(c: ResolvedContainer, nets: readonly ResolvedNetwork[]): ContainerPart {
  const links: Record<string, ContainerLinkState> = {};
  const routes: RouteState[] = [];
  const veths: VethState[] = [];
  c.endpoints.forEach((e, i) => {
    const net = nets[i]!;
    veths.push({
      name: e.hostVeth,
      container: c.name,
      network: e.network,
      master: net.bridge,
      mtu: net.spec.mtu,
      up: true,
    });
    const addrs: string[] = [];
    if (e.ipv4) addrs.push(`${e.ipv4}/${e.prefix4}`);
    if (e.ipv6) addrs.push(`${e.ipv6}/${e.prefix6}`);
    links[e.ifname] = {
      name: e.ifname,
      network: e.network,
      mac: e.mac,
      mtu: net.spec.mtu,
      addrs: addrs.sort(),
      up: true,
    };
    if (e.isGateway4 && net.v4?.routeVia)
      routes.push({ family: 4, dst: 'default', via: net.v4.routeVia, dev: e.ifname });
    if (e.isGateway6 && net.v6?.routeVia)
      routes.push({ family: 6, dst: 'default', via: net.v6.routeVia, dev: e.ifname });
  });
  const ns: NamespaceState = {
    container: c.name,
    netnsName: c.netnsName,
    path: c.netnsPath,
    attached: c.attached,
    links,
    routes,
  };
  return { ns, veths };
}
