/**
 * Isolation on the kernel: every pair of containers on three dual-stack networks (and one
 * container on two of them), both directions, IPv4 and IPv6, TCP and ICMP; ICC off;
 * internal networks; and what a foreign table whose forward chain drops does to it all.
 * One sandbox, one apply; every probe of a batch runs concurrently with a 1 s timeout.
 *
 * Conventions: container subnets explicit 172.2x.0.0/16 and fd00:2x::/64 (ULA); the
 * uplink ("internet") is 203.0.113.1 / 2001:db8:1::1, the sandbox host 203.0.113.2 /
 * 2001:db8:1::2.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HOST_V4,
  HOST_V6,
  type Probe,
  type ProbeResult,
  Sandbox,
  UPLINK_V4,
  UPLINK_V6,
} from '../helpers/sandbox.js';

const nets = { n1: 20, n2: 21, n3: 22, noicc: 23, intern: 24 } as const;
const v4 = (n: keyof typeof nets, host: number) => `172.${nets[n]}.0.${host}`;
const v6 = (n: keyof typeof nets, host: number) => `fd00:${nets[n]}::${host}`;

const MANIFEST = `
networks:
${Object.entries(nets)
  .map(
    ([n, x]) => `  ${n}:
    enable_ipv6: true
    ipam: { config: [{ subnet: 172.${x}.0.0/16 }, { subnet: "fd00:${x}::/64" }] }${
      n === 'noicc'
        ? '\n    driver_opts: { com.docker.network.bridge.enable_icc: "false" }'
        : n === 'intern'
          ? '\n    internal: true'
          : ''
    }`,
  )
  .join('\n')}
containers:
  a1: { networks: [n1] }
  a2: { networks: [n1] }
  b1: { networks: [n2] }
  c1: { networks: [n3] }
  d: { networks: [n1, n2] }
  e1: { networks: [noicc] }
  e2: { networks: [noicc], ports: ["8080:80"] }
  f1: { networks: [intern] }
  f2: { networks: [intern] }
`;

/** Each container's addresses, by network (lowest free first, in manifest order). */
const ADDRS: Record<string, { net: keyof typeof nets; v4: string; v6: string }[]> = {
  a1: [{ net: 'n1', v4: v4('n1', 2), v6: v6('n1', 2) }],
  a2: [{ net: 'n1', v4: v4('n1', 3), v6: v6('n1', 3) }],
  b1: [{ net: 'n2', v4: v4('n2', 2), v6: v6('n2', 2) }],
  c1: [{ net: 'n3', v4: v4('n3', 2), v6: v6('n3', 2) }],
  d: [
    { net: 'n1', v4: v4('n1', 4), v6: v6('n1', 4) },
    { net: 'n2', v4: v4('n2', 3), v6: v6('n2', 3) },
  ],
  e1: [{ net: 'noicc', v4: v4('noicc', 2), v6: v6('noicc', 2) }],
  e2: [{ net: 'noicc', v4: v4('noicc', 3), v6: v6('noicc', 3) }],
  f1: [{ net: 'intern', v4: v4('intern', 2), v6: v6('intern', 2) }],
  f2: [{ net: 'intern', v4: v4('intern', 3), v6: v6('intern', 3) }],
};

const tcp = (addr: string, port = 80): Probe => ({ proto: 'tcp', addr, port });
const icmp = (addr: string): Probe => ({ proto: 'icmp', addr });
const show = (r: ProbeResult) => `${r.proto} ${r.addr}${r.port ? `:${r.port}` : ''} ${r.ok ? 'ok' : 'no'}`;

