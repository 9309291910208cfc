/*
 * Conventions for these tests:
 * - container subnet 172.18.0.0/16 (gateway 172.18.0.1) and fd00:18::/64;
 * - "outside" addresses only from 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32;
 * - no sockets: handlePacket is called directly with a source address string.
 * Properties: the packet handler never throws, and whatever it replies is a well-formed
 * response to the query it got.
 */

import type { RecordType } from 'dns-packet';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { handlePacket, type PacketContext, type PacketResult, rawQuestion } from '../../src/dns/packet.js';
import { compileDns, type DnsConfig } from '../../src/dns/records.js';

const cfg: DnsConfig = {
  networks: [
    { name: 'alpine-net', listen: ['172.18.0.1'], subnets: ['172.18.0.0/16', 'fd00:18::/64'] },
    { name: 'backend', listen: ['172.19.0.1'], subnets: ['172.19.0.0/16'] },
  ],
  endpoints: [
    {
      container: 'web',
      network: 'alpine-net',
      names: ['web', 'www'],
      ipv4: '172.18.0.2',
      ipv6: 'fd00:18::2',
    },
    ...Array.from({ length: 80 }, (_, i) => ({
      container: `lb${i}`,
      network: 'alpine-net',
      names: [`lb${i}`, 'lb'],
      ipv4: `172.18.1.${i + 1}`,
    })),
    { container: 'db', network: 'backend', names: ['db'], ipv4: '172.19.0.4' },
  ],
  upstreams: ['192.0.2.53'],
};
const index = compileDns(cfg);

const sources = fc.constantFrom(
  '172.18.0.2',
  '172.18.0.1',
  '172.18.1.7',
  'fd00:18::2',
  '::ffff:172.18.0.2',
  '198.51.100.9',
  '2001:db8::9',
  '',
  'not-an-ip',
);
const ctxArb = fc.record({
  network: fc.constantFrom('alpine-net', 'backend', 'nope'),
  transport: fc.constantFrom<'udp' | 'tcp'>('udp', 'tcp'),
});

function ctxOf(c: { network: string; transport: 'udp' | 'tcp' }): PacketContext {
  return { index, network: c.network, transport: c.transport, rotation: 0 };
}

/** What every result must satisfy, whatever the input. */
function checkResult(input: Buffer, r: PacketResult, transport: 'udp' | 'tcp'): void {
  expect(['drop', 'reply', 'forward']).toContain(r.action);
  if (r.action === 'drop') return;
  const id = input.readUInt16BE(0);
  if (r.action === 'forward') {
    expect(r.query).toBe(input);
    expect(r.id).toBe(id);
    expect(r.servfail.readUInt16BE(0)).toBe(id);
    return;
  }
  const p = r.packet;
  expect(p.length).toBeGreaterThanOrEqual(12);
  expect(p.readUInt16BE(0)).toBe(id);
  expect(p[2]! & 0x80).toBe(0x80); // QR
  if (transport === 'udp') expect(p.length).toBeLessThanOrEqual(1232);
  // Replies decode, and echo the question byte for byte.
  const decoded = dnsPacket.decode(p);
  expect(decoded.type).toBe('response');
  const q = rawQuestion(input);
  if (decoded.questions!.length === 1) expect(rawQuestion(p)!.equals(q!)).toBe(true);
}

const names = fc.oneof(
  fc.constantFrom('web', 'WWW.', 'lb', 'db', 'example.com', '2.0.18.172.in-addr.arpa', '.', 'web.alpine-net'),
  fc.domain(),
  fc.string({ maxLength: 80 }),
);
const types = fc.constantFrom<RecordType>(
  'A',
  'AAAA',
  'PTR',
  'MX',
  'TXT',
  'SRV',
  'ANY' as RecordType,
  'CNAME',
  'NS',
);

const validQuery = fc
  .record({
    id: fc.integer({ min: 0, max: 0xffff }),
    flags: fc.integer({ min: 0, max: 0x7fff }),
    name: names,
    type: types,
    edns: fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: undefined }),
  })
  .map(({ id, flags, name, type, edns }) => {
    try {
      return dnsPacket.encode({
        type: 'query',
        id,
        flags: flags & ~0x7800 & 0x7ff0, // opcode QUERY, no rcode
        questions: [{ type, name, class: 'IN' }],
        additionals:
          edns === undefined
            ? []
            : [
                {
                  type: 'OPT',
                  name: '.',
                  udpPayloadSize: edns,
                  extendedRcode: 0,
                  ednsVersion: 0,
                  flags: 0,
                  flag_do: false,
                  options: [],
                },
              ],
      });
    } catch {
      return Buffer.alloc(0);
    }
  });

