import { describe, expect, it } from 'vitest';
import { rtattr as attr, ipText, parseAddr, parseLink, parseRoute } from '../../src/kernel/rtparse.js';

const str = (s: string) => Buffer.from(`${s}\0`);
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

describe('rtnetlink decoders', () => {
  it('formats IPv6 the way inet_ntop does (longest zero run, leftmost, at least two words)', () => {
    const v6 = (words: number[]) => {
      const b = Buffer.alloc(16);
      words.forEach((w, i) => b.writeUInt16BE(w, i * 2));
      return ipText(b, 0, 16);
    };
    expect(v6([0xfd00, 0, 0, 0, 0, 0, 0, 1])).toBe('fd00::1');
    expect(v6([0, 0, 0, 0, 0, 0, 0, 0])).toBe('::');
    expect(v6([0x2001, 0xdb8, 0, 1, 0, 0, 0, 1])).toBe('2001:db8:0:1::1');
    expect(v6([0x2001, 0xdb8, 0, 0, 1, 0, 0, 1])).toBe('2001:db8::1:0:0:1');
    expect(v6([1, 2, 3, 4, 5, 6, 7, 8])).toBe('1:2:3:4:5:6:7:8');
    expect(ipText(Buffer.from([192, 0, 2, 1]), 0, 4)).toBe('192.0.2.1');
  });

  it('decodes a link: name, alias, master, MTU, MAC, kind (nested), up flag', () => {
    const hdr = Buffer.alloc(16);
    hdr.writeInt32LE(7, 4); // index
    hdr.writeUInt32LE(0x1 | 0x1000, 8); // IFF_UP | IFF_MULTICAST…
    const info = attr(1, str('veth'));
    const msg = Buffer.concat([
      hdr,
      attr(3, str('veth1234')),
      attr(4, u32(1500)),
      attr(10, u32(3)),
      attr(1, Buffer.from([0x02, 0x42, 0xac, 0x11, 0x00, 0x02])),
      attr(18 | 0x8000, info), // NLA_F_NESTED set
      attr(20, str('tether:t:ep:c1:web')),
      attr(99, Buffer.alloc(13)), // unknown: skipped
    ]);
    expect(parseLink(msg)).toEqual({
      index: 7,
      name: 'veth1234',
      up: true,
      mtu: 1500,
      master: 3,
      mac: '02:42:ac:11:00:02',
      kind: 'veth',
      alias: 'tether:t:ep:c1:web',
    });
    // A per-family link message (AF_BRIDGE port notification) is not a link.
    const bridgeFamily = Buffer.from(msg);
    bridgeFamily[0] = 7;
    expect(parseLink(bridgeFamily)).toBeUndefined();
  });

  it('decodes an address (IFA_LOCAL over IFA_ADDRESS) and a route', () => {
    const a = Buffer.from([2, 16, 0, 0, 5, 0, 0, 0]);
    const addr = Buffer.concat([a, attr(1, Buffer.from([10, 0, 0, 9])), attr(2, Buffer.from([10, 0, 0, 1]))]);
    expect(parseAddr(addr)).toEqual({ index: 5, family: 4, cidr: '10.0.0.1/16', scope: 0 });

    const r = Buffer.from([2, 0, 0, 0, 254, 3, 0, 1, 0, 0, 0, 0]);
    const route = Buffer.concat([
      r,
      attr(15, u32(254)),
      attr(5, Buffer.from([172, 18, 0, 1])),
      attr(4, u32(2)),
    ]);
    expect(parseRoute(route)).toEqual({
      family: 4,
      dstLen: 0,
      scope: 'UNIVERSE',
      protocol: 'BOOT',
      table: 254,
      type: 'UNICAST',
      gateway: '172.18.0.1',
      oif: 2,
    });
  });
});
