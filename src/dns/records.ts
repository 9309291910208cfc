/**
 * Pure record logic of tether's embedded resolver (Docker embedded-DNS semantics,
 * docker-semantics.md §6.2, served aardvark-style on each network's gateway).
 *
 * No I/O here. {@link compileDns} turns a {@link DnsConfig} into lookup tables;
 * {@link patchDns} updates them when only some endpoints changed (a reload that touches a
 * few containers costs in proportion to them); {@link resolveLocal} answers one question
 * against them and says whether the answer is local, NXDOMAIN, or must be forwarded upstream.
 */
import type { StringAnswer } from 'dns-packet';
import { canonicalIp, type ParsedCidr, parseCidrStrict, parseIpStrict } from './ip.js';

/** A user-defined network that has a resolver listener. */
export interface DnsNetwork {
  /** Network name; also the suffix of network-qualified names (`web.alpine-net`). */
  name: string;
  /** Gateway addresses the resolver listens on (port 53 unless configured otherwise). */
  listen: string[];
  /** CIDRs whose hosts may query this network's listener; other sources are REFUSED. */
  subnets: string[];
}

/** One container attached to one network. A container on two networks has two endpoints. */
export interface DnsEndpoint {
  /** Container name. The PTR target, and the identity that links a container's endpoints. */
  container: string;
  /** The network this endpoint is on (a {@link DnsNetwork} name). */
  network: string;
  /** Names registered on that network: container name, aliases, hostname. Case-insensitive. */
  names: string[];
  ipv4?: string;
  ipv6?: string;
  /**
   * The container's own forwarders (its `dns:`), used for its queries instead of the
   * global ones; `[]` means none (a container with no external access, like Docker's
   * internal-only containers, gets SERVFAIL for outside names).
   */
  upstreams?: string[];
}

export interface DnsConfig {
  networks: DnsNetwork[];
  endpoints: DnsEndpoint[];
  /** Forwarders, tried in order: `"ip"`, `"ip:port"`, `"v6"` or `"[v6]:port"`. Invalid ones are skipped. */
  upstreams: string[];
  /** TTL of local answers in seconds. Default 600, as Docker. */
  ttl?: number;
}

/** The TTL Docker gives local answers. */
export const DEFAULT_TTL = 600;

/** A forwarder after parsing. */
export interface Upstream {
  host: string;
  port: number;
  family: 4 | 6;
}

interface NameAddrs {
  v4: string[];
  v6: string[];
}

/** One network's tables. */
export interface NetworkRecords {
  readonly name: string;
  readonly listen: readonly string[];
  readonly subnets: readonly ParsedCidr[];
  /** lower-cased name without trailing dot → addresses (deduplicated, endpoint order). */
  readonly names: ReadonlyMap<string, NameAddrs>;
  /** canonical address → container name, for PTR. */
  readonly ptr: ReadonlyMap<string, string>;
}

/**
 * Compiled, read-only form of a {@link DnsConfig}. Build it with {@link compileDns}; on a
 * reload, patch it with {@link patchDns} when only endpoints changed, else compile anew.
 * "Config order" and "endpoint order" below mean the order endpoints were listed in: after
 * a patch, the kept ones in their order, then the added ones.
 */
export interface DnsIndex {
  readonly kind: 'dns-index';
  readonly ttl: number;
  readonly networks: ReadonlyMap<string, NetworkRecords>;
  /** canonical address → the endpoints that own it, in config order. */
  readonly byIp: ReadonlyMap<string, readonly { container: string; network: string }[]>;
  /** container → its networks, in config order (first endpoint first). */
  readonly containerNetworks: ReadonlyMap<string, readonly string[]>;
  /** Every registered name on every network (lower-case): out-of-scope ones are NXDOMAIN. */
  readonly allNames: ReadonlySet<string>;
  /** canonical listen address → network name. */
  readonly listen: ReadonlyMap<string, string>;
  readonly upstreams: readonly Upstream[];
  /** Per-container forwarders, by the container's addresses. */
  readonly upstreamsByIp: ReadonlyMap<string, readonly Upstream[]>;
  /**
   * What was skipped while compiling (bad addresses, unknown networks, bad upstreams).
   * After {@link patchDns}: only what was skipped among the endpoints that patch added.
   */
  readonly warnings: readonly string[];
}

