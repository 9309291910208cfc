/**
 * Port publishing on the kernel: every publishing form (short and long syntax; tcp, udp,
 * sctp; ranges; ephemeral; one port of a range; 127.0.0.1; an explicit 0.0.0.0; ::; a
 * specific host address; a network's host_binding_ipv4) reached from the uplink, from the
 * host itself, from a container of another network and of the same network through the
 * host, and hairpin; then the negative cases: loopback bindings and container addresses
 * stay closed to the outside (including a LAN neighbour forging 127.0.0.1), and forwarded
 * traffic reaches only the published container:port. One sandbox, one apply.
 *
 * Conventions: container subnets explicit 172.2x.0.0/16 and fd00:2x::/64 (ULA); the uplink is
 * 203.0.113.1 / 2001:db8:1::1 (host .2 / ::2), the LAN neighbour 198.51.100.2 (host .1).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  HOST_V4,
  HOST_V6,
  LAN_HOST_V4,
  LAN_PEER_V4,
  type Probe,
  type ProbeResult,
  Sandbox,
  UPLINK_V4,
  UPLINK_V6,
} from '../helpers/sandbox.js';

const MANIFEST = `
networks:
  web:
    enable_ipv6: true
    ipam: { config: [{ subnet: 172.20.0.0/16 }, { subnet: "fd00:20::/64" }] }
  other:
    ipam: { config: [{ subnet: 172.21.0.0/16 }] }
  lo4:
    ipam: { config: [{ subnet: 172.22.0.0/16 }] }
    driver_opts: { com.docker.network.bridge.host_binding_ipv4: 127.0.0.1 }
containers:
  w:
    networks: [web]
    ports:
      - "8080:80"                                     # short: both families
      - "127.0.0.1:8084:84"                           # IPv4 loopback only
      - "0.0.0.0:8085:85"                             # explicit 0.0.0.0: IPv4 only
      - { target: 86, published: 8086, host_ip: "::", protocol: tcp }   # long: IPv6 only
      - "8082:82/udp"
      - { target: 87, published: "8087", protocol: udp }
      - "9000-9002:9000-9002"                         # range, port to port
      - "83"                                          # ephemeral
      - "8100-8110:88"                                # one free port of a range
      - "${HOST_V4}:8091:91"                          # one host address only
      - "8089:89/sctp"
      - "53:53/udp"                                   # DNS, next to tether's resolver on gateways
  w2: { networks: [web] }
  o: { networks: [other] }
  p4: { networks: [other], ports: ["8093:93"] }                 # IPv4-only container
  l: { networks: [lo4], ports: ["8090:90"] }
`;
const W4 = '172.20.0.2';
const W6 = 'fd00:20::2';
const W2_4 = '172.20.0.3';
const GW_WEB = '172.20.0.1';
const GW_OTHER = '172.21.0.1';

const tcp = (addr: string, port: number): Probe => ({ proto: 'tcp', addr, port });
const udp = (addr: string, port: number): Probe => ({ proto: 'udp', addr, port });
/** "proto addr:port → reply" (or → error) for readable comparisons. */
const show = (r: ProbeResult) =>
  `${r.proto} ${r.addr.includes(':') ? `[${r.addr}]` : r.addr}:${r.port} → ${r.ok ? r.reply : 'none'}`;

