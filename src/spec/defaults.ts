/**
 * Phase 4 of loading: build the Spec model from the canonical documents, filling in
 * Docker's defaults.
 *
 * - The predefined default bridge network `bridge` always exists, first, configured from
 *   `daemon:` (bip, fixed-cidr, default-gateway, mtu, icc, ip-masq, ip, ipv6, bip6,
 *   fixed-cidr-v6, default-gateway-v6). `host` and `none` are modes, not entries.
 * - User-defined networks get the bridge driver's defaults, read through Docker's option
 *   keys. Option values that do not parse fall back to the default here; the
 *   consistency phase reports them.
 * - Containers get a mode (bridge / host / none) and, in bridge mode without networks,
 *   the default `bridge` network. Daemon dns/dns-search/dns-opts fill in for containers
 *   that give none.
 *
 * When a name is defined more than once, the first definition is used; the consistency
 * phase reports the duplicate. No addresses are allocated here (that is IPAM's job).
 */

import type { SpecProblem } from '../model/errors.js';
import { freezeData, keepIfSame, ObjectMemo } from '../model/intern.js';
import type {
  AttachmentSpec,
  ContainerSpec,
  DaemonSpec,
  GatewayMode,
  IpamRequest,
  ManifestFile,
  NetworkMode,
  NetworkSpec,
  PortSpec,
  SourceRef,
  Spec,
  SpecWarning,
} from '../model/spec.js';
import {
  type CanonContainer,
  type CanonIpamConfig,
  type CanonModel,
  type CanonNetwork,
  type CanonPort,
  cidrContainsCidr,
  type DaemonKey,
  formatIp,
  maskedText,
  parseCidr,
  parseIp,
} from './canonical.js';
import type { Origin, Sources } from './read.js';
import { formatPath } from './schema.js';

/** Driver option keys, as Docker spells them. */
export const OPT = {
  bridgeName: 'com.docker.network.bridge.name',
  enableIcc: 'com.docker.network.bridge.enable_icc',
  enableIpMasquerade: 'com.docker.network.bridge.enable_ip_masquerade',
  hostBindingIpv4: 'com.docker.network.bridge.host_binding_ipv4',
  gatewayModeIpv4: 'com.docker.network.bridge.gateway_mode_ipv4',
  gatewayModeIpv6: 'com.docker.network.bridge.gateway_mode_ipv6',
  inhibitIpv4: 'com.docker.network.bridge.inhibit_ipv4',
  defaultBridge: 'com.docker.network.bridge.default_bridge',
  mtu: 'com.docker.network.driver.mtu',
  ifacePrefix: 'com.docker.network.container_iface_prefix',
  hostIpv4: 'com.docker.network.host_ipv4',
  hostIpv6: 'com.docker.network.host_ipv6',
  enableIpv4: 'com.docker.network.enable_ipv4',
  enableIpv6: 'com.docker.network.enable_ipv6',
} as const;

const KNOWN_OPTIONS = new Set<string>(Object.values(OPT).filter((k) => k !== OPT.defaultBridge));

/** Warning codes of the loader. */
export const W_UNKNOWN_OPTION = 'TETHER_W0101';
export const W_PORTS_DISCARDED = 'TETHER_W0102';
export const W_IPV4_CONFIG_IGNORED = 'TETHER_W0103';
export const W_BRIDGE_CROWDED = 'TETHER_W0104';
export const W_MAC_OF_ADDRESS = 'TETHER_W0105';

export const DEFAULT_BRIDGE = 'bridge';
export const PREDEFINED_MODES = new Set(['host', 'none']);
export const GATEWAY_MODES: readonly GatewayMode[] = ['nat', 'nat-unprotected', 'routed', 'isolated'];

/** Go's strconv.ParseBool, which Docker uses for boolean options. */
export function parseBool(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(v)) return false;
  return undefined;
}