describe('isolation, ICC and internal networks on the kernel', () => {
  let s: Sandbox;
  beforeAll(async () => {
    s = Sandbox.create();
    s.write('m.yaml', MANIFEST);
    s.tetherOk('apply', '-f', s.manifests);
    await Promise.all([
      ...Object.keys(ADDRS).map((c) => s.serve(s.ns(c), c, { tcp: [80] })),
      s.serve(s.uplink, 'uplink', { tcp: [7000] }),
      s.settleIpv6([s.host, ...Object.keys(ADDRS).map((c) => s.ns(c))]),
    ]);
  });
  afterAll(() => s.teardown());

  it('the matrix: a container reaches another by an address iff it shares that address network (v4+v6, TCP+ICMP)', async () => {
    const matrix = ['a1', 'a2', 'b1', 'c1', 'd'];
    const want: string[] = [];
    const got: string[] = [];
    await Promise.all(
      matrix.map(async (src) => {
        const mine = new Set(ADDRS[src]!.map((a) => a.net));
        const probes: Probe[] = [];
        for (const dst of matrix) {
          if (dst === src) continue;
          for (const a of ADDRS[dst]!) {
            for (const addr of [a.v4, a.v6]) {
              probes.push(tcp(addr), icmp(addr));
              for (const p of ['tcp', 'icmp'])
                want.push(`${src} → ${dst} ${p} ${addr} ${mine.has(a.net) ? 'ok' : 'no'}`);
            }
          }
        }
        const res = await s.probe(s.ns(src), probes);
        for (const r of res) {
          const dst = Object.keys(ADDRS).find((c) =>
            ADDRS[c]!.some((a) => a.v4 === r.addr || a.v6 === r.addr),
          )!;
          got.push(`${src} → ${dst} ${r.proto} ${r.addr} ${r.ok ? 'ok' : 'no'}`);
          // a TCP answer must come from the container asked, and see the client's own address
          if (r.ok && r.proto === 'tcp') expect(r.reply.split(' ')[0]).toBe(dst);
        }
      }),
    );
    // 12 addresses (4 single-homed containers × v4+v6, d × 2 networks × v4+v6); each source
    // probes everyone else's: 5 × 12 − 12 = 48 (source, address) pairs, × TCP and ICMP = 96
    expect(want.length).toBe(96);
    expect(got.length).toBe(96);
    expect(got.sort()).toEqual(want.sort());
    // reachable: a1↔a2, a1↔d and a2↔d on n1, b1↔d on n2 = 8 ordered pairs × 2 families × 2 = 32
    expect(want.filter((w) => w.endsWith('ok'))).toHaveLength(32);
  });

  it('every container of a nat network reaches the uplink, masqueraded to the host (v4 and v6)', async () => {
    for (const c of ['a1', 'b1', 'c1', 'd', 'e1']) {
      const [r4, r6] = await s.probe(s.ns(c), [tcp(UPLINK_V4, 7000), tcp(UPLINK_V6, 7000)]);
      expect(r4!.reply).toBe(`uplink ${HOST_V4} 7000`);
      expect(r6!.reply).toBe(`uplink ${HOST_V6} 7000`);
    }
  });

  it('ICC off: no traffic between its containers, but the gateway, the outside and published ports work', async () => {
    const e = ADDRS.e2![0]!;
    const r = await s.probe(s.ns('e1'), [
      tcp(e.v4),
      tcp(e.v6),
      icmp(e.v4),
      icmp(e.v6),
      icmp(v4('noicc', 1)),
      icmp(v6('noicc', 1)),
      tcp(UPLINK_V4, 7000),
      tcp(UPLINK_V6, 7000),
      tcp(HOST_V4, 8080),
      tcp(HOST_V6, 8080),
      tcp(v4('noicc', 1), 8080),
    ]);
    expect(r.map(show)).toEqual([
      `tcp ${e.v4}:80 no`,
      `tcp ${e.v6}:80 no`,
      `icmp ${e.v4} no`,
      `icmp ${e.v6} no`,
      `icmp ${v4('noicc', 1)} ok`,
      `icmp ${v6('noicc', 1)} ok`,
      `tcp ${UPLINK_V4}:7000 ok`,
      `tcp ${UPLINK_V6}:7000 ok`,
      `tcp ${HOST_V4}:8080 ok`,
      `tcp ${HOST_V6}:8080 ok`,
      `tcp ${v4('noicc', 1)}:8080 ok`,
    ]);
    // the published port answered from e2, reached through the host (masqueraded to the gateway)
    expect(r[8]!.reply).toBe(`e2 ${v4('noicc', 1)} 80`);
    // and the other direction is blocked as well
    const back = await s.probe(s.ns('e2'), [tcp(ADDRS.e1![0]!.v4), tcp(ADDRS.e1![0]!.v6)]);
    expect(back.map((x) => x.ok)).toEqual([false, false]);
    // a container of another network reaches the published port too
    expect((await s.probe(s.ns('a1'), [tcp(HOST_V4, 8080)]))[0]!.reply).toBe(`e2 ${v4('noicc', 1)} 80`);
  });

  it('internal: no default route, no masquerade, nothing in or out; inside it and to the gateway works', async () => {
    for (const c of ['f1', 'f2']) {
      expect(s.ipJson(s.ns(c), 'route', 'show', 'default')).toEqual([]);
      expect(s.ipJson(s.ns(c), '-6', 'route', 'show', 'default')).toEqual([]);
    }
    const f2 = ADDRS.f2![0]!;
    const r = await s.probe(s.ns('f1'), [
      tcp(f2.v4),
      tcp(f2.v6),
      icmp(v4('intern', 1)),
      icmp(v6('intern', 1)),
      tcp(UPLINK_V4, 7000),
      tcp(HOST_V4, 8080),
    ]);
    expect(r.map((x) => x.ok)).toEqual([true, true, true, true, false, false]);
    expect(r[4]!.error).toBe('ENETUNREACH');
    // Not only the missing route: with one forced in, the firewall still keeps it in.
    s.ip(s.ns('f1'), 'route', 'add', 'default', 'via', v4('intern', 1));
    s.ip(s.ns('f1'), '-6', 'route', 'add', 'default', 'via', v6('intern', 1));
    try {
      const out = await s.probe(s.ns('f1'), [
        tcp(UPLINK_V4, 7000),
        tcp(UPLINK_V6, 7000),
        tcp(ADDRS.a1![0]!.v4),
      ]);
      expect(out.map(show)).toEqual([
        `tcp ${UPLINK_V4}:7000 no`,
        `tcp ${UPLINK_V6}:7000 no`,
        `tcp ${ADDRS.a1![0]!.v4}:80 no`,
      ]);
    } finally {
      s.ip(s.ns('f1'), 'route', 'del', 'default');
      s.ip(s.ns('f1'), '-6', 'route', 'del', 'default');
    }
    // Nothing gets in either, even with a route to it (uplink, and a container of another network).
    s.routeVia(s.uplink, '172.24.0.0/16');
    s.routeVia(s.uplink, 'fd00:24::/64');
    const inbound = await s.probe(s.uplink, [tcp(f2.v4), tcp(f2.v6), icmp(f2.v4)]);
    expect(inbound.map((x) => x.ok)).toEqual([false, false, false]);
    expect((await s.probe(s.ns('a1'), [tcp(f2.v4), tcp(f2.v6)])).map((x) => x.ok)).toEqual([false, false]);
    // and its subnet is in no masquerade set
    const set = (name: string) =>
      JSON.stringify(s.nftTable()!.find((o) => o.set?.name === name)?.set.elem ?? []);
    expect(set('masq4')).not.toContain('172.24.0.0');
    expect(set('masq6')).not.toContain('fd00:24::');
    expect(set('subnets4')).toContain('172.24.0.0');
  });

  it("a foreign table's forward drop also drops container traffic; allowing the bridges there restores it", async () => {
    const brnf =
      s.inNs(s.host, ['cat', '/proc/sys/net/bridge/bridge-nf-call-iptables']).stdout.trim() === '1';
    const a2 = ADDRS.a2![0]!;
    const check = () =>
      s.probe(s.ns('a1'), [tcp(UPLINK_V4, 7000), tcp(UPLINK_V6, 7000), tcp(a2.v4), tcp(a2.v6)]);
    expect((await check()).map((x) => x.ok)).toEqual([true, true, true, true]);
    const nft = (cmd: string) => {
      const r = s.inNs(s.host, ['nft', cmd]);
      if (r.code !== 0) throw new Error(`nft ${cmd}: ${r.stderr}`);
    };
    nft(
      'add table inet foreign; add chain inet foreign gate { type filter hook forward priority 0; policy drop; }',
    );
    try {
      // An nft accept ends only its own chain: tether's accept does not save the packet from
      // the other table's drop. Routed traffic (to the uplink) is dropped; traffic between
      // containers of one bridge too when br_netfilter hands bridged frames to the forward
      // hook (bridge-nf-call-iptables=1, the default once the module is loaded), else not.
      expect((await check()).map((x) => x.ok)).toEqual([false, false, !brnf, !brnf]);
      // tether neither sees nor touches the foreign table: still converged
      expect(JSON.parse(s.tetherOk('plan', '-f', s.manifests, '--json')).actions).toEqual([]);
      // The README's advice: allow tether's bridges in that chain.
      nft(
        'add rule inet foreign gate iifname "br-*" accept; add rule inet foreign gate oifname "br-*" accept',
      );
      expect((await check()).map((x) => x.ok)).toEqual([true, true, true, true]);
    } finally {
      nft('delete table inet foreign');
    }
  });
});