/** The forwarders for a query from `source`: the container's own, else the global ones. */
export function upstreamsFor(index: DnsIndex, source: string): readonly Upstream[] {
  const c = canonicalIp(source);
  return (c && index.upstreamsByIp.get(c)) || index.upstreams;
}

/** Lower-case and strip one trailing dot: the key form of a DNS name. */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/**
 * Parses an upstream: `"192.0.2.1"`, `"192.0.2.1:5353"`, `"2001:db8::1"`,
 * `"[2001:db8::1]:5353"`. Null when invalid (bad address, port outside 1..65535).
 */
export function parseUpstream(s: string): Upstream | null {
  if (typeof s !== 'string') return null;
  let host: string;
  let portText: string | undefined;
  const t = s.trim();
  if (t.startsWith('[')) {
    const close = t.indexOf(']');
    if (close < 0) return null;
    host = t.slice(1, close);
    const rest = t.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return null;
      portText = rest.slice(1);
    }
  } else {
    const colons = t.split(':').length - 1;
    if (colons === 1) {
      host = t.slice(0, t.indexOf(':'));
      portText = t.slice(t.indexOf(':') + 1);
    } else {
      host = t;
    }
  }
  const ip = parseIpStrict(host);
  if (!ip) return null;
  let port = 53;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText)) return null;
    port = Number(portText);
    if (port < 1 || port > 65535) return null;
  }
  return { host: ip.toString(), port, family: ip.kind() === 'ipv4' ? 4 : 6 };
}

/**
 * Builds the lookup tables. Never throws on bad data: invalid addresses, endpoints on
 * unknown networks and unparsable upstreams are skipped and listed in `warnings`.
 *
 * The index remembers how each table entry came about, so {@link patchDns} can later take
 * endpoints out and put others in without going over the rest.
 */
export function compileDns(cfg: DnsConfig): DnsIndex {
  const warnings: string[] = [];
  const networks = new Map<string, NetRecords>();
  const listen = new Map<string, string>();
  for (const n of cfg.networks ?? []) {
    if (networks.has(n.name)) {
      warnings.push(`network ${n.name} listed twice; the first definition is used`);
      continue;
    }
    const subnets: ParsedCidr[] = [];
    for (const s of n.subnets ?? []) {
      const c = parseCidrStrict(s);
      if (c) subnets.push(c);
      else warnings.push(`network ${n.name}: invalid subnet ${JSON.stringify(s)} skipped`);
    }
    const addrs: string[] = [];
    for (const a of n.listen ?? []) {
      const c = canonicalIp(a);
      if (!c) {
        warnings.push(`network ${n.name}: invalid listen address ${JSON.stringify(a)} skipped`);
      } else if (listen.has(c)) {
        warnings.push(`network ${n.name}: listen address ${c} already used by network ${listen.get(c)}`);
      } else {
        listen.set(c, n.name);
        addrs.push(c);
      }
    }
    networks.set(n.name, { name: n.name, listen: addrs, subnets, names: new Map(), ptr: new Map() });
  }

  const book: Book = {
    networks,
    next: 0,
    byContainer: new Map(),
    ownUpstreams: new Map(),
    byIp: new Map(),
    containerNetworks: new Map(),
    allNames: new Set(),
    upstreamsByIp: new Map(),
  };
  const late: string[] = [];
  for (const ep of cfg.endpoints ?? []) addListing(book, ep, warnings, late);
  const upstreams = parseUpstreams(cfg.upstreams ?? [], warnings);
  for (const w of late) warnings.push(w);

  const ttl =
    typeof cfg.ttl === 'number' && Number.isInteger(cfg.ttl) && cfg.ttl >= 0 ? cfg.ttl : DEFAULT_TTL;
  const index: DnsIndex = {
    kind: 'dns-index',
    ttl,
    networks,
    byIp: book.byIp,
    containerNetworks: book.containerNetworks,
    allNames: book.allNames,
    listen,
    upstreams,
    upstreamsByIp: book.upstreamsByIp,
    warnings,
  };
  books.set(index, book);
  return index;
}

