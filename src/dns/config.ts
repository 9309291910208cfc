/**
 * What DNS should look like for a resolved world (pure):
 * - the embedded resolver's configuration: one listener per user-defined network's
 *   gateway address(es), the names each endpoint registers there (container name,
 *   aliases, hostname), and the upstreams (daemon `dns:`, else the host's resolvers);
 * - the userland proxies the resolver process runs for published ports NAT cannot serve;
 *   a container's names and proxies are its part of the configuration;
 * - each tether-made namespace's resolv.conf and hosts under /etc/netns/<netns>/, which
 *   `ip netns exec` (and `tether exec`) bind-mount over /etc.
 * The default bridge has no embedded DNS (Docker's legacy behaviour).
 */
import { join } from 'node:path';
import { freezeData, ObjectMemo, patchedKeys } from '../model/intern.js';
import { compactJson, jsonFile } from '../model/json.js';
import type { Resolved } from '../model/resolved.js';
import type { ResolverState } from '../model/state.js';
import { parseResolvConf, renderHosts, renderResolvConf } from './files.js';
import type { ProxySpec } from './proxy.js';
import type { DnsConfig } from './records.js';

export const netnsEtc = () => process.env.TETHER_NETNS_ETC ?? '/etc/netns';

export interface DnsWorld {
  /** Undefined when no user-defined network needs a resolver. */
  readonly config?: DnsConfig;
  /** Each container's part of the resolver's configuration, for containers that have one. */
  readonly parts: readonly (readonly [string, ResolverPart])[];
  /** Each container's proxies on host ports tether chose, for containers that have some. */
  readonly chosen: readonly (readonly [string, readonly ProxySpec[]])[];
  /** How many proxies the parts hold. */
  readonly proxies: number;
  /** Absolute path → file content. */
  readonly files: Readonly<Record<string, string>>;
}

export function dnsWorld(r: Resolved, hostResolvConf: string): DnsWorld {
  const setting = dnsSetting(r, hostResolvConf);
  const endpoints: DnsConfig['endpoints'] = [];
  const files: Record<string, string> = {};
  const parts: [string, ResolverPart][] = [];
  const chosen: [string, readonly ProxySpec[]][] = [];
  let proxies = 0;
  for (const c of Object.values(r.containers)) {
    const part = dnsPartOf(c, setting);
    for (const e of part.endpoints) endpoints.push(e);
    if (part.resolver) {
      parts.push([c.name, part.resolver]);
      proxies += part.resolver.proxies.length;
    }
    if (part.chosen.length) chosen.push([c.name, part.chosen]);
    for (const [path, text] of part.files) files[path] = text;
  }
  const { networks, upstreams } = setting;
  return {
    config: networks.length ? { networks, endpoints, upstreams } : undefined,
    parts,
    chosen,
    proxies,
    files,
  };
}

/**
 * What every container's DNS part is made from: the served networks, the upstreams, and
 * the rest of the context, with `key`, which tells whether two settings make the same parts.
 */
export interface DnsSetting {
  readonly networks: DnsConfig['networks'];
  readonly upstreams: DnsConfig['upstreams'];
  readonly ctx: DnsContext;
  readonly key: string;
}

