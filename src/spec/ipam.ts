/**
 * IPAM with Docker's behaviour (shared/docker-semantics.md §2), plus stickiness:
 *
 * - Subnets: explicit ones as given; otherwise the subnet already on the network's bridge
 *   (kept across re-apply and restarts); otherwise the first subnet of the default pools
 *   (172.17/16 for the default bridge, then 172.18/16, 172.19/16, 172.20/14 split in /16s,
 *   …, 192.168/16 split in /20s) that overlaps neither another network nor a host on-link
 *   route or address. IPv6 without a subnet gets a /64 of a per-host ULA /48.
 * - Gateway: explicit, else the first address of ip_range, else network+1.
 * - Container addresses: static ones as given; then addresses already on the kernel are
 *   kept; then the lowest free address of ip_range (or the subnet).
 *
 * Pure: observed facts come in as arguments.
 */
import { SpecError, type SpecProblem } from '../model/errors.js';
import {
  addrOf,
  type Cidr,
  contains,
  type Family,
  firstAddr,
  formatCidr,
  formatIp,
  lastAddr,
  maskedCidr,
  overlaps,
  parseCidr,
  parseIp,
} from '../model/ip.js';
import { bridgeName, containerId, netnsName, networkId, sha256hex, vethName } from '../model/names.js';
import type {
  FamilyConfig,
  Resolved,
  ResolvedContainer,
  ResolvedEndpoint,
  ResolvedNetwork,
  ResolvedPort,
} from '../model/resolved.js';
import type { IpamRequest, NetworkSpec, Spec } from '../model/spec.js';
import type { KernelState } from '../model/state.js';

/** What the host looks like, as far as IPAM cares. */
export interface HostFacts {
  /** On-link route and address prefixes of interfaces tether does not own (IPv4), plus nameservers. */
  readonly reserved4: readonly string[];
  readonly reserved6: readonly string[];
  /** Seed of the per-host ULA prefix (e.g. /etc/machine-id). */
  readonly ulaSeed: string;
}

/** Docker's local-scope default pools, in order (§2.1). */
export const DEFAULT_POOLS: readonly { base: string; size: number }[] = [
  { base: '172.17.0.0/16', size: 16 },
  { base: '172.18.0.0/16', size: 16 },
  { base: '172.19.0.0/16', size: 16 },
  { base: '172.20.0.0/14', size: 16 },
  { base: '172.24.0.0/14', size: 16 },
  { base: '172.28.0.0/14', size: 16 },
  { base: '192.168.0.0/16', size: 20 },
];

/** The per-host ULA /48 (§2.3): fd00::/8 + 40 bits of SHA-256 of the seed. */
export function ulaBase(seed: string): string {
  const gid = BigInt(`0x${sha256hex(seed).slice(0, 16)}`) & ((1n << 40n) - 1n);
  const addr = (0xfdn << 120n) | (gid << 80n);
  return formatCidr({ family: 6, addr, len: 48 });
}

function* poolSubnets(pools: readonly { base: string; size: number }[]): Generator<Cidr> {
  for (const p of pools) {
    const base = parseCidr(p.base);
    if (p.size < base.len) continue;
    const step = 1n << BigInt((base.family === 4 ? 32 : 128) - p.size);
    for (let a = firstAddr(base); a <= lastAddr(base); a += step) yield { family: base.family, addr: a, len: p.size };
  }
}

interface Taken {
  cidr: string;
}

function pickSubnet(candidates: Iterable<Cidr>, taken: readonly Taken[], reserved: readonly string[]): string | undefined {
  for (const c of candidates) {
    if (taken.some((t) => overlaps(t.cidr, c))) continue;
    if (reserved.some((r) => overlaps(r, c))) continue;
    return formatCidr(c);
  }
  return undefined;
}

/** The IPv4/IPv6 addresses an observed bridge of this network carries, if any. */
function observedBridgeAddr(actual: KernelState, network: string, family: Family): string | undefined {
  for (const b of Object.values(actual.bridges)) {
    if (b.network !== network) continue;
    const a = b.addrs.find((x) => (family === 6) === x.includes(':') && !x.toLowerCase().startsWith('fe80:'));
    if (a) return a;
  }
  return undefined;
}

function wantsGateway(net: NetworkSpec, family: Family): boolean {
  const mode = family === 4 ? net.gatewayModeV4 : net.gatewayModeV6;
  if (mode === 'isolated') return false;
  if (family === 4 && net.inhibitIpv4 && net.internal) return false;
  return true;
}