export function parseGatewayMode(v: string | undefined): GatewayMode | undefined {
  return GATEWAY_MODES.includes(v as GatewayMode) ? (v as GatewayMode) : undefined;
}

/** A decimal integer (possibly negative), as Docker's strconv.Atoi reads it. */
export function parseIntOption(v: string | undefined): number | undefined {
  if (v === undefined || !/^[-+]?\d+$/.test(v)) return undefined;
  return Number(v);
}

/** Lowercase, colon-separated, 6 bytes; undefined if it is not a MAC. */
export function normalizeMac(v: string): string | undefined {
  const m =
    /^([0-9a-fA-F]{2})([:-])([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})\2([0-9a-fA-F]{2})$/.exec(
      v,
    );
  if (!m) return undefined;
  return [m[1], m[3], m[4], m[5], m[6], m[7]].join(':').toLowerCase();
}

/**
 * The MAC of an endpoint the manifest gives none: 02:42 and its IPv4 address (Docker's
 * before 28.0), none without IPv4 (the kernel's random one). A container given the address
 * of one that went has the MAC its neighbours' ARP caches hold for it, so they reach it at
 * once (Docker 28 sends unsolicited ARPs instead).
 */
export function macOfIpv4(ip: string | undefined): string | undefined {
  if (!ip) return undefined;
  return `02:42:${ip
    .split('.')
    .map((b) => Number(b).toString(16).padStart(2, '0'))
    .join(':')}`;
}