export function dnsSetting(r: Resolved, hostResolvConf: string): DnsSetting {
  const networks: DnsConfig['networks'] = [];
  for (const n of Object.values(r.networks)) {
    if (n.spec.isDefault) continue;
    const listen = [n.v4?.onBridge ? n.v4.gateway : undefined, n.v6?.gateway].filter((x): x is string => !!x);
    if (!listen.length) continue;
    networks.push({
      name: n.name,
      listen,
      subnets: [n.v4?.subnet, n.v6?.subnet].filter((x): x is string => !!x),
    });
  }
  // Each served network's first listen address: its containers' resolver.
  const ctx: DnsContext = {
    resolverOf: new Map(networks.map((n) => [n.name, n.listen[0]!])),
    daemon: r.spec.daemon,
    networks: r.networks,
    hostResolvConf,
    // `host-gateway` is the default bridge's gateway, as in Docker.
    hostGateway: r.networks.bridge?.v4?.gateway,
    etc: netnsEtc(),
  };
  const upstreams = r.spec.daemon.dns.length
    ? [...r.spec.daemon.dns]
    : parseResolvConf(hostResolvConf).nameservers;
  const key = JSON.stringify([
    networks,
    Object.values(r.networks).map((n) => [n.name, n.spec.internal]),
    ctx.daemon.dns,
    ctx.daemon.dnsSearch,
    ctx.daemon.dnsOpts,
    hostResolvConf,
    ctx.hostGateway,
    ctx.etc,
  ]);
  return { networks, upstreams, ctx, key };
}

/** A container's names for the resolver and its files, in a setting (remembered). */
export function dnsPartOf(c: ResolvedContainer, setting: DnsSetting): DnsPart {
  return parts.of(c, [setting.key], () => {
    const { endpoints, files } = containerDns(c, setting.ctx);
    const { proxies, chosen } = containerProxies(c);
    // Frozen: compactJson keeps the text of frozen objects.
    const resolver = endpoints.length || proxies.length ? freezeData({ endpoints, proxies }) : undefined;
    return { endpoints, files, resolver, chosen: freezeData(chosen) };
  });
}

/**
 * The resolver's configuration index (dns.json): the served networks and upstreams, and
 * each container's part (dns/NAME.json, its names and proxies) named by a hash of its
 * text. The resolver reads and applies a part only when its hash changes.
 */
export interface ResolverIndex {
  readonly dns: {
    readonly networks: DnsConfig['networks'];
    readonly upstreams: DnsConfig['upstreams'];
  } | null;
  /** Container → the first 16 hex digits of the SHA-256 of its part's text. */
  readonly parts: Readonly<Record<string, string>>;
  /**
   * Container → its proxies on host ports tether chose (an ephemeral binding no NAT rule
   * records): IPAM keeps those ports (ipam.ts existingBindings). The resolver ignores it.
   */
  readonly chosen?: Readonly<Record<string, readonly ProxySpec[]>>;
}

/** A container's part of the resolver's configuration: its names and its userland proxies. */
export interface ResolverPart {
  readonly endpoints: readonly DnsEndpoint[];
  readonly proxies: readonly ProxySpec[];
}

/** The resolver's desired state for a DNS world; undefined when nothing needs a resolver. */
export function resolverState(w: DnsWorld): ResolverState | undefined {
  if (!w.config && !w.parts.length) return undefined;
  const parts: Record<string, string> = {};
  const hashes: Record<string, string> = {};
  for (const [name, part] of w.parts) {
    const t = partFile(part);
    parts[name] = t.text;
    hashes[name] = t.hash;
  }
  const dns = w.config ? { networks: w.config.networks, upstreams: w.config.upstreams } : null;
  return resolverOf(dns, parts, hashes, Object.fromEntries(w.chosen), w.proxies);
}

/**
 * A container's part file (dns/NAME.json): its text and hash, kept with the part. A part
 * without proxies is `{"endpoints": [...]}`.
 */
export const partFile = (part: ResolverPart) =>
  jsonFile(part, () => (part.proxies.length ? part : { endpoints: part.endpoints }));

/** The resolver's desired state: its index made of the parts' hashes, and the parts. */
export function resolverOf(
  dns: ResolverIndex['dns'],
  parts: Readonly<Record<string, string>>,
  hashes: Readonly<Record<string, string>>,
  chosen: Readonly<Record<string, readonly ProxySpec[]>>,
  proxies: number,
): ResolverState {
  return {
    // The index's text (JSON.stringify of a ResolverIndex) from kept texts: thousands of
    // part hashes, nearly all the same from one edit to the next.
    config: `{"dns":${JSON.stringify(dns)},"parts":${hashesText.of(hashes)},"chosen":${chosenText.of(chosen)}}\n`,
    running: true,
    parts,
    partHashes: hashes,
    chosen,
    networks: dns?.networks.length ?? 0,
    proxies,
  };
}