function resolveFamily(
  net: NetworkSpec,
  family: Family,
  req: IpamRequest,
  actual: KernelState,
  taken: Taken[],
  pick: () => string | undefined,
  problems: SpecProblem[],
): FamilyConfig | undefined {
  let subnet = req.subnet ? maskedCidr(req.subnet) : undefined;
  let gateway = req.gateway;
  if (!subnet) {
    const seen = observedBridgeAddr(actual, net.name, family);
    const seenNet = seen ? maskedCidr(seen) : undefined;
    if (seen && seenNet && !taken.some((t) => overlaps(t.cidr, seenNet))) {
      subnet = seenNet;
      gateway ??= addrOf(seen);
    } else {
      subnet = pick();
    }
  }
  if (!subnet) {
    problems.push({
      message: `network '${net.name}': all predefined address pools have been fully subnetted (IPv${family})`,
      src: net.src,
    });
    return undefined;
  }
  taken.push({ cidr: subnet });
  const c = parseCidr(subnet);
  const hasGw = wantsGateway(net, family);
  if (hasGw && !gateway) {
    if (req.ipRange) gateway = formatIp(firstAddr(parseCidr(req.ipRange)), family);
    else gateway = formatIp(firstAddr(c) + 1n, family);
  }
  const onBridge = hasGw && !(family === 4 && net.inhibitIpv4);
  const defGw = family === 4 ? req.aux.DefaultGatewayIPv4 : req.aux.DefaultGatewayIPv6;
  return {
    subnet,
    ipRange: req.ipRange ? maskedCidr(req.ipRange) : undefined,
    gateway: hasGw ? gateway : undefined,
    onBridge,
    routeVia: net.internal ? undefined : (defGw ?? (hasGw ? gateway : undefined)),
    aux: req.aux,
  };
}

/** Allocates addresses within one network family. */
class Pool {
  private readonly used = new Set<bigint>();
  private readonly subnet: Cidr;
  private readonly range: Cidr;
  private cursor: bigint;
  constructor(
    readonly family: Family,
    cfg: FamilyConfig,
  ) {
    this.subnet = parseCidr(cfg.subnet);
    this.range = cfg.ipRange ? parseCidr(cfg.ipRange) : this.subnet;
    const first = firstAddr(this.subnet);
    const last = lastAddr(this.subnet);
    const tiny = family === 4 && this.subnet.len >= 31;
    if (!tiny) this.used.add(first); // network address (and IPv6 subnet-router anycast)
    if (family === 4 && !tiny) this.used.add(last); // broadcast
    if (cfg.gateway) this.used.add(parseIp(cfg.gateway));
    for (const a of Object.values(cfg.aux)) if (contains(this.subnet, a)) this.used.add(parseIp(a));
    this.cursor = firstAddr(this.range);
  }
  inSubnet(ip: string): boolean {
    return contains(this.subnet, ip);
  }
  inRange(ip: string): boolean {
    return contains(this.range, ip);
  }
  isFree(ip: string): boolean {
    return !this.used.has(parseIp(ip));
  }
  take(ip: string): void {
    this.used.add(parseIp(ip));
  }
  next(): string | undefined {
    const last = lastAddr(this.range);
    for (let a = this.cursor; a <= last; a++) {
      if (!this.used.has(a)) {
        this.used.add(a);
        this.cursor = a + 1n;
        return formatIp(a, this.family);
      }
    }
    return undefined;
  }
  get prefix(): number {
    return this.subnet.len;
  }
}

