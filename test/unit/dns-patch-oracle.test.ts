/*
 * patchDns against compileDns: random worlds of containers come and go, and after every
 * step the patched index must equal a compile of the config that lists the kept endpoints
 * in their order, then the added ones (patchDns's contract), table by table and in the
 * answers resolveLocal gives.
 *
 * Conventions for these tests:
 * - container subnets: 172.18.0.0/16 + fd00:18::/64 (front), 172.19.0.0/16 (back),
 *   fd00:20::/64 (six, IPv6 only); gateways are .1 / ::1;
 * - "outside" addresses only from 192.0.2.0/24 and 2001:db8::/32;
 * - address pools are small on purpose, so that containers share addresses (several
 *   owners, PTR falling back to the next one) and names (service aliases).
 * Pure logic, except the last block, which starts a resolver on loopback (port 0).
 */
import dgram from 'node:dgram';
import type { RecordType } from 'dns-packet';
import dnsPacket from 'dns-packet';
import { afterEach, describe, expect, it } from 'vitest';
import {
  compileDns,
  type DnsConfig,
  type DnsEndpoint,
  type DnsIndex,
  type DnsNetwork,
  ipToReverseName,
  patchDns,
  resolveLocal,
  upstreamsFor,
} from '../../src/dns/records.js';
import { type Resolver, startResolver } from '../../src/dns/server.js';

// ---- random worlds ------------------------------------------------------------------

/** mulberry32: small, seedable, good enough to pick test data. */
function rng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const chance = (p: number) => next() < p;
  return { int, pick, chance };
}
type Rng = ReturnType<typeof rng>;

const NETWORKS: DnsNetwork[] = [
  { name: 'front', listen: ['172.18.0.1', 'fd00:18::1'], subnets: ['172.18.0.0/16', 'fd00:18::/64'] },
  { name: 'back', listen: ['172.19.0.1'], subnets: ['172.19.0.0/16'] },
  { name: 'six', listen: ['fd00:20::1'], subnets: ['fd00:20::/64'] },
];
const UPSTREAMS = ['192.0.2.53', '[2001:db8::53]:5353'];

/** Addresses each network's endpoints draw from: few, so they collide; some spelled oddly. */
const V4: Record<string, string[]> = {
  front: ['172.18.0.2', '172.18.0.3', '172.18.0.4', '172.18.0.5', '::ffff:172.18.0.2', '172.19.0.2'],
  back: ['172.19.0.2', '172.19.0.3', '172.19.0.4', '172.18.0.3'],
  six: [],
};
const V6: Record<string, string[]> = {
  front: ['fd00:18::2', 'fd00:18::3', 'FD00:18:0:0::4', 'fd00:18::5'],
  back: [],
  six: ['fd00:20::2', 'fd00:20::3', 'fd00:20:0::2', 'fd00:18::2'],
};
const BAD_V4 = ['nope', '172.18.1', 'fd00:18::9', ''];
const BAD_V6 = ['172.18.0.9', 'fd00::g', ':::'];
const ALIASES = ['web', 'db', 'LB', 'lb.', 'api', 'c1', 'c2.front', 'svc.back', 'cache'];
const OWN_UPSTREAMS: string[][] = [[], ['192.0.2.1'], ['192.0.2.2:5353', 'bogus'], ['[2001:db8::1]:53']];

/** One container: its endpoints are removed and re-added together, as the resolver does. */
interface Container {
  name: string;
  endpoints: DnsEndpoint[];
}

function makeContainer(r: Rng, name: string): Container {
  const count = 1 + r.int(3);
  const hostname = r.chance(0.3) ? `h${r.int(4)}` : undefined;
  const upstreams = r.chance(0.25) ? r.pick(OWN_UPSTREAMS) : undefined;
  const aliases = ALIASES.filter(() => r.chance(0.2));
  const endpoints: DnsEndpoint[] = [];
  for (let i = 0; i < count; i++) {
    // Mostly known networks, sometimes the same one twice, rarely an unknown one.
    const network = r.chance(0.06) ? 'ghost' : r.pick(NETWORKS).name;
    const ep: DnsEndpoint = {
      container: name,
      network,
      names: [name, ...aliases.filter(() => r.chance(0.7)), ...(hostname ? [hostname] : [])],
    };
    const v4s = V4[network] ?? V4.front!;
    const v6s = V6[network] ?? V6.front!;
    if (r.chance(0.05)) ep.ipv4 = r.pick(BAD_V4);
    else if (v4s.length > 0 && r.chance(0.85)) ep.ipv4 = r.pick(v4s);
    if (r.chance(0.04)) ep.ipv6 = r.pick(BAD_V6);
    else if (v6s.length > 0 && r.chance(0.5)) ep.ipv6 = r.pick(v6s);
    if (upstreams) ep.upstreams = [...upstreams];
    endpoints.push(ep);
  }
  // Rarely, one object listed twice (patchDns: a mention in `gone` takes its earliest listing).
  if (r.chance(0.03)) endpoints.push(endpoints[0]!);
  return { name, endpoints };
}