/**
 * Takes the endpoints `gone` out of a compiled index and puts `added` in, in time
 * proportional to those endpoints (plus, for each name or address they share with
 * others, a splice in that name's or address's list).
 *
 * - `gone` are the very objects the index was built or patched with (compared by
 *   identity). An object listed more than once loses its earliest listing per mention.
 *   When one of them is not in the index this throws before changing anything; compile
 *   instead.
 * - The networks, upstreams and ttl stay those of the index: when they change, compile.
 * - Result: the tables {@link compileDns} would build from a config listing the kept
 *   endpoints in their order, then `added` in theirs. So where several endpoints share a
 *   name or an address, its address list or owner list may be in another order than a
 *   compile of the config as written (answers are rotated anyway). The iteration order of
 *   the maps, which no lookup depends on, is not part of this.
 * - The index is updated in place: the result shares its tables (do not keep using the
 *   argument as the old state). The result's `warnings` are those of `added` only.
 */
export function patchDns(
  index: DnsIndex,
  gone: readonly DnsEndpoint[],
  added: readonly DnsEndpoint[],
): DnsIndex {
  const book = books.get(index);
  if (!book) throw new Error('patchDns: this index was not built by compileDns');
  if (gone.length > 0) {
    // Check every removal first, so a wrong call leaves the index as it was.
    const seen = new Map<DnsEndpoint, number>();
    for (const ep of gone) {
      const times = (seen.get(ep) ?? 0) + 1;
      if (times > timesListed(book, ep)) {
        throw new Error(`patchDns: endpoint ${ep?.container} on ${ep?.network} is not in the index`);
      }
      seen.set(ep, times);
    }
  }
  // Added first, then gone: taking listings out keeps the others' order, so this ends the
  // same as the other way round. But a replaced container's names and addresses are then
  // not deleted from the maps and set again: in V8, deleting and setting one key over and
  // over in a large Map gets slow (measured: about 1 µs a cycle at 1000 entries, 25 µs at
  // 10 000), and a container being replaced again and again is just that.
  const warnings: string[] = [];
  const late: string[] = [];
  for (const ep of added) addListing(book, ep, warnings, late);
  for (const w of late) warnings.push(w);
  for (const ep of gone) dropListing(book, takeListing(book, ep));
  const next: DnsIndex = { ...index, warnings };
  books.set(next, book);
  return next;
}

function parseUpstreams(list: readonly string[], warnings: string[]): Upstream[] {
  const out: Upstream[] = [];
  for (const u of list) {
    const p = parseUpstream(u);
    if (p) out.push(p);
    else warnings.push(`invalid upstream ${JSON.stringify(u)} skipped`);
  }
  return out;
}

/** One listing of an endpoint in an index (an object listed twice has two). */
interface Listing {
  readonly ep: DnsEndpoint;
  readonly facts: EndpointFacts;
  /** Its place in the listing order: later listings have larger numbers. */
  readonly seq: number;
  /** Its network's tables; undefined when the network is unknown (only its upstreams count). */
  readonly net: NetRecords | undefined;
  /** Its entry in the `byIp` lists of its addresses (one object for both families). */
  readonly owner: { readonly container: string; readonly network: string };
}

/** One listing, or several in listing order: most things have exactly one. */
type OneOrMore = Listing | Listing[];

const firstSeq = (x: OneOrMore): number => (Array.isArray(x) ? x[0]!.seq : x.seq);

