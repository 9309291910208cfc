/*
 * src/model/ip.ts reads and writes dotted-quad IPv4 itself (the hot path of loading and
 * IPAM) and leaves everything else to ipaddr.js. These properties pin it to what
 * ipaddr.js alone answers, for strings close to the forms people write.
 */
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { canonicalIp, contains, formatIp, isValidIp, lastAddr, parseIp } from '../../src/model/ip.js';

/** The previous, ipaddr.js-only implementations. */
const ref = {
  isValidIp: (ip: string) =>
    ipaddr.isValid(ip) &&
    (ip.includes(':') ? ipaddr.IPv6.isValid(ip) : ipaddr.IPv4.isValidFourPartDecimal(ip)),
  parseIp: (ip: string) => {
    let v = 0n;
    for (const b of ipaddr.parse(ip).toByteArray()) v = (v << 8n) | BigInt(b);
    return v;
  },
  formatIp: (v: bigint, family: 4 | 6) => {
    const bytes: number[] = [];
    for (let i = (family === 4 ? 4 : 16) - 1; i >= 0; i--) bytes.push(Number((v >> BigInt(i * 8)) & 0xffn));
    return ipaddr.fromByteArray(bytes).toString();
  },
};

const octet = fc.oneof(
  fc.integer({ min: 0, max: 255 }).map(String),
  fc.integer({ min: 0, max: 1000 }).map(String),
  fc.constantFrom(
    '0',
    '00',
    '01',
    '010',
    '08',
    '255',
    '256',
    '0x7f',
    '0X1',
    '1e2',
    ' 1',
    '1 ',
    '+1',
    '-1',
    '',
  ),
);
const ipLike = fc.oneof(
  fc.array(octet, { minLength: 1, maxLength: 5 }).map((parts) => parts.join('.')),
  fc
    .tuple(fc.array(octet, { minLength: 4, maxLength: 4 }), fc.constantFrom('', '\n', '%eth0', '/24', ':'))
    .map(([p, tail]) => p.join('.') + tail),
  fc.stringMatching(/^[0-9a-fA-F:.]{0,20}$/),
  fc.constantFrom('::', '::1', '::ffff:1.2.3.4', 'fe80::1%eth0', '2001:db8::1', '1::2::3', ':::'),
);

describe('model/ip dotted quads', () => {
  it('isValidIp agrees with ipaddr.js', () => {
    fc.assert(
      fc.property(ipLike, (s) => {
        expect(isValidIp(s)).toBe(ref.isValidIp(s));
      }),
      { numRuns: 5000 },
    );
  });

  it('parseIp agrees with ipaddr.js, throwing or not', () => {
    const outcome = (f: () => bigint) => {
      try {
        return f();
      } catch {
        return 'throws';
      }
    };
    fc.assert(
      fc.property(ipLike, (s) => {
        expect(outcome(() => parseIp(s))).toBe(outcome(() => ref.parseIp(s)));
      }),
      { numRuns: 5000 },
    );
  });

  it('formatIp agrees with ipaddr.js for both families, whatever the high bits', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: -(1n << 130n), max: 1n << 130n }),
        fc.constantFrom(4 as const, 6 as const),
        (v, f) => {
          expect(formatIp(v, f)).toBe(ref.formatIp(v, f));
        },
      ),
      { numRuns: 3000 },
    );
    for (const v of [0n, 1n, 0xffffffffn, 0x7f000001n, 0xac120002n, 1n << 32n])
      expect(formatIp(v, 4)).toBe(ref.formatIp(v, 4));
  });

  it('canonical forms and ranges', () => {
    expect(canonicalIp('172.18.0.2')).toBe('172.18.0.2');
    expect(canonicalIp('2001:0db8::0001')).toBe('2001:db8::1');
    expect(contains('172.18.0.0/16', '172.18.255.255')).toBe(true);
    expect(contains('172.18.0.0/16', '172.19.0.0')).toBe(false);
    expect(contains('172.18.0.0/16', '::1')).toBe(false);
    expect(lastAddr({ family: 4, addr: parseIp('172.18.3.4'), len: 16 })).toBe(parseIp('172.18.255.255'));
  });
});
