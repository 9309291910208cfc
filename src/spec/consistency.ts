/**
 * Phase 5 of loading: semantic checks across the whole manifest set. Each problem points
 * at the offending value and, for a clash, also at the other place (`other`).
 *
 * Messages reuse Docker's wording where Docker has one ("invalid subnet …: it should be …",
 * "bridge driver doesn't support multiple subnets", "IPv4 or IPv6 must be enabled",
 * "user-specified IP address is supported on user-defined networks only", …), prefixed
 * with the network or container concerned.
 */
import type { SpecProblem } from '../model/errors.js';
import { ObjectMemo } from '../model/intern.js';
import type { ContainerSpec, NetworkSpec, PortSpec, SourceRef, Spec, SpecWarning } from '../model/spec.js';
import {
  type CanonContainer,
  type CanonIpamConfig,
  type CanonModel,
  type CanonNetwork,
  type Cidr,
  cidrContainsCidr,
  cidrContainsIp,
  cidrsOverlap,
  type DaemonKey,
  type Family,
  type Ip,
  isUnspecified,
  lastOf,
  maskedText,
  networkOf,
  parseCidr,
  parseIp,
} from './canonical.js';
import {
  containerMode,
  DEFAULT_BRIDGE,
  GATEWAY_MODES,
  ipv4OfMac,
  normalizeMac,
  OPT,
  PREDEFINED_MODES,
  parseBool,
  parseIntOption,
  W_BRIDGE_CROWDED,
  W_MAC_OF_ADDRESS,
  W_PORTS_DISCARDED,
} from './defaults.js';
import type { Origin, Path, Sources } from './read.js';
import { formatPath } from './schema.js';

/** IFNAMSIZ - 1. */
export const IFNAME_MAX_BYTES = 15;

export interface ConsistencyResult {
  readonly problems: SpecProblem[];
  readonly warnings: SpecWarning[];
  /** What the daemon's next reload starts from (incremental.ts): each container's warnings (when it has any), */
  readonly containerWarnings: ReadonlyMap<string, readonly SpecWarning[]>;
  /** its claims on static addresses and MACs (when it has any), */
  readonly addressClaims: ReadonlyMap<string, readonly string[]>;
  /** and how many containers are on each network. */
  readonly bridgeCounts: ReadonlyMap<string, number>;
}

/**
 * `claims` are the host-port claims of the previous load, updated here: the daemon keeps
 * one across its reloads (see PortClaims).
 */
export function checkConsistency(
  spec: Spec,
  model: CanonModel,
  sources: Sources,
  claims = new PortClaims(),
): ConsistencyResult {
  const c = new Checker(spec, model, sources);
  c.duplicates();
  c.daemon();
  for (const [name, defs] of model.networks) {
    const n = spec.networks[name];
    if (n && !n.isDefault) c.network(n, defs[0]);
  }
  c.subnetOverlaps();
  c.bridgeNames();
  const containerWarnings = new Map<string, SpecWarning[]>();
  for (const [name, defs] of model.containers) {
    const before = c.warnings.length;
    c.container(spec.containers[name], defs[0]);
    if (c.warnings.length > before) containerWarnings.set(name, c.warnings.slice(before));
  }
  const addressClaims = c.addresses();
  c.ports(claims);
  const bridgeCounts = countBridges(Object.values(spec.containers));
  c.bridgeSizes(bridgeCounts);
  return { problems: c.problems, warnings: c.warnings, containerWarnings, addressClaims, bridgeCounts };
}

/** One container's checks and what it adds to the checks across containers. */
export interface ContainerFindings {
  readonly problems: readonly SpecProblem[];
  readonly warnings: readonly SpecWarning[];
  /** Its static addresses and MACs, as "address 10.0.0.5 on network 'n'": two equal ones clash. */
  readonly addressClaims: readonly string[];
  readonly bindings: readonly Binding[];
}

/**
 * The checks of the one container `name` (its own, and its part of the address and port
 * checks), for the daemon's reload of the entries that changed. The other checks read
 * only the daemon and the networks, which the reload leaves as they were.
 */
export function checkContainer(
  spec: Spec,
  model: CanonModel,
  sources: Sources,
  ct: ContainerSpec,
): ContainerFindings {
  const c = new Checker(spec, model, sources);
  const canon = model.containers.get(ct.name)![0];
  c.container(ct, canon);
  const addressClaims: string[] = [];
  c.addressClaims(ct, canon, (subject) => addressClaims.push(subject));
  const bindings = ct.mode === 'bridge' ? c.bindings(ct, canon) : [];
  return { problems: c.problems, warnings: c.warnings, addressClaims, bindings };
}

/** The bridge-size findings for `counts` (containers per network), as checkConsistency makes them. */
export function checkBridgeSizes(
  spec: Spec,
  model: CanonModel,
  sources: Sources,
  counts: ReadonlyMap<string, number>,
): { problems: readonly SpecProblem[]; warnings: readonly SpecWarning[] } {
  const c = new Checker(spec, model, sources);
  c.bridgeSizes(counts);
  return c;
}

/** The networks a container takes a port on: its attachments, in bridge mode. */
export function bridgePorts(ct: ContainerSpec): readonly string[] {
  return ct.mode === 'bridge' ? ct.networks.map((a) => a.network) : [];
}