/**
 * A name's addresses on one network (the public {@link NameAddrs}) and, in private fields
 * that neither lookups nor comparisons see, which listings put them there.
 */
class NameEntry implements NameAddrs {
  readonly v4: string[] = [];
  readonly v6: string[] = [];
  /** Listings registering the name here; the entry goes when none is left. */
  #count = 1;
  /** The only listing, until a second one registers the name: every address is its. */
  #first: Listing | undefined;
  /**
   * address → the listings that contribute it, made when a second listing registers the
   * name. An address sits in its list where the first of them put it.
   */
  #by: Map<string, OneOrMore> | undefined;

  constructor(first: Listing) {
    this.#first = first;
    for (const ip of first.facts.ips) (ip.v6 ? this.v6 : this.v4).push(ip.text);
  }

  add(l: Listing): void {
    this.#count++;
    let by = this.#by;
    if (by === undefined) {
      by = this.#by = new Map();
      const first = this.#first!;
      for (const ip of first.facts.ips) by.set(ip.text, first);
      this.#first = undefined;
    }
    for (const ip of l.facts.ips) {
      const had = by.get(ip.text);
      if (had === undefined) {
        by.set(ip.text, l);
        (ip.v6 ? this.v6 : this.v4).push(ip.text);
      } else if (Array.isArray(had)) {
        had.push(l);
      } else {
        by.set(ip.text, [had, l]);
      }
    }
  }

  /** Takes `l`'s addresses out as if it had never registered the name; false when none is left. */
  drop(l: Listing): boolean {
    if (--this.#count === 0) return false;
    const by = this.#by!;
    for (const ip of l.facts.ips) {
      const had = by.get(ip.text)!;
      const list = ip.v6 ? this.v6 : this.v4;
      if (!Array.isArray(had)) {
        by.delete(ip.text);
        list.splice(list.indexOf(ip.text), 1);
        continue;
      }
      const i = had.indexOf(l);
      had.splice(i, 1);
      if (had.length === 1) by.set(ip.text, had[0]!);
      if (i > 0) continue;
      // Its first contributor went: the address moves to where the next one put it.
      list.splice(list.indexOf(ip.text), 1);
      const seq = had[0]!.seq;
      let lo = 0;
      let hi = list.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (firstSeq(by.get(list[mid]!)!) < seq) lo = mid + 1;
        else hi = mid;
      }
      list.splice(lo, 0, ip.text);
    }
    return true;
  }
}

/** A network's tables as the index builds them. */
interface NetRecords extends NetworkRecords {
  readonly names: Map<string, NameEntry>;
  readonly ptr: Map<string, string>;
}

/** What an index keeps to be patched: its mutable tables and where their entries came from. */
interface Book {
  readonly networks: ReadonlyMap<string, NetRecords>;
  /** The next listing's `seq`. */
  next: number;
  /** container → its listings, on known networks or not (how patchDns finds a gone endpoint). */
  readonly byContainer: Map<string, OneOrMore>;
  /** address → the listings with their own upstreams filed under it; the last one's win. */
  readonly ownUpstreams: Map<string, Listing[]>;
  readonly byIp: Map<string, { container: string; network: string }[]>;
  readonly containerNetworks: Map<string, string[]>;
  readonly allNames: Set<string>;
  readonly upstreamsByIp: Map<string, readonly Upstream[]>;
}

const books = new WeakMap<DnsIndex, Book>();

function timesListed(book: Book, ep: DnsEndpoint): number {
  const mine = book.byContainer.get(ep.container);
  if (mine === undefined) return 0;
  if (!Array.isArray(mine)) return mine.ep === ep ? 1 : 0;
  let n = 0;
  for (const l of mine) if (l.ep === ep) n++;
  return n;
}

/** Takes the earliest listing of `ep` out of its container's listings (it must have one). */
function takeListing(book: Book, ep: DnsEndpoint): Listing {
  const mine = book.byContainer.get(ep.container)!;
  if (!Array.isArray(mine)) {
    book.byContainer.delete(ep.container);
    return mine;
  }
  const i = mine.findIndex((l) => l.ep === ep);
  const [l] = mine.splice(i, 1);
  if (mine.length === 1) book.byContainer.set(ep.container, mine[0]!);
  return l!;
}

