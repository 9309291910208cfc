/**
 * Phase 3 of loading: turn each schema-valid document into one canonical shape.
 *
 * - `services` is read as `containers`;
 * - a container's `networks` list becomes attachments with default settings;
 * - Compose port short syntax ("8080:80", "127.0.0.1::80/udp", …) and long syntax become
 *   PortSpec values;
 * - string-or-list fields become lists, `extra_hosts` forms become {host, ip} pairs,
 *   labels lists become maps, driver option values become strings;
 * - addresses are checked and written in one canonical text form (RFC 5952 for IPv6).
 *
 * Files are then merged by name without resolving duplicates: every definition is kept
 * (with its origin) so that the consistency phase can name both places of a clash.
 * The small IP toolkit the later phases share lives here too.
 */

import type { SpecProblem } from '../model/errors.js';
import { freezeData, ObjectMemo } from '../model/intern.js';
import {
  contains,
  familyOf,
  firstAddr,
  formatIp as formatIpValue,
  parseIp as ipValue,
  isValidIp,
  lastAddr,
  overlaps,
} from '../model/ip.js';
import type { NetworkMode, PortSpec, Protocol } from '../model/spec.js';
import type { Origin, ParsedFile, Path, Sources } from './read.js';
import { formatPath } from './schema.js';

// ---------------------------------------------------------------------------------------
// IP toolkit

export type Family = 4 | 6;

export interface Ip {
  readonly family: Family;
  readonly value: bigint;
  /** Canonical text: dotted quad, or RFC 5952 for IPv6. */
  readonly text: string;
}

export interface Cidr {
  readonly family: Family;
  /** The address as written (host bits possibly set). */
  readonly addr: bigint;
  readonly prefix: number;
  /** Canonical text of the address as written, with the prefix. */
  readonly text: string;
}

// The arithmetic is src/model/ip.ts's; this layer keeps the loader's text-carrying shapes.
const BITS: Record<Family, number> = { 4: 32, 6: 128 };
const asModel = (c: Cidr) => ({ family: c.family, addr: c.addr, len: c.prefix });

/** Strict parse: four-part decimal IPv4, or IPv6 without a zone. */
export function parseIp(text: string): Ip | undefined {
  if (typeof text !== 'string' || text.includes('%') || !isValidIp(text)) return undefined;
  const family = familyOf(text);
  const value = ipValue(text);
  return { family, value, text: formatIp(family, value) };
}

export function parseCidr(text: string): Cidr | undefined {
  if (typeof text !== 'string') return undefined;
  const slash = text.lastIndexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const plen = text.slice(slash + 1);
  if (!ip || !/^\d{1,3}$/.test(plen)) return undefined;
  const prefix = Number(plen);
  if (prefix > BITS[ip.family]) return undefined;
  return { family: ip.family, addr: ip.value, prefix, text: `${ip.text}/${prefix}` };
}

export function formatIp(family: Family, value: bigint): string {
  return formatIpValue(value, family);
}

/** First address of the CIDR (host bits cleared). */
export function networkOf(c: Cidr): bigint {
  return firstAddr(asModel(c));
}

/** Last address of the CIDR. */
export function lastOf(c: Cidr): bigint {
  return lastAddr(asModel(c));
}

/** The CIDR with host bits cleared, as text: 172.18.0.1/16 → 172.18.0.0/16. */
export function maskedText(c: Cidr): string {
  return `${formatIp(c.family, networkOf(c))}/${c.prefix}`;
}

export function cidrContainsIp(c: Cidr, ip: Ip): boolean {
  return c.family === ip.family && contains(asModel(c), ip.value);
}

/** Whether `inner` (as a block) lies entirely inside `outer`. */
export function cidrContainsCidr(outer: Cidr, inner: Cidr): boolean {
  return (
    outer.family === inner.family && networkOf(inner) >= networkOf(outer) && lastOf(inner) <= lastOf(outer)
  );
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return overlaps(asModel(a), asModel(b));
}

export function isUnspecified(ip: Ip): boolean {
  return ip.value === 0n;
}