/**
 * A record's JSON text, made from the texts of its entries: the text of a record patched
 * from the last one (intern.ts patchRecord) is made from the last entries' texts, with
 * only the patched entries written again.
 */
class RecordText<V> {
  private last?: { record: object; text: string; entries: Map<string, string> };
  constructor(private readonly value: (v: V) => string) {}

  of(record: Readonly<Record<string, V>>): string {
    const last = this.last;
    if (last?.record === record) return last.text;
    // (A new key that is an array index goes ahead of the others in the record, not last.)
    let changed = last && patchedKeys(last.record, record);
    if (changed?.some(isIndex)) changed = undefined;
    const entries = changed ? last!.entries : new Map<string, string>();
    for (const k of changed ?? Object.keys(record)) {
      if (Object.hasOwn(record, k)) entries.set(k, `${JSON.stringify(k)}:${this.value(record[k]!)}`);
      else entries.delete(k);
    }
    const text = `{${[...entries.values()].join(',')}}`;
    this.last = { record, text, entries };
    return text;
  }
}

const hashesText = new RecordText<string>((h) => JSON.stringify(h));
const chosenText = new RecordText<readonly ProxySpec[]>(compactJson);

/** A key that objects hold as an array index: "0" to "4294967294" without leading zeros. */
const isIndex = (k: string) => /^(0|[1-9]\d{0,9})$/.test(k) && Number(k) < 4294967295;

export interface DnsContext {
  /** Served network → the resolver address its containers use. */
  readonly resolverOf: ReadonlyMap<string, string>;
  readonly daemon: Resolved['spec']['daemon'];
  readonly networks: Resolved['networks'];
  readonly hostResolvConf: string;
  readonly hostGateway?: string;
  readonly etc: string;
}

type ResolvedContainer = Resolved['containers'][string];
export type DnsEndpoint = DnsConfig['endpoints'][number];

/** One container's names for the resolver, its files (path, text) and its proxies. */
export interface DnsPart {
  readonly endpoints: readonly DnsEndpoint[];
  readonly files: readonly (readonly [string, string])[];
  /** Its part of the resolver's configuration; undefined when it has no names and no proxies. */
  readonly resolver?: ResolverPart;
  /** Its proxies on host ports tether chose (see ResolverIndex.chosen). */
  readonly chosen: readonly ProxySpec[];
}

/**
 * Each container's part, remembered per resolved container (kept by resolve() while
 * unchanged) and the setting it was made in (`key`): an edit renders one container's files.
 */
const parts = new ObjectMemo<ResolvedContainer, DnsPart>();