/**
 * Appends one listing to every table. Its warnings go to `warnings`, those about its own
 * upstreams to `late` (a compile lists them after the global upstreams' ones).
 */
function addListing(book: Book, ep: DnsEndpoint, warnings: string[], late: string[]): void {
  const net = book.networks.get(ep.network);
  const facts = endpointFacts(ep);
  const l: Listing = {
    ep,
    facts,
    seq: book.next++,
    net,
    owner: { container: ep.container, network: ep.network },
  };
  const mine = book.byContainer.get(ep.container);
  if (mine === undefined) book.byContainer.set(ep.container, l);
  else if (Array.isArray(mine)) mine.push(l);
  else book.byContainer.set(ep.container, [mine, l]);

  if (!net) {
    warnings.push(`endpoint ${ep.container}: unknown network ${ep.network}`);
  } else {
    for (const w of facts.warnings) warnings.push(w);
    const nets = book.containerNetworks.get(ep.container);
    if (nets === undefined) book.containerNetworks.set(ep.container, [ep.network]);
    else if (!nets.includes(ep.network)) nets.push(ep.network);

    const { names, ptr } = net;
    for (const k of facts.keys) {
      const entry = names.get(k);
      if (entry) {
        entry.add(l);
      } else {
        names.set(k, new NameEntry(l));
        book.allNames.add(k);
      }
    }
    for (const { text } of facts.ips) {
      if (!ptr.has(text)) ptr.set(text, ep.container);
      const owners = book.byIp.get(text);
      if (owners) owners.push(l.owner);
      else book.byIp.set(text, [l.owner]);
    }
  }

  if (facts.own) {
    for (const w of facts.ownWarnings) late.push(w);
    for (const a of facts.ownKeys) {
      const list = book.ownUpstreams.get(a);
      if (list) list.push(l);
      else book.ownUpstreams.set(a, [l]);
      book.upstreamsByIp.set(a, facts.own);
    }
  }
}

/** Undoes {@link addListing} as if `l` had never been listed; `l` is out of `byContainer`. */
function dropListing(book: Book, l: Listing): void {
  const { ep, facts, net } = l;
  if (net) {
    // The container's networks, each where its first remaining listing puts it.
    const mine = book.byContainer.get(ep.container);
    const nets: string[] = [];
    for (const m of mine === undefined ? [] : Array.isArray(mine) ? mine : [mine]) {
      if (m.net && !nets.includes(m.ep.network)) nets.push(m.ep.network);
    }
    if (nets.length > 0) book.containerNetworks.set(ep.container, nets);
    else book.containerNetworks.delete(ep.container);

    for (const k of facts.keys) {
      if (net.names.get(k)!.drop(l)) continue;
      net.names.delete(k);
      // A name leaves allNames with its last registrant on any network.
      let elsewhere = false;
      for (const other of book.networks.values()) if ((elsewhere = other.names.has(k))) break;
      if (!elsewhere) book.allNames.delete(k);
    }

    const ptr = net.ptr;
    for (const { text } of facts.ips) {
      const owners = book.byIp.get(text)!;
      const i = owners.indexOf(l.owner);
      owners.splice(i, 1);
      if (owners.length === 0) {
        book.byIp.delete(text);
        ptr.delete(text);
        continue;
      }
      let earlier = false;
      for (let j = 0; j < i && !earlier; j++) earlier = owners[j]!.network === ep.network;
      if (earlier) continue;
      // It was the PTR target here: the next owner on this network, if any, takes over.
      let after = i;
      while (after < owners.length && owners[after]!.network !== ep.network) after++;
      if (after < owners.length) ptr.set(text, owners[after]!.container);
      else ptr.delete(text);
    }
  }

  if (facts.own) {
    for (const a of facts.ownKeys) {
      const list = book.ownUpstreams.get(a)!;
      const i = list.indexOf(l);
      list.splice(i, 1);
      if (list.length === 0) {
        book.ownUpstreams.delete(a);
        book.upstreamsByIp.delete(a);
      } else if (i === list.length) {
        book.upstreamsByIp.set(a, list[list.length - 1]!.facts.own!);
      }
    }
  }
}

