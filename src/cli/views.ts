/**
 * Docker-shaped views of the resolved world: what `network inspect`, `container
 * inspect`, the ls commands and `status` print. Built after each apply from the
 * resolved manifests and the observed kernel (for MACs the kernel chose), and
 * recorded in the instance's state directory.
 */
import { freezeData } from '../model/intern.js';
import { networkId } from '../model/names.js';
import type { Resolved, ResolvedContainer, ResolvedNetwork } from '../model/resolved.js';
import type { KernelState, NamespaceState } from '../model/state.js';

export interface NetworkView {
  Name: string;
  Id: string;
  Created: string;
  Scope: 'local';
  Driver: 'bridge' | 'host' | 'null';
  EnableIPv4: boolean;
  EnableIPv6: boolean;
  IPAM: { Driver: 'default'; Options: Record<string, string>; Config: Record<string, unknown>[] };
  Internal: boolean;
  Attachable: boolean;
  Ingress: boolean;
  ConfigFrom: { Network: string };
  ConfigOnly: boolean;
  Containers: Record<
    string,
    { Name: string; EndpointID: string; MacAddress: string; IPv4Address: string; IPv6Address: string }
  >;
  Options: Record<string, string>;
  Labels: Record<string, string>;
}

export interface EndpointView {
  IPAMConfig: { IPv4Address?: string; IPv6Address?: string } | null;
  Aliases: string[];
  DNSNames: string[] | null;
  MacAddress: string;
  NetworkID: string;
  EndpointID: string;
  Gateway: string;
  IPAddress: string;
  IPPrefixLen: number;
  IPv6Gateway: string;
  GlobalIPv6Address: string;
  GlobalIPv6PrefixLen: number;
  GwPriority: number;
}

export interface ContainerView {
  Id: string;
  Name: string;
  State: { Status: string; Running: boolean };
  HostConfig: { NetworkMode: string };
  Config: { Hostname: string };
  NetworkSettings: {
    SandboxKey: string;
    Ports: Record<string, { HostIp: string; HostPort: string }[] | null>;
    Networks: Record<string, EndpointView>;
  };
}

export interface WorldView {
  instance: string;
  networks: NetworkView[];
  containers: ContainerView[];
}

const endpointId = (cid: string, net: string) =>
  `${cid.slice(0, 32)}${net.length.toString(16).padStart(2, '0')}${cid.slice(34)}`;

export type MemberView = NetworkView['Containers'][string];

/**
 * One container's view and its entries in the views of the networks it is on: what the
 * state directory keeps per container (state/record.ts).
 */
export interface ContainerRecord {
  readonly view: ContainerView;
  /** network name (or "host", "none") → the container's entry in that network's view. */
  readonly members: Readonly<Record<string, MemberView>>;
}

/**
 * Each container's record, in the order of the resolved world. (The daemon's record keeps
 * them from edit to edit by name: state/record.ts.)
 */
function containerRecords(r: Resolved, actual: KernelState): ContainerRecord[] {
  return Object.values(r.containers).map((c) =>
    containerRecord(
      c,
      c.endpoints.map((e) => r.networks[e.network]!),
      actual.namespaces[c.name],
    ),
  );
}

/**
 * A container's record: its view and its entries in its networks' views, from the networks
 * it is on and its observed namespace (for the MACs). Frozen, so that its JSON text is kept.
 */
export function containerRecord(
  c: ResolvedContainer,
  nets: readonly ResolvedNetwork[],
  ns: NamespaceState | undefined,
): ContainerRecord {
  return freezeData(makeRecord(c, nets, ns));
}

function makeRecord(
  c: ResolvedContainer,
  nets: readonly ResolvedNetwork[],
  ns: NamespaceState | undefined,
): ContainerRecord {
  const macOf = (ifname: string) => ns?.links[ifname]?.mac ?? '';
  const members: Record<string, MemberView> = {};
  const endpoints: Record<string, EndpointView> = {};
  c.endpoints.forEach((e, i) => {
    const n = nets[i]!;
    members[e.network] = {
      Name: c.name,
      EndpointID: endpointId(c.id, n.name),
      MacAddress: macOf(e.ifname),
      IPv4Address: e.ipv4 ? `${e.ipv4}/${e.prefix4}` : '',
      IPv6Address: e.ipv6 ? `${e.ipv6}/${e.prefix6}` : '',
    };
    const spec = c.spec.networks.find((a) => a.network === e.network);
    endpoints[e.network] = {
      IPAMConfig:
        spec?.ipv4Address || spec?.ipv6Address
          ? { IPv4Address: spec.ipv4Address, IPv6Address: spec.ipv6Address }
          : null,
      Aliases: [...e.aliases],
      DNSNames: n.spec.isDefault
        ? null
        : [c.name, ...e.aliases, ...(c.spec.hostname ? [c.spec.hostname] : [])],
      MacAddress: macOf(e.ifname),
      NetworkID: n.id,
      EndpointID: endpointId(c.id, e.network),
      Gateway: n.v4?.routeVia && !n.spec.internal ? (n.v4.gateway ?? '') : '',
      IPAddress: e.ipv4 ?? '',
      IPPrefixLen: e.prefix4 ?? 0,
      IPv6Gateway: n.v6?.gateway && !n.spec.internal ? n.v6.gateway : '',
      GlobalIPv6Address: e.ipv6 ?? '',
      GlobalIPv6PrefixLen: e.ipv6 ? (e.prefix6 ?? 0) : 0,
      GwPriority: e.gwPriority,
    };
  });
  if (c.mode !== 'bridge') {
    endpoints[c.mode] = emptyEndpoint(`${c.mode}`);
    members[c.mode] = {
      Name: c.name,
      EndpointID: endpointId(c.id, c.mode),
      MacAddress: '',
      IPv4Address: '',
      IPv6Address: '',
    };
  }
  const ports: ContainerView['NetworkSettings']['Ports'] = {};
  for (const p of c.ports) {
    const k = `${p.containerPort}/${p.protocol}`;
    (ports[k] ??= []).push({ HostIp: p.hostIp, HostPort: p.hostPort ? String(p.hostPort) : '' });
  }
  for (const sp of c.spec.ports) {
    for (let port = sp.target; port <= sp.targetEnd; port++) {
      const k = `${port}/${sp.protocol}`;
      if (!(k in ports)) ports[k] = null;
    }
  }
  const view: ContainerView = {
    Id: c.id,
    Name: `/${c.name}`,
    State: { Status: 'running', Running: true },
    HostConfig: { NetworkMode: c.mode === 'bridge' ? (c.spec.networks[0]?.network ?? 'bridge') : c.mode },
    Config: { Hostname: c.spec.hostname ?? c.id.slice(0, 12) },
    NetworkSettings: { SandboxKey: c.netnsPath, Ports: ports, Networks: endpoints },
  };
  return { view, members };
}