function countBridges(containers: readonly ContainerSpec[]): Map<string, number> {
  const count = new Map<string, number>();
  for (const ct of containers) for (const n of bridgePorts(ct)) count.set(n, (count.get(n) ?? 0) + 1);
  return count;
}

const sub = (o: Origin, ...more: Path): Origin => ({ file: o.file, path: [...o.path, ...more] });
const ANY6 = parseIp('::')!;

/** The addresses a network's host_binding_ipv4 listens on: 0.0.0.0 means :: too. */
function bindingIps(text: string): readonly Ip[] | undefined {
  const binding = parseIp(text);
  if (!binding) return undefined;
  if (binding.family === 4 && isUnspecified(binding)) return [binding, ANY6];
  return [binding];
}

/** A fixed host-port claim of a published port, for the clash check. */
export interface Binding {
  readonly container: string;
  readonly port: PortSpec;
  readonly text: string;
  readonly at: Origin;
  readonly ip: Ip;
  readonly lo: number;
  readonly hi: number;
  /** "tcp/4/": protocol and family. */
  readonly group: string;
  /** Listens on the unspecified address of its family. */
  readonly any: boolean;
  /** group + address ("*" for the unspecified one) + "/". */
  readonly addrKey: string;
  /** group + each host port claimed. */
  readonly keys: readonly string[];
}

/**
 * Per canonical container entry, with the container spec and networks they derive from:
 * its port claims, and whether its own checks found nothing.
 */
const portBindings = new ObjectMemo<CanonContainer, readonly Binding[]>();
const cleanContainers = new ObjectMemo<CanonContainer, true>();

/** Each attachment's pinned MAC (normalized) with where it is written (its own key or the service's). */
function pinnedMacs(
  ct: ContainerSpec,
  canon: CanonContainer,
): { att: ContainerSpec['networks'][number]; mac: string; at: Origin }[] {
  const out: { att: ContainerSpec['networks'][number]; mac: string; at: Origin }[] = [];
  ct.networks.forEach((att, i) => {
    const mac = att.macAddress ? normalizeMac(att.macAddress) : undefined;
    if (!mac) return;
    const ca = canon.networks[i];
    out.push({
      att,
      mac,
      at: ca?.macAddress !== undefined ? sub(ca.at, 'mac_address') : sub(canon.at, 'mac_address'),
    });
  });
  return out;
}

/**
 * Who claims each fixed host port ("tcp/4/8080"), kept from one load to the next and
 * updated for the containers whose claims changed (the daemon reloads 1000 containers
 * after every edit of one): whether two port specs share a host port is known without
 * walking every claim again.
 */
export class PortClaims {
  private last = new Map<string, readonly Binding[]>();
  private readonly holders = new Map<string, Binding[]>();
  /** Keys held by bindings of two or more port specs. */
  private readonly shared = new Set<string>();

  /** Take in each container's claims now; true when some host port is claimed twice. */
  update(now: ReadonlyMap<string, readonly Binding[]>): boolean {
    for (const [name, old] of this.last) if (now.get(name) !== old) for (const b of old) this.drop(b);
    for (const [name, bs] of now) if (this.last.get(name) !== bs) for (const b of bs) this.take(b);
    this.last = new Map(now);
    return this.clashes();
  }

  /** Take in the claims of one container (none: it is gone or claims nothing). */
  replace(name: string, bindings: readonly Binding[]): void {
    const old = this.last.get(name);
    if (old === bindings) return;
    for (const b of old ?? []) this.drop(b);
    for (const b of bindings) this.take(b);
    if (bindings.length > 0) this.last.set(name, bindings);
    else this.last.delete(name);
  }

  /** Whether some host port is claimed by two port specs. */
  clashes(): boolean {
    return this.shared.size > 0;
  }

  private take(b: Binding): void {
    for (const k of b.keys) {
      const list = this.holders.get(k);
      if (!list) this.holders.set(k, [b]);
      else {
        list.push(b);
        this.judge(k, list);
      }
    }
  }

  private drop(b: Binding): void {
    for (const k of b.keys) {
      const list = this.holders.get(k)!;
      list.splice(list.indexOf(b), 1);
      if (list.length === 0) this.holders.delete(k);
      this.judge(k, list);
    }
  }

  private judge(k: string, list: readonly Binding[]): void {
    if (list.some((b) => b.port !== list[0]!.port)) this.shared.add(k);
    else this.shared.delete(k);
  }
}

class Checker {
  readonly problems: SpecProblem[] = [];
  readonly warnings: SpecWarning[] = [];
  /** defaultHostIps per gateway network: parsed once, not once per container. */
  private readonly hostIpsOf = new Map<NetworkSpec, readonly Ip[] | undefined>();

  constructor(
    private readonly spec: Spec,
    private readonly model: CanonModel,
    private readonly sources: Sources,
  ) {}

  private ref(o: Origin, key = false): SourceRef {
    return this.sources.ref(o, { key });
  }

