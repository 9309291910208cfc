/*
 * Conventions for these tests:
 * - container subnets: 172.18.0.0/16 (alpine-net), 172.19.0.0/16 (backend),
 *   172.20.0.0/16 (other), fd00:18::/64 (alpine-net IPv6);
 * - gateways are .1 of each subnet;
 * - "outside" addresses only from 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.
 * Pure logic: nothing here touches a socket.
 */
import { describe, expect, it } from 'vitest';
import {
  compileDns,
  DEFAULT_TTL,
  type DnsConfig,
  ipToReverseName,
  type LocalResult,
  parseUpstream,
  resolveLocal,
  reverseNameToIp,
  scopeFor,
} from '../../src/dns/records.js';

const cfg: DnsConfig = {
  networks: [
    { name: 'alpine-net', listen: ['172.18.0.1', 'fd00:18::1'], subnets: ['172.18.0.0/16', 'fd00:18::/64'] },
    { name: 'backend', listen: ['172.19.0.1'], subnets: ['172.19.0.0/16'] },
    { name: 'other', listen: ['172.20.0.1'], subnets: ['172.20.0.0/16'] },
  ],
  endpoints: [
    {
      container: 'web',
      network: 'alpine-net',
      names: ['web', 'WWW', 'abc123def456'],
      ipv4: '172.18.0.2',
      ipv6: 'fd00:18:0:0::2',
    },
    { container: 'api', network: 'alpine-net', names: ['api'], ipv4: '172.18.0.3' },
    { container: 'api', network: 'backend', names: ['api', 'api-internal'], ipv4: '172.19.0.3' },
    { container: 'db', network: 'backend', names: ['db', 'database', 'db-host'], ipv4: '172.19.0.4' },
    { container: 'secret', network: 'other', names: ['secret'], ipv4: '172.20.0.5' },
    { container: 'lb1', network: 'alpine-net', names: ['lb1', 'lb'], ipv4: '172.18.0.10' },
    { container: 'lb2', network: 'alpine-net', names: ['lb2', 'lb'], ipv4: '172.18.0.11' },
    { container: 'lb3', network: 'alpine-net', names: ['lb3', 'lb'], ipv4: '172.18.0.12' },
  ],
  upstreams: ['192.0.2.53'],
};

const WEB = '172.18.0.2';
const API_FRONT = '172.18.0.3';
const API_BACK = '172.19.0.3';

function q(
  name: string,
  type: string,
  source: string,
  network = 'alpine-net',
  rotation?: number,
): LocalResult {
  return resolveLocal(cfg, { name, type, source, network }, rotation === undefined ? {} : { rotation });
}

function addrs(r: LocalResult): string[] {
  expect(r.kind).toBe('answer');
  return r.kind === 'answer' ? r.records.map((x) => String(x.data)) : [];
}

describe('scope', () => {
  it('is the querier container’s networks, arrival network first', () => {
    const idx = compileDns(cfg);
    expect(scopeFor(idx, API_FRONT, 'alpine-net')).toEqual(['alpine-net', 'backend']);
    expect(scopeFor(idx, API_BACK, 'backend')).toEqual(['backend', 'alpine-net']);
    expect(scopeFor(idx, WEB, 'alpine-net')).toEqual(['alpine-net']);
  });

  it('is only the arrival network for a source that is no endpoint (the host, a stranger)', () => {
    const idx = compileDns(cfg);
    expect(scopeFor(idx, '172.18.0.1', 'alpine-net')).toEqual(['alpine-net']);
    expect(scopeFor(idx, '172.18.0.200')).toEqual([]);
  });

  it('accepts IPv4-mapped IPv6 sources and non-canonical IPv6 spellings', () => {
    const idx = compileDns(cfg);
    expect(scopeFor(idx, '::ffff:172.19.0.3', 'backend')).toEqual(['backend', 'alpine-net']);
    expect(scopeFor(idx, 'fd00:18:0::0:2', 'alpine-net')).toEqual(['alpine-net']);
  });
});