type Mutation =
  | { kind: 'flip'; at: number; xor: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'append'; bytes: Uint8Array }
  | { kind: 'set16'; at: number; value: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(600), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(600) }),
  fc.record({ kind: fc.constant('append' as const), bytes: fc.uint8Array({ maxLength: 40 }) }),
  fc.record({
    kind: fc.constant('set16' as const),
    at: fc.nat(40),
    value: fc.integer({ min: 0, max: 0xffff }),
  }),
);

/** dns-packet encodes some odd names (empty labels) into bytes it cannot decode itself. */
function decodable(b: Buffer): boolean {
  try {
    dnsPacket.decode(b);
    return b.length >= 12;
  } catch {
    return false;
  }
}

function mutate(buf: Buffer, ms: Mutation[]): Buffer {
  let b = Buffer.from(buf);
  for (const m of ms) {
    if (b.length === 0) break;
    if (m.kind === 'flip') b[m.at % b.length] ^= m.xor;
    else if (m.kind === 'truncate') b = b.subarray(0, m.at % (b.length + 1));
    else if (m.kind === 'append') b = Buffer.concat([b, m.bytes]);
    else if (b.length >= 2) b.writeUInt16BE(m.value, m.at % (b.length - 1));
  }
  return b;
}

describe('handlePacket under fuzzing', () => {
  it('never throws on arbitrary bytes, and replies are well-formed', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 700 }), sources, ctxArb, (bytes, source, c) => {
        const buf = Buffer.from(bytes);
        const r = handlePacket(buf, source, ctxOf(c));
        checkResult(buf, r, c.transport);
      }),
      { numRuns: 3000 },
    );
  });

  it('never throws on arbitrary headers followed by a plausible question', () => {
    const header = fc.uint8Array({ minLength: 12, maxLength: 12 });
    fc.assert(
      fc.property(header, validQuery, sources, ctxArb, (h, q, source, c) => {
        const buf = q.length >= 12 ? Buffer.concat([Buffer.from(h), q.subarray(12)]) : Buffer.from(h);
        const r = handlePacket(buf, source, ctxOf(c));
        checkResult(buf, r, c.transport);
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on mutated valid queries', () => {
    fc.assert(
      fc.property(
        validQuery,
        fc.array(mutation, { minLength: 1, maxLength: 4 }),
        sources,
        ctxArb,
        (q, ms, source, c) => {
          const buf = mutate(q, ms);
          const r = handlePacket(buf, source, ctxOf(c));
          checkResult(buf, r, c.transport);
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('answers every valid query from an allowed source (never drops it)', () => {
    fc.assert(
      fc.property(validQuery, fc.constantFrom('172.18.0.2', 'fd00:18::2', '172.18.9.9'), (q, source) => {
        fc.pre(decodable(q));
        for (const transport of ['udp', 'tcp'] as const) {
          const r = handlePacket(q, source, { index, network: 'alpine-net', transport });
          expect(r.action).not.toBe('drop');
          checkResult(q, r, transport);
        }
      }),
      { numRuns: 1500 },
    );
  });

  it('refuses every valid query from outside the subnets', () => {
    fc.assert(
      fc.property(validQuery, fc.constantFrom('198.51.100.9', '2001:db8::9', '172.19.0.4'), (q, source) => {
        fc.pre(decodable(q));
        const r = handlePacket(q, source, { index, network: 'alpine-net', transport: 'udp' });
        expect(r.action).toBe('reply');
        expect(r.action === 'reply' && r.rcode).toBe('REFUSED');
      }),
      { numRuns: 500 },
    );
  });

  it('truncates large local answers to the client’s UDP size with TC, never over TCP', () => {
    const q = dnsPacket.encode({ type: 'query', id: 42, questions: [{ type: 'A', name: 'lb' }] });
    const udp = handlePacket(q, '172.18.0.2', { index, network: 'alpine-net', transport: 'udp' });
    const tcp = handlePacket(q, '172.18.0.2', { index, network: 'alpine-net', transport: 'tcp' });
    if (udp.action !== 'reply' || tcp.action !== 'reply') throw new Error('expected replies');
    expect(udp.packet.length).toBeLessThanOrEqual(512);
    const u = dnsPacket.decode(udp.packet);
    const t = dnsPacket.decode(tcp.packet);
    expect(u.flag_tc).toBe(true);
    expect(t.flag_tc).toBe(false);
    expect(t.answers).toHaveLength(80);
    expect(u.answers!.length).toBeLessThan(80);
  });
});