/**
 * An endpoint's parsed addresses (IPv4 first), normalized names and own upstreams, kept
 * per endpoint object: a reload keeps the objects of the parts that did not change
 * (dns/service.ts), so it parses only the new ones.
 */
interface EndpointFacts {
  readonly ips: readonly { readonly text: string; readonly v6: boolean }[];
  readonly keys: readonly string[];
  readonly warnings: readonly string[];
  /** Its own forwarders (undefined: it has none of its own, the global ones apply). */
  readonly own: readonly Upstream[] | undefined;
  readonly ownWarnings: readonly string[];
  /**
   * The addresses `own` is filed under: the canonical forms of its `ipv4` and `ipv6`
   * fields as written (either family in either field), without duplicates.
   */
  readonly ownKeys: readonly string[];
}
const factsOf = new WeakMap<DnsEndpoint, EndpointFacts>();

function endpointFacts(ep: DnsEndpoint): EndpointFacts {
  const known = factsOf.get(ep);
  if (known) return known;
  const warnings: string[] = [];
  const v4 = ep.ipv4 === undefined ? null : parseIpStrict(ep.ipv4);
  const v6 = ep.ipv6 === undefined ? null : parseIpStrict(ep.ipv6);
  if (ep.ipv4 !== undefined && v4?.kind() !== 'ipv4') {
    warnings.push(`endpoint ${ep.container} on ${ep.network}: invalid ipv4 ${JSON.stringify(ep.ipv4)}`);
  }
  if (ep.ipv6 !== undefined && v6?.kind() !== 'ipv6') {
    warnings.push(`endpoint ${ep.container} on ${ep.network}: invalid ipv6 ${JSON.stringify(ep.ipv6)}`);
  }
  const ips: { text: string; v6: boolean }[] = [];
  if (v4 && v4.kind() === 'ipv4') ips.push({ text: v4.toString(), v6: false });
  if (v6 && v6.kind() === 'ipv6') ips.push({ text: v6.toString(), v6: true });
  const keys = new Set<string>();
  for (const raw of [ep.container, ...(ep.names ?? [])]) {
    if (typeof raw !== 'string') continue;
    const k = normalizeName(raw);
    if (k !== '') keys.add(k);
  }
  const ownWarnings: string[] = [];
  let own: Upstream[] | undefined;
  const ownKeys: string[] = [];
  if (Array.isArray(ep.upstreams)) {
    own = parseUpstreams(ep.upstreams, ownWarnings);
    for (const ip of [v4, v6]) {
      const c = ip?.toString();
      if (c !== undefined && !ownKeys.includes(c)) ownKeys.push(c);
    }
  }
  const facts = { ips, keys: [...keys], warnings, own, ownWarnings, ownKeys };
  factsOf.set(ep, facts);
  return facts;
}

const compiled = new WeakMap<DnsConfig, DnsIndex>();

function indexOf(cfg: DnsConfig | DnsIndex): DnsIndex {
  if ((cfg as DnsIndex).kind === 'dns-index') return cfg as DnsIndex;
  const c = cfg as DnsConfig;
  let idx = compiled.get(c);
  if (!idx) {
    idx = compileDns(c);
    compiled.set(c, idx);
  }
  return idx;
}

/**
 * The networks a query is resolved against, in search order.
 *
 * The querier is the endpoint whose address equals the source (preferring one on the
 * network the query arrived on). Its scope is every network its container is attached
 * to, the arrival network first, then the rest in config order. A source that is no
 * endpoint (the host, a foreign machine in the subnet) sees only the arrival network.
 */