describe('A and AAAA', () => {
  it('answers names, aliases and hostnames, case-insensitively, with or without a trailing dot', () => {
    expect(addrs(q('web', 'A', WEB))).toEqual([WEB]);
    expect(addrs(q('WEB.', 'A', API_FRONT))).toEqual([WEB]);
    expect(addrs(q('www', 'A', API_FRONT))).toEqual([WEB]);
    expect(addrs(q('Abc123Def456', 'A', API_FRONT))).toEqual([WEB]);
    expect(addrs(q('web', 'AAAA', API_FRONT))).toEqual(['fd00:18::2']);
  });

  it('echoes the name as asked, class IN, TTL 600 by default', () => {
    const r = q('WwW.', 'A', WEB);
    expect(r).toEqual({
      kind: 'answer',
      records: [{ name: 'WwW', type: 'A', class: 'IN', ttl: DEFAULT_TTL, data: WEB }],
    });
    const r2 = resolveLocal(
      { ...cfg, ttl: 5 },
      { name: 'web', type: 'A', source: WEB, network: 'alpine-net' },
    );
    expect(r2.kind === 'answer' && r2.records[0]!.ttl).toBe(5);
  });

  it('answers NOERROR with no records when the name exists without that family or type', () => {
    expect(q('api', 'AAAA', WEB)).toEqual({ kind: 'answer', records: [] });
    expect(q('web', 'MX', WEB)).toEqual({ kind: 'answer', records: [] });
    expect(q('web', 'TXT', WEB)).toEqual({ kind: 'answer', records: [] });
  });

  it('ANY returns both families', () => {
    expect(addrs(q('web', 'ANY', WEB)).sort()).toEqual([WEB, 'fd00:18::2'].sort());
  });

  it('resolves the same name per network: the arrival network first', () => {
    expect(addrs(q('api', 'A', API_FRONT, 'alpine-net'))).toEqual([API_FRONT]);
    expect(addrs(q('api', 'A', API_BACK, 'backend'))).toEqual([API_BACK]);
  });

  it('lets a querier on two networks see names on both', () => {
    expect(addrs(q('db', 'A', API_FRONT, 'alpine-net'))).toEqual(['172.19.0.4']);
    expect(addrs(q('api-internal', 'A', API_FRONT, 'alpine-net'))).toEqual([API_BACK]);
  });

  it('resolves network-qualified names within scope', () => {
    expect(addrs(q('db.backend', 'A', API_FRONT))).toEqual(['172.19.0.4']);
    expect(addrs(q('api.Backend.', 'A', API_FRONT))).toEqual([API_BACK]);
    expect(addrs(q('api.alpine-net', 'A', API_BACK, 'backend'))).toEqual([API_FRONT]);
  });
});

describe('scoping and leaks', () => {
  it('answers NXDOMAIN (never forwards) for names on networks the querier does not share', () => {
    expect(q('db', 'A', WEB)).toEqual({ kind: 'nxdomain' });
    expect(q('DATABASE.', 'AAAA', WEB)).toEqual({ kind: 'nxdomain' });
    expect(q('secret', 'A', WEB)).toEqual({ kind: 'nxdomain' });
    expect(q('secret', 'A', API_BACK, 'backend')).toEqual({ kind: 'nxdomain' });
    expect(q('db.backend', 'A', WEB)).toEqual({ kind: 'nxdomain' });
    expect(q('db-host', 'MX', WEB)).toEqual({ kind: 'nxdomain' });
  });

  it('gives a non-endpoint source the arrival network only', () => {
    expect(addrs(q('web', 'A', '172.18.0.1'))).toEqual([WEB]);
    expect(q('db', 'A', '172.18.0.1')).toEqual({ kind: 'nxdomain' });
  });

  it('forwards names that are nobody’s', () => {
    expect(q('example.com', 'A', WEB)).toEqual({ kind: 'forward' });
    expect(q('web.example.com', 'A', WEB)).toEqual({ kind: 'forward' });
    expect(q('web.other', 'A', WEB)).toEqual({ kind: 'forward' });
    expect(q('.', 'NS', WEB)).toEqual({ kind: 'forward' });
  });
});

describe('round robin', () => {
  it('returns every address of a shared alias, rotated per query', () => {
    const all = ['172.18.0.10', '172.18.0.11', '172.18.0.12'];
    const r0 = addrs(q('lb', 'A', WEB, 'alpine-net', 0));
    const r1 = addrs(q('lb', 'A', WEB, 'alpine-net', 1));
    const r2 = addrs(q('lb', 'A', WEB, 'alpine-net', 2));
    expect(r0).toEqual(all);
    expect(r1).toEqual(['172.18.0.11', '172.18.0.12', '172.18.0.10']);
    expect(r2).toEqual(['172.18.0.12', '172.18.0.10', '172.18.0.11']);
  });

  it('rotates by itself when no rotation is given', () => {
    const firsts = new Set<string>();
    for (let i = 0; i < 6; i++) firsts.add(addrs(q('lb', 'A', WEB))[0]!);
    expect(firsts.size).toBe(3);
  });

  it('deduplicates an address registered twice under one name', () => {
    const dup: DnsConfig = {
      ...cfg,
      endpoints: [
        { container: 'a', network: 'alpine-net', names: ['x', 'X'], ipv4: '172.18.0.20' },
        { container: 'a', network: 'alpine-net', names: ['x'], ipv4: '172.18.0.20' },
      ],
    };
    const r = resolveLocal(dup, { name: 'x', type: 'A', source: '172.18.0.1', network: 'alpine-net' });
    expect(addrs(r)).toEqual(['172.18.0.20']);
  });
});

