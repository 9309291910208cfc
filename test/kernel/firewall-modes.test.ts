/**
 * Gateway modes and egress on the kernel: nat, nat-unprotected, routed (per family too),
 * isolated + internal, masquerade off, host_ipv4/host_ipv6 SNAT. "Outside" is the uplink
 * (the internet) and a LAN neighbour; both get routes to the container subnets via the host,
 * so that direct access to container addresses is actually attempted, not merely unroutable.
 * One sandbox, one apply; probes of a batch run concurrently with a 1 s timeout.
 *
 * Conventions: container subnets explicit 172.2x.0.0/16 and fd00:2x::/64 (ULA); the uplink is
 * 203.0.113.1 / 2001:db8:1::1 (host .2 / ::2, plus .3 / ::3 for SNAT), the LAN neighbour
 * 198.51.100.2 / 2001:db8:2::2 (host .1 / ::1).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HOST_V4,
  HOST_V6,
  LAN_HOST_V4,
  LAN_HOST_V6,
  LAN_PEER_V4,
  LAN_PEER_V6,
  type Probe,
  Sandbox,
  UPLINK_V4,
  UPLINK_V6,
} from '../helpers/sandbox.js';

const SNAT_V4 = '203.0.113.3';
const SNAT_V6 = '2001:db8:1::3';

const net = (x: number, opts: string, extra = '') => `
    enable_ipv6: true
    ipam: { config: [{ subnet: 172.${x}.0.0/16 }, { subnet: "fd00:${x}::/64" }] }
    driver_opts: { ${opts} }${extra}`;

const MANIFEST = `
networks:
  nat:${net(20, '')}
  unprot:${net(21, 'com.docker.network.bridge.gateway_mode_ipv4: nat-unprotected')}
  routed:${net(22, 'com.docker.network.bridge.gateway_mode_ipv4: routed, com.docker.network.bridge.gateway_mode_ipv6: routed')}
  mixed:${net(23, 'com.docker.network.bridge.gateway_mode_ipv6: routed')}
  iso:${net(24, 'com.docker.network.bridge.gateway_mode_ipv4: isolated, com.docker.network.bridge.gateway_mode_ipv6: isolated', '\n    internal: true')}
  nomasq:${net(25, 'com.docker.network.bridge.enable_ip_masquerade: "false"')}
  snat:${net(26, `com.docker.network.host_ipv4: ${SNAT_V4}, com.docker.network.host_ipv6: "${SNAT_V6}"`)}
containers:
  pn: { networks: [nat], ports: ["8080:80"] }
  pu: { networks: [unprot], ports: ["8081:80"] }
  pr: { networks: [routed], ports: ["80"] }
  pm: { networks: [mixed], ports: ["8082:80"] }
  i1: { networks: [iso] }
  i2: { networks: [iso] }
  q: { networks: [nomasq] }
  sn: { networks: [snat] }
`;
const ip4 = (x: number) => `172.${x}.0.2`;
const ip6 = (x: number) => `fd00:${x}::2`;
const tcp = (addr: string, port = 80): Probe => ({ proto: 'tcp', addr, port });
const icmp = (addr: string): Probe => ({ proto: 'icmp', addr });

describe('gateway modes and egress on the kernel', () => {
  let s: Sandbox;
  const fromLan = (probes: Probe[]) => s.probe(s.neighbour, probes);
  const oks = async (ns: string, probes: Probe[]) => (await s.probe(ns, probes)).map((r) => r.ok);
  const seenBy = async (ns: string) =>
    (await s.probe(ns, [tcp(UPLINK_V4, 7000), tcp(UPLINK_V6, 7000)])).map(
      (r) => r.reply.split(' ')[1] ?? r.error,
    );

  beforeAll(async () => {
    s = Sandbox.create();
    s.addNeighbour();
    // Extra host addresses for SNAT, never chosen as a source by themselves: the IPv4 one is a
    // secondary of the uplink's /24, the IPv6 one deprecated (preferred_lft 0).
    s.ip(s.host, 'addr', 'add', `${SNAT_V4}/24`, 'dev', 'uplink0');
    s.ip(s.host, 'addr', 'add', `${SNAT_V6}/64`, 'dev', 'uplink0', 'nodad', 'preferred_lft', '0');
    // Both outside peers route every container subnet via the host (replies to routed and
    // un-masqueraded containers need it, and direct access is then really attempted).
    for (const ns of [s.uplink, s.neighbour]) {
      s.routeVia(ns, '172.16.0.0/12');
      s.routeVia(ns, 'fd00::/8');
    }
    s.write('m.yaml', MANIFEST);
    s.tetherOk('apply', '-f', s.manifests);
    const ctrs = ['pn', 'pu', 'pr', 'pm', 'i1', 'i2', 'q', 'sn'];
    await Promise.all([
      ...ctrs.map((c) => s.serve(s.ns(c), c, { tcp: [80, 81] })),
      s.serve(s.uplink, 'uplink', { tcp: [7000] }),
      s.settleIpv6([s.host, s.uplink, s.neighbour, ...ctrs.map((c) => s.ns(c))]),
    ]);
  });
  afterAll(() => s.teardown());

  it('nat: container addresses are closed to the outside; the published port is open, source kept', async () => {
    const r = await fromLan([
      tcp(ip4(20)),
      tcp(ip6(20)),
      tcp(ip4(20), 81),
      icmp(ip4(20)),
      icmp(ip6(20)),
      tcp(LAN_HOST_V4, 8080),
      tcp(LAN_HOST_V6, 8080),
    ]);
    expect(r.map((x) => x.ok)).toEqual([false, false, false, false, false, true, true]);
    expect(r[5]!.reply).toBe(`pn ${LAN_PEER_V4} 80`);
    expect(r[6]!.reply).toBe(`pn ${LAN_PEER_V6} 80`);
    // the same from the uplink
    expect(await oks(s.uplink, [tcp(ip4(20)), tcp(ip6(20)), tcp(HOST_V4, 8080)])).toEqual([
      false,
      false,
      true,
    ]);
    expect(await seenBy(s.ns('pn'))).toEqual([HOST_V4, HOST_V6]);
  });

  it('nat-unprotected (IPv4 only here): every port of the container is reachable over IPv4, IPv6 stays nat', async () => {
    const r = await fromLan([
      tcp(ip4(21)),
      tcp(ip4(21), 81),
      icmp(ip4(21)),
      tcp(ip6(21)),
      tcp(ip6(21), 81),
      tcp(LAN_HOST_V4, 8081),
    ]);
    expect(r.map((x) => x.ok)).toEqual([true, true, true, false, false, true]);
    expect(r[1]!.reply).toBe(`pu ${LAN_PEER_V4} 81`);
    expect(await seenBy(s.ns('pu'))).toEqual([HOST_V4, HOST_V6]);
  });

  it('routed: only published container ports and ICMP are open, no host port, no masquerade', async () => {
    const r = await fromLan([
      tcp(ip4(22)),
      tcp(ip6(22)),
      tcp(ip4(22), 81),
      tcp(ip6(22), 81),
      icmp(ip4(22)),
      icmp(ip6(22)),
    ]);
    expect(r.map((x) => x.ok)).toEqual([true, true, false, false, true, true]);
    expect(r[0]!.reply).toBe(`pr ${LAN_PEER_V4} 80`);
    // egress keeps the container's own addresses
    expect(await seenBy(s.ns('pr'))).toEqual([ip4(22), ip6(22)]);
    // no host port: inspect shows HostPort "" (Docker's "Host port ignored, because NAT is disabled")
    const ports = JSON.parse(s.tetherOk('container', 'inspect', 'pr'))[0].NetworkSettings.Ports;
    expect(ports).toEqual({
      '80/tcp': [
        { HostIp: '0.0.0.0', HostPort: '' },
        { HostIp: '::', HostPort: '' },
      ],
    });
    // from a container of a nat network: the published port and ICMP, nothing else
    expect(await oks(s.ns('pn'), [tcp(ip4(22)), tcp(ip4(22), 81), icmp(ip4(22)), tcp(ip6(22))])).toEqual([
      true,
      false,
      true,
      true,
    ]);
    // and a routed container cannot start a connection into a nat network
    expect(await oks(s.ns('pr'), [tcp(ip4(20)), tcp(ip6(20)), icmp(ip4(20))])).toEqual([false, false, false]);
  });

  it('per family: IPv4 nat with IPv6 routed (the documented dual-stack pattern)', async () => {
    const r = await fromLan([
      tcp(ip4(23)),
      tcp(LAN_HOST_V4, 8082),
      tcp(ip6(23)),
      tcp(ip6(23), 81),
      tcp(LAN_HOST_V6, 8082),
      icmp(ip6(23)),
    ]);
    expect(r.map((x) => x.ok)).toEqual([false, true, true, false, false, true]);
    // masqueraded over IPv4, not over IPv6
    expect(await seenBy(s.ns('pm'))).toEqual([HOST_V4, ip6(23)]);
  });

  it('isolated + internal: no gateway address on the bridge, no route out, the containers reach each other', async () => {
    const br = s
      .ipJson(s.host, 'addr', 'show')
      .find((l: any) =>
        JSON.stringify(s.ipJson(s.host, 'link', 'show', 'dev', l.ifname)).includes(':net:iso'),
      );
    expect(br).toBeDefined();
    expect(br.addr_info.filter((a: any) => a.scope === 'global')).toEqual([]);
    expect(s.ipJson(s.ns('i1'), 'route', 'show', 'default')).toEqual([]);
    // no gateway is allocated, so the first container takes .1 (and ::1)
    const i2 = s
      .ipJson(s.ns('i2'), 'addr', 'show', 'dev', 'eth0')[0]
      .addr_info.filter((a: any) => a.scope === 'global');
    expect(i2.map((a: any) => a.local)).toEqual(['172.24.0.2', 'fd00:24::2']);
    const r = await s.probe(s.ns('i1'), [tcp('172.24.0.2'), tcp('fd00:24::2'), tcp(UPLINK_V4, 7000)]);
    expect(r.map((x) => x.ok)).toEqual([true, true, false]);
    expect(await oks(s.neighbour, [tcp('172.24.0.2'), tcp('fd00:24::2')])).toEqual([false, false]);
  });

  it('enable_ip_masquerade false: the outside sees the container address', async () => {
    expect(await seenBy(s.ns('q'))).toEqual([ip4(25), ip6(25)]);
  });

  it('host_ipv4 / host_ipv6: egress leaves with that source address', async () => {
    expect(await seenBy(s.ns('sn'))).toEqual([SNAT_V4, SNAT_V6]);
  });
});