  private add(
    message: string,
    at: Origin,
    other?: Origin,
    opts: { key?: boolean; otherKey?: boolean } = {},
  ): void {
    this.problems.push({
      message,
      src: this.ref(at, opts.key),
      ...(other ? { other: this.ref(other, opts.otherKey) } : {}),
      path: formatPath(at.path),
    });
  }

  // --- duplicates -----------------------------------------------------------------------

  duplicates(): void {
    const kinds = [
      ['network', this.model.networks],
      ['container', this.model.containers],
    ] as const;
    for (const [kind, map] of kinds) {
      for (const [name, defs] of map) {
        for (const d of defs.slice(1)) {
          const first = defs[0];
          const where =
            first.at.file === d.at.file
              ? `already defined under ${first.at.path[0]} in the same file`
              : `already defined in ${first.at.file}`;
          this.add(
            `${kind} '${name}' is ${where}; names must be unique across manifest files`,
            d.at,
            first.at,
            {
              key: true,
              otherKey: true,
            },
          );
        }
      }
    }
    for (const [key, occ] of this.model.daemon) {
      for (const o of occ.slice(1)) {
        this.add(`daemon key '${key}' is already set in ${occ[0].at.file}`, o.at, occ[0].at, {
          key: true,
          otherKey: true,
        });
      }
    }
  }

  // --- daemon / default bridge ----------------------------------------------------------

  private daemonAt(key: DaemonKey): Origin | undefined {
    return this.model.daemon.get(key)?.[0]?.at;
  }

  daemon(): void {
    const d = this.spec.daemon;
    if (d.mtu !== undefined && d.mtu < 0)
      this.add(`daemon: invalid MTU number: ${d.mtu}`, this.daemonAt('mtu')!);
    this.defaultBridgeFamily(4, d.bip, d.fixedCidr, d.defaultGateway, [
      'bip',
      'fixed-cidr',
      'default-gateway',
    ]);
    if (d.ipv6) {
      this.defaultBridgeFamily(6, d.bip6, d.fixedCidrV6, d.defaultGatewayV6, [
        'bip6',
        'fixed-cidr-v6',
        'default-gateway-v6',
      ]);
    }
  }

  private defaultBridgeFamily(
    _family: Family,
    bip: string | undefined,
    fixed: string | undefined,
    gw: string | undefined,
    keys: [DaemonKey, DaemonKey, DaemonKey],
  ): void {
    const b = bip ? parseCidr(bip) : undefined;
    const f = fixed ? parseCidr(fixed) : undefined;
    if (b && f && !cidrsOverlap(b, f)) {
      this.add(
        `daemon: ${keys[1]} ${fixed} is outside the ${keys[0]} subnet ${maskedText(b)}`,
        this.daemonAt(keys[1])!,
        this.daemonAt(keys[0]),
      );
    }
    const subnet = b && f ? (f.prefix < b.prefix ? f : b) : (b ?? f);
    const g = gw ? parseIp(gw) : undefined;
    if (subnet && g && !cidrContainsIp(subnet, g)) {
      this.add(
        `daemon: ${keys[2]} ${gw}: default gateway ip must be part of the network (${maskedText(subnet)})`,
        this.daemonAt(keys[2])!,
        this.daemonAt(b ? keys[0] : keys[1]),
      );
    }
  }

  // --- one user-defined network ---------------------------------------------------------

  network(n: NetworkSpec, canon: CanonNetwork): void {
    const who = `network '${n.name}'`;
    const optAt = (k: string) => sub(canon.at, 'driver_opts', k);
    const o = canon.driverOpts;

    for (const k of [
      OPT.enableIcc,
      OPT.enableIpMasquerade,
      OPT.inhibitIpv4,
      OPT.enableIpv4,
      OPT.enableIpv6,
    ]) {
      if (o[k] !== undefined && parseBool(o[k]) === undefined) {
        this.add(`${who}: failed to parse ${k} value: ${o[k]} (expected true or false)`, optAt(k));
      }
    }
    for (const k of [OPT.gatewayModeIpv4, OPT.gatewayModeIpv6]) {
      const v = o[k];
      if (v !== undefined && !GATEWAY_MODES.includes(v as never)) {
        this.add(`${who}: failed to parse ${k} value: ${v} (unknown gateway mode ${v})`, optAt(k));
      } else if (v === 'isolated' && !n.internal) {
        this.add(`${who}: gateway mode 'isolated' can only be used for an internal network`, optAt(k));
      }
    }
    if (o[OPT.mtu] !== undefined) {
      const mtu = parseIntOption(o[OPT.mtu]);
      if (mtu === undefined)
        this.add(
          `${who}: failed to parse ${OPT.mtu} value: ${o[OPT.mtu]} (not a whole number)`,
          optAt(OPT.mtu),
        );
      else if (mtu < 0) this.add(`${who}: invalid MTU number: ${mtu}`, optAt(OPT.mtu));
    }
    const ipOpts: [string, Family | undefined][] = [
      [OPT.hostBindingIpv4, undefined],
      [OPT.hostIpv4, 4],
      [OPT.hostIpv6, 6],
    ];
    for (const [k, fam] of ipOpts) {
      if (o[k] === undefined) continue;
      const ip = parseIp(o[k]);
      if (!ip) this.add(`${who}: failed to parse ${k} value: ${o[k]} (not an IP address)`, optAt(k));
      else if (fam && ip.family !== fam)
        this.add(`${who}: ${k} must be an IPv${fam} address, got ${o[k]}`, optAt(k));
    }
    if (o[OPT.bridgeName] !== undefined)
      this.ifname(o[OPT.bridgeName], `bridge name of ${who}`, optAt(OPT.bridgeName));
    if (o[OPT.ifacePrefix] !== undefined && /[/:\s]/.test(o[OPT.ifacePrefix])) {
      this.add(
        `${who}: container interface prefix '${o[OPT.ifacePrefix]}' contains '/', ':' or white space, which interface names cannot`,
        optAt(OPT.ifacePrefix),
      );
    }

    if (!n.enableIPv4 && !n.enableIPv6) {
      const at = canon.enableIPv4 === false ? sub(canon.at, 'enable_ipv4') : canon.at;
      this.add(`${who}: IPv4 or IPv6 must be enabled`, at, undefined, { key: at === canon.at });
    }

    for (const family of [4, 6] as const) {
      const enabled = family === 4 ? n.enableIPv4 : n.enableIPv6;
      if (!enabled) continue;
      const configs = canon.ipam.filter((cfg) => cfg.family === family);
      for (const extra of configs.slice(1)) {
        this.add(`${who}: bridge driver doesn't support multiple subnets`, extra.at, configs[0].at);
      }
      if (configs[0]) this.ipamConfig(who, configs[0]);
    }
  }