/** Resolve a loaded Spec against the observed host into the desired world. */
export function resolve(spec: Spec, instance: string, actual: KernelState, host: HostFacts): Resolved {
  const problems: SpecProblem[] = [];
  const pools4 = spec.daemon.defaultAddressPools ?? DEFAULT_POOLS;
  const ula = ulaBase(host.ulaSeed);
  const networks: Record<string, ResolvedNetwork> = {};
  const taken4: Taken[] = [];
  const taken6: Taken[] = [];
  const nets = Object.values(spec.networks);

  // Explicit subnets first, so automatic picks never land on them (Docker checks pools the same way).
  for (const n of nets) {
    if (n.enableIPv4 && n.ipam4.subnet) taken4.push({ cidr: maskedCidr(n.ipam4.subnet) });
    if (n.enableIPv6 && n.ipam6.subnet) taken6.push({ cidr: maskedCidr(n.ipam6.subnet) });
  }
  const explicit4 = taken4.length;
  const explicit6 = taken6.length;
  // Sticky subnets next: a network that already has a bridge keeps its subnet.
  for (const n of nets) {
    if (n.enableIPv4 && !n.ipam4.subnet) {
      const seen = observedBridgeAddr(actual, n.name, 4);
      if (seen && !taken4.some((t) => overlaps(t.cidr, maskedCidr(seen)))) taken4.push({ cidr: maskedCidr(seen) });
    }
    if (n.enableIPv6 && !n.ipam6.subnet) {
      const seen = observedBridgeAddr(actual, n.name, 6);
      if (seen && !taken6.some((t) => overlaps(t.cidr, maskedCidr(seen)))) taken6.push({ cidr: maskedCidr(seen) });
    }
  }
  // From here on `taken` grows as networks are resolved; drop the sticky entries so each
  // network re-claims its own (and no other network can take it).
  const stickyOnly4 = taken4.splice(explicit4);
  const stickyOnly6 = taken6.splice(explicit6);

  for (const n of nets) {
    const others4 = () => [...taken4, ...stickyOnly4.filter((s) => s.cidr !== maskedCidr(observedBridgeAddr(actual, n.name, 4) ?? '0.0.0.0/32'))];
    const others6 = () => [...taken6, ...stickyOnly6.filter((s) => s.cidr !== maskedCidr(observedBridgeAddr(actual, n.name, 6) ?? '::/128'))];
    const v4 = n.enableIPv4
      ? resolveFamily(
          n,
          4,
          n.ipam4.subnet ? n.ipam4 : n.ipam4,
          actual,
          taken4,
          () => pickSubnet(poolSubnets(pools4), others4(), host.reserved4),
          problems,
        )
      : undefined;
    const v6 = n.enableIPv6
      ? resolveFamily(
          n,
          6,
          n.ipam6,
          actual,
          taken6,
          () => pickSubnet(poolSubnets([{ base: ula, size: 64 }]), others6(), host.reserved6),
          problems,
        )
      : undefined;
    networks[n.name] = {
      name: n.name,
      id: networkId(instance, n.name),
      bridge: bridgeName(instance, n.name, n.isDefault, n.bridgeName),
      spec: n,
      v4,
      v6,
    };
  }

  const pools = new Map<string, { v4?: Pool; v6?: Pool }>();
  for (const n of Object.values(networks)) {
    pools.set(n.name, { v4: n.v4 && new Pool(4, n.v4), v6: n.v6 && new Pool(6, n.v6) });
  }
  const ctrs = Object.values(spec.containers);

  // Pass 1: static addresses.
  for (const c of ctrs) {
    for (const a of c.networks) {
      const p = pools.get(a.network);
      if (!p) continue;
      for (const [fam, ip] of [
        [p.v4, a.ipv4Address],
        [p.v6, a.ipv6Address],
      ] as const) {
        if (!ip || !fam) continue;
        if (!fam.inSubnet(ip)) {
          problems.push({ message: `container '${c.name}': no configured subnet of network '${a.network}' contains IP address ${ip}`, src: a.src });
        } else if (!fam.isFree(ip)) {
          problems.push({ message: `container '${c.name}': address ${ip} on network '${a.network}' is already in use`, src: a.src });
        } else fam.take(ip);
      }
    }
  }

  // Pass 2: keep addresses already on the kernel. Pass 3: lowest free.
  const chosen = new Map<string, { v4?: string; v6?: string }>();
  const key = (c: string, n: string) => `${c}\u0000${n}`;
  for (const c of ctrs) {
    const ns = actual.namespaces[c.name];
    for (const a of c.networks) {
      const p = pools.get(a.network);
      if (!p) continue;
      const link = ns && Object.values(ns.links).find((l) => l.network === a.network);
      const got: { v4?: string; v6?: string } = { v4: a.ipv4Address, v6: a.ipv6Address };
      for (const cidr of link?.addrs ?? []) {
        const ip = addrOf(cidr);
        const fam = ip.includes(':') ? p.v6 : p.v4;
        const slot = ip.includes(':') ? 'v6' : 'v4';
        if (!fam || got[slot] || ip.toLowerCase().startsWith('fe80:')) continue;
        if (fam.inSubnet(ip) && fam.inRange(ip) && fam.isFree(ip)) {
          fam.take(ip);
          got[slot] = ip;
        }
      }
      chosen.set(key(c.name, a.network), got);
    }
  }
  for (const c of ctrs) {
    for (const a of c.networks) {
      const p = pools.get(a.network);
      const got = chosen.get(key(c.name, a.network));
      if (!p || !got) continue;
      if (p.v4 && !got.v4) {
        got.v4 = p.v4.next();
        if (!got.v4) problems.push({ message: `network '${a.network}': no available IPv4 addresses for container '${c.name}'`, src: a.src });
      }
      if (p.v6 && !got.v6) {
        got.v6 = p.v6.next();
        if (!got.v6) problems.push({ message: `network '${a.network}': no available IPv6 addresses for container '${c.name}'`, src: a.src });
      }
    }
  }

  const containers: Record<string, ResolvedContainer> = {};
  for (const c of ctrs) {
    const ns = actual.namespaces[c.name];
    const endpoints: ResolvedEndpoint[] = [];
    const usedNames = new Set<string>();
    // Sticky interface names: an endpoint already in the namespace keeps its name.
    const sticky = new Map<string, string>();
    for (const l of Object.values(ns?.links ?? {})) sticky.set(l.network, l.name);
    for (const a of c.networks) {
      const want = a.interfaceName ?? sticky.get(a.network);
      if (want && !usedNames.has(want)) usedNames.add(want);
    }
    for (const a of c.networks) {
      const net = networks[a.network];
      if (!net) continue;
      let ifname = a.interfaceName ?? sticky.get(a.network);
      if (!ifname || (ifname !== a.interfaceName && endpoints.some((e) => e.ifname === ifname))) {
        let i = 0;
        while (usedNames.has(`${net.spec.ifacePrefix}${i}`)) i++;
        ifname = `${net.spec.ifacePrefix}${i}`;
        usedNames.add(ifname);
      }
      const got = chosen.get(key(c.name, a.network)) ?? {};
      endpoints.push({
        network: a.network,
        ifname,
        hostVeth: vethName(instance, c.name, a.network),
        mac: a.macAddress?.toLowerCase(),
        ipv4: got.v4,
        ipv6: got.v6,
        prefix4: net.v4 ? parseCidr(net.v4.subnet).len : undefined,
        prefix6: net.v6 ? parseCidr(net.v6.subnet).len : undefined,
        aliases: a.aliases,
        gwPriority: a.gwPriority,
        isGateway4: false,
        isGateway6: false,
      });
    }
    const gw4 = pickGateway(endpoints, networks, 4);
    const gw6 = pickGateway(endpoints, networks, 6);
    const eps = endpoints.map((e) => ({ ...e, isGateway4: e === gw4, isGateway6: e === gw6 }));
    const created = c.mode !== 'host' && !c.netns;
    containers[c.name] = {
      name: c.name,
      id: containerId(instance, c.name),
      spec: c,
      mode: c.mode,
      netnsName: created ? netnsName(instance, c.name) : undefined,
      netnsPath: c.mode === 'host' ? '' : (c.netns ?? `/run/netns/${netnsName(instance, c.name)}`),
      attached: !!c.netns,
      endpoints: eps,
      ports: resolvePorts(c.ports, eps, networks),
    };
  }
  if (problems.length) throw new SpecError(problems);
  return { instance, spec, networks, containers };
}

