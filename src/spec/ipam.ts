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
 * Pure: observed facts come in as arguments. After an edit, the containers that changed
 * get their addresses in the pools as the last resolve left them (see patched), when that
 * gives what a full resolve gives.
 */
import { SpecError, type SpecProblem } from '../model/errors.js';
import {
  freezeData,
  internRecord,
  keepIfSame,
  ObjectMemo,
  patchedKeys,
  patchRecord,
  recordChanges,
  sameData,
} from '../model/intern.js';
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
import type { ContainerSpec, IpamRequest, NetworkSpec, Spec } from '../model/spec.js';
import type { KernelState, NamespaceState } from '../model/state.js';
import { macOfIpv4 } from './defaults.js';

/** What the host looks like, as far as IPAM cares. */
export interface HostFacts {
  /** On-link route and address prefixes of interfaces tether does not own (IPv4), plus nameservers. */
  readonly reserved4: readonly string[];
  readonly reserved6: readonly string[];
  /** Seed of the per-host ULA prefix (e.g. /etc/machine-id). */
  readonly ulaSeed: string;
  /** net.ipv4.ip_local_port_range (Docker's ephemeral range); default 32768-60999. */
  readonly ephemeralPorts?: readonly [number, number];
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

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
    for (let a = firstAddr(base); a <= lastAddr(base); a += step)
      yield { family: base.family, addr: a, len: p.size };
  }
}