/** The IPv4 address whose MAC (macOfIpv4) a normalized MAC is; undefined for other MACs. */
export function ipv4OfMac(mac: string): string | undefined {
  if (!mac.startsWith('02:42:')) return undefined;
  return mac
    .slice(6)
    .split(':')
    .map((b) => Number.parseInt(b, 16))
    .join('.');
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export interface DefaultsResult {
  readonly spec: Spec;
  readonly problems: SpecProblem[];
  readonly warnings: SpecWarning[];
  /** The warnings of the networks (the first of `warnings`), */
  readonly networkWarnings: readonly SpecWarning[];
  /** and of each container that has any, for the daemon's next reload (incremental.ts). */
  readonly containerWarnings: ReadonlyMap<string, readonly SpecWarning[]>;
}

export function applyDefaults(
  model: CanonModel,
  sources: Sources,
  files: readonly ManifestFile[],
): DefaultsResult {
  const daemon = buildDaemon(model);
  const { networks, problems, warnings: networkWarnings } = defaultNetworks(model, daemon, sources);
  const warnings = [...networkWarnings];
  const containers: Record<string, ContainerSpec> = {};
  const containerWarnings = new Map<string, readonly SpecWarning[]>();
  const dns = dnsDefaults(daemon);
  for (const [name, defs] of model.containers) {
    const built = defaultContainer(defs[0], daemon, dns, sources);
    containers[name] = built.spec;
    if (built.warnings.length > 0) {
      containerWarnings.set(name, built.warnings);
      warnings.push(...built.warnings);
    }
  }

  const spec: Spec = { daemon, networks, containers, files: [...files], warnings };
  return { spec, problems, warnings, networkWarnings, containerWarnings };
}

/**
 * The default bridge and the user-defined networks, with their problems and warnings
 * (applyDefaults, and the daemon's reload when only the networks' lines moved).
 */
export function defaultNetworks(
  model: CanonModel,
  daemon: DaemonSpec,
  sources: Sources,
): { networks: Record<string, NetworkSpec>; problems: SpecProblem[]; warnings: SpecWarning[] } {
  const problems: SpecProblem[] = [];
  const warnings: SpecWarning[] = [];
  const networks: Record<string, NetworkSpec> = {};
  networks[DEFAULT_BRIDGE] = lastDefaultBridge = keepIfSame(
    lastDefaultBridge,
    buildDefaultBridge(model, daemon, sources),
  );

  for (const [name, defs] of model.networks) {
    const first = defs[0];
    if (name === DEFAULT_BRIDGE) {
      for (const d of defs) {
        problems.push({
          message: `network 'bridge' is predefined (the default bridge) and cannot be defined: configure it under daemon: (bip, fixed-cidr, mtu, icc, ...)`,
          src: sources.ref(d.at, { key: true }),
          path: formatPath(d.at.path),
        });
      }
      continue;
    }
    if (PREDEFINED_MODES.has(name)) {
      for (const d of defs) {
        problems.push({
          message: `network '${name}' is predefined and cannot be defined: use network_mode: ${name} on a container`,
          src: sources.ref(d.at, { key: true }),
          path: formatPath(d.at.path),
        });
      }
      continue;
    }
    networks[name] = rememberBuilt(builtNetworks, first, [], sources, warnings, (mine) =>
      buildNetwork(first, sources, mine),
    );
  }
  return { networks, problems, warnings };
}

/** What a container copies from the daemon, as one string to remember it by. */
export function dnsDefaults(daemon: DaemonSpec): string {
  return JSON.stringify([daemon.dns, daemon.dnsSearch, daemon.dnsOpts]);
}

/**
 * One container's spec and its warnings, from its first definition (applyDefaults, and the
 * daemon's reload of the entries that changed). `dns` is dnsDefaults(daemon).
 */
export function defaultContainer(
  canon: CanonContainer,
  daemon: DaemonSpec,
  dns: string,
  sources: Sources,
): { spec: ContainerSpec; warnings: readonly SpecWarning[] } {
  const warnings: SpecWarning[] = [];
  const spec = rememberBuilt(builtContainers, canon, [dns], sources, warnings, (mine) =>
    buildContainer(canon, daemon, sources, mine),
  );
  return { spec, warnings };
}

function first<T>(model: CanonModel, key: DaemonKey): T | undefined {
  return model.daemon.get(key)?.[0]?.value as T | undefined;
}

function buildDaemon(model: CanonModel): DaemonSpec {
  const d: Mutable<DaemonSpec> = {
    dns: first<string[]>(model, 'dns') ?? [],
    dnsSearch: first<string[]>(model, 'dns-search') ?? [],
    dnsOpts: first<string[]>(model, 'dns-opts') ?? [],
    icc: first<boolean>(model, 'icc') ?? true,
    ipMasq: first<boolean>(model, 'ip-masq') ?? true,
    ip: first<string>(model, 'ip') ?? '0.0.0.0',
    ipv6: first<boolean>(model, 'ipv6') ?? false,
    userlandProxy: first<boolean>(model, 'userland-proxy') ?? true,
  };
  const opt = <K extends keyof DaemonSpec>(k: K, key: DaemonKey) => {
    const v = first<DaemonSpec[K]>(model, key);
    if (v !== undefined) d[k] = v;
  };
  opt('bip', 'bip');
  opt('fixedCidr', 'fixed-cidr');
  opt('mtu', 'mtu');
  opt('defaultGateway', 'default-gateway');
  opt('bip6', 'bip6');
  opt('fixedCidrV6', 'fixed-cidr-v6');
  opt('defaultGatewayV6', 'default-gateway-v6');
  opt('defaultAddressPools', 'default-address-pools');
  return d;
}

/**
 * The default bridge's IPAM request from daemon keys (Docker's getDefaultBridgeIPAMConf):
 * `bip` gives the subnet (masked) and the gateway; `fixed-cidr` the dynamic range, and
 * the subnet too when there is no bip or when it is wider than bip's subnet (Docker widens
 * it); `default-gateway` becomes the aux address DefaultGatewayIPv4.
 */
function defaultBridgeIpam(
  bip: string | undefined,
  fixed: string | undefined,
  gw: string | undefined,
  auxName: string,
) {
  const req: Mutable<IpamRequest> = { aux: {} };
  const b = bip ? parseCidr(bip) : undefined;
  const f = fixed ? parseCidr(fixed) : undefined;
  if (b) {
    req.subnet = maskedText(b);
    req.gateway = formatIp(b.family, b.addr);
  }
  if (f) {
    req.ipRange = maskedText(f);
    const subnet = req.subnet ? parseCidr(req.subnet) : undefined;
    if (!subnet || (f.prefix < subnet.prefix && cidrContainsCidr(f, subnet))) req.subnet = maskedText(f);
  }
  if (gw) req.aux = { [auxName]: gw };
  return req;
}

function buildDefaultBridge(model: CanonModel, daemon: DaemonSpec, sources: Sources): NetworkSpec {
  const src = model.daemonSections[0] ? sources.ref(model.daemonSections[0], { key: true }) : undefined;
  const ipam4 = defaultBridgeIpam(daemon.bip, daemon.fixedCidr, daemon.defaultGateway, 'DefaultGatewayIPv4');
  const ipam6 = daemon.ipv6
    ? defaultBridgeIpam(daemon.bip6, daemon.fixedCidrV6, daemon.defaultGatewayV6, 'DefaultGatewayIPv6')
    : { aux: {} };
  const at = (key: DaemonKey) => model.daemon.get(key)?.[0]?.at;
  const ipamSrc = (...keys: DaemonKey[]) => {
    const o = keys.map(at).find((x) => x !== undefined);
    return o ? { src: sources.ref(o) } : {};
  };
  const options: Record<string, string> = {
    [OPT.defaultBridge]: 'true',
    [OPT.enableIcc]: String(daemon.icc),
    [OPT.enableIpMasquerade]: String(daemon.ipMasq),
    [OPT.hostBindingIpv4]: daemon.ip,
  };
  if (daemon.mtu !== undefined) options[OPT.mtu] = String(daemon.mtu);
  return {
    name: DEFAULT_BRIDGE,
    driver: 'bridge',
    isDefault: true,
    internal: false,
    enableIPv4: true,
    enableIPv6: daemon.ipv6,
    ipam4: { ...ipam4, ...ipamSrc('bip', 'fixed-cidr', 'default-gateway') },
    ipam6: { ...ipam6, ...(daemon.ipv6 ? ipamSrc('bip6', 'fixed-cidr-v6', 'default-gateway-v6') : {}) },
    icc: daemon.icc,
    masquerade: daemon.ipMasq,
    hostBindingIpv4: daemon.ip,
    gatewayModeV4: 'nat',
    gatewayModeV6: 'nat',
    inhibitIpv4: false,
    ...(daemon.mtu !== undefined && daemon.mtu !== 0 ? { mtu: daemon.mtu } : {}),
    ifacePrefix: 'eth',
    options,
    labels: {},
    ...(src ? { src } : {}),
  };
}

function ipamRequest(cfg: CanonIpamConfig | undefined, sources: Sources): IpamRequest {
  if (!cfg) return { aux: {} };
  return {
    ...(cfg.subnet ? { subnet: cfg.subnet } : {}),
    ...(cfg.ipRange ? { ipRange: cfg.ipRange } : {}),
    ...(cfg.gateway ? { gateway: cfg.gateway } : {}),
    aux: { ...cfg.aux },
    src: sources.ref(cfg.at),
  };
}

/**
 * A built network or container, remembered per canonical entry (canonical.ts keeps it while
 * the entry's text is unchanged), the line its entry starts on (every place it reports lies
 * inside the entry) and `inputs` (what else it copies): an unchanged entry keeps its frozen
 * spec object, which the memos downstream (consistency checks, IPAM) compare by identity,
 * and its warnings are given again.
 */
function rememberBuilt<K extends { readonly at: Origin }, T>(
  memo: ObjectMemo<K, { result: T; warnings: readonly SpecWarning[] }>,
  entry: K,
  inputs: readonly unknown[],
  sources: Sources,
  warnings: SpecWarning[],
  build: (mine: SpecWarning[]) => T,
): T {
  const line = Object.isFrozen(entry) ? sources.entryLine(entry.at) : undefined;
  const make = () => {
    const mine: SpecWarning[] = [];
    return { result: freezeData(build(mine)), warnings: mine };
  };
  const { result, warnings: mine } = line === undefined ? make() : memo.of(entry, [line, ...inputs], make);
  warnings.push(...mine);
  return result;
}

const builtNetworks = new ObjectMemo<
  CanonNetwork,
  { result: NetworkSpec; warnings: readonly SpecWarning[] }
>();
const builtContainers = new ObjectMemo<
  CanonContainer,
  { result: ContainerSpec; warnings: readonly SpecWarning[] }
>();

/** The default bridge made last, kept while the new one is equal to it. */
let lastDefaultBridge: NetworkSpec | undefined;

function buildNetwork(n: CanonNetwork, sources: Sources, warnings: SpecWarning[]): NetworkSpec {
  const o = n.driverOpts;
  const enableIPv4 = n.enableIPv4 ?? parseBool(o[OPT.enableIpv4]) ?? true;
  const enableIPv6 = n.enableIPv6 ?? parseBool(o[OPT.enableIpv6]) ?? false;
  const v4 = n.ipam.find((c) => c.family === 4);
  const v6 = n.ipam.find((c) => c.family === 6);
  if (v4 && !enableIPv4) {
    warnings.push({
      code: W_IPV4_CONFIG_IGNORED,
      message: `network '${n.name}' has enable_ipv4: false, so its IPv4 ipam config is ignored`,
      src: sources.ref(v4.at),
    });
  }
  const unknown = Object.keys(o).filter((k) => !KNOWN_OPTIONS.has(k));
  if (unknown.length > 0) {
    warnings.push({
      code: W_UNKNOWN_OPTION,
      message: `network '${n.name}': driver option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} ${unknown.length > 1 ? 'are' : 'is'} not known to tether; kept, with no effect`,
      src: sources.ref({ file: n.at.file, path: [...n.at.path, 'driver_opts', unknown[0]] }, { key: true }),
    });
  }
  const hostBinding = o[OPT.hostBindingIpv4] !== undefined ? parseIp(o[OPT.hostBindingIpv4]) : undefined;
  const hostIpv4 = o[OPT.hostIpv4] !== undefined ? parseIp(o[OPT.hostIpv4]) : undefined;
  const hostIpv6 = o[OPT.hostIpv6] !== undefined ? parseIp(o[OPT.hostIpv6]) : undefined;
  const mtu = parseIntOption(o[OPT.mtu]);
  const prefix = o[OPT.ifacePrefix];
  return {
    name: n.name,
    driver: 'bridge',
    isDefault: false,
    internal: n.internal ?? false,
    enableIPv4,
    enableIPv6,
    // Docker drops an IPv6 subnet silently when IPv6 is not enabled.
    ipam4: enableIPv4 ? ipamRequest(v4, sources) : { aux: {} },
    ipam6: enableIPv6 ? ipamRequest(v6, sources) : { aux: {} },
    ...(o[OPT.bridgeName] !== undefined ? { bridgeName: o[OPT.bridgeName] } : {}),
    icc: parseBool(o[OPT.enableIcc]) ?? true,
    masquerade: parseBool(o[OPT.enableIpMasquerade]) ?? true,
    hostBindingIpv4: hostBinding?.text ?? '0.0.0.0',
    gatewayModeV4: parseGatewayMode(o[OPT.gatewayModeIpv4]) ?? 'nat',
    gatewayModeV6: parseGatewayMode(o[OPT.gatewayModeIpv6]) ?? 'nat',
    inhibitIpv4: parseBool(o[OPT.inhibitIpv4]) ?? false,
    ...(mtu !== undefined && mtu !== 0 ? { mtu } : {}),
    ifacePrefix: prefix !== undefined && prefix !== '' ? prefix : 'eth',
    ...(hostIpv4 ? { hostIpv4: hostIpv4.text } : {}),
    ...(hostIpv6 ? { hostIpv6: hostIpv6.text } : {}),
    options: { ...o },
    labels: { ...n.labels },
    src: sources.ref(n.at, { key: true }),
  };
}

/**
 * A canonical port as the model has it: every field but `at` and `text`, then `src`.
 * (Copied key by key: `({ at, text, ...p }) => ({ ...p, src })` is several times slower
 * in V8, which matters at thousands of ports.)
 */
function portSpec(cp: CanonPort, src: SourceRef): PortSpec {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(cp)) if (k !== 'at' && k !== 'text') out[k] = v;
  out.src = src;
  return out as unknown as PortSpec;
}

