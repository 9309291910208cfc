/**
 * What DNS should look like for a resolved world (pure):
 * - the embedded resolver's configuration: one listener per user-defined network's
 *   gateway address(es), the names each endpoint registers there (container name,
 *   aliases, hostname), and the upstreams (daemon `dns:`, else the host's resolvers);
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
  /** Each container's endpoints in `config`, for containers that have some (same objects). */
  readonly parts: readonly (readonly [string, readonly DnsEndpoint[]])[];
  /** Published ports the kernel cannot NAT, relayed in userland (see proxy.ts). */
  readonly proxies: readonly ProxySpec[];
  /** Absolute path → file content. */
  readonly files: Readonly<Record<string, string>>;
}

export function dnsWorld(r: Resolved, hostResolvConf: string): DnsWorld {
  const setting = dnsSetting(r, hostResolvConf);
  const endpoints: DnsConfig['endpoints'] = [];
  const files: Record<string, string> = {};
  const named: [string, readonly DnsEndpoint[]][] = [];
  for (const c of Object.values(r.containers)) {
    const part = dnsPartOf(c, setting);
    if (part.endpoints.length) {
      for (const e of part.endpoints) endpoints.push(e);
      named.push([c.name, part.endpoints]);
    }
    for (const [path, text] of part.files) files[path] = text;
  }
  const { networks, upstreams } = setting;
  return {
    config: networks.length ? { networks, endpoints, upstreams } : undefined,
    parts: networks.length ? named : [],
    proxies: loopbackProxies(r),
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
  return parts.of(c, [setting.key], () => containerDns(c, setting.ctx));
}

/**
 * The resolver's configuration index (dns.json): everything but the containers' names,
 * which are parts of their own (dns/NAME.json, `{"endpoints": [...]}`), named here with a
 * hash of their text. The resolver reads a part again only when its hash changes.
 */
export interface ResolverIndex {
  readonly dns: {
    readonly networks: DnsConfig['networks'];
    readonly upstreams: DnsConfig['upstreams'];
  } | null;
  /** Container → the first 16 hex digits of the SHA-256 of its part's text. */
  readonly parts: Readonly<Record<string, string>>;
  readonly proxies: readonly ProxySpec[];
}

/** The resolver's desired state for a DNS world; undefined when nothing needs a resolver. */
export function resolverState(w: DnsWorld): ResolverState | undefined {
  if (!w.config && !w.proxies.length) return undefined;
  const parts: Record<string, string> = {};
  const hashes: Record<string, string> = {};
  for (const [name, endpoints] of w.parts) {
    const t = partFile(endpoints);
    parts[name] = t.text;
    hashes[name] = t.hash;
  }
  const dns = w.config ? { networks: w.config.networks, upstreams: w.config.upstreams } : null;
  return resolverOf(dns, parts, hashes, w.proxies);
}

/** A container's part file (dns/NAME.json): its text and hash, kept with its endpoints. */
export const partFile = (endpoints: readonly DnsEndpoint[]) => jsonFile(endpoints, () => ({ endpoints }));

/** The resolver's desired state: its index made of the parts' hashes, and the parts. */
export function resolverOf(
  dns: ResolverIndex['dns'],
  parts: Readonly<Record<string, string>>,
  hashes: Readonly<Record<string, string>>,
  proxies: readonly ProxySpec[],
): ResolverState {
  return {
    // The index's text (JSON.stringify of a ResolverIndex) from kept texts: thousands of
    // part hashes and proxies, nearly all the same from one edit to the next.
    config: `{"dns":${JSON.stringify(dns)},"parts":${hashesJson(hashes)},"proxies":${proxiesJson(proxies)}}\n`,
    running: true,
    parts,
    partHashes: hashes,
    networks: dns?.networks.length ?? 0,
    proxies: proxies.length,
  };
}

/**
 * The last part-hash record written as text, and its entries' texts in its order: the text
 * of a record patched from it (intern.ts patchRecord) is made from them, patched the same way.
 */
let lastHashes: { record: object; text: string; entries: Map<string, string> } | undefined;

function hashesJson(hashes: Readonly<Record<string, string>>): string {
  if (lastHashes?.record === hashes) return lastHashes.text;
  // (A new key that is an array index goes ahead of the others in the record, not last.)
  let changed = lastHashes && patchedKeys(lastHashes.record, hashes);
  if (changed?.some(isIndex)) changed = undefined;
  const entries = changed ? lastHashes!.entries : new Map<string, string>();
  for (const k of changed ?? Object.keys(hashes)) {
    if (Object.hasOwn(hashes, k)) entries.set(k, `${JSON.stringify(k)}:${JSON.stringify(hashes[k])}`);
    else entries.delete(k);
  }
  const text = `{${[...entries.values()].join(',')}}`;
  lastHashes = { record: hashes, text, entries };
  return text;
}

/** A key that objects hold as an array index: "0" to "4294967294" without leading zeros. */
const isIndex = (k: string) => /^(0|[1-9]\d{0,9})$/.test(k) && Number(k) < 4294967295;

/**
 * The last proxy list written as text, with each proxy's text: a list that keeps most of
 * its proxies (in the same order: loopbackProxies sorts them) reuses their texts.
 */
let lastProxies: { list: readonly ProxySpec[]; texts: readonly string[]; text: string } | undefined;

function proxiesJson(list: readonly ProxySpec[]): string {
  if (lastProxies?.list === list) return lastProxies.text;
  const old = lastProxies?.list ?? [];
  const oldTexts = lastProxies?.texts ?? [];
  const texts: string[] = [];
  let i = 0;
  for (const p of list) {
    while (i < old.length && old[i] !== p && proxyOrder(old[i]!, p) < 0) i++;
    texts.push(old[i] === p ? oldTexts[i++]! : compactJson(p));
  }
  const text = `[${texts.join(',')}]`;
  lastProxies = { list, texts, text };
  return text;
}

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

/** One container's names for the resolver, and its files (path, text). */
export interface DnsPart {
  readonly endpoints: readonly DnsEndpoint[];
  readonly files: readonly (readonly [string, string])[];
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
        ipv6,
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
 * Bindings the kernel cannot serve: the host's [::1] for every IPv6 binding on :: or ::1
 * (DNAT cannot take a packet out of `lo` in IPv6), and IPv6 bindings of containers that
 * have no IPv6 (`proxy: true`: NAT cannot turn IPv6 into IPv4).
 */
export function loopbackProxies(r: Resolved): ProxySpec[] {
  const out = new Map<string, ProxySpec>();
  for (const c of Object.values(r.containers))
    for (const spec of proxiesOf(c)) out.set(`${spec.protocol} ${spec.listen} ${spec.port}`, spec);
  return [...out.values()].sort((a, b) => a.port - b.port || a.protocol.localeCompare(b.protocol));
}

/** Proxies in loopbackProxies' order: by port, then protocol. */
const proxyOrder = (a: ProxySpec, b: ProxySpec) => a.port - b.port || a.protocol.localeCompare(b.protocol);

/**
 * loopbackProxies' list `prev` with some containers' proxies taken out (`gone`) and others'
 * put in (`added`); undefined when the result also depends on the containers' order (two
 * proxies on one port and protocol), which loopbackProxies then works out.
 */
export function patchedProxies(
  prev: readonly ProxySpec[],
  gone: readonly ProxySpec[],
  added: readonly ProxySpec[],
): ProxySpec[] | undefined {
  const out = [...prev];
  // The first index whose proxy does not come before p.
  const at = (p: ProxySpec) => {
    let lo = 0;
    let hi = out.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (proxyOrder(out[mid]!, p) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  for (const p of gone) {
    const i = at(p);
    if (out[i] !== p || (out[i + 1] && proxyOrder(out[i + 1]!, p) === 0)) return undefined;
    out.splice(i, 1);
  }
  for (const p of added) {
    const i = at(p);
    if (out[i] && proxyOrder(out[i]!, p) === 0) return undefined;
    out.splice(i, 0, p);
  }
  return out;
}

/** One container's proxies, per resolved container; frozen, so that their text is kept. */
const proxyParts = new ObjectMemo<ResolvedContainer, readonly ProxySpec[]>();

export const proxiesOf = (c: ResolvedContainer) => proxyParts.of(c, [], () => containerProxies(c));

function containerProxies(c: ResolvedContainer): ProxySpec[] {
  const out: ProxySpec[] = [];
  for (const p of c.ports) {
    if (p.family !== 6 || p.mode === 'routed' || !p.hostPort) continue;
    const listen = p.proxy ? p.hostIp : p.hostIp === '::' || p.hostIp === '::1' ? '::1' : undefined;
    if (!listen) continue;
    if (p.protocol === 'sctp') continue; // Node has no SCTP sockets
    out.push(
      freezeData({
        protocol: p.protocol === 'udp' ? 'udp' : 'tcp',
        listen,
        port: p.hostPort,
        to: p.containerIp,
        toPort: p.containerPort,
      }),
    );
  }
  return out;
}