  private ipamConfig(who: string, cfg: CanonIpamConfig): void {
    const at = (k: string) => sub(cfg.at, k);
    const s = cfg.subnet ? parseCidr(cfg.subnet) : undefined;
    if (s) {
      const masked = maskedText(s);
      if (networkOf(s) !== s.addr) {
        this.add(`${who}: invalid subnet ${cfg.subnet}: it should be ${masked}`, at('subnet'));
      } else if (s.addr === 0n) {
        this.add(
          `${who}: subnet ${cfg.subnet} asks for any subnet of that size, which tether does not support; leave subnet out to have one allocated`,
          at('subnet'),
        );
      }
      if (s.family === 6) {
        const ll = parseCidr('fe80::/64')!;
        if (cidrsOverlap(s, ll) && !(s.prefix === 64 && networkOf(s) === ll.addr)) {
          this.add(`${who}: '${cfg.subnet}' clashes with the Link-Local prefix 'fe80::/64'`, at('subnet'));
        }
        if (cidrsOverlap(s, parseCidr('ff00::/8')!))
          this.add(`${who}: subnet ${cfg.subnet} is multicast`, at('subnet'));
      }
    }
    if (cfg.ipRange) {
      const r = parseCidr(cfg.ipRange)!;
      if (!s) {
        this.add(`${who}: every ip-range or gateway must have a corresponding subnet`, at('ip_range'));
      } else if (r.family !== s.family) {
        this.add(
          `${who}: invalid ip-range ${cfg.ipRange}: it is not in the address family of subnet ${cfg.subnet}`,
          at('ip_range'),
          at('subnet'),
        );
      } else if (networkOf(r) !== r.addr) {
        this.add(`${who}: invalid ip-range ${cfg.ipRange}: it should be ${maskedText(r)}`, at('ip_range'));
      } else if (r.prefix < s.prefix) {
        this.add(
          `${who}: invalid ip-range ${cfg.ipRange}: CIDR block is bigger than its parent subnet ${cfg.subnet}`,
          at('ip_range'),
          at('subnet'),
        );
      } else if (!cidrContainsCidr(s, r)) {
        this.add(
          `${who}: invalid ip-range ${cfg.ipRange}: parent subnet ${cfg.subnet} doesn't contain ip-range`,
          at('ip_range'),
          at('subnet'),
        );
      }
    }
    if (cfg.gateway) {
      const g = parseIp(cfg.gateway)!;
      if (!s) this.add(`${who}: every ip-range or gateway must have a corresponding subnet`, at('gateway'));
      else if (!cidrContainsIp(s, g)) {
        this.add(
          `${who}: invalid gateway ${cfg.gateway}: parent subnet ${cfg.subnet} doesn't contain this address`,
          at('gateway'),
          at('subnet'),
        );
      }
    }
    for (const [name, addr] of Object.entries(cfg.aux)) {
      const a = parseIp(addr)!;
      const aAt = sub(cfg.at, 'aux_addresses', name);
      if (!s) this.add(`${who}: no matching subnet for auxiliary address ${name}`, aAt);
      else if (!cidrContainsIp(s, a)) {
        this.add(
          `${who}: invalid auxiliary address ${name}: parent subnet ${cfg.subnet} doesn't contain this address`,
          aAt,
          at('subnet'),
        );
      }
    }
  }

  // --- across networks ------------------------------------------------------------------

