/**
 * The spine on the real kernel: converge, idempotence, minimal change, stickiness,
 * ownership, destroy — each checked with tools other than tether's own observe
 * (`ip -j`, `nft -j`, ping, a TCP peer on the uplink).
 *
 * Conventions: container subnets come from tether's pools (172.17/16, 172.18/16, …);
 * the uplink ("internet") is 203.0.113.1 and the sandbox host 203.0.113.2.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST_V4, Sandbox, tcpPeer, UPLINK_V4 } from '../helpers/sandbox.js';

const SEED = `
networks:
  alpine-net: {}
containers:
  alpine1:
    networks: [alpine-net]
  alpine2:
    networks: [alpine-net]
  alpine3: {}
  alpine4:
    networks: [alpine-net, bridge]
`;

function planJson(s: Sandbox): { actions: any[] } {
  return JSON.parse(s.tetherOk('plan', '-f', s.manifests, '--json'));
}

function addrOf(s: Sandbox, container: string, ifname = 'eth0'): string {
  const links = s.ipJson(s.ns(container), 'addr', 'show', 'dev', ifname);
  return links[0].addr_info.find((a: any) => a.family === 'inet').local;
}

describe('seed walkthrough on the kernel', () => {
  let s: Sandbox;
  let before: { actions: any[] };
  let after: any[];
  beforeAll(() => {
    s = Sandbox.create();
    s.write('seed.yaml', SEED);
    before = planJson(s);
    s.tetherOk('apply', '-f', s.manifests);
    after = planJson(s).actions;
  });
  afterAll(() => s.teardown());

  it('plans the whole world from empty, then converges and re-plans empty', () => {
    const ops = (op: string) => before.actions.filter((a) => a.op === op).length;
    // sysctls: ip_forward + route_localnet on 2 bridges = 3
    expect(ops('sysctl.set')).toBe(3);
    expect(ops('netns.create')).toBe(4);
    expect(ops('bridge.create')).toBe(2);
    // alpine1, alpine2, alpine3, alpine4 ×2
    expect(ops('veth.create')).toBe(5);
    // 2 gateway addresses + 5 container addresses
    expect(ops('addr.add')).toBe(2 + 5);
    expect(ops('route.add')).toBe(4);
    expect(ops('nft.table.create')).toBe(1);
    // bridges ×2, samebridge ×2, subnets4 ×2, masq4 ×2
    expect(ops('nft.element.add')).toBe(8);
    // resolv.conf + hosts for 4 containers, and the resolver for alpine-net
    expect(ops('file.write')).toBe(8);
    expect(ops('resolver.reload')).toBe(1);
    expect(before.actions.length).toBe(3 + 4 + 2 + 5 + 7 + 4 + 1 + 8 + 8 + 1);
    expect(after).toEqual([]);
  });

  it('gives Docker addresses: default bridge 172.17/16, alpine-net 172.18/16, lowest free first', () => {
    expect(addrOf(s, 'alpine1')).toBe('172.18.0.2');
    expect(addrOf(s, 'alpine2')).toBe('172.18.0.3');
    expect(addrOf(s, 'alpine3')).toBe('172.17.0.2');
    expect(addrOf(s, 'alpine4', 'eth0')).toBe('172.18.0.4');
    expect(addrOf(s, 'alpine4', 'eth1')).toBe('172.17.0.3');
    const routes = s.ipJson(s.ns('alpine4'), 'route', 'show', 'default');
    // alpine-net and bridge tie on priority; "alpine-net" < "bridge" by name.
    expect(routes).toHaveLength(1);
    expect(routes[0].gateway).toBe('172.18.0.1');
  });

  it('gives each bridge a MAC of its own, which a port with a lower MAC does not take, and accept_ra 0', () => {
    const bridges = s.ipJson(s.host, 'link', 'show', 'type', 'bridge') as {
      ifname: string;
      address: string;
    }[];
    expect(bridges).toHaveLength(2);
    const ok = (cmd: string[]) => {
      const r = s.inNs(s.host, cmd);
      if (r.code !== 0) throw new Error(`${cmd.join(' ')}: ${r.stderr}`);
      return r.stdout.trim();
    };
    for (const b of bridges) {
      // Set (3, NET_ADDR_SET), locally administered and unicast, as Docker's random MAC.
      expect(ok(['cat', `/sys/class/net/${b.ifname}/addr_assign_type`])).toBe('3');
      expect(Number.parseInt(b.address.slice(0, 2), 16) & 0x03).toBe(0x02);
      // And, as Docker's, no router advertisements taken from containers.
      expect(ok(['cat', `/proc/sys/net/ipv6/conf/${b.ifname}/accept_ra`])).toBe('0');
      // A bridge without one would take the lowest MAC of its ports: the gateway's MAC
      // would change under the containers' ARP caches as containers come and go.
      ok([
        'ip',
        'link',
        'add',
        'lowmac0',
        'address',
        '02:00:00:00:00:01',
        'type',
        'veth',
        'peer',
        'name',
        'lowmac1',
      ]);
      try {
        ok(['ip', 'link', 'set', 'lowmac0', 'master', b.ifname, 'up']);
        expect(s.ipJson(s.host, 'link', 'show', 'dev', b.ifname)[0].address).toBe(b.address);
      } finally {
        ok(['ip', 'link', 'del', 'lowmac0']);
      }
    }
    expect(planJson(s).actions).toEqual([]);
  });

  it('reachability by IP: same network yes, across networks no, alpine4 both', () => {
    const a1 = '172.18.0.2';
    const a2 = '172.18.0.3';
    const a3 = '172.17.0.2';
    expect(s.ping(s.ns('alpine1'), a2)).toBe(true);
    expect(s.ping(s.ns('alpine2'), a1)).toBe(true);
    expect(s.ping(s.ns('alpine4'), a1)).toBe(true);
    expect(s.ping(s.ns('alpine4'), a3)).toBe(true);
    expect(s.ping(s.ns('alpine3'), '172.17.0.3')).toBe(true);
    expect(s.ping(s.ns('alpine1'), a3)).toBe(false);
    expect(s.ping(s.ns('alpine3'), a1)).toBe(false);
  });

  it('every container reaches the uplink, masqueraded to the host address', async () => {
    for (const c of ['alpine1', 'alpine2', 'alpine3', 'alpine4'])
      expect(s.ping(s.ns(c), UPLINK_V4)).toBe(true);
    // A TCP peer on the uplink reports the source address it sees.
    const peer = tcpPeer(s.uplink, UPLINK_V4, 7777);
    await peer.ready;
    const client = s.inNs(s.ns('alpine1'), ['bash', '-c', `exec 3<>/dev/tcp/${UPLINK_V4}/7777; cat <&3`]);
    expect(client.stdout.trim()).toBe(HOST_V4);
    expect(await peer.peer).toBe(HOST_V4);
  });

  it('writes the isolation and masquerade facts as set elements (nft -j)', () => {
    const t = s.nftTable()!;
    const set = (name: string) => t.find((o) => o.set?.name === name)?.set.elem ?? [];
    expect(set('bridges')).toHaveLength(2);
    expect(
      set('masq4')
        .map((e: any) => `${e.prefix.addr}/${e.prefix.len}`)
        .sort(),
    ).toEqual(['172.17.0.0/16', '172.18.0.0/16']);
  });
});

describe('container interfaces as Docker makes them', () => {
  let s: Sandbox;
  const M = (more: string) =>
    `networks:\n  v4: {}\n  v6: { enable_ipv6: true, ipam: { config: [{ subnet: "fd00:61::/64" }] } }\ncontainers:\n  a: { networks: [v4, v6] }\n${more}`;
  beforeAll(() => {
    s = Sandbox.create({ uplink: false });
    s.write('m.yaml', M('  b: { networks: [v4] }\n'));
    s.tetherOk('apply', '-f', s.manifests);
  });
  afterAll(() => s.teardown());

  it('an IPv4-only endpoint has no IPv6 address, not even link-local; lo keeps ::1', () => {
    const v6 = (c: string, dev: string) =>
      s.ipJson(s.ns(c), '-6', 'addr', 'show', 'dev', dev)[0]?.addr_info.map((x: any) => x.scope) ?? [];
    expect(v6('b', 'eth0')).toEqual([]);
    expect(v6('b', 'lo')).toEqual(['host']);
    expect(v6('a', 'eth0')).toEqual([]);
    // The IPv6 network's endpoint: its address and its link-local one.
    expect(v6('a', 'eth1').sort()).toEqual(['global', 'link']);
  });

  it('a container given the address of one that went is reached at once (its MAC follows the address)', () => {
    const mac = (c: string) => s.ipJson(s.ns(c), 'link', 'show', 'dev', 'eth0')[0].address;
    expect(mac('b')).toBe('02:42:ac:12:00:03');
    expect(s.ping(s.ns('a'), '172.18.0.3')).toBe(true);
    // b goes and c comes: c gets b's address, and a's ARP cache still holds b's entry.
    s.write('m.yaml', M('  c: { networks: [v4] }\n'));
    s.tetherOk('apply', '-f', s.manifests, '--prune-all');
    expect(s.ipJson(s.ns('c'), 'addr', 'show', 'dev', 'eth0')[0].addr_info[0].local).toBe('172.18.0.3');
    expect(s.ping(s.ns('a'), '172.18.0.3')).toBe(true);
    expect(JSON.parse(s.tetherOk('plan', '-f', s.manifests, '--json')).actions).toEqual([]);
  });
});