// ---------------------------------------------------------------------------------------
// Canonical shapes

export type DaemonKey =
  | 'bip'
  | 'fixed-cidr'
  | 'mtu'
  | 'default-gateway'
  | 'dns'
  | 'dns-search'
  | 'dns-opts'
  | 'icc'
  | 'ip-masq'
  | 'ip'
  | 'ipv6'
  | 'bip6'
  | 'fixed-cidr-v6'
  | 'default-gateway-v6'
  | 'default-address-pools'
  | 'userland-proxy';

export interface Occurrence<T = unknown> {
  readonly value: T;
  readonly at: Origin;
}

export interface CanonIpamConfig {
  readonly at: Origin;
  /** Family of the entry: of its subnet, else of its gateway, ip_range or first aux address. */
  readonly family: Family;
  readonly subnet?: string;
  readonly ipRange?: string;
  readonly gateway?: string;
  readonly aux: Readonly<Record<string, string>>;
}

export interface CanonNetwork {
  readonly name: string;
  readonly at: Origin;
  readonly internal?: boolean;
  readonly enableIPv4?: boolean;
  readonly enableIPv6?: boolean;
  readonly ipam: readonly CanonIpamConfig[];
  readonly driverOpts: Readonly<Record<string, string>>;
  readonly labels: Readonly<Record<string, string>>;
}

export interface CanonAttachment {
  readonly network: string;
  readonly at: Origin;
  readonly aliases: readonly string[];
  readonly ipv4Address?: string;
  readonly ipv6Address?: string;
  readonly macAddress?: string;
  readonly gwPriority: number;
  readonly interfaceName?: string;
  /** Endpoint driver options other than the interface name, as strings. */
  readonly driverOpts: Readonly<Record<string, string>>;
}

export interface CanonPort extends Omit<PortSpec, 'src'> {
  readonly at: Origin;
  /** The port as written, for messages. */
  readonly text: string;
}

export interface CanonExtraHost {
  readonly host: string;
  readonly ip: string;
  readonly at: Origin;
}

export interface CanonContainer {
  readonly name: string;
  readonly at: Origin;
  readonly networkMode?: NetworkMode;
  /** Whether the `networks` key was given at all (an empty list counts). */
  readonly networksGiven: boolean;
  readonly networks: readonly CanonAttachment[];
  readonly netns?: string;
  readonly ports: readonly CanonPort[];
  readonly hostname?: string;
  readonly dns: readonly string[];
  readonly dnsSearch: readonly string[];
  readonly dnsOpt: readonly string[];
  readonly extraHosts: readonly CanonExtraHost[];
  /** Service-level `mac_address`: applies to the first network. */
  readonly macAddress?: string;
}

/** All files merged by name; duplicates are kept for the consistency phase. */
export interface CanonModel {
  readonly files: readonly string[];
  readonly daemon: ReadonlyMap<DaemonKey, readonly Occurrence[]>;
  /** Every `daemon:` section, in file order. */
  readonly daemonSections: readonly Origin[];
  readonly networks: ReadonlyMap<string, readonly CanonNetwork[]>;
  readonly containers: ReadonlyMap<string, readonly CanonContainer[]>;
}

// ---------------------------------------------------------------------------------------
// Ports

export interface PortParse {
  readonly port?: Omit<PortSpec, 'src'>;
  readonly error?: string;
}

const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp', 'sctp'];

/**
 * Compose/Docker short syntax `[IP:][HOST[-END]:]CONTAINER[-END][/PROTO]`, split the way
 * Docker splits it: the last `:` field is the container port, the one before it the host
 * port, and everything before that the address. So `[::1]:80:80` and `::1:80:80` both
 * publish on ::1, and `127.0.0.1::80` is an ephemeral port on 127.0.0.1.
 */