  /** Explicit subnets of every network, with where they were written. */
  private explicitSubnets(): { network: string; cidr: Cidr; text: string; at: Origin }[] {
    const out: { network: string; cidr: Cidr; text: string; at: Origin }[] = [];
    const bridge = this.spec.networks[DEFAULT_BRIDGE];
    const daemonKeys: [string | undefined, DaemonKey[]][] = [
      [bridge.ipam4.subnet, ['bip', 'fixed-cidr']],
      [bridge.ipam6.subnet, ['bip6', 'fixed-cidr-v6']],
    ];
    for (const [text, keys] of daemonKeys) {
      const at = keys.map((k) => this.daemonAt(k)).find((x) => x);
      const cidr = text ? parseCidr(text) : undefined;
      if (cidr && at) out.push({ network: DEFAULT_BRIDGE, cidr, text: text!, at });
    }
    for (const [name, defs] of this.model.networks) {
      const n = this.spec.networks[name];
      if (!n || n.isDefault) continue;
      for (const family of [4, 6] as const) {
        if (!(family === 4 ? n.enableIPv4 : n.enableIPv6)) continue;
        const cfg = defs[0].ipam.find((x) => x.family === family);
        const cidr = cfg?.subnet ? parseCidr(cfg.subnet) : undefined;
        if (cfg && cidr && cidr.addr !== 0n)
          out.push({ network: name, cidr, text: cfg.subnet!, at: sub(cfg.at, 'subnet') });
      }
    }
    return out;
  }

  subnetOverlaps(): void {
    const subnets = this.explicitSubnets();
    for (let j = 0; j < subnets.length; j++) {
      for (let i = 0; i < j; i++) {
        const a = subnets[i];
        const b = subnets[j];
        if (a.network === b.network || !cidrsOverlap(a.cidr, b.cidr)) continue;
        this.add(
          `subnet ${b.text} of network '${b.network}' overlaps subnet ${a.text} of network '${a.network}'`,
          b.at,
          a.at,
        );
      }
    }
  }

  bridgeNames(): void {
    const seen = new Map<string, { network: string; at: Origin }>();
    for (const [name, defs] of this.model.networks) {
      const n = this.spec.networks[name];
      if (!n || n.isDefault || n.bridgeName === undefined) continue;
      const at = sub(defs[0].at, 'driver_opts', OPT.bridgeName);
      const prev = seen.get(n.bridgeName);
      if (prev) {
        this.add(
          `network '${name}': bridge name '${n.bridgeName}' is already used by network '${prev.network}'`,
          at,
          prev.at,
        );
      } else seen.set(n.bridgeName, { network: name, at });
    }
  }

  /** Linux interface name rules (dev_valid_name): 1..15 bytes, not . or .., no '/', ':' or space. */
  private ifname(name: string, what: string, at: Origin, other?: Origin): boolean {
    const bytes = Buffer.byteLength(name, 'utf8');
    if (bytes === 0) this.add(`${what} is empty`, at, other);
    else if (bytes > IFNAME_MAX_BYTES) {
      this.add(
        `${what} '${name}' is ${bytes} bytes long; interface names are limited to ${IFNAME_MAX_BYTES} bytes`,
        at,
        other,
      );
    } else if (name === '.' || name === '..' || /[/:\s]/.test(name)) {
      this.add(
        `${what} '${name}' is not a valid interface name (no '/', ':' or white space, not '.' or '..')`,
        at,
        other,
      );
    } else return true;
    return false;
  }

  // --- one container --------------------------------------------------------------------

  /**
   * A container's checks, skipped when they found nothing last time for the same entry
   * (its canonical form and built spec) and the same networks: they read nothing else.
   */
  container(ct: ContainerSpec, canon: CanonContainer): void {
    const inputs = [ct, ...canon.networks.map((a) => this.spec.networks[a.network])];
    if (cleanContainers.get(canon, inputs)) return;
    const before = this.problems.length + this.warnings.length;
    this.containerChecks(ct, canon);
    if (this.problems.length + this.warnings.length === before) cleanContainers.set(canon, inputs, true);
  }