/**
 * Docker's `Endpoint.Less` (§3.4): gw_priority desc, non-internal first, dual-stack first,
 * then network name. The first endpoint with a route for the family wins.
 */
function pickGateway(
  eps: ResolvedEndpoint[],
  networks: Record<string, ResolvedNetwork>,
  family: Family,
): ResolvedEndpoint | undefined {
  const score = (e: ResolvedEndpoint) => {
    const n = networks[e.network]!;
    return (n.v4?.routeVia ? 1 : 0) + (n.v6?.routeVia ? 1 : 0);
  };
  const sorted = [...eps].sort((a, b) => {
    const na = networks[a.network]!;
    const nb = networks[b.network]!;
    if (a.gwPriority !== b.gwPriority) return b.gwPriority - a.gwPriority;
    if (na.spec.internal !== nb.spec.internal) return na.spec.internal ? 1 : -1;
    if (score(a) !== score(b)) return score(b) - score(a);
    return a.network < b.network ? -1 : a.network > b.network ? 1 : 0;
  });
  return sorted.find((e) => {
    const n = networks[e.network]!;
    const fc = family === 4 ? n.v4 : n.v6;
    const addr = family === 4 ? e.ipv4 : e.ipv6;
    return !!fc?.routeVia && !!addr;
  });
}

/**
 * Published ports with explicit host ports. Ephemeral host ports are chosen by the
 * firewall layer (it knows which are taken); here they are marked with hostPort 0.
 */
function resolvePorts(
  ports: Spec['containers'][string]['ports'],
  eps: readonly ResolvedEndpoint[],
  networks: Record<string, ResolvedNetwork>,
): ResolvedPort[] {
  const gw = eps.find((e) => e.isGateway4) ?? eps.find((e) => e.isGateway6);
  if (!gw) return [];
  const net = networks[gw.network]!;
  const out: ResolvedPort[] = [];
  for (const p of ports) {
    const n = p.targetEnd - p.target + 1;
    for (let i = 0; i < n; i++) {
      const hostPort = p.published === undefined ? 0 : p.publishedEnd !== undefined && p.publishedEnd - p.published + 1 === n ? p.published + i : p.published;
      out.push({
        protocol: p.protocol,
        containerPort: p.target + i,
        hostPort,
        hostIp: p.hostIp ?? net.spec.hostBindingIpv4,
        ephemeral: p.published === undefined,
      });
    }
  }
  return out;
}

export { formatIp };