export function parsePortShort(raw: string): PortParse {
  const slash = raw.indexOf('/');
  const body = slash < 0 ? raw : raw.slice(0, slash);
  const protoText = slash < 0 ? '' : raw.slice(slash + 1);
  if (body === '') return { error: `no port specified: ${raw}<empty>` };
  const parts = body.split(':');
  const n = parts.length;
  const container = parts[n - 1];
  const host = n >= 2 ? parts[n - 2] : '';
  const ip = n >= 3 ? parts.slice(0, n - 2).join(':') : '';
  return parseBinding(raw, ip, host, container, protoText === '' ? 'tcp' : protoText);
}

/** Shared by short and long syntax: texts in, one PortSpec (ranges kept as ranges) out. */
export function parseBinding(
  raw: string,
  ipText: string,
  hostText: string,
  containerText: string,
  proto: string,
): PortParse {
  const protocol = proto.toLowerCase() as Protocol;
  if (!PROTOCOLS.includes(protocol)) return { error: `invalid proto: ${proto}` };
  let hostIp: string | undefined;
  if (ipText !== '') {
    let t = ipText;
    if (t.startsWith('[')) {
      if (!t.endsWith(']')) return { error: `invalid IP address: ${ipText}` };
      t = t.slice(1, -1);
    }
    const ip = parseIp(t);
    if (!ip) return { error: `invalid IP address: ${ipText}` };
    hostIp = ip.text;
  }
  if (containerText === '') return { error: `no port specified: ${raw}<empty>` };
  const c = parseRange(containerText, false);
  if (!c) return { error: `invalid containerPort: ${containerText}` };
  let published: number | undefined;
  let publishedEnd: number | undefined;
  if (hostText !== '') {
    const h = parseRange(hostText, true);
    if (!h) return { error: `invalid hostPort: ${hostText}` };
    const cLen = c[1] - c[0];
    const hLen = h[1] - h[0];
    if (h[0] !== 0) {
      // Equal lengths map port to port; a host range with one container port means "pick
      // one free port of the range" (Docker's HostPort "8000-8010").
      if (cLen !== 0 && hLen !== cLen) {
        return {
          error: `invalid ranges specified for container and host Ports: ${containerText} and ${hostText}`,
        };
      }
      published = h[0];
      publishedEnd = h[1];
    }
  }
  const port: Omit<PortSpec, 'src'> = {
    target: c[0],
    targetEnd: c[1],
    ...(published !== undefined ? { published, publishedEnd } : {}),
    ...(hostIp !== undefined ? { hostIp } : {}),
    protocol,
  };
  return { port };
}

/** "80" or "80-82"; 1..65535, and for a host port a lone 0 (ephemeral). */
function parseRange(text: string, allowZero: boolean): [number, number] | undefined {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text);
  if (!m) return undefined;
  const a = Number(m[1]);
  const b = m[2] === undefined ? a : Number(m[2]);
  if (allowZero && a === 0 && b === 0) return [0, 0];
  if (a < 1 || b > 65535 || b < a) return undefined;
  return [a, b];
}

// ---------------------------------------------------------------------------------------
// Per-document canonicalisation

type Obj = Record<string, unknown>;

export const isObj = (v: unknown): v is Obj => v !== null && typeof v === 'object' && !Array.isArray(v);

class Canon {
  readonly problems: SpecProblem[] = [];

  constructor(
    private readonly file: string,
    private readonly sources: Sources,
  ) {}

  origin(path: Path): Origin {
    return { file: this.file, path };
  }

  problem(path: Path, message: string, key = false): void {
    this.problems.push({
      message,
      src: this.sources.ref(this.origin(path), { key }),
      path: formatPath(path),
    });
  }

  ip(path: Path, v: unknown, what: string, family?: Family): string | undefined {
    if (v === null || v === undefined) return undefined;
    const ip = parseIp(String(v));
    if (!ip) {
      this.problem(path, `${what} '${v}' is not a valid IP address`);
      return undefined;
    }
    if (family && ip.family !== family) {
      this.problem(path, `${what} '${v}' must be an IPv${family} address`);
      return undefined;
    }
    return ip.text;
  }