  private containerChecks(ct: ContainerSpec, canon: CanonContainer): void {
    const who = `container '${ct.name}'`;
    const mode = containerMode(canon);

    if (canon.networkMode !== undefined && canon.networksGiven) {
      this.add(
        `${who} declares mutually exclusive network_mode and networks`,
        sub(canon.at, 'network_mode'),
        sub(canon.at, 'networks'),
        {
          key: true,
          otherKey: true,
        },
      );
    } else if (canon.networks.length > 1) {
      const special = canon.networks.find((a) => PREDEFINED_MODES.has(a.network));
      if (special?.network === 'host') {
        this.add(
          `${who}: container sharing network namespace with another container or host cannot be connected to any other network`,
          special.at,
          undefined,
          { key: true },
        );
      } else if (special?.network === 'none') {
        this.add(
          `${who}: container cannot be connected to multiple networks with one of the networks in private (none) mode`,
          special.at,
          undefined,
          { key: true },
        );
      }
    }
    if (canon.netns !== undefined && mode !== 'bridge') {
      this.add(`${who}: netns cannot be used with network mode ${mode}`, sub(canon.at, 'netns'));
    }
    if (canon.ports.length > 0 && mode !== 'bridge') {
      this.warnings.push({
        code: W_PORTS_DISCARDED,
        message:
          mode === 'host'
            ? `${who}: Published ports are discarded when using host network mode`
            : `${who}: Published ports are discarded when using network mode none`,
        src: this.ref(sub(canon.at, 'ports'), true),
      });
    }
    if (canon.macAddress !== undefined) {
      if (mode !== 'bridge')
        this.add(
          `${who}: conflicting options: mac_address and the network mode ${mode}`,
          sub(canon.at, 'mac_address'),
        );
      else this.mac(canon.macAddress, `${who}`, sub(canon.at, 'mac_address'));
    }
    if (mode !== 'bridge') return;

    // A pinned MAC of the form tether gives an address (02:42 + IPv4, defaults.ts) clashes
    // with the container that gets that address, unless it is this one's pinned address.
    for (const { att, mac, at } of pinnedMacs(ct, canon)) {
      const ip = ipv4OfMac(mac);
      if (!ip || att.ipv4Address === ip) continue;
      this.warnings.push({
        code: W_MAC_OF_ADDRESS,
        message: `${who} on network '${att.network}': mac_address ${mac} is the MAC tether gives the container at ${ip}; should another container get that address, both interfaces have one MAC. Pin ipv4_address ${ip} with it, or choose another MAC`,
        src: this.ref(at, true),
      });
    }

    const usedNames = new Map<string, Origin>();
    for (const a of canon.networks) {
      if (a.interfaceName === undefined) continue;
      const at = sub(a.at, 'interface_name');
      if (!this.ifname(a.interfaceName, `interface name of ${who} on network '${a.network}'`, at)) continue;
      const prev = usedNames.get(a.interfaceName);
      if (prev) this.add(`${who} uses interface name '${a.interfaceName}' twice`, at, prev);
      else usedNames.set(a.interfaceName, at);
    }

    for (const a of canon.networks) {
      const on = `${who} on network '${a.network}'`;
      const n = this.spec.networks[a.network];
      if (!n) {
        this.add(`${who} refers to undefined network '${a.network}'`, a.at, undefined, { key: true });
        continue;
      }
      if (n.isDefault) {
        if (a.ipv4Address || a.ipv6Address) {
          const k = a.ipv4Address ? 'ipv4_address' : 'ipv6_address';
          this.add(
            `${on}: user-specified IP address is supported on user-defined networks only`,
            sub(a.at, k),
          );
        }
        if (a.aliases.length > 0) {
          this.add(
            `${on}: network-scoped alias is supported only for containers in user defined networks`,
            sub(a.at, 'aliases'),
          );
        }
      } else {
        if (a.ipv4Address && !n.enableIPv4) {
          this.add(`${on}: ipv4_address is set but the network has IPv4 disabled`, sub(a.at, 'ipv4_address'));
        }
        if (a.ipv6Address && !n.enableIPv6) {
          this.add(
            `${on}: ipv6_address is set but the network does not enable IPv6 (enable_ipv6: true)`,
            sub(a.at, 'ipv6_address'),
          );
        }
      }
      if (a.macAddress !== undefined) this.mac(a.macAddress, on, sub(a.at, 'mac_address'));
    }

    // Generated names: prefix + lowest index not taken, in manifest order (explicit names
    // are taken first). Only the length and the prefix can be wrong, so report those.
    const taken = new Set(usedNames.keys());
    for (const a of canon.networks) {
      const n = this.spec.networks[a.network];
      if (!n || a.interfaceName !== undefined) continue;
      let i = 0;
      while (taken.has(`${n.ifacePrefix}${i}`)) i++;
      const name = `${n.ifacePrefix}${i}`;
      taken.add(name);
      const prefixAt = n.isDefault
        ? undefined
        : sub(this.model.networks.get(n.name)![0].at, 'driver_opts', OPT.ifacePrefix);
      const bytes = Buffer.byteLength(name, 'utf8');
      if (bytes > IFNAME_MAX_BYTES) {
        this.add(
          `${who}: interface name '${name}' on network '${a.network}' (prefix '${n.ifacePrefix}' + index ${i}) is ${bytes} bytes long; interface names are limited to ${IFNAME_MAX_BYTES} bytes`,
          a.at,
          prefixAt,
          { key: true },
        );
      }
    }
  }

  private mac(text: string, who: string, at: Origin): void {
    const m = normalizeMac(text);
    if (!m) {
      this.add(`${who}: invalid MAC address: ${text} (expected six hex bytes like 02:42:ac:12:00:02)`, at);
    } else if ((Number.parseInt(m.slice(0, 2), 16) & 1) === 1) {
      this.add(`${who}: MAC address ${text} is a multicast address`, at);
    }
  }

  // --- addresses within networks --------------------------------------------------------

  // --- bridge size (docker-semantics §8.3) ------------------------------------------------

  /**
   * A Linux bridge numbers its ports 1..1023 (BR_MAX_PORTS = 1024, port 0 reserved); past
   * that adding a veth fails with EXFULL, so more is an input error. From 1000 on, Docker's documentation warns that
   * inter-container traffic becomes unstable: a warning.
   */
  bridgeSizes(count: ReadonlyMap<string, number>): void {
    for (const [name, n] of count) {
      const net = this.spec.networks[name];
      if (!net) continue;
      const at = this.model.networks.get(name)?.[0]?.at;
      const src = at ? this.ref(at, true) : net.src;
      if (n > 1023) {
        this.problems.push({
          message: `network '${name}' has ${n} containers: a Linux bridge holds at most 1023 ports (the kernel refuses more with "exchange full"); spread them over several networks`,
          src,
        });
      } else if (n >= 1000) {
        this.warnings.push({
          code: W_BRIDGE_CROWDED,
          message: `network '${name}' has ${n} containers: bridge networks become unstable and inter-container communication may break with 1000 containers or more on one network (Docker's limit); consider several networks`,
          src,
        });
      }
    }
  }