/** One container's names for the resolver, and its resolv.conf and hosts. */
function containerDns(
  c: ResolvedContainer,
  ctx: DnsContext,
): { endpoints: DnsEndpoint[]; files: [string, string][] } {
  const endpoints: DnsEndpoint[] = [];
  const files: [string, string][] = [];
  const served = ctx.resolverOf;
  if (c.endpoints.some((e) => served.has(e.network))) {
    // The container's own `dns:` servers are its forwarders; a container with no
    // external access (internal networks only) gets none, as in Docker.
    const external = c.endpoints.some((x) => !ctx.networks[x.network]!.spec.internal);
    const ownDns = c.spec.dns.length > 0 && c.spec.dns.join() !== ctx.daemon.dns.join();
    for (const e of c.endpoints) {
      if (!served.has(e.network)) continue;
      const names = [c.name, ...e.aliases, ...(c.spec.hostname ? [c.spec.hostname] : [])];
      const own = !external ? [] : ownDns ? [...c.spec.dns] : undefined;
      // Frozen: compactJson keeps the text of frozen objects.
      endpoints.push(
        freezeData({
          container: c.name,
          network: e.network,
          names: [...new Set(names)],
          ipv4: e.ipv4,
          ipv6: e.ipv6,
          ...(own ? { upstreams: own } : {}),
        }),
      );
    }
  }
  if (c.netnsName) {
    // The resolver of the gateway endpoint's network, else of the first served one.
    const dnsEp =
      c.endpoints.find((e) => e.isGateway4 && served.has(e.network)) ??
      c.endpoints.find((e) => served.has(e.network));
    const resolverIp = dnsEp && served.get(dnsEp.network);
    const ipv6 = c.endpoints.some((e) => e.ipv6);
    const dir = join(ctx.etc, c.netnsName);
    files.push([
      join(dir, 'resolv.conf'),
      renderResolvConf({
        nameservers: resolverIp ? [resolverIp] : [...(c.spec.dns.length ? c.spec.dns : ctx.daemon.dns)],
        search: c.spec.dnsSearch.length ? [...c.spec.dnsSearch] : [...ctx.daemon.dnsSearch],
        options: c.spec.dnsOpt.length ? [...c.spec.dnsOpt] : [...ctx.daemon.dnsOpts],
        embedded: !!resolverIp,
        hostResolvConf: ctx.hostResolvConf,
        ipv6,
      }),
    ]);
    files.push([
      join(dir, 'hosts'),
      renderHosts({
        hostname: c.spec.hostname ?? c.id.slice(0, 12),
        addresses: ownAddresses(c.endpoints),
        extraHosts: c.spec.extraHosts.map((h) => ({
          host: h.host,
          ip: h.ip === 'host-gateway' ? (ctx.hostGateway ?? h.ip) : h.ip,
        })),
        // Docker leaves the IPv6 lines out only when the container's `lo` has no ::1 (IPv6
        // disabled in it); a namespace tether makes keeps IPv6 on `lo`, also on IPv4-only
        // networks (TestEtcHostsIpv6, TestNonIPv6Network).
        ipv6: true,
        containerName: c.name,
      }),
    ]);
  }
  return { endpoints, files };
}

/** A container's addresses, endpoint by endpoint, IPv4 before IPv6. */
function ownAddresses(endpoints: Resolved['containers'][string]['endpoints']): string[] {
  const out: string[] = [];
  for (const e of endpoints) {
    if (e.ipv4) out.push(e.ipv4);
    if (e.ipv6) out.push(e.ipv6);
  }
  return out;
}

/**
 * A container's bindings the kernel cannot serve, relayed by the resolver process: the
 * host's [::1] for every IPv6 binding on :: or ::1 (DNAT cannot take a packet out of `lo`
 * in IPv6), and the IPv6 bindings of a container that has no IPv6 (`proxy`: NAT cannot turn
 * IPv6 into IPv4). `chosen`: those of the second kind whose host port tether chose.
 */
function containerProxies(c: ResolvedContainer): { proxies: ProxySpec[]; chosen: ProxySpec[] } {
  const proxies: ProxySpec[] = [];
  const chosen: ProxySpec[] = [];
  for (const p of c.ports) {
    if (p.family !== 6 || p.mode === 'routed' || !p.hostPort) continue;
    const listen = p.proxy ? p.hostIp : p.hostIp === '::' || p.hostIp === '::1' ? '::1' : undefined;
    if (!listen) continue;
    if (p.protocol === 'sctp') continue; // Node has no SCTP sockets
    const spec = freezeData({
      protocol: p.protocol === 'udp' ? ('udp' as const) : ('tcp' as const),
      listen,
      port: p.hostPort,
      to: p.containerIp,
      toPort: p.containerPort,
    });
    proxies.push(spec);
    if (p.proxy && p.ephemeral) chosen.push(spec);
  }
  return { proxies, chosen };
}