  cidr(path: Path, v: unknown, what: string, family?: Family): string | undefined {
    if (v === null || v === undefined) return undefined;
    const c = parseCidr(String(v));
    if (!c) {
      this.problem(
        path,
        `${what} '${v}' is not a valid CIDR (an address and a prefix length, like 172.18.0.0/16)`,
      );
      return undefined;
    }
    if (family && c.family !== family) {
      this.problem(path, `${what} '${v}' must be an IPv${family} CIDR`);
      return undefined;
    }
    return c.text;
  }
}

const stringify = (v: unknown): string => (v === null || v === undefined ? '' : String(v));

function list(v: unknown): string[] {
  if (v === null || v === undefined) return [];
  return Array.isArray(v) ? v.map(String) : [String(v)];
}

function optionMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (isObj(v)) for (const [k, x] of Object.entries(v)) out[k] = stringify(x);
  return out;
}

function labelMap(v: unknown): Record<string, string> {
  if (Array.isArray(v)) {
    const out: Record<string, string> = {};
    for (const item of v) {
      const s = String(item);
      const eq = s.indexOf('=');
      if (eq < 0) out[s] = '';
      else out[s.slice(0, eq)] = s.slice(eq + 1);
    }
    return out;
  }
  return optionMap(v);
}

const DAEMON_CIDRS: Partial<Record<DaemonKey, Family>> = {
  bip: 4,
  'fixed-cidr': 4,
  bip6: 6,
  'fixed-cidr-v6': 6,
};
const DAEMON_IPS: Partial<Record<DaemonKey, Family | 0>> = {
  'default-gateway': 4,
  'default-gateway-v6': 6,
  ip: 0,
};

export interface CanonFile {
  readonly file: string;
  readonly daemon?: { readonly at: Origin; readonly values: ReadonlyMap<DaemonKey, Occurrence> };
  readonly networks: readonly CanonNetwork[];
  readonly containers: readonly CanonContainer[];
}

/** Canonicalise one schema-valid document. */
export function canonicalFile(f: ParsedFile, sources: Sources): { file: CanonFile; problems: SpecProblem[] } {
  const c = new Canon(f.path, sources);
  const data = isObj(f.data) ? f.data : {};
  let daemon: CanonFile['daemon'];
  if ('daemon' in data) {
    const values = new Map<DaemonKey, Occurrence>();
    const d = isObj(data.daemon) ? data.daemon : {};
    for (const [k, raw] of Object.entries(d)) {
      const key = k as DaemonKey;
      const path = ['daemon', key];
      let value: unknown = raw;
      if (key in DAEMON_CIDRS) value = c.cidr(path, raw, `daemon ${key}`, DAEMON_CIDRS[key]);
      else if (key in DAEMON_IPS) value = c.ip(path, raw, `daemon ${key}`, DAEMON_IPS[key] || undefined);
      else if (key === 'dns') value = list(raw).map((s, i) => c.ip([...path, i], s, 'daemon dns server'));
      else if (key === 'default-address-pools') value = canonPools(c, raw as Obj[]);
      if (value === undefined) continue;
      values.set(key, { value, at: c.origin(path) });
    }
    daemon = { at: c.origin(['daemon']), values };
  }

  const networks: CanonNetwork[] = [];
  if (isObj(data.networks)) {
    for (const [name, raw] of Object.entries(data.networks))
      networks.push(rememberCanon(canonNetworks, c, raw, [f.path, name], () => canonNetwork(c, name, raw)));
  }

  const containers: CanonContainer[] = [];
  for (const section of ['containers', 'services'] as const) {
    const sec = data[section];
    if (!isObj(sec)) continue;
    for (const [name, raw] of Object.entries(sec))
      containers.push(containerEntry(c, f.path, section, name, raw));
  }
  return { file: { file: f.path, daemon, networks, containers }, problems: c.problems };
}

/** Canonicalise one container entry of `file` (the daemon's reload of the entries that changed). */
export function canonicalContainer(
  file: string,
  section: 'containers' | 'services',
  name: string,
  raw: unknown,
  sources: Sources,
): { container: CanonContainer; problems: SpecProblem[] } {
  const c = new Canon(file, sources);
  return { container: containerEntry(c, file, section, name, raw), problems: c.problems };
}