  /** Two containers must not be given the same static address or MAC on one network. */
  addresses(): Map<string, readonly string[]> {
    const taken = new Map<string, { container: string; at: Origin }>();
    const claimed = new Map<string, readonly string[]>();
    for (const [name, defs] of this.model.containers) {
      const mine: string[] = [];
      this.addressClaims(this.spec.containers[name], defs[0], (subject, at) => {
        mine.push(subject);
        const prev = taken.get(subject);
        if (prev) {
          this.add(
            `${subject} is given to both container '${prev.container}' and container '${name}'`,
            at,
            prev.at,
          );
        } else taken.set(subject, { container: name, at });
      });
      if (mine.length > 0) claimed.set(name, mine);
    }
    return claimed;
  }

  /**
   * Hands `claim` each static address (that fits its network) and each MAC of a container,
   * as "address 172.18.0.5 on network 'x'" or "MAC address … on network 'x'", with its place.
   */
  addressClaims(
    ct: ContainerSpec,
    canon: CanonContainer,
    claim: (subject: string, at: Origin) => void,
  ): void {
    const name = ct.name;
    // Only entries with a static address or a MAC anywhere have anything to check here.
    const claims =
      canon.macAddress !== undefined ||
      canon.networks.some((a) => a.ipv4Address || a.ipv6Address || a.macAddress);
    if (!claims || containerMode(canon) !== 'bridge') return;
    for (const a of canon.networks) {
      const n = this.spec.networks[a.network];
      if (!n || n.isDefault) continue;
      for (const [k, text] of [
        ['ipv4_address', a.ipv4Address],
        ['ipv6_address', a.ipv6Address],
      ] as const) {
        if (!text) continue;
        const at = sub(a.at, k);
        const ip = parseIp(text)!;
        if (this.addressInNetwork(n, ip, `${k} ${text} of container '${name}'`, at)) {
          claim(`address ${ip.text} on network '${n.name}'`, at);
        }
      }
    }
    for (const { att, mac, at } of pinnedMacs(ct, canon))
      claim(`MAC address ${mac} on network '${att.network}'`, at);
  }

  /** A static address against its network's explicit IPAM request. */
  private addressInNetwork(n: NetworkSpec, ip: Ip, what: string, at: Origin): boolean {
    const canon = this.model.networks.get(n.name)![0];
    const cfg = canon.ipam.find((x) => x.family === ip.family);
    const req = ip.family === 4 ? n.ipam4 : n.ipam6;
    const subnet = req.subnet ? parseCidr(req.subnet) : undefined;
    if (!cfg || !subnet || subnet.addr === 0n) return true; // allocated later: IPAM checks it
    const who = `network '${n.name}'`;
    if (!cidrContainsIp(subnet, ip)) {
      this.add(`${what} is outside the subnet ${req.subnet} of ${who}`, at, sub(cfg.at, 'subnet'));
      return false;
    }
    if (req.gateway === ip.text) {
      this.add(`${what} is the gateway address of ${who}`, at, sub(cfg.at, 'gateway'));
      return false;
    }
    const aux = Object.entries(req.aux).find(([, v]) => v === ip.text);
    if (aux) {
      this.add(
        `${what} is reserved as auxiliary address '${aux[0]}' of ${who}`,
        at,
        sub(cfg.at, 'aux_addresses', aux[0]),
      );
      return false;
    }
    if (ip.value === networkOf(subnet) && !(ip.family === 4 && subnet.prefix >= 31)) {
      this.add(`${what} is the network address of subnet ${req.subnet} of ${who}`, at, sub(cfg.at, 'subnet'));
      return false;
    }
    if (ip.family === 4 && subnet.prefix < 31 && ip.value === lastOf(subnet)) {
      this.add(
        `${what} is the broadcast address of subnet ${req.subnet} of ${who}`,
        at,
        sub(cfg.at, 'subnet'),
      );
      return false;
    }
    return true;
  }

  // --- published ports ------------------------------------------------------------------

  /** The host addresses a binding without host_ip listens on, from its gateway network. */
  /** The network whose endpoint carries the container's published ports (its gateway). */
  private gatewayNetwork(ct: ContainerSpec): NetworkSpec | undefined {
    const nets = ct.networks
      .map((a) => ({ a, n: this.spec.networks[a.network] }))
      .filter((x): x is { a: (typeof ct.networks)[number]; n: NetworkSpec } => x.n !== undefined);
    // Docker's Endpoint.Less, simplified: gw_priority, then non-internal, then name.
    nets.sort(
      (x, y) =>
        y.a.gwPriority - x.a.gwPriority ||
        Number(x.n.internal) - Number(y.n.internal) ||
        (x.n.name < y.n.name ? -1 : x.n.name > y.n.name ? 1 : 0),
    );
    return nets[0]?.n;
  }