export function scopeFor(index: DnsIndex, source: string, network?: string): string[] {
  const key = canonicalIp(source);
  const owners = key ? index.byIp.get(key) : undefined;
  const me = owners?.find((o) => o.network === network) ?? owners?.[0];
  if (!me) return network !== undefined && index.networks.has(network) ? [network] : [];
  const nets = index.containerNetworks.get(me.container) ?? [me.network];
  if (network !== undefined && nets.includes(network)) return [network, ...nets.filter((n) => n !== network)];
  return [...nets];
}

/** One question as the resolver sees it. */
export interface LocalQuery {
  /** As asked (any case, with or without trailing dot). Answers echo it. */
  name: string;
  /** Record type, e.g. `'A'`, `'AAAA'`, `'PTR'`, `'MX'`. */
  type: string;
  /** The querier's address (IPv4-mapped IPv6 is accepted). */
  source: string;
  /** The network whose listener received the query. */
  network?: string;
}

export type LocalResult =
  /** Answer locally with rcode NOERROR; `records` may be empty (the name exists, no data of that type). */
  | { kind: 'answer'; records: StringAnswer[] }
  /** The name belongs to containers the querier does not share a network with. Never forwarded. */
  | { kind: 'nxdomain' }
  /** Not a local name: forward upstream. */
  | { kind: 'forward' };

let rotationCounter = 0;