function containerEntry(
  c: Canon,
  file: string,
  section: 'containers' | 'services',
  name: string,
  raw: unknown,
): CanonContainer {
  return rememberCanon(canonContainers, c, raw, [file, section, name], () =>
    canonContainer(c, section, name, raw),
  );
}

function canonPools(c: Canon, pools: Obj[]): { base: string; size: number }[] {
  const out: { base: string; size: number }[] = [];
  pools.forEach((p, i) => {
    const path = ['daemon', 'default-address-pools', i];
    const base = c.cidr([...path, 'base'], p.base, 'default-address-pools base');
    const cidr = base ? parseCidr(base) : undefined;
    const size = Number(p.size);
    if (cidr && (size < cidr.prefix || size > BITS[cidr.family])) {
      c.problem(
        [...path, 'size'],
        `default-address-pools size ${size} does not fit base ${base}: it must be between ${cidr.prefix} and ${BITS[cidr.family]}`,
      );
      return;
    }
    if (base) out.push({ base, size });
  });
  return out;
}

/**
 * A canonical entry, remembered per raw entry: an entry parsed in pieces (read.ts) keeps its
 * frozen value while its text is unchanged, and its canonical form holds no line numbers
 * (origins are paths), so the same entry in the same place of the same file gives the same
 * (frozen) result. Entries with problems are not remembered: their messages carry lines.
 */
function rememberCanon<T>(
  memo: ObjectMemo<object, T>,
  c: Canon,
  raw: unknown,
  inputs: readonly unknown[],
  make: () => T,
): T {
  const frozen = isObj(raw) && Object.isFrozen(raw);
  const hit = frozen ? memo.get(raw, inputs) : undefined;
  if (hit) return hit;
  const before = c.problems.length;
  const result = make();
  if (frozen && c.problems.length === before) memo.set(raw, inputs, freezeData(result));
  return result;
}

const canonNetworks = new ObjectMemo<object, CanonNetwork>();
const canonContainers = new ObjectMemo<object, CanonContainer>();

function canonNetwork(c: Canon, name: string, raw: unknown): CanonNetwork {
  const n = isObj(raw) ? raw : {};
  const path = ['networks', name];
  if (typeof n.name === 'string' && n.name !== name) {
    c.problem(
      [...path, 'name'],
      `network '${name}' declares name '${n.name}': tether uses the key as the network's name, so the two must be equal`,
    );
  }
  const ipam: CanonIpamConfig[] = [];
  const ipamObj = isObj(n.ipam) ? n.ipam : {};
  const configs = Array.isArray(ipamObj.config) ? (ipamObj.config as unknown[]) : [];
  configs.forEach((rawCfg, i) => {
    const cfg = isObj(rawCfg) ? rawCfg : {};
    const p = [...path, 'ipam', 'config', i];
    const what = (k: string) => `${k} of network '${name}'`;
    const subnet = c.cidr([...p, 'subnet'], cfg.subnet, what('subnet'));
    const ipRange = c.cidr([...p, 'ip_range'], cfg.ip_range, what('ip_range'));
    const gateway = c.ip([...p, 'gateway'], cfg.gateway, what('gateway'));
    const aux: Record<string, string> = {};
    if (isObj(cfg.aux_addresses)) {
      for (const [k, v] of Object.entries(cfg.aux_addresses)) {
        const a = c.ip([...p, 'aux_addresses', k], v, `auxiliary address '${k}' of network '${name}'`);
        if (a) aux[k] = a;
      }
    }
    const family =
      (subnet && parseCidr(subnet)?.family) ||
      (gateway && parseIp(gateway)?.family) ||
      (ipRange && parseCidr(ipRange)?.family) ||
      Object.values(aux).map((a) => parseIp(a)?.family)[0] ||
      4;
    ipam.push({
      at: c.origin(p),
      family,
      ...(subnet ? { subnet } : {}),
      ...(ipRange ? { ipRange } : {}),
      ...(gateway ? { gateway } : {}),
      aux,
    });
  });
  return {
    name,
    at: c.origin(path),
    ...(typeof n.internal === 'boolean' ? { internal: n.internal } : {}),
    ...(typeof n.enable_ipv4 === 'boolean' ? { enableIPv4: n.enable_ipv4 } : {}),
    ...(typeof n.enable_ipv6 === 'boolean' ? { enableIPv6: n.enable_ipv6 } : {}),
    ipam,
    driverOpts: optionMap(n.driver_opts),
    labels: labelMap(n.labels),
  };
}