  private defaultHostIps(gw: NetworkSpec | undefined): readonly Ip[] | undefined {
    if (!gw || gw.internal) return undefined; // no publishing without external connectivity
    if (!this.hostIpsOf.has(gw)) this.hostIpsOf.set(gw, bindingIps(gw.hostBindingIpv4));
    return this.hostIpsOf.get(gw);
  }

  ports(claims: PortClaims): void {
    const perContainer = new Map<string, readonly Binding[]>();
    for (const [name, defs] of this.model.containers) {
      const ct = this.spec.containers[name];
      if (ct.mode !== 'bridge') continue;
      const own = this.bindings(ct, defs[0]);
      if (own.length) perContainer.set(name, own);
    }
    // A clash needs two port specs claiming one host port of one protocol and family:
    // without such a pair (the usual case) there is nothing to look into.
    if (!claims.update(perContainer)) return;
    const bindings = [...perContainer.values()].flat();
    // Two bindings clash when they share a protocol, a family and a host port, and their
    // addresses are equal or one is unspecified. Every binding is filed under each host
    // port it claims, once by its address and once for "any address", so each binding
    // meets only the earlier ones that can clash with it (not every earlier binding).
    // Clashes are reported for each binding in order, against earlier ones in order.
    const byAddr = new Map<string, number[]>();
    const byPort = new Map<string, number[]>();
    const file = (m: Map<string, number[]>, k: string, j: number) => {
      const list = m.get(k);
      if (list) list.push(j);
      else m.set(k, [j]);
    };
    const reported = new Set<string>();
    for (let j = 0; j < bindings.length; j++) {
      const b = bindings[j];
      const earlier = new Set<number>();
      for (let p = b.lo; p <= b.hi; p++) {
        const lists = b.any
          ? [byPort.get(b.keys[p - b.lo]!)]
          : [byAddr.get(`${b.addrKey}${p}`), byAddr.get(`${b.group}*/${p}`)];
        for (const list of lists) for (const i of list ?? []) if (bindings[i].port !== b.port) earlier.add(i);
      }
      for (const i of [...earlier].sort((x, y) => x - y)) {
        const a = bindings[i];
        const pair = `${a.at.file}:${a.at.path.join('.')}\u0000${b.at.file}:${b.at.path.join('.')}`;
        if (reported.has(pair)) continue;
        reported.add(pair);
        const hostPort = (x: Binding) =>
          `${x.ip.family === 6 ? `[${x.ip.text}]` : x.ip.text}:${x.lo === x.hi ? x.lo : `${x.lo}-${x.hi}`}/${x.port.protocol}`;
        this.add(
          `container '${b.container}' publishes ${hostPort(b)} ('${b.text}'), which clashes with ${hostPort(a)} ('${a.text}') published by container '${a.container}'`,
          b.at,
          a.at,
        );
      }
      for (let p = b.lo; p <= b.hi; p++) {
        file(byAddr, `${b.addrKey}${p}`, j);
        file(byPort, b.keys[p - b.lo]!, j);
      }
    }
  }

  /** A bridge-mode container's fixed host-port claims, remembered with what they derive from. */
  bindings(ct: ContainerSpec, canon: CanonContainer): readonly Binding[] {
    const nets = ct.networks.map((a) => this.spec.networks[a.network]);
    return portBindings.of(canon, [ct, ...nets], () => this.bindingsOf(ct, canon));
  }

  /** A container's fixed host-port claims, one per host address it listens on. */
  private bindingsOf(ct: ContainerSpec, canon: CanonContainer): Binding[] {
    const out: Binding[] = [];
    const gw = this.gatewayNetwork(ct);
    const defaults = this.defaultHostIps(gw);
    canon.ports.forEach((cp, i) => {
      const port = ct.ports[i];
      if (port.published === undefined) return; // ephemeral
      const hostLen = (port.publishedEnd ?? port.published) - port.published;
      const ctrLen = port.targetEnd - port.target;
      // "8000-8010:80" picks one free port of the range when applied: not a fixed claim.
      if (hostLen !== ctrLen) return;
      const ips = port.hostIp !== undefined ? [parseIp(port.hostIp)!] : defaults;
      if (!ips) return;
      for (const ip of ips) {
        // Gateway mode routed publishes without NAT: it claims no host port (§1.3). An
        // IPv6 binding of a network without IPv6 is the IPv4 endpoint's (proxied) one.
        const v6own = ip.family === 6 && gw?.enableIPv6;
        if ((v6own ? gw?.gatewayModeV6 : gw?.gatewayModeV4) === 'routed') continue;
        const group = `${port.protocol}/${ip.family}/`;
        const any = isUnspecified(ip);
        const hi = port.publishedEnd ?? port.published;
        const keys: string[] = [];
        for (let p = port.published; p <= hi; p++) keys.push(`${group}${p}`);
        out.push({
          container: ct.name,
          port,
          text: cp.text,
          at: cp.at,
          ip,
          lo: port.published,
          hi,
          group,
          any,
          addrKey: `${group}${any ? '*' : ip.text}/`,
          keys,
        });
      }
    });
    return out;
  }
}