/** The first candidate that overlaps neither a claimed subnet nor a reserved host prefix. */
function pickSubnet(
  candidates: Iterable<Cidr>,
  taken: readonly string[],
  reserved: readonly string[],
): string | undefined {
  for (const c of candidates) {
    if (taken.some((t) => overlaps(t, c))) continue;
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

/**
 * One family of one network: the subnet (explicit, else kept from the bridge, else the
 * first free pool subnet), the gateway and where containers' default route points.
 */
function resolveFamily(
  net: NetworkSpec,
  family: Family,
  req: IpamRequest,
  claims: Claims,
  pick: (claimed: readonly string[]) => string | undefined,
  problems: SpecProblem[],
): FamilyConfig | undefined {
  const sticky = claims.sticky.get(net.name);
  const subnet = req.subnet ? maskedCidr(req.subnet) : sticky ? maskedCidr(sticky) : pick(claims.all());
  if (!subnet) {
    problems.push({
      message: `network '${net.name}': all predefined address pools have been fully subnetted (IPv${family})`,
      src: net.src,
    });
    return undefined;
  }
  claims.picked.push(subnet);
  const c = parseCidr(subnet);
  const hasGw = wantsGateway(net, family);
  let gateway = req.gateway ?? (sticky && !req.subnet ? addrOf(sticky) : undefined);
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

/**
 * Subnets spoken for, per family: explicit ones; then the subnet each network's bridge
 * already carries (kept unless it now overlaps an explicit one or another kept one); then
 * the ones picked so far.
 */
class Claims {
  readonly explicit: string[] = [];
  /** network → the address its bridge carries ("172.18.0.1/16"). */
  readonly sticky = new Map<string, string>();
  readonly picked: string[] = [];
  all(): string[] {
    return [...this.explicit, ...[...this.sticky.values()].map(maskedCidr), ...this.picked];
  }
  static of(nets: readonly NetworkSpec[], actual: KernelState, family: Family): Claims {
    const c = new Claims();
    const on = (n: NetworkSpec) => (family === 4 ? n.enableIPv4 : n.enableIPv6);
    const req = (n: NetworkSpec) => (family === 4 ? n.ipam4 : n.ipam6);
    for (const n of nets) if (on(n) && req(n).subnet) c.explicit.push(maskedCidr(req(n).subnet!));
    for (const n of nets) {
      if (!on(n) || req(n).subnet) continue;
      const seen = observedBridgeAddr(actual, n.name, family);
      if (seen && !c.all().some((t) => overlaps(t, maskedCidr(seen)))) c.sticky.set(n.name, seen);
    }
    return c;
  }
}

/** Allocates addresses within one network family, and knows which container holds each. */
class Pool {
  /** Addresses no container can get: the network's own, the gateway, aux addresses. */
  private readonly reserved = new Set<bigint>();
  /** Address → the container holding it. */
  private readonly owner = new Map<bigint, string>();
  private readonly subnet: Cidr;
  /** First and last address of the subnet and of the range. */
  private readonly bounds: readonly [bigint, bigint, bigint, bigint];
  /** Every address of the range below it is reserved or held (where the lowest free one is looked for). */
  private floor: bigint;
  constructor(
    readonly family: Family,
    cfg: FamilyConfig,
  ) {
    this.subnet = parseCidr(cfg.subnet);
    const range = cfg.ipRange ? parseCidr(cfg.ipRange) : this.subnet;
    const first = firstAddr(this.subnet);
    const last = lastAddr(this.subnet);
    const tiny = family === 4 && this.subnet.len >= 31;
    if (!tiny) this.reserved.add(first); // network address (and IPv6 subnet-router anycast)
    if (family === 4 && !tiny) this.reserved.add(last); // broadcast
    if (cfg.gateway) this.reserved.add(parseIp(cfg.gateway));
    for (const a of Object.values(cfg.aux)) if (contains(this.subnet, a)) this.reserved.add(parseIp(a));
    this.bounds = [first, last, firstAddr(range), lastAddr(range)];
    this.floor = firstAddr(range);
  }
  inSubnet(ip: string): boolean {
    return contains(this.subnet, ip);
  }
  private used(v: bigint): boolean {
    return this.reserved.has(v) || this.owner.has(v);
  }
  /** The container holding `v`, if any. */
  holder(v: bigint): string | undefined {
    return this.owner.get(v);
  }
  isFree(ip: string): boolean {
    return !this.used(parseIp(ip));
  }
  take(v: bigint, by: string): void {
    this.owner.set(v, by);
  }
  release(v: bigint): void {
    this.owner.delete(v);
    if (v < this.floor && v >= this.bounds[2]) this.floor = v;
  }
  /** Takes the address `v` (of this pool's family) if it is in the subnet, in the range and free. */
  keepValue(v: bigint, by: string): boolean {
    const [first, last, rangeFirst, rangeLast] = this.bounds;
    if (v < first || v > last || v < rangeFirst || v > rangeLast || this.used(v)) return false;
    this.owner.set(v, by);
    return true;
  }
  /** The lowest free address of the range, taken. */
  next(by: string): bigint | undefined {
    for (let a = this.floor; a <= this.bounds[3]; a++) {
      if (!this.used(a)) {
        this.owner.set(a, by);
        this.floor = a + 1n;
        return a;
      }
    }
    return undefined;
  }
}

interface FamilyPools {
  readonly v4?: Pool;
  readonly v6?: Pool;
}

/** Per attachment of a container (in order): the addresses chosen, or undefined off any network. */
type Chosen = ({ v4?: string; v6?: string } | undefined)[];

/** One container's addresses, as IPAM gave them. */
interface Held {
  readonly chosen: Chosen;
  /** Each address held, with its pool. */
  readonly values: readonly (readonly [Pool, bigint])[];
  /**
   * Its addresses depend on the other containers': one came from the free ones (where
   * the containers before it took theirs), or a kernel address it has was another's.
   */
  readonly entangled: boolean;
}

/**
 * What the last resolve() of an instance was given and made, with the address pools as
 * it left them: the next one, when only some containers changed, gives those containers
 * their addresses in these pools instead of redoing every container's.
 */
interface Ipam {
  readonly spec: Spec;
  readonly actual: KernelState;
  readonly host: HostFacts;
  readonly result: Resolved;
  readonly pools: ReadonlyMap<string, FamilyPools>;
  readonly held: Map<string, Held>;
  /** The containers whose Held is entangled. */
  readonly entangled: Set<string>;
  /** Some container has a binding whose host port is chosen (then ports are allocated across all). */
  readonly ephemeral: boolean;
}
const lastIpam = new Map<string, Ipam>();

/** Resolve a loaded Spec against the observed host into the desired world. */
export function resolve(spec: Spec, instance: string, actual: KernelState, host: HostFacts): Resolved {
  const prev = lastIpam.get(instance);
  // Until it succeeds, nothing is left to patch: the pools are changed in place.
  lastIpam.delete(instance);
  const next =
    (prev && patched(prev, spec, actual, host)) ??
    full(spec, instance, actual, host, lastResults.get(instance));
  lastIpam.set(instance, next);
  lastResults.set(instance, next.result);
  return next.result;
}

/** Each instance's last result, for interning (kept through a resolve that fails). */
const lastResults = new Map<string, Resolved>();

function full(
  spec: Spec,
  instance: string,
  actual: KernelState,
  host: HostFacts,
  prev: Resolved | undefined,
): Ipam {
  const problems: SpecProblem[] = [];
  const pools4 = spec.daemon.defaultAddressPools ?? DEFAULT_POOLS;
  const ula = ulaBase(host.ulaSeed);
  const fresh: Record<string, ResolvedNetwork> = {};
  const nets = Object.values(spec.networks);
  const claims4 = Claims.of(nets, actual, 4);
  const claims6 = Claims.of(nets, actual, 6);
  for (const n of nets) {
    const v4 = n.enableIPv4
      ? resolveFamily(
          n,
          4,
          n.ipam4,
          claims4,
          (claimed) => pickSubnet(poolSubnets(pools4), claimed, host.reserved4),
          problems,
        )
      : undefined;
    const v6 = n.enableIPv6
      ? resolveFamily(
          n,
          6,
          n.ipam6,
          claims6,
          (claimed) => pickSubnet(poolSubnets([{ base: ula, size: 64 }]), claimed, host.reserved6),
          problems,
        )
      : undefined;
    fresh[n.name] = {
      name: n.name,
      id: networkId(instance, n.name),
      bridge: bridgeName(instance, n.name, n.isDefault, n.bridgeName),
      spec: n,
      v4,
      v6,
    };
  }

  // Unchanged networks and containers keep the objects of this instance's last result.
  const networks = internRecord(fresh, prev?.networks);
  const pools = new Map<string, FamilyPools>();
  for (const n of Object.values(networks)) {
    pools.set(n.name, { v4: n.v4 && new Pool(4, n.v4), v6: n.v6 && new Pool(6, n.v6) });
  }
  const ctrs = Object.values(spec.containers);
  const held = new Map<string, Held>();
  for (const c of ctrs) claimStatic(c, pools, problems);
  for (const c of ctrs) held.set(c.name, keepKernel(c, pools, actual));
  for (const c of ctrs) held.set(c.name, fillFree(c, pools, held.get(c.name)!, problems));

  const containers: Record<string, ResolvedContainer> = {};
  const parts: [ContainerSpec, EndpointsPart][] = [];
  for (const c of ctrs)
    parts.push([c, partOf(c, instance, networks, held.get(c.name)!.chosen, spec, actual)]);
  const hostPorts = allocatePorts(parts, actual, host.ephemeralPorts ?? [32768, 60999], problems);
  for (const [c, part] of parts)
    containers[c.name] = resolvedContainer(c, instance, part, hostPorts.get(part)!, prev);
  if (problems.length) throw new SpecError(problems);
  return {
    spec,
    actual,
    host,
    result: { instance, spec, networks, containers },
    pools,
    held,
    entangled: new Set([...held].filter(([, h]) => h.entangled).map(([name]) => name)),
    ephemeral: parts.some(([, p]) => p.ephemeral),
  };
}

/**
 * The last result with the containers that changed since (in the manifest or in the
 * kernel) resolved again, when that gives what a full resolve would: the networks and
 * their inputs are the same, no port is allocated, and the unchanged containers' addresses
 * do not depend on the changed ones' (see Held.entangled; a changed container that wants
 * an address an unchanged one holds sends the whole world through full()). Undefined
 * otherwise.
 */
function patched(prev: Ipam, spec: Spec, actual: KernelState, host: HostFacts): Ipam | undefined {
  const instance = prev.result.instance;
  if (prev.ephemeral || !sameData(host, prev.host) || !sameData(spec.daemon, prev.spec.daemon))
    return undefined;
  if (recordChanges(prev.spec.networks, spec.networks)?.length !== 0) return undefined;
  if (actual.bridges !== prev.actual.bridges && !sameData(actual.bridges, prev.actual.bridges))
    return undefined;
  const edited = recordChanges(prev.spec.containers, spec.containers);
  if (!edited) return undefined;
  const changed = new Set(edited);
  const seen = patchedKeys(prev.actual.namespaces, actual.namespaces, 4);
  if (seen) for (const k of seen) changed.add(k);
  else
    for (const k in spec.containers) if (actual.namespaces[k] !== prev.actual.namespaces[k]) changed.add(k);
  for (const name of prev.entangled) if (!changed.has(name)) return undefined;

  // The changed containers that remain, in the manifest's order.
  const ctrs = [...changed].filter((k) => Object.hasOwn(spec.containers, k)).map((k) => spec.containers[k]!);
  if (ctrs.length > 1) {
    const at = new Map(Object.keys(spec.containers).map((k, i) => [k, i]));
    ctrs.sort((a, b) => at.get(a.name)! - at.get(b.name)!);
  }
  if (ctrs.some(wantsEphemeral)) return undefined;
  const { pools, held, entangled } = prev;
  for (const name of changed) {
    for (const [pool, v] of held.get(name)?.values ?? []) pool.release(v);
    held.delete(name);
    entangled.delete(name);
  }
  const problems: SpecProblem[] = [];
  for (const c of ctrs) claimStatic(c, pools, problems);
  // A kernel address that an unchanged container holds goes to the first of the two in
  // the manifest: left to full().
  const mine = new Set(ctrs.map((c) => c.name));
  for (const c of ctrs) {
    const kept = keepKernel(c, pools, actual);
    if (kept.refusedBy.some((by) => !mine.has(by))) return undefined;
    held.set(c.name, kept);
  }
  for (const c of ctrs) {
    const h = fillFree(c, pools, held.get(c.name)!, problems);
    held.set(c.name, h);
    if (h.entangled) entangled.add(c.name);
  }
  if (problems.length) return undefined;

  const { networks } = prev.result;
  const changes = new Map<string, ResolvedContainer | undefined>();
  for (const name of changed) changes.set(name, undefined);
  for (const c of ctrs) {
    const part = partOf(c, instance, networks, held.get(c.name)!.chosen, spec, actual);
    changes.delete(c.name);
    changes.set(c.name, resolvedContainer(c, instance, part, part.fixedPorts, prev.result));
  }
  const containers = patchRecord(prev.result.containers, changes);
  // The pools, holdings and entangled names are prev's, updated in place; no port is ephemeral.
  return { ...prev, spec, actual, host, result: { ...prev.result, spec, containers } };
}

/** Pass 1, for one container: its static addresses. */
function claimStatic(
  c: ContainerSpec,
  pools: ReadonlyMap<string, FamilyPools>,
  problems: SpecProblem[],
): void {
  for (const a of c.networks) {
    const p = pools.get(a.network);
    if (!p) continue;
    for (const [fam, ip] of [
      [p.v4, a.ipv4Address],
      [p.v6, a.ipv6Address],
    ] as const) {
      if (!ip || !fam) continue;
      if (!fam.inSubnet(ip)) {
        problems.push({
          message: `container '${c.name}': no configured subnet of network '${a.network}' contains IP address ${ip}`,
          src: a.src,
        });
      } else if (!fam.isFree(ip)) {
        problems.push({
          message: `container '${c.name}': address ${ip} on network '${a.network}' is already in use`,
          src: a.src,
        });
      } else fam.take(parseIp(ip), c.name);
    }
  }
}

/**
 * Pass 2, for one container (after every container's pass 1): its static addresses, and
 * for the rest the addresses it already has on the kernel, where free. `refusedBy`: the
 * containers that hold a kernel address it has.
 */
function keepKernel(
  c: ContainerSpec,
  pools: ReadonlyMap<string, FamilyPools>,
  actual: KernelState,
): Held & { readonly refusedBy: readonly string[] } {
  const onKernel = nsFacts(actual.namespaces[c.name]).addrs;
  const values: (readonly [Pool, bigint])[] = [];
  const refusedBy: string[] = [];
  const chosen: Chosen = c.networks.map((a) => {
    const p = pools.get(a.network);
    if (!p) return undefined;
    const got: { v4?: string; v6?: string } = { v4: a.ipv4Address, v6: a.ipv6Address };
    if (p.v4 && got.v4) values.push([p.v4, parseIp(got.v4)]);
    if (p.v6 && got.v6) values.push([p.v6, parseIp(got.v6)]);
    for (const k of onKernel.get(a.network) ?? []) {
      const fam = k.v6 ? p.v6 : p.v4;
      const slot = k.v6 ? 'v6' : 'v4';
      if (!fam || got[slot]) continue;
      if (fam.keepValue(k.value, c.name)) {
        got[slot] = k.ip;
        values.push([fam, k.value]);
      } else {
        const by = fam.holder(k.value);
        if (by !== undefined && by !== c.name) refusedBy.push(by);
      }
    }
    return got;
  });
  return { chosen, values, entangled: refusedBy.length > 0, refusedBy };
}

/** Pass 3, for one container (after every container's pass 2): the lowest free addresses for the rest. */
function fillFree(
  c: ContainerSpec,
  pools: ReadonlyMap<string, FamilyPools>,
  kept: Held,
  problems: SpecProblem[],
): Held {
  const values = [...kept.values];
  let filled = false;
  c.networks.forEach((a, i) => {
    const p = pools.get(a.network);
    const got = kept.chosen[i];
    if (!p || !got) return;
    for (const [fam, label] of [
      ['v4', 'IPv4'],
      ['v6', 'IPv6'],
    ] as const) {
      const pool = p[fam];
      if (!pool || got[fam]) continue;
      const v = pool.next(c.name);
      filled = true;
      if (v === undefined)
        problems.push({
          message: `network '${a.network}': no available ${label} addresses for container '${c.name}'`,
          src: a.src,
        });
      else {
        got[fam] = formatIp(v, pool.family);
        values.push([pool, v]);
      }
    }
  });
  return { chosen: kept.chosen, values, entangled: kept.entangled || filled };
}

/** A container's endpoints and pending bindings (remembered: see endpointParts). */
function partOf(
  c: ContainerSpec,
  instance: string,
  networks: Resolved['networks'],
  addrs: Chosen,
  spec: Spec,
  actual: KernelState,
): EndpointsPart {
  const nets = c.networks.map((a) => networks[a.network]);
  const sticky = nsFacts(actual.namespaces[c.name]);
  const userlandProxy = spec.daemon.userlandProxy;
  const inputs: unknown[] = [instance, sticky.namesKey, userlandProxy, ...nets];
  for (const g of addrs) inputs.push(g?.v4, g?.v6);
  return endpointParts.of(c, inputs, () =>
    endpointsPart(c, instance, nets, addrs, sticky.names, userlandProxy),
  );
}

/** The resolved container of an endpoints part and its host ports (remembered: see containerParts). */
function resolvedContainer(
  c: ContainerSpec,
  instance: string,
  part: EndpointsPart,
  hostPorts: readonly number[],
  prev: Resolved | undefined,
): ResolvedContainer {
  const made = containerParts.get(part, hostPorts);
  if (made) return made;
  // Made afresh, yet maybe equal to the last result's: then that object is kept.
  const fresh = containerOf(c, instance, part, hostPorts);
  return containerParts.set(part, hostPorts, keepIfSame(prev?.containers[c.name], fresh));
}

/** A binding's host port is given (a port, or a range as long as the container's). */
const isFixed = (sp: ContainerSpec['ports'][number]) =>
  sp.published !== undefined &&
  (sp.publishedEnd === undefined || sp.publishedEnd - sp.published === sp.targetEnd - sp.target);

/** Some binding of the container has its host port chosen by tether. */
const wantsEphemeral = (c: ContainerSpec) => c.mode === 'bridge' && c.ports.some((sp) => !isFixed(sp));

/** A published port binding before its host port is chosen. */
interface PendingPort {
  readonly sp: ContainerSpec['ports'][number];
  readonly offset: number;
  /** An explicit host port (or range as long as the container's): not allocated. */
  readonly fixed: boolean;
  readonly targets: readonly {
    readonly family: 4 | 6;
    readonly ip: string;
    readonly ep: ResolvedEndpoint;
    readonly mode: ResolvedPort['mode'];
    /** An IPv6 binding served by the userland proxy to the container's IPv4 address. */
    readonly proxy?: boolean;
  }[];
}

/** One container's endpoints and the bindings its ports ask for. */
interface EndpointsPart {
  readonly endpoints: readonly ResolvedEndpoint[];
  readonly pending: readonly PendingPort[];
  /** Per pending binding: its explicit host port, else 0. */
  readonly fixedPorts: readonly number[];
  /** Some binding's host port is to be chosen. */
  readonly ephemeral: boolean;
}

/**
 * Per container spec, remembered with everything they are made from (the interface names
 * in the namespace as observed; the networks; the addresses chosen): an unchanged
 * container costs its address bookkeeping and a lookup, and keeps its objects.
 */
const endpointParts = new ObjectMemo<ContainerSpec, EndpointsPart>();
/** The resolved container, per endpoints part and the host ports chosen for its bindings. */
const containerParts = new ObjectMemo<EndpointsPart, ResolvedContainer>();

/** What IPAM reads from an observed namespace (see nsFacts). */
interface NsFacts {
  /** Network → the global addresses on its link (the first link on it). */
  readonly addrs: ReadonlyMap<string, readonly KernelAddr[]>;
  /** Network → the name of its link (an endpoint already in the namespace keeps its name). */
  readonly names: ReadonlyMap<string, string>;
  /** `names` as a string, for the memo of endpoints. */
  readonly namesKey: string;
}
type KernelAddr = { readonly ip: string; readonly value: bigint; readonly v6: boolean };

/**
 * A namespace's addresses (link-local IPv6 left out: IPAM never hands those out) and
 * interface names, derived once per observed namespace.
 */
const nsFactsOf = new WeakMap<NamespaceState, NsFacts>();
const NO_FACTS: NsFacts = { addrs: new Map(), names: new Map(), namesKey: '' };
function nsFacts(ns: NamespaceState | undefined): NsFacts {
  if (!ns) return NO_FACTS;
  let f = nsFactsOf.get(ns);
  if (!f) {
    const addrs = new Map<string, KernelAddr[]>();
    const names = new Map<string, string>();
    for (const l of Object.values(ns.links)) {
      names.set(l.network, l.name);
      if (addrs.has(l.network)) continue;
      const list: KernelAddr[] = [];
      for (const cidr of l.addrs) {
        const ip = addrOf(cidr);
        if (ip.toLowerCase().startsWith('fe80:')) continue;
        list.push({ ip, value: parseIp(ip), v6: ip.includes(':') });
      }
      addrs.set(l.network, list);
    }
    nsFactsOf.set(ns, (f = { addrs, names, namesKey: JSON.stringify([...names]) }));
  }
  return f;
}

function endpointsPart(
  c: ContainerSpec,
  instance: string,
  nets: readonly (ResolvedNetwork | undefined)[],
  addrs: readonly ({ v4?: string; v6?: string } | undefined)[],
  sticky: ReadonlyMap<string, string>,
  userlandProxy: boolean,
): EndpointsPart {
  const endpoints: Mutable<ResolvedEndpoint>[] = [];
  const usedNames = new Set<string>();
  for (const a of c.networks) {
    const want = a.interfaceName ?? sticky.get(a.network);
    if (want && !usedNames.has(want)) usedNames.add(want);
  }
  const byName: Record<string, ResolvedNetwork> = {};
  c.networks.forEach((a, i) => {
    const net = nets[i];
    if (!net) return;
    byName[net.name] = net;
    let ifname = a.interfaceName ?? sticky.get(a.network);
    if (!ifname || (ifname !== a.interfaceName && endpoints.some((e) => e.ifname === ifname))) {
      let k = 0;
      while (usedNames.has(`${net.spec.ifacePrefix}${k}`)) k++;
      ifname = `${net.spec.ifacePrefix}${k}`;
      usedNames.add(ifname);
    }
    const got = addrs[i] ?? {};
    endpoints.push({
      network: a.network,
      ifname,
      hostVeth: vethName(instance, c.name, a.network),
      mac: a.macAddress?.toLowerCase() ?? macOfIpv4(got.v4),
      ipv4: got.v4,
      ipv6: got.v6,
      prefix4: net.v4 ? parseCidr(net.v4.subnet).len : undefined,
      prefix6: net.v6 ? parseCidr(net.v6.subnet).len : undefined,
      aliases: a.aliases,
      gwPriority: a.gwPriority,
      isGateway4: false,
      isGateway6: false,
    });
  });
  const gw4 = pickGateway(endpoints, byName, 4);
  const gw6 = pickGateway(endpoints, byName, 6);
  for (const e of endpoints) {
    e.isGateway4 = e === gw4;
    e.isGateway6 = e === gw6;
  }
  const pending = c.mode === 'bridge' ? pendingPorts(c, endpoints, byName, userlandProxy) : [];
  return freezeData({
    endpoints,
    pending,
    fixedPorts: pending.map((p) => (p.fixed ? p.sp.published! + p.offset : 0)),
    ephemeral: pending.some((p) => !p.fixed),
  });
}

function containerOf(
  c: ContainerSpec,
  instance: string,
  part: EndpointsPart,
  hostPorts: readonly number[],
): ResolvedContainer {
  const created = c.mode !== 'host' && !c.netns;
  const ports: ResolvedPort[] = [];
  part.pending.forEach((p, i) => {
    for (const t of p.targets) {
      ports.push({
        family: t.family,
        protocol: p.sp.protocol,
        containerPort: p.sp.target + p.offset,
        containerIp: (t.family === 4 || t.proxy ? t.ep.ipv4 : t.ep.ipv6)!,
        hostPort: t.mode === 'routed' ? 0 : hostPorts[i]!,
        hostIp: t.ip,
        ephemeral: !p.fixed,
        mode: t.mode,
        network: t.ep.network,
        ...(t.proxy ? { proxy: true } : {}),
      });
    }
  });
  return freezeData({
    name: c.name,
    id: containerId(instance, c.name),
    spec: c,
    mode: c.mode,
    netnsName: created ? netnsName(instance, c.name) : undefined,
    netnsPath: c.mode === 'host' ? '' : (c.netns ?? `/run/netns/${netnsName(instance, c.name)}`),
    attached: !!c.netns,
    endpoints: part.endpoints,
    ports,
  });
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

/** Host ports already bound, for ephemeral allocation: "family proto hostIp" → ports. */
class PortBook {
  private readonly used = new Map<string, Set<number>>();
  private readonly cursor = new Map<string, number>();
  constructor(private readonly range: readonly [number, number]) {}
  private k(family: 4 | 6, proto: string, ip: string) {
    return `${family} ${proto} ${ip}`;
  }
  take(family: 4 | 6, proto: string, ip: string, port: number) {
    const k = this.k(family, proto, ip);
    let s = this.used.get(k);
    if (!s) this.used.set(k, (s = new Set()));
    s.add(port);
  }
  /** Free on ip, on the unspecified address of the family, and (for unspecified) on every address. */
  isFree(family: 4 | 6, proto: string, ip: string, port: number): boolean {
    const any = family === 4 ? '0.0.0.0' : '::';
    for (const [k, ports] of this.used) {
      const [f, p, a] = k.split(' ');
      if (Number(f) !== family || p !== proto || !ports.has(port)) continue;
      if (ip === any || a === any || a === ip) return false;
    }
    return true;
  }
  /** Docker's rotating cursor per (ip, proto, range), starting at the range start. */
  allocate(
    targets: readonly { family: 4 | 6; ip: string }[],
    proto: string,
    lo: number,
    hi: number,
  ): number | undefined {
    const ck = `${proto} ${lo}-${hi} ${targets.map((t) => t.ip).join(',')}`;
    const start = this.cursor.get(ck) ?? lo;
    for (let i = 0; i <= hi - lo; i++) {
      const port = lo + ((start - lo + i) % (hi - lo + 1));
      if (targets.every((t) => this.isFree(t.family, proto, t.ip, port))) {
        this.cursor.set(ck, port + 1 > hi ? lo : port + 1);
        for (const t of targets) this.take(t.family, proto, t.ip, port);
        return port;
      }
    }
    return undefined;
  }
  get ephemeralRange() {
    return this.range;
  }
}

/**
 * JSON.parse of the running resolver's configuration, which holds every DNS name and is
 * observed unchanged on most reconciles: the last text parsed and its value are kept.
 * The value is only read, never modified.
 */
let lastResolverConfig: { text: string; value: unknown } | undefined;
function parseResolverConfig(text: string): unknown {
  if (lastResolverConfig?.text !== text) lastResolverConfig = { text, value: JSON.parse(text) };
  return lastResolverConfig.value;
}

/** Host ports of bindings that exist in the kernel (nft maps): "family proto containerIp containerPort hostIp" → hostPort. */
function existingBindings(actual: KernelState): Map<string, number> {
  const out = new Map<string, number>();
  // The ports tether chose for bindings only the userland proxy serves are in the resolver
  // process's index (dns/config.ts ResolverIndex.chosen; `proxies` before it).
  try {
    type Proxy = { protocol: string; listen: string; port: number; to: string; toPort: number };
    const cfg = actual.resolver
      ? (parseResolverConfig(actual.resolver.config) as {
          chosen?: Record<string, Proxy[]>;
          proxies?: Proxy[];
        })
      : {};
    for (const x of [...(cfg.proxies ?? []), ...Object.values(cfg.chosen ?? {}).flat()])
      out.set(`6 ${x.protocol} ${x.to} ${x.toPort} ${x.listen}`, x.port);
  } catch {
    /* an unreadable configuration remembers nothing */
  }
  for (const v of ['4', '6'] as const) {
    const any = v === '4' ? '0.0.0.0' : '::';
    const addrOfKey = new Map<string, string>();
    for (const e of actual.nft.sets[`dnat${v}_addr`] ?? []) {
      const [k, cip] = e.split(' : ');
      addrOfKey.set(k!, cip!);
    }
    for (const e of actual.nft.sets[`dnat${v}_port`] ?? []) {
      const [k, cport] = e.split(' : ');
      const [hip, proto, hport] = k!.split(' . ');
      const cip = addrOfKey.get(k!);
      if (cip) out.set(`${v} ${proto} ${cip} ${cport} ${hip}`, Number(hport));
    }
    addrOfKey.clear();
    for (const e of actual.nft.sets[`dnatany${v}_addr`] ?? []) {
      const [k, cip] = e.split(' : ');
      addrOfKey.set(k!, cip!);
    }
    for (const e of actual.nft.sets[`dnatany${v}_port`] ?? []) {
      const [k, cport] = e.split(' : ');
      const [proto, hport] = k!.split(' . ');
      const cip = addrOfKey.get(k!);
      if (cip) out.set(`${v} ${proto} ${cip} ${cport} ${any}`, Number(hport));
    }
  }
  return out;
}

/** A network's gateway mode as a binding's mode: isolated networks NAT like nat ones. */
const natMode = (m: string) => (m === 'isolated' ? 'nat' : m) as ResolvedPort['mode'];

/**
 * Published ports (docker-semantics §5.2–5.4). Each spec binding becomes one binding per
 * address family the host IP allows and the gateway endpoint has an address for; both
 * families share one host port. Routed networks ignore the host port (no NAT).
 * Containers without a gateway endpoint publish nothing. An IPv6 binding of a container
 * without IPv6 is marked `proxy` (served by the userland proxy, no nft element) unless
 * `daemon.userland-proxy` is false, as in Docker.
 */
function pendingPorts(
  c: ContainerSpec,
  endpoints: readonly ResolvedEndpoint[],
  networks: Readonly<Record<string, ResolvedNetwork>>,
  userlandProxy: boolean,
): PendingPort[] {
  const pending: PendingPort[] = [];
  const gw4 = endpoints.find((e) => e.isGateway4);
  const gw6 = endpoints.find((e) => e.isGateway6);
  const net4 = gw4 && networks[gw4.network]!;
  const net6 = gw6 && networks[gw6.network]!;
  const deflt = net4?.spec.hostBindingIpv4 ?? net6?.spec.hostBindingIpv4 ?? '0.0.0.0';
  for (const sp of c.ports) {
    const n = sp.targetEnd - sp.target + 1;
    const hostIp = sp.hostIp ?? deflt;
    // Only the *default* 0.0.0.0 means "all IPv4 and IPv6 addresses"; a binding that
    // names 0.0.0.0 itself is IPv4-only, one that names :: IPv6-only (§5.2, §5.3).
    const both = sp.hostIp === undefined && hostIp === '0.0.0.0';
    const want4 = both || !hostIp.includes(':');
    const want6 = both || hostIp.includes(':');
    // Routed (no NAT): the host address is replaced with the unspecified one (§1.3).
    const ipFor = (family: 4 | 6, m: ResolvedPort['mode']) =>
      m === 'routed' || (family === 6 && both) ? (family === 4 ? '0.0.0.0' : '::') : hostIp;
    const fixed = isFixed(sp);
    for (let offset = 0; offset < n; offset++) {
      const targets: Mutable<PendingPort['targets']> = [];
      if (want4 && gw4?.ipv4) {
        const m = natMode(net4!.spec.gatewayModeV4);
        targets.push({ family: 4, ip: ipFor(4, m), ep: gw4, mode: m });
      }
      if (want6 && gw6?.ipv6) {
        const m = natMode(net6!.spec.gatewayModeV6);
        targets.push({ family: 6, ip: ipFor(6, m), ep: gw6, mode: m });
      } else if (want6 && gw4?.ipv4 && userlandProxy) {
        // A container without IPv6: Docker's proxy serves the IPv6 binding to its IPv4
        // address (§5.2, TestProxy4To6); NAT cannot. Not in routed mode (no host port).
        const m = natMode(net4!.spec.gatewayModeV4);
        if (m !== 'routed') targets.push({ family: 6, ip: ipFor(6, m), ep: gw4, mode: m, proxy: true });
      }
      pending.push({ sp, offset, fixed, targets });
    }
  }
  return pending;
}

/**
 * Host ports for every pending binding (0 where none applies), per endpoints part in
 * binding order. Explicit ones as given; ephemeral ones: the port the binding already has
 * in the kernel, else Docker's cursor over the ephemeral range.
 */
function allocatePorts(
  parts: readonly (readonly [ContainerSpec, EndpointsPart])[],
  actual: KernelState,
  range: readonly [number, number],
  problems: SpecProblem[],
): Map<EndpointsPart, number[]> {
  const out = new Map<EndpointsPart, number[]>();
  let ephemeral = false;
  for (const [, part] of parts) {
    out.set(part, part.ephemeral ? [...part.fixedPorts] : (part.fixedPorts as number[]));
    ephemeral ||= part.ephemeral;
  }
  // Explicit host ports are as given (their clashes are input errors, checked by the
  // loader); they matter here only as ports an ephemeral binding cannot take.
  if (!ephemeral) return out;
  const book = new PortBook(range);
  for (const [, part] of parts) {
    for (const p of part.pending) {
      if (!p.fixed) continue;
      for (const t of p.targets)
        if (t.mode !== 'routed') book.take(t.family, p.sp.protocol, t.ip, p.sp.published! + p.offset);
    }
  }
  // Sticky ephemeral ports next, then new ones.
  const existing = existingBindings(actual);
  const unset: [ContainerSpec, PendingPort, number[], number][] = [];
  for (const [c, part] of parts) {
    const ports = out.get(part)!;
    part.pending.forEach((p, i) => {
      if (p.fixed) return;
      const nat = p.targets.filter((t) => t.mode !== 'routed');
      const port = p.sp.target + p.offset;
      // Proxied bindings are remembered by the running proxy configuration (existingBindings).
      const seen = nat.map((t) =>
        existing.get(
          `${t.family} ${p.sp.protocol} ${t.family === 4 || t.proxy ? t.ep.ipv4 : t.ep.ipv6} ${port} ${t.ip}`,
        ),
      );
      const lo = p.sp.published ?? range[0];
      const hi = p.sp.publishedEnd ?? p.sp.published ?? range[1];
      const same = seen[0];
      if (
        same !== undefined &&
        seen.every((x) => x === same) &&
        same >= lo &&
        same <= hi &&
        nat.every((t) => book.isFree(t.family, p.sp.protocol, t.ip, same))
      ) {
        for (const t of nat) book.take(t.family, p.sp.protocol, t.ip, same);
        ports[i] = same;
      } else unset.push([c, p, ports, i]);
    });
  }
  for (const [c, p, ports, i] of unset) {
    const nat = p.targets.filter((t) => t.mode !== 'routed');
    if (!nat.length) continue;
    const lo = p.sp.published ?? range[0];
    const hi = p.sp.publishedEnd ?? p.sp.published ?? range[1];
    const port = book.allocate(
      nat.map((t) => ({ family: t.family, ip: t.ip })),
      p.sp.protocol,
      lo,
      hi,
    );
    if (port === undefined) {
      problems.push({
        message: `container '${c.name}': all ports are allocated in ${lo}-${hi}/${p.sp.protocol}`,
        src: p.sp.src,
      });
    } else ports[i] = port;
  }
  return out;
}