const ENDPOINT_IFNAME = 'com.docker.network.endpoint.ifname';

function canonContainer(
  c: Canon,
  section: 'containers' | 'services',
  name: string,
  raw: unknown,
): CanonContainer {
  const s = isObj(raw) ? raw : {};
  const path = [section, name];
  const kind = section === 'services' ? 'service' : 'container';
  const who = `${kind} '${name}'`;

  const networks: CanonAttachment[] = [];
  const netsGiven = 'networks' in s && s.networks !== null;
  if (Array.isArray(s.networks)) {
    s.networks.forEach((net, i) => {
      networks.push({
        network: String(net),
        at: c.origin([...path, 'networks', i]),
        aliases: [],
        gwPriority: 0,
        driverOpts: {},
      });
    });
  } else if (isObj(s.networks)) {
    for (const [net, rawAtt] of Object.entries(s.networks)) {
      const a = isObj(rawAtt) ? rawAtt : {};
      const p = [...path, 'networks', net];
      const on = `of ${who} on network '${net}'`;
      const opts = optionMap(a.driver_opts);
      const ifFromOpts = opts[ENDPOINT_IFNAME];
      delete opts[ENDPOINT_IFNAME];
      const ipv4 = c.ip([...p, 'ipv4_address'], a.ipv4_address, `ipv4_address ${on}`, 4);
      const ipv6 = c.ip([...p, 'ipv6_address'], a.ipv6_address, `ipv6_address ${on}`, 6);
      const ifname = typeof a.interface_name === 'string' ? a.interface_name : ifFromOpts;
      networks.push({
        network: net,
        at: c.origin(p),
        aliases: list(a.aliases),
        ...(ipv4 ? { ipv4Address: ipv4 } : {}),
        ...(ipv6 ? { ipv6Address: ipv6 } : {}),
        ...(typeof a.mac_address === 'string' ? { macAddress: a.mac_address } : {}),
        gwPriority: typeof a.gw_priority === 'number' ? a.gw_priority : 0,
        ...(ifname !== undefined ? { interfaceName: ifname } : {}),
        driverOpts: opts,
      });
    }
  }

  const ports: CanonPort[] = [];
  if (Array.isArray(s.ports)) {
    s.ports.forEach((rawPort, i) => {
      const p = [...path, 'ports', i];
      let parsed: PortParse;
      let text: string;
      if (isObj(rawPort)) {
        text = JSON.stringify(rawPort);
        parsed = parseBinding(
          text,
          rawPort.host_ip === undefined ? '' : String(rawPort.host_ip),
          rawPort.published === undefined || rawPort.published === null ? '' : String(rawPort.published),
          String(rawPort.target),
          rawPort.protocol === undefined ? 'tcp' : String(rawPort.protocol),
        );
      } else {
        text = String(rawPort);
        parsed = parsePortShort(text);
      }
      if (parsed.error || !parsed.port) c.problem(p, `port '${text}' of ${who}: ${parsed.error}`);
      // (Not `{ ...parsed.port, at, text }`: V8 builds an object slowly when keys follow a spread.)
      else ports.push(Object.assign({}, parsed.port, { at: c.origin(p), text }));
    });
  }

  const extraHosts: CanonExtraHost[] = [];
  const addHost = (p: Path, host: string, ipText: string, raw: string) => {
    let t = ipText;
    if (t.length > 1 && t.startsWith('[') && t.endsWith(']')) t = t.slice(1, -1);
    if (host === '') {
      c.problem(p, `extra_hosts entry '${raw}' of ${who} has no host name (write host:ip or host=ip)`);
      return;
    }
    if (t === 'host-gateway') {
      extraHosts.push({ host, ip: t, at: c.origin(p) });
      return;
    }
    const ip = parseIp(t);
    if (!ip) {
      c.problem(p, `extra_hosts entry '${raw}' of ${who}: invalid IP address '${ipText}'`);
      return;
    }
    extraHosts.push({ host, ip: ip.text, at: c.origin(p) });
  };
  if (Array.isArray(s.extra_hosts)) {
    s.extra_hosts.forEach((e, i) => {
      const raw = String(e);
      const p = [...path, 'extra_hosts', i];
      // Docker reads "host=ip" first (IPv6-friendly), then "host:ip" split at the first colon.
      let sep = raw.indexOf('=');
      if (sep < 0) sep = raw.indexOf(':');
      if (sep < 0) c.problem(p, `extra_hosts entry '${raw}' of ${who} is not host:ip or host=ip`);
      else addHost(p, raw.slice(0, sep), raw.slice(sep + 1), raw);
    });
  } else if (isObj(s.extra_hosts)) {
    for (const [host, v] of Object.entries(s.extra_hosts)) {
      const p = [...path, 'extra_hosts', host];
      const ips = list(v);
      ips.forEach((ip, i) => addHost(Array.isArray(v) ? [...p, i] : p, host, ip, `${host}=${ip}`));
    }
  }

  const dns: string[] = [];
  if (s.dns !== undefined) {
    const p = [...path, 'dns'];
    list(s.dns).forEach((d, i) => {
      const ip = c.ip(Array.isArray(s.dns) ? [...p, i] : p, d, `dns server of ${who}`);
      if (ip) dns.push(ip);
    });
  }

  let netns: string | undefined;
  if (typeof s.netns === 'string') {
    if (!s.netns.startsWith('/')) {
      c.problem(
        [...path, 'netns'],
        `netns '${s.netns}' of ${who} must be an absolute path, like /run/netns/NAME`,
      );
    } else netns = s.netns;
  }

  return {
    name,
    at: c.origin(path),
    ...(typeof s.network_mode === 'string' ? { networkMode: s.network_mode as NetworkMode } : {}),
    networksGiven: netsGiven,
    networks,
    ...(netns !== undefined ? { netns } : {}),
    ports,
    ...(typeof s.hostname === 'string' ? { hostname: s.hostname } : {}),
    dns,
    dnsSearch: list(s.dns_search),
    dnsOpt: list(s.dns_opt),
    extraHosts,
    ...(typeof s.mac_address === 'string' ? { macAddress: s.mac_address } : {}),
  };
}