function rotate<T>(list: readonly T[], by: number): T[] {
  if (list.length < 2) return [...list];
  const k = ((by % list.length) + list.length) % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

/**
 * Parses a reverse-lookup name (`4.3.2.1.in-addr.arpa`, 32 nibbles + `ip6.arpa`) into a
 * canonical address. Null for any other name, and for partial reverse names.
 */
export function reverseNameToIp(name: string): string | null {
  const n = normalizeName(name);
  if (n.endsWith('.in-addr.arpa')) {
    const labels = n.slice(0, -'.in-addr.arpa'.length).split('.');
    if (labels.length !== 4 || !labels.every((l) => /^(0|[1-9]\d{0,2})$/.test(l) && Number(l) <= 255)) {
      return null;
    }
    return canonicalIp(labels.reverse().join('.'));
  }
  if (n.endsWith('.ip6.arpa')) {
    const labels = n.slice(0, -'.ip6.arpa'.length).split('.');
    if (labels.length !== 32 || !labels.every((l) => /^[0-9a-f]$/.test(l))) return null;
    const hex = labels.reverse().join('');
    const groups: string[] = [];
    for (let i = 0; i < 32; i += 4) groups.push(hex.slice(i, i + 4));
    const ip = parseIpStrict(groups.join(':'));
    // An IPv4-mapped reverse name is not an IPv6 endpoint address; leave it to upstream.
    return ip && ip.kind() === 'ipv6' ? ip.toString() : null;
  }
  return null;
}

/** The reverse-lookup name of an address (for tests and callers building PTR queries). */
export function ipToReverseName(ip: string): string {
  const p = parseIpStrict(ip);
  if (!p) throw new Error(`not an IP address: ${ip}`);
  const bytes = p.toByteArray();
  if (p.kind() === 'ipv4') return `${bytes.reverse().join('.')}.in-addr.arpa`;
  const hex = bytes.map((b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.split('').reverse().join('.')}.ip6.arpa`;
}

interface Found {
  net: NetworkRecords;
  addrs: NameAddrs;
}

/** Every (network, entry) in scope that knows `key`, exact names first, then `<name>.<network>`. */
function findInScope(index: DnsIndex, scope: readonly string[], key: string): Found[] {
  const out: Found[] = [];
  for (const netName of scope) {
    const net = index.networks.get(netName);
    const e = net?.names.get(key);
    if (net && e) out.push({ net, addrs: e });
  }
  // Docker also tries "a.b.c" as name "a.b" in network "c", then "a" in network "b.c".
  for (let dot = key.lastIndexOf('.'); dot > 0; dot = key.lastIndexOf('.', dot - 1)) {
    const netName = scopeNetworkByLowerName(scope, key.slice(dot + 1));
    if (netName === undefined) continue;
    const net = index.networks.get(netName);
    const e = net?.names.get(key.slice(0, dot));
    if (net && e) out.push({ net, addrs: e });
  }
  return out;
}

/** The scope network whose name matches `lower` case-insensitively. */
function scopeNetworkByLowerName(scope: readonly string[], lower: string): string | undefined {
  for (const n of scope) if (n.toLowerCase() === lower) return n;
  return undefined;
}

/** Whether `key` names something on a network outside the scope (exact or network-qualified). */
function knownElsewhere(index: DnsIndex, key: string): boolean {
  if (index.allNames.has(key)) return true;
  for (let dot = key.lastIndexOf('.'); dot > 0; dot = key.lastIndexOf('.', dot - 1)) {
    const suffix = key.slice(dot + 1);
    for (const net of index.networks.values()) {
      if (net.name.toLowerCase() === suffix && net.names.has(key.slice(0, dot))) return true;
    }
  }
  return false;
}

/**
 * Resolves one question against the local records (Docker semantics, §6.2):
 *
 * - Scope: the querier's networks ({@link scopeFor}). Names match case-insensitively,
 *   with or without a trailing dot, exactly or as `<name>.<network>`.
 * - A/AAAA: every address of the asked family registered under the name on the first
 *   network in scope that has any, deduplicated and rotated by `rotation` (default: a
 *   module-wide counter, so successive calls round-robin). A name in scope with no
 *   address of that family (or asked for another type, e.g. MX) → NOERROR, no records.
 *   `ANY` returns both families.
 * - PTR of an in-scope endpoint address → one PTR, the container name.
 * - Names and addresses registered only on networks the querier does not share →
 *   NXDOMAIN, so they never leak and are never sent upstream.
 * - Everything else → forward.
 */
export function resolveLocal(
  config: DnsConfig | DnsIndex,
  query: LocalQuery,
  opts: { rotation?: number } = {},
): LocalResult {
  const index = indexOf(config);
  const key = normalizeName(query.name);
  const type = String(query.type).toUpperCase();
  const scope = scopeFor(index, query.source, query.network);
  const rotation = opts.rotation ?? rotationCounter++;
  if (rotationCounter > 0x3fffffff) rotationCounter = 0;
  const answerName = query.name.endsWith('.') ? query.name.slice(0, -1) : query.name;

  if (type === 'PTR') {
    const ip = reverseNameToIp(key);
    if (ip !== null) {
      for (const netName of scope) {
        const target = index.networks.get(netName)?.ptr.get(ip);
        if (target !== undefined) {
          return {
            kind: 'answer',
            records: [{ name: answerName, type: 'PTR', class: 'IN', ttl: index.ttl, data: target }],
          };
        }
      }
      return index.byIp.has(ip) ? { kind: 'nxdomain' } : { kind: 'forward' };
    }
  }

  if (key === '') return { kind: 'forward' };
  const found = findInScope(index, scope, key);
  if (found.length === 0) return knownElsewhere(index, key) ? { kind: 'nxdomain' } : { kind: 'forward' };

  const families: ('v4' | 'v6')[] =
    type === 'A' ? ['v4'] : type === 'AAAA' ? ['v6'] : type === 'ANY' ? ['v4', 'v6'] : [];
  const records: StringAnswer[] = [];
  for (const fam of families) {
    const hit = found.find((f) => f.addrs[fam].length > 0);
    if (!hit) continue;
    for (const ip of rotate(hit.addrs[fam], rotation)) {
      records.push({
        name: answerName,
        type: fam === 'v4' ? 'A' : 'AAAA',
        class: 'IN',
        ttl: index.ttl,
        data: ip,
      });
    }
  }
  return { kind: 'answer', records };
}