/** The mode a container ends up in: network_mode, else `host`/`none` listed as a network. */
export function containerMode(c: CanonContainer): NetworkMode {
  if (c.networkMode) return c.networkMode;
  if (c.networks.some((a) => a.network === 'host')) return 'host';
  if (c.networks.some((a) => a.network === 'none')) return 'none';
  return 'bridge';
}

function buildContainer(
  c: CanonContainer,
  daemon: DaemonSpec,
  sources: Sources,
  warnings: SpecWarning[],
): ContainerSpec {
  const mode = containerMode(c);
  const src = sources.ref(c.at, { key: true });
  let networks: AttachmentSpec[] = [];
  if (mode === 'bridge') {
    networks = c.networks.map((a) => {
      const unknown = Object.keys(a.driverOpts);
      if (unknown.length > 0) {
        warnings.push({
          code: W_UNKNOWN_OPTION,
          message: `container '${c.name}' on network '${a.network}': endpoint driver option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} ${unknown.length > 1 ? 'are' : 'is'} not supported by tether and ignored`,
          src: sources.ref(
            { file: a.at.file, path: [...a.at.path, 'driver_opts', unknown[0]] },
            { key: true },
          ),
        });
      }
      const mac = a.macAddress !== undefined ? (normalizeMac(a.macAddress) ?? a.macAddress) : undefined;
      return {
        network: a.network,
        aliases: [...a.aliases],
        ...(a.ipv4Address ? { ipv4Address: a.ipv4Address } : {}),
        ...(a.ipv6Address ? { ipv6Address: a.ipv6Address } : {}),
        ...(mac !== undefined ? { macAddress: mac } : {}),
        gwPriority: a.gwPriority,
        ...(a.interfaceName !== undefined ? { interfaceName: a.interfaceName } : {}),
        src: sources.ref(a.at, { key: true }),
      };
    });
    if (networks.length === 0) {
      networks = [{ network: DEFAULT_BRIDGE, aliases: [], gwPriority: 0, src }];
    }
    if (c.macAddress !== undefined && networks[0].macAddress === undefined) {
      networks[0] = { ...networks[0], macAddress: normalizeMac(c.macAddress) ?? c.macAddress };
    }
  }
  // Docker discards published ports outside bridge mode; the consistency phase warns.
  const ports: PortSpec[] = c.ports.map((p) => portSpec(p, sources.ref(p.at)));
  return {
    name: c.name,
    mode,
    ...(c.netns !== undefined ? { netns: c.netns } : {}),
    networks,
    ports: mode === 'bridge' ? ports : [],
    ...(c.hostname !== undefined ? { hostname: c.hostname } : {}),
    dns: c.dns.length > 0 ? [...c.dns] : [...daemon.dns],
    dnsSearch: c.dnsSearch.length > 0 ? [...c.dnsSearch] : [...daemon.dnsSearch],
    dnsOpt: c.dnsOpt.length > 0 ? [...c.dnsOpt] : [...daemon.dnsOpts],
    extraHosts: c.extraHosts.map((h) => ({ host: h.host, ip: h.ip })),
    src,
  };
}