/** Merge canonical files in order. Nothing is dropped: duplicates stay for the consistency phase. */
export function mergeFiles(files: readonly CanonFile[]): CanonModel {
  const daemon = new Map<DaemonKey, Occurrence[]>();
  const daemonSections: Origin[] = [];
  const networks = new Map<string, CanonNetwork[]>();
  const containers = new Map<string, CanonContainer[]>();
  const push = <K, V>(m: Map<K, V[]>, k: K, v: V) => {
    const arr = m.get(k);
    if (arr) arr.push(v);
    else m.set(k, [v]);
  };
  for (const f of files) {
    if (f.daemon) {
      daemonSections.push(f.daemon.at);
      for (const [k, occ] of f.daemon.values) push(daemon, k, occ);
    }
    for (const n of f.networks) push(networks, n.name, n);
    for (const ct of f.containers) push(containers, ct.name, ct);
  }
  return { files: files.map((f) => f.file), daemon, daemonSections, networks, containers };
}

/** Phase entry point: canonicalise every file and merge them. */
export function canonicalise(
  files: readonly ParsedFile[],
  sources: Sources,
): { model: CanonModel; problems: SpecProblem[] } {
  const problems: SpecProblem[] = [];
  const out: CanonFile[] = [];
  for (const f of files) {
    const r = canonicalFile(f, sources);
    problems.push(...r.problems);
    out.push(r.file);
  }
  return { model: mergeFiles(out), problems };
}
