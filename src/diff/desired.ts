/** The desired KernelState, derived from the resolved world. Pure. */

import { dnsWorld, resolverState } from '../dns/config.js';
import { desiredSets } from '../firewall/elements.js';
import { skeletonFingerprint } from '../firewall/rules.js';
import { ObjectMemo } from '../model/intern.js';
import type { Resolved, ResolvedContainer, ResolvedNetwork } from '../model/resolved.js';
import type {
  BridgeState,
  ContainerLinkState,
  KernelState,
  NamespaceState,
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
  return {
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