export function buildViews(r: Resolved, actual: KernelState, created: string): WorldView {
  const recs = containerRecords(r, actual);
  return {
    instance: r.instance,
    networks: networkViews(r, recs, created),
    containers: recs.map((x) => x.view),
  };
}

/** Each network's members (network name → container id → entry), from the containers' records in one pass. */
export function membersByNetwork(recs: readonly ContainerRecord[]): Map<string, NetworkView['Containers']> {
  const out = new Map<string, NetworkView['Containers']>();
  for (const x of recs) {
    for (const [network, m] of Object.entries(x.members)) {
      let members = out.get(network);
      if (!members) out.set(network, (members = {}));
      members[x.view.Id] = m;
    }
  }
  return out;
}

/** The networks' views (user-defined ones, then host and none), members from `recs`. */
export function networkViews(r: Resolved, recs: readonly ContainerRecord[], created: string): NetworkView[] {
  const members = membersByNetwork(recs);
  const membersOf = (network: string) => members.get(network) ?? {};
  const networks: NetworkView[] = [];
  for (const n of Object.values(r.networks)) {
    const config: Record<string, unknown>[] = [];
    for (const f of [n.v4, n.v6]) {
      if (!f) continue;
      const aux = Object.fromEntries(Object.entries(f.aux).filter(([k]) => !k.startsWith('DefaultGateway')));
      config.push({
        Subnet: f.subnet,
        ...(f.gateway ? { Gateway: f.gateway } : {}),
        ...(f.ipRange ? { IPRange: f.ipRange } : {}),
        ...(Object.keys(aux).length ? { AuxiliaryAddresses: aux } : {}),
      });
    }
    const options: Record<string, string> = { ...n.spec.options };
    if (n.spec.isDefault) {
      Object.assign(options, {
        'com.docker.network.bridge.default_bridge': 'true',
        'com.docker.network.bridge.enable_icc': String(n.spec.icc),
        'com.docker.network.bridge.enable_ip_masquerade': String(n.spec.masquerade),
        'com.docker.network.bridge.host_binding_ipv4': n.spec.hostBindingIpv4,
        'com.docker.network.bridge.name': n.bridge,
        'com.docker.network.driver.mtu': String(n.spec.mtu ?? 1500),
      });
    }
    networks.push({
      Name: n.name,
      Id: n.id,
      Created: created,
      Scope: 'local',
      Driver: 'bridge',
      EnableIPv4: n.spec.enableIPv4,
      EnableIPv6: n.spec.enableIPv6,
      IPAM: { Driver: 'default', Options: {}, Config: config },
      Internal: n.spec.internal,
      Attachable: false,
      Ingress: false,
      ConfigFrom: { Network: '' },
      ConfigOnly: false,
      Containers: membersOf(n.name),
      Options: options,
      Labels: { ...n.spec.labels },
    });
  }
  for (const [name, driver] of [
    ['host', 'host'],
    ['none', 'null'],
  ] as const) {
    networks.push({
      Name: name,
      Id: networkId(r.instance, name),
      Created: created,
      Scope: 'local',
      Driver: driver,
      EnableIPv4: true,
      EnableIPv6: false,
      IPAM: { Driver: 'default', Options: {}, Config: [] },
      Internal: false,
      Attachable: false,
      Ingress: false,
      ConfigFrom: { Network: '' },
      ConfigOnly: false,
      Containers: membersOf(name),
      Options: {},
      Labels: {},
    });
  }
  return networks;
}

function emptyEndpoint(net: string): EndpointView {
  return {
    IPAMConfig: null,
    Aliases: [],
    DNSNames: null,
    MacAddress: '',
    NetworkID: net,
    EndpointID: '',
    Gateway: '',
    IPAddress: '',
    IPPrefixLen: 0,
    IPv6Gateway: '',
    GlobalIPv6Address: '',
    GlobalIPv6PrefixLen: 0,
    GwPriority: 0,
  };
}

/**
 * The object `ref` names, as Docker looks one up: a full ID, else a name, else an ID prefix
 * that only one object has (an ambiguous prefix names none). A name that is also the start
 * of another object's ID (container "a", an ID "a09d…") is the name.
 */
export function lookUp<T>(
  items: readonly T[],
  ref: string,
  nameOf: (x: T) => string,
  idOf: (x: T) => string,
): T | undefined {
  const byId = items.find((x) => idOf(x) === ref) ?? items.find((x) => nameOf(x) === ref);
  if (byId || !ref) return byId;
  const prefixed = items.filter((x) => idOf(x).startsWith(ref));
  return prefixed.length === 1 ? prefixed[0] : undefined;
}