describe('PTR', () => {
  it('maps an in-scope endpoint address to its container name', () => {
    expect(q('2.0.18.172.in-addr.arpa', 'PTR', API_FRONT)).toEqual({
      kind: 'answer',
      records: [{ name: '2.0.18.172.in-addr.arpa', type: 'PTR', class: 'IN', ttl: 600, data: 'web' }],
    });
    expect(addrs(q(`${ipToReverseName('fd00:18::2')}.`, 'PTR', WEB))).toEqual(['web']);
    expect(addrs(q('3.0.19.172.IN-ADDR.ARPA', 'PTR', API_FRONT))).toEqual(['api']);
  });

  it('answers NXDOMAIN for endpoint addresses out of scope, forwards the rest', () => {
    expect(q(ipToReverseName('172.19.0.4'), 'PTR', WEB)).toEqual({ kind: 'nxdomain' });
    expect(q(ipToReverseName('172.18.0.99'), 'PTR', WEB)).toEqual({ kind: 'forward' });
    expect(q(ipToReverseName('198.51.100.7'), 'PTR', WEB)).toEqual({ kind: 'forward' });
    expect(q('18.172.in-addr.arpa', 'PTR', WEB)).toEqual({ kind: 'forward' });
  });

  it('round-trips reverse names', () => {
    expect(ipToReverseName('172.18.0.2')).toBe('2.0.18.172.in-addr.arpa');
    expect(reverseNameToIp('2.0.18.172.in-addr.arpa.')).toBe('172.18.0.2');
    expect(reverseNameToIp(ipToReverseName('2001:db8::1'))).toBe('2001:db8::1');
    expect(reverseNameToIp('256.0.18.172.in-addr.arpa')).toBeNull();
    expect(reverseNameToIp('02.0.18.172.in-addr.arpa')).toBeNull();
    expect(reverseNameToIp('x.ip6.arpa')).toBeNull();
  });
});

describe('compile and parse', () => {
  it('skips bad data with warnings instead of throwing', () => {
    const idx = compileDns({
      networks: [
        { name: 'n', listen: ['172.18.0.1', 'nope'], subnets: ['172.18.0.0/16', '172.18.0.0/33'] },
        { name: 'n', listen: [], subnets: [] },
      ],
      endpoints: [
        { container: 'a', network: 'missing', names: ['a'], ipv4: '172.18.0.2' },
        { container: 'b', network: 'n', names: ['b'], ipv4: 'fd00::1', ipv6: '172.18.0.3' },
        { container: 'c', network: 'n', names: ['c'], ipv4: '172.18.1' },
      ],
      upstreams: ['192.0.2.1:0', 'bogus', '[2001:db8::1]:5353'],
    });
    expect(idx.warnings).toHaveLength(9);
    expect(idx.upstreams).toEqual([{ host: '2001:db8::1', port: 5353, family: 6 }]);
    expect(idx.networks.get('n')!.names.get('b')).toEqual({ v4: [], v6: [] });
  });

  it('parses upstream spellings', () => {
    expect(parseUpstream('192.0.2.1')).toEqual({ host: '192.0.2.1', port: 53, family: 4 });
    expect(parseUpstream('192.0.2.1:5353')).toEqual({ host: '192.0.2.1', port: 5353, family: 4 });
    expect(parseUpstream('2001:db8::53')).toEqual({ host: '2001:db8::53', port: 53, family: 6 });
    expect(parseUpstream('[2001:DB8::53]:54')).toEqual({ host: '2001:db8::53', port: 54, family: 6 });
    expect(parseUpstream('[2001:db8::53]')).toEqual({ host: '2001:db8::53', port: 53, family: 6 });
    expect(parseUpstream('192.0.2.1:65536')).toBeNull();
    expect(parseUpstream('[192.0.2.1')).toBeNull();
    expect(parseUpstream('host.example:53')).toBeNull();
  });

  it('accepts a compiled index as well as a config', () => {
    const idx = compileDns(cfg);
    expect(addrs(resolveLocal(idx, { name: 'web', type: 'A', source: WEB, network: 'alpine-net' }))).toEqual([
      WEB,
    ]);
  });
});