/** A name for a new container: mostly unused ones, sometimes one in use (two containers, one name). */
function newName(r: Rng, live: readonly Container[]): string {
  if (live.length > 0 && r.chance(0.08)) return r.pick(live).name;
  for (;;) {
    const n = `c${r.int(24)}`;
    if (!live.some((c) => c.name === n)) return n;
  }
}

/** A replacement: new objects; often the same content, sometimes changed, rarely the very same objects. */
function replacement(r: Rng, old: Container): Container {
  if (r.chance(0.1)) return { name: old.name, endpoints: [...old.endpoints] };
  if (r.chance(0.5)) return { name: old.name, endpoints: old.endpoints.map((e) => ({ ...e })) };
  return makeContainer(r, old.name);
}

function shuffled<T>(r: Rng, xs: readonly T[]): T[] {
  const out = [...xs];
  for (let i = out.length - 1; i > 0; i--) {
    const j = r.int(i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** The contract's order: `listed` minus one earliest listing per mention in `gone`, then `added`. */
function expectedOrder(
  listed: readonly DnsEndpoint[],
  gone: readonly DnsEndpoint[],
  added: readonly DnsEndpoint[],
): DnsEndpoint[] {
  const out = [...listed];
  for (const g of gone) out.splice(out.indexOf(g), 1);
  return [...out, ...added];
}

const cfgOf = (endpoints: DnsEndpoint[]): DnsConfig => ({
  networks: NETWORKS,
  endpoints,
  upstreams: UPSTREAMS,
  ttl: 300,
});

// ---- comparing ----------------------------------------------------------------------

/** A map's entries by key: the maps' iteration order is not part of patchDns's contract. */
function byKey<V>(m: ReadonlyMap<string, V>): [string, V][] {
  return [...m].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Every table equal; lists inside (addresses, owners, networks) in the same order. */
function expectSameTables(got: DnsIndex, want: DnsIndex, where: string): void {
  expect(got.ttl, where).toBe(want.ttl);
  expect(byKey(got.listen), where).toEqual(byKey(want.listen));
  expect(got.upstreams, where).toEqual(want.upstreams);
  expect([...got.networks.keys()], where).toEqual([...want.networks.keys()]);
  for (const [name, net] of want.networks) {
    const mine = got.networks.get(name)!;
    expect(mine.listen, where).toEqual(net.listen);
    expect(mine.subnets.map(String), where).toEqual(net.subnets.map(String));
    expect(byKey(mine.names), `${where}: names on ${name}`).toEqual(byKey(net.names));
    expect(byKey(mine.ptr), `${where}: ptr on ${name}`).toEqual(byKey(net.ptr));
  }
  expect(byKey(got.byIp), `${where}: byIp`).toEqual(byKey(want.byIp));
  expect(byKey(got.containerNetworks), `${where}: containerNetworks`).toEqual(byKey(want.containerNetworks));
  expect([...got.allNames].sort(), `${where}: allNames`).toEqual([...want.allNames].sort());
  expect(byKey(got.upstreamsByIp), `${where}: upstreamsByIp`).toEqual(byKey(want.upstreamsByIp));
}

const QUERY_NAMES = [
  ...Array.from({ length: 24 }, (_, i) => `c${i}`),
  ...ALIASES,
  'h0',
  'h1.',
  'WEB',
  'web.front',
  'db.back',
  'lb.six',
  'c1.front',
  'c2.front.front',
  'svc.back.back',
  'example.com',
];
const ADDRESSES = [
  ...new Set([...Object.values(V4).flat(), ...Object.values(V6).flat(), '172.18.0.1', '192.0.2.77']),
];
const SOURCES = [...ADDRESSES, '::ffff:172.19.0.3', '2001:db8::77'];
const TYPES: RecordType[] = ['A', 'AAAA', 'ANY' as RecordType, 'MX', 'PTR'];

/** The same answers for a sample of questions (rotation 0: lists compared in order). */
function expectSameAnswers(r: Rng, got: DnsIndex, want: DnsIndex, where: string): void {
  for (let i = 0; i < 30; i++) {
    const source = r.pick(SOURCES);
    const network = r.chance(0.15) ? undefined : r.pick(NETWORKS).name;
    const type = r.pick(TYPES);
    const name =
      type === 'PTR' && r.chance(0.8)
        ? ipToReverseName(r.pick(ADDRESSES).replace('::ffff:', ''))
        : r.pick(QUERY_NAMES);
    const q = { name, type, source, network };
    const what = `${where}: ${type} ${name} from ${source} on ${network}`;
    expect(resolveLocal(got, q, { rotation: 0 }), what).toEqual(resolveLocal(want, q, { rotation: 0 }));
    expect(upstreamsFor(got, source), what).toEqual(upstreamsFor(want, source));
  }
}

// ---- the oracle ---------------------------------------------------------------------

/** Runs `steps` random steps from a random world; returns how many endpoints were patched. */
function runOracle(seed: number, steps: number): number {
  const r = rng(seed);
  let live: Container[] = [];
  for (let i = 0, n = 3 + r.int(8); i < n; i++) live.push(makeContainer(r, newName(r, live)));
  let listed = live.flatMap((c) => c.endpoints);
  let index = compileDns(cfgOf(listed));
  let patched = 0;

  for (let step = 0; step < steps; step++) {
    const where = `seed ${seed} step ${step}`;
    const gone: DnsEndpoint[] = [];
    const came: Container[] = [];
    const kept: Container[] = [];
    // Each container may go or be replaced; a few new ones may come.
    for (const c of live) {
      const x = r.int(100);
      if (x < 8) {
        gone.push(...c.endpoints);
      } else if (x < 18) {
        gone.push(...c.endpoints);
        came.push(replacement(r, c));
      } else {
        kept.push(c);
      }
    }
    const arriving = live.length < 4 ? 1 + r.int(3) : r.int(live.length > 14 ? 1 : 3);
    for (let i = 0; i < arriving; i++) came.push(makeContainer(r, newName(r, [...kept, ...came])));
    const order = shuffled(r, came);
    const added = order.flatMap((c) => c.endpoints);
    const goneOrder = shuffled(r, gone);

    index = patchDns(index, goneOrder, added);
    patched += gone.length + added.length;
    listed = expectedOrder(listed, goneOrder, added);
    live = [...kept, ...order];

    const want = compileDns(cfgOf(listed));
    expectSameTables(index, want, where);
    expect(index.warnings, `${where}: warnings`).toEqual(
      compileDns({ networks: NETWORKS, endpoints: added, upstreams: [] }).warnings,
    );
    expectSameAnswers(r, index, want, where);
  }
  return patched;
}

describe('patchDns against compileDns', () => {
  it.each([1, 2, 3, 4])('seed %i: 125 random steps keep every table and answer exact', (seed) => {
    expect(runOracle(seed, 125)).toBeGreaterThan(250);
  });

  it('refuses an endpoint that is not in the index, and leaves the index as it was', () => {
    const a: DnsEndpoint = { container: 'a', network: 'front', names: ['a', 'web'], ipv4: '172.18.0.2' };
    const b: DnsEndpoint = { container: 'b', network: 'front', names: ['b', 'web'], ipv4: '172.18.0.3' };
    const index = compileDns(cfgOf([a, b]));
    expect(() => patchDns(index, [b, { ...a }], [])).toThrow(/not in the index/);
    expect(() => patchDns(index, [a, a], [])).toThrow(/not in the index/);
    expect(() => patchDns({ ...compileDns(cfgOf([])), kind: 'dns-index' }, [], [a])).toThrow(/compileDns/);
    expectSameTables(index, compileDns(cfgOf([a, b])), 'after refusals');
  });

  it('puts an address shared by two containers where its next registrant put it', () => {
    // Hand-made case of what the oracle checks at random: `web` lists 172.18.0.3 first (a),
    // then 172.18.0.4 (b); when a goes, 172.18.0.3 is c's and comes after b's.
    const a: DnsEndpoint = { container: 'a', network: 'front', names: ['web'], ipv4: '172.18.0.3' };
    const b: DnsEndpoint = { container: 'b', network: 'front', names: ['web'], ipv4: '172.18.0.4' };
    const c: DnsEndpoint = { container: 'c', network: 'front', names: ['web'], ipv4: '172.18.0.3' };
    const index = patchDns(compileDns(cfgOf([a, b, c])), [a], []);
    expect(index.networks.get('front')!.names.get('web')!.v4).toEqual(['172.18.0.4', '172.18.0.3']);
    expect(index.networks.get('front')!.ptr.get('172.18.0.3')).toBe('c');
    expect(index.byIp.get('172.18.0.3')).toEqual([{ container: 'c', network: 'front' }]);
  });
});

// ---- the resolver's reload ----------------------------------------------------------

describe('Resolver.reload with a change', () => {
  let resolver: Resolver | undefined;
  afterEach(async () => {
    await resolver?.close();
    resolver = undefined;
  });

  const net1: DnsNetwork = { name: 'net1', listen: ['127.0.0.1'], subnets: ['127.0.0.0/8'] };

  function ask(port: number, name: string): Promise<string[]> {
    return new Promise((resolve, reject) => {
      const sock = dgram.createSocket('udp4');
      const timer = setTimeout(() => {
        sock.close();
        reject(new Error(`no answer for ${name}`));
      }, 2000);
      sock.on('message', (msg) => {
        clearTimeout(timer);
        sock.close();
        const p = dnsPacket.decode(msg) as dnsPacket.DecodedPacket & { rcode: string };
        resolve([p.rcode, ...(p.answers ?? []).map((a) => String((a as { data: unknown }).data))]);
      });
      sock.send(
        dnsPacket.encode({ type: 'query', id: 7, questions: [{ type: 'A', name }] }),
        port,
        '127.0.0.1',
      );
    });
  }

  it('patches when only endpoints change, compiles when the networks do', async () => {
    const logged: string[] = [];
    const a: DnsEndpoint = { container: 'a', network: 'net1', names: ['a'], ipv4: '127.0.1.2' };
    const bad: DnsEndpoint = { container: 'bad', network: 'nowhere', names: ['bad'], ipv4: '127.0.1.9' };
    const cfg: DnsConfig = { networks: [net1], endpoints: [a, bad], upstreams: [] };
    resolver = await startResolver(cfg, {
      port: 0,
      log: (level, msg) => {
        if (level === 'warn') logged.push(msg);
      },
    });
    const port = resolver.listeners()[0]!.port;
    expect(await ask(port, 'a')).toEqual(['NOERROR', '127.0.1.2']);
    expect(logged).toEqual(['dns config: endpoint bad: unknown network nowhere']);

    // Only endpoints change: b comes, a goes; the old warning is not logged again.
    const b: DnsEndpoint = { container: 'b', network: 'net1', names: ['b'], ipv4: '127.0.1.3', ipv6: 'x' };
    logged.length = 0;
    await resolver.reload(
      { ...cfg, networks: [{ ...net1 }], endpoints: [bad, b] },
      { gone: [a], added: [b] },
    );
    expect(await ask(port, 'b')).toEqual(['NOERROR', '127.0.1.3']);
    expect(await ask(port, 'a')).toEqual(['SERVFAIL']);
    expect(logged).toEqual(['dns config: endpoint b on net1: invalid ipv6 "x"']);
    expect(resolver.listeners()).toEqual([
      { network: 'net1', address: '127.0.0.1', port, state: 'listening' },
    ]);

    // A change that does not fit the loaded records: compiled from the config instead.
    logged.length = 0;
    await resolver.reload({ ...cfg, endpoints: [a] }, { gone: [a], added: [a] });
    expect(logged[0]).toMatch(/could not be patched/);
    expect(await ask(port, 'a')).toEqual(['NOERROR', '127.0.1.2']);
    expect(await ask(port, 'b')).toEqual(['SERVFAIL']);

    // The network is renamed: compiled (the change is not used), listeners follow.
    const moved: DnsEndpoint = { ...a, container: 'moved', network: 'net2', names: [] };
    await resolver.reload(
      { networks: [{ ...net1, name: 'net2' }], endpoints: [moved], upstreams: [] },
      { gone: [], added: [] },
    );
    expect(await ask(port, 'moved')).toEqual(['NOERROR', '127.0.1.2']);
    expect(await ask(port, 'a')).toEqual(['SERVFAIL']);
    expect(resolver.listeners()[0]!.network).toBe('net2');
  });
});