describe('published ports on the kernel', () => {
  let s: Sandbox;
  let ephemeral: number;
  beforeAll(async () => {
    s = Sandbox.create();
    s.addNeighbour();
    s.routeVia(s.neighbour, '172.16.0.0/12');
    s.routeVia(s.neighbour, 'fd00::/8');
    s.routeVia(s.uplink, '172.16.0.0/12');
    s.routeVia(s.uplink, 'fd00::/8');
    s.write('m.yaml', MANIFEST);
    s.tetherOk('apply', '-f', s.manifests);
    await Promise.all([
      s.serve(s.ns('w'), 'w', { tcp: [80, 81, 83, 84, 85, 86, 88, 91, 9000, 9001, 9002], udp: [53, 82, 87] }),
      s.serve(s.ns('w2'), 'w2', { tcp: [80, 81] }),
      s.serve(s.ns('l'), 'l', { tcp: [90] }),
      s.serve(s.ns('p4'), 'p4', { tcp: [93] }),
      s.settleIpv6([s.host, s.uplink, s.neighbour, s.ns('w'), s.ns('w2')]),
    ]);
    const inspect = JSON.parse(s.tetherOk('container', 'inspect', 'w'))[0];
    ephemeral = Number(inspect.NetworkSettings.Ports['83/tcp'][0].HostPort);
  });
  afterAll(() => s.teardown());

  it('container inspect: Docker-shaped Ports, one entry per family; the ephemeral port from the range start', () => {
    const ports = JSON.parse(s.tetherOk('container', 'inspect', 'w'))[0].NetworkSettings.Ports;
    expect(ports['80/tcp']).toEqual([
      { HostIp: '0.0.0.0', HostPort: '8080' },
      { HostIp: '::', HostPort: '8080' },
    ]);
    expect(ports['84/tcp']).toEqual([{ HostIp: '127.0.0.1', HostPort: '8084' }]);
    expect(ports['85/tcp']).toEqual([{ HostIp: '0.0.0.0', HostPort: '8085' }]);
    expect(ports['86/tcp']).toEqual([{ HostIp: '::', HostPort: '8086' }]);
    expect(ports['88/tcp']).toEqual([
      { HostIp: '0.0.0.0', HostPort: '8100' },
      { HostIp: '::', HostPort: '8100' },
    ]);
    const range = s
      .inNs(s.host, ['cat', '/proc/sys/net/ipv4/ip_local_port_range'])
      .stdout.trim()
      .split(/\s+/);
    expect(ephemeral).toBe(Number(range[0]));
    expect(ports['83/tcp']).toEqual([
      { HostIp: '0.0.0.0', HostPort: String(ephemeral) },
      { HostIp: '::', HostPort: String(ephemeral) },
    ]);
    // and `container ls` shows them too
    expect(s.tetherOk('container', 'ls')).toContain(String(ephemeral));
  });

  it('from the uplink: every form answers on exactly the families it binds, from the published container:port', async () => {
    const probes: Probe[] = [];
    for (const h of [HOST_V4, HOST_V6]) {
      probes.push(tcp(h, 8080), tcp(h, 8084), tcp(h, 8085), tcp(h, 8086), udp(h, 8082), udp(h, 8087));
      probes.push(tcp(h, 9000), tcp(h, 9001), tcp(h, 9002), tcp(h, ephemeral), tcp(h, 8100), tcp(h, 8091));
    }
    const r = await s.probe(s.uplink, probes);
    const u4 = UPLINK_V4;
    const u6 = UPLINK_V6;
    expect(r.map(show)).toEqual([
      `tcp ${HOST_V4}:8080 → w ${u4} 80`,
      `tcp ${HOST_V4}:8084 → none`,
      `tcp ${HOST_V4}:8085 → w ${u4} 85`,
      `tcp ${HOST_V4}:8086 → none`,
      `udp ${HOST_V4}:8082 → w ${u4} 82`,
      `udp ${HOST_V4}:8087 → w ${u4} 87`,
      `tcp ${HOST_V4}:9000 → w ${u4} 9000`,
      `tcp ${HOST_V4}:9001 → w ${u4} 9001`,
      `tcp ${HOST_V4}:9002 → w ${u4} 9002`,
      `tcp ${HOST_V4}:${ephemeral} → w ${u4} 83`,
      `tcp ${HOST_V4}:8100 → w ${u4} 88`,
      `tcp ${HOST_V4}:8091 → w ${u4} 91`,
      `tcp [${HOST_V6}]:8080 → w ${u6} 80`,
      `tcp [${HOST_V6}]:8084 → none`,
      `tcp [${HOST_V6}]:8085 → none`,
      `tcp [${HOST_V6}]:8086 → w ${u6} 86`,
      `udp [${HOST_V6}]:8082 → w ${u6} 82`,
      `udp [${HOST_V6}]:8087 → w ${u6} 87`,
      `tcp [${HOST_V6}]:9000 → w ${u6} 9000`,
      `tcp [${HOST_V6}]:9001 → w ${u6} 9001`,
      `tcp [${HOST_V6}]:9002 → w ${u6} 9002`,
      `tcp [${HOST_V6}]:${ephemeral} → w ${u6} 83`,
      `tcp [${HOST_V6}]:8100 → w ${u6} 88`,
      `tcp [${HOST_V6}]:8091 → none`,
    ]);
  });

  it("an IPv4-only container's IPv6 binding, served by the userland proxy from the uplink and the host", async () => {
    const r = await s.probe(s.uplink, [tcp(HOST_V4, 8093), tcp(HOST_V6, 8093)]);
    expect(r.map(show)).toEqual([
      `tcp ${HOST_V4}:8093 → p4 ${UPLINK_V4} 93`,
      // the proxy connects from the host: the container sees its gateway (docker-proxy does the same)
      `tcp [${HOST_V6}]:8093 → p4 ${GW_OTHER} 93`,
    ]);
    const h = await s.probe(s.host, [tcp('::1', 8093), tcp('127.0.0.1', 8093)]);
    expect(h.map(show)).toEqual([
      `tcp [::1]:8093 → p4 ${GW_OTHER} 93`,
      `tcp 127.0.0.1:8093 → p4 ${GW_OTHER} 93`,
    ]);
  });

  it('sctp (raw sockets: this kernel may lack SCTP sockets, not SCTP NAT): DNAT to the container port, v4 and v6', async () => {
    const [lw, lw2] = await Promise.all([s.sctpListen(s.ns('w')), s.sctpListen(s.ns('w2'))]);
    s.sctpSend(s.uplink, HOST_V4, 8089, 40001);
    s.sctpSend(s.uplink, HOST_V6, 8089, 40002);
    const v4 = await lw.next((p) => p.sport === 40001);
    const v6 = await lw.next((p) => p.sport === 40002);
    if (!v4 || !v6)
      throw new Error(
        `SCTP INIT to the published port did not reach the container (v4: ${!!v4}, v6: ${!!v6}): does this kernel's conntrack/NAT handle SCTP (CONFIG_NF_CT_PROTO_SCTP)?`,
      );
    expect(v4).toEqual({ family: 4, src: UPLINK_V4, dst: W4, sport: 40001, dport: 89 });
    expect(v6).toMatchObject({ family: 6, src: UPLINK_V6, sport: 40002, dport: 89 });
    // an unpublished SCTP port is not forwarded, and nothing reached the other container
    s.sctpSend(s.uplink, HOST_V4, 8088, 40003);
    s.sctpSend(s.uplink, W4, 89, 40004);
    expect(await lw.next((p) => p.sport === 40003 || p.sport === 40004, 500)).toBeUndefined();
    expect(lw2.seen()).toEqual([]);
  });

  it('from the host itself: its addresses, 127.0.0.1 when the binding allows it, the bridge gateway', async () => {
    const r = await s.probe(s.host, [
      tcp(HOST_V4, 8080),
      tcp('127.0.0.1', 8080),
      tcp(GW_WEB, 8080),
      tcp(HOST_V6, 8080),
      tcp('127.0.0.1', 8084),
      tcp(HOST_V4, 8084),
      tcp('127.0.0.1', 8085),
      udp('127.0.0.1', 8082),
      tcp('127.0.0.1', 8090),
      tcp(HOST_V4, 8090),
      tcp('127.0.0.1', 8086),
    ]);
    expect(r.map(show)).toEqual([
      `tcp ${HOST_V4}:8080 → w ${HOST_V4} 80`,
      `tcp 127.0.0.1:8080 → w ${GW_WEB} 80`,
      `tcp ${GW_WEB}:8080 → w ${GW_WEB} 80`,
      `tcp [${HOST_V6}]:8080 → w ${HOST_V6} 80`,
      `tcp 127.0.0.1:8084 → w ${GW_WEB} 84`,
      `tcp ${HOST_V4}:8084 → none`,
      `tcp 127.0.0.1:8085 → w ${GW_WEB} 85`,
      `udp 127.0.0.1:8082 → w ${GW_WEB} 82`,
      // lo4's host_binding_ipv4 127.0.0.1: the host's loopback only
      'tcp 127.0.0.1:8090 → l 172.22.0.1 90',
      `tcp ${HOST_V4}:8090 → none`,
      // bound on :: only: not on 127.0.0.1
      'tcp 127.0.0.1:8086 → none',
    ]);
    // [::1] cannot be DNAT'd (a packet from ::1 cannot leave `lo`): nat-output leaves it
    // alone and the userland proxy (in the resolver process) relays it from the gateway.
    const v6lo = await s.probe(s.host, [
      tcp('::1', 8080),
      udp('::1', 8082),
      tcp('::1', 8086),
      tcp('::1', 8085),
    ]);
    expect(v6lo.map(show)).toEqual([
      `tcp [::1]:8080 → w fd00:20::1 80`,
      `udp [::1]:8082 → w fd00:20::1 82`,
      `tcp [::1]:8086 → w fd00:20::1 86`,
      // bound on 0.0.0.0 only: nothing on [::1]
      'tcp [::1]:8085 → none',
    ]);
  });

  it("from a container of another network, through the host's addresses (its own gateway too)", async () => {
    const r = await s.probe(s.ns('o'), [
      tcp(HOST_V4, 8080),
      tcp(GW_OTHER, 8080),
      tcp(LAN_HOST_V4, 8080),
      udp(HOST_V4, 8082),
      tcp(HOST_V4, 8084),
      tcp(W4, 80),
    ]);
    expect(r.map(show)).toEqual([
      `tcp ${HOST_V4}:8080 → w ${GW_WEB} 80`,
      `tcp ${GW_OTHER}:8080 → w ${GW_WEB} 80`,
      `tcp ${LAN_HOST_V4}:8080 → w ${GW_WEB} 80`,
      `udp ${HOST_V4}:8082 → w ${GW_WEB} 82`,
      `tcp ${HOST_V4}:8084 → none`,
      `tcp ${W4}:80 → none`,
    ]);
  });

  it("a published port 53 does not capture containers' queries to their own gateway (tether's resolver)", async () => {
    const [up] = await s.probe(s.uplink, [udp(HOST_V4, 53)]);
    expect(up!.reply).toBe(`w ${UPLINK_V4} 53`);
    const [viaHost] = await s.probe(s.ns('o'), [udp(HOST_V4, 53)]);
    expect(viaHost!.reply).toBe(`w ${GW_WEB} 53`);
    const dig = s.inNs(s.ns('o'), ['dig', '+short', '+time=1', '+tries=1', `@${GW_OTHER}`, 'p4']);
    expect(dig.stdout.trim()).toBe('172.21.0.3');
  });

  it('from another container of the same network, through the host', async () => {
    const r = await s.probe(s.ns('w2'), [tcp(HOST_V4, 8080), tcp(GW_WEB, 8080), tcp(HOST_V6, 8080)]);
    expect(r.map(show)).toEqual([
      `tcp ${HOST_V4}:8080 → w ${GW_WEB} 80`,
      `tcp ${GW_WEB}:8080 → w ${GW_WEB} 80`,
      `tcp [${HOST_V6}]:8080 → w fd00:20::1 80`,
    ]);
  });

  // With br_netfilter (bridge-nf-call-iptables=1) the DNAT happens at the bridge layer and
  // the frame is bridged back out of the port it came from, which needs the port's hairpin
  // mode: apply sets it on every container port.
  it('hairpin: the container reaches its own published port through the host', async () => {
    const r = await s.probe(s.ns('w'), [tcp(HOST_V4, 8080), tcp(GW_WEB, 8080), tcp(HOST_V6, 8080)]);
    expect(r.map(show)).toEqual([
      `tcp ${HOST_V4}:8080 → w ${GW_WEB} 80`,
      `tcp ${GW_WEB}:8080 → w ${GW_WEB} 80`,
      `tcp [${HOST_V6}]:8080 → w fd00:20::1 80`,
    ]);
  });

  it('nothing wider than asked: container addresses, unpublished ports, other containers stay closed', async () => {
    const probes: Probe[] = [];
    for (const a of [W4, W6, W2_4]) probes.push(tcp(a, 80), tcp(a, 81), { proto: 'icmp', addr: a });
    probes.push(tcp(HOST_V4, 8081), tcp(LAN_HOST_V4, 8091));
    const [up, lan] = await Promise.all([s.probe(s.uplink, probes), s.probe(s.neighbour, probes)]);
    expect(up.filter((x) => x.ok).map(show)).toEqual([]);
    expect(lan.filter((x) => x.ok).map(show)).toEqual([]);
    // each published port reached exactly its container:port (w, not w2, on 80)
    const [p] = await s.probe(s.neighbour, [tcp(LAN_HOST_V4, 8080)]);
    expect(p!.reply).toBe(`w ${LAN_PEER_V4} 80`);
  });

  it('a 127.0.0.1 binding is not reachable from a LAN neighbour that sends to 127.0.0.1 via the host', async () => {
    s.routeLoopbackViaHost();
    // Count what arrives, in a table of our own ahead of tether's (priority -400 < raw -300),
    // so that a "no" below is the firewall's doing, not a packet that never left.
    const nft = (...args: string[]) => {
      const r = s.inNs(s.host, ['nft', ...args]);
      if (r.code !== 0) throw new Error(`nft ${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    nft(
      'add table ip probe; add chain ip probe pre { type filter hook prerouting priority -400; }; add rule ip probe pre iifname "lan0" ip daddr 127.0.0.1 tcp dport { 8084, 8090 } counter',
    );
    try {
      const r = await s.probe(s.neighbour, [
        tcp('127.0.0.1', 8084),
        tcp('127.0.0.1', 8090),
        tcp('127.0.0.1', 8080),
      ]);
      expect(r.map((x) => x.ok)).toEqual([false, false, false]);
      expect(Number(/packets (\d+)/.exec(nft('list', 'table', 'ip', 'probe'))![1])).toBeGreaterThan(0);
      // Without tether's raw-prerouting guard the forged packet is DNAT'd into the container
      // (moby#45610): remove the guard (drift), see the attack work, and apply to repair it.
      const table = JSON.parse(nft('-j', 'list', 'chain', 'inet', s.instance, 'raw-prerouting')).nftables;
      const guard = table.find((o: any) => JSON.stringify(o.rule?.expr ?? '').includes('127.0.0.0'));
      nft(`delete rule inet ${s.instance} raw-prerouting handle ${guard.rule.handle}`);
      const [open] = await s.probe(s.neighbour, [tcp('127.0.0.1', 8084)]);
      expect(open!.reply).toBe(`w ${LAN_PEER_V4} 84`);
      const plan = JSON.parse(s.tetherOk('plan', '-f', s.manifests, '--json')).actions;
      expect(plan.map((a: any) => a.op)).toContain('nft.table.replace');
      s.tetherOk('apply', '-f', s.manifests);
      const [closed] = await s.probe(s.neighbour, [tcp('127.0.0.1', 8084)]);
      expect(closed!.ok).toBe(false);
    } finally {
      nft('delete table ip probe');
    }
  });
});

describe("the userland proxies across edits (each container's part of the resolver's configuration)", () => {
  let s: Sandbox;
  const manifest = (containers: string) =>
    `networks:\n  v4: { ipam: { config: [{ subnet: 172.23.0.0/16 }] } }\ncontainers:\n${containers}`;
  const chosenPort = () =>
    Number(
      JSON.parse(s.tetherOk('container', 'inspect', 'a'))[0].NetworkSettings.Ports['81/tcp'][0].HostPort,
    );
  beforeAll(() => {
    s = Sandbox.create({ uplink: false });
  });
  afterAll(() => s.teardown());

  it('follow the containers that come, go and change their ports; a port tether chose stays', async () => {
    // IPv4-only containers: their IPv6 bindings ([::]) are served by the userland proxy.
    s.write(
      'm.yaml',
      manifest(
        '  z: { networks: [v4], ports: ["[::]::82"] }\n  a: { networks: [v4], ports: ["8201:80", "[::]::81"] }\n  b: { networks: [v4], ports: ["8202:80"] }\n',
      ),
    );
    s.tetherOk('apply', '-f', s.manifests);
    await Promise.all([s.serve(s.ns('a'), 'a', { tcp: [80, 81] }), s.serve(s.ns('b'), 'b', { tcp: [80] })]);
    const chosen = chosenPort();
    expect(chosen).toBeGreaterThan(1024);
    const probe = async (ports: number[]) =>
      (
        await s.probe(
          s.host,
          ports.map((port) => tcp('::1', port)),
        )
      ).map((r) =>
        r.ok ? `${r.port} → ${r.reply.split(' ')[0]} ${r.reply.split(' ')[2]}` : `${r.port} → none`,
      );
    expect(await probe([8201, 8202, chosen])).toEqual(['8201 → a 80', '8202 → b 80', `${chosen} → a 81`]);

    // z goes (the first port of the range is free again), a moves to 8203, b goes, and c
    // (at another address than b's) takes b's port: the proxy on 8202 relays to c now.
    s.write(
      'm.yaml',
      manifest(
        '  a: { networks: [v4], ports: ["8203:80", "[::]::81"] }\n  c: { networks: [v4], ports: ["8202:80"] }\n',
      ),
    );
    s.tetherOk('apply', '-f', s.manifests, '--prune-all'); // (two of three go)
    await s.serve(s.ns('c'), 'c', { tcp: [80] });
    // A new command reads the port it chose from the resolver's index, and keeps it.
    expect(chosenPort()).toBe(chosen);
    expect(await probe([8201, 8202, 8203, chosen])).toEqual([
      '8201 → none',
      '8202 → c 80',
      '8203 → a 80',
      `${chosen} → a 81`,
    ]);
    expect(JSON.parse(s.tetherOk('plan', '-f', s.manifests, '--json')).actions).toEqual([]);

    // a and c swap ports in one edit: each port passes to the other container, and the
    // resolver never sees it claimed twice.
    s.write(
      'm.yaml',
      manifest(
        '  a: { networks: [v4], ports: ["8202:80", "[::]::81"] }\n  c: { networks: { v4: { ipv4_address: 172.23.0.9 } }, ports: ["8203:80"] }\n',
      ),
    );
    s.tetherOk('apply', '-f', s.manifests);
    expect(await probe([8202, 8203, chosen])).toEqual(['8202 → a 80', '8203 → c 80', `${chosen} → a 81`]);
    const log = readFileSync(join(s.dir, 'state', s.instance, 'dns.log'), 'utf8');
    expect(log).not.toMatch(/claimed twice/);
  });
});
