/**
 * Op counts through the pure path (load → resolve → desiredState → diff → nftTransaction),
 * each plan taken against the previous desired state as if it had been applied: converged
 * is 0 actions; a new published port is only its own elements; removing a container only
 * its elements (plus its veth and namespace); ephemeral host ports stay put. Also the port
 * resolution rules the firewall relies on (families, routed, Docker's inspect shape).
 *
 * Conventions: container subnets explicit 172.2x/16 and fd00::/8 ULA; host addresses only
 * from 203.0.113.0/24 and 2001:db8::/32.
 */
import { describe, expect, it } from 'vitest';
import { buildViews } from '../../src/cli/views.js';
import { SpecError } from '../../src/model/errors.js';
import { loadSpecFromStrings } from '../../src/spec/load.js';
import { elementOps, plan, tx, world } from './firewall-world.js';

const net = (ports: string[], more = '') => `
networks:
  web:
    enable_ipv6: true
    ipam: { config: [{ subnet: 172.20.0.0/16 }, { subnet: "fd00:20::/64" }] }
  v4:
    ipam: { config: [{ subnet: 172.21.0.0/16 }] }
    driver_opts: { com.docker.network.bridge.enable_icc: "false" }
containers:
  a: { networks: [web], ports: [${ports.map((p) => JSON.stringify(p)).join(', ')}] }
  b: { networks: [v4], ports: ["9090:90"] }
  c: { networks: [v4] }
${more}`;

/** Ops other than DNS's (resolv.conf/hosts files, the resolver), which are not the firewall's. */
const notDns = (ops: ReturnType<typeof plan>) => ops.filter((a) => !/^(file|resolver)\./.test(a.op));

describe('op counts', () => {
  const base = world(net(['8080:80']));

  it('converged: zero actions, and an empty nft transaction', () => {
    const again = world(net(['8080:80']), base.desired);
    expect(plan(again, base)).toEqual([]);
    expect(tx(plan(again, base))).toEqual([]);
  });

  it('one more published port on a dual-stack network: its 6 elements, nothing else', () => {
    const more = world(net(['8080:80', '8081:81']), base.desired);
    // + the resolver's reload: every IPv6 binding on :: gets a userland proxy on the host's
    // [::1] (IPv6 loopback cannot be DNAT'd), configured in the resolver process
    expect(
      plan(more, base)
        .filter((a) => /^(file|resolver)\./.test(a.op))
        .map((a) => a.op),
    ).toEqual(['resolver.reload']);
    const p = notDns(plan(more, base));
    // dnatany4_addr + dnatany4_port + published4, and the same three for IPv6 = 6
    expect(elementOps(p)).toEqual([
      'add dnatany4_addr tcp . 8081 : 172.20.0.2',
      'add dnatany4_port tcp . 8081 : 81',
      'add dnatany6_addr tcp . 8081 : fd00:20::2',
      'add dnatany6_port tcp . 8081 : 81',
      'add published4 172.20.0.2 . tcp . 81',
      'add published6 fd00:20::2 . tcp . 81',
    ]);
    expect(p).toHaveLength(6);
    // one `add element` command per set, no table or chain command
    const t = tx(p);
    expect(t).toHaveLength(6);
    for (const c of t) expect(Object.keys((c as { add: object }).add)).toEqual(['element']);
  });

  it('one more port on an IPv4-only network, or on 127.0.0.1: 3 elements', () => {
    const b2 = world(net(['8080:80']).replace('["9090:90"]', '["9090:90", "9091:91"]'), base.desired);
    // dnatany4_addr + dnatany4_port + published4 = 3 (+ the resolver's reload: the IPv6
    // binding of this IPv4-only container is served by the userland proxy)
    expect(plan(b2, base).map((a) => a.op)).toEqual([...Array(3).fill('nft.element.add'), 'resolver.reload']);
    const lo = world(net(['8080:80', '127.0.0.1:5432:5432']), base.desired);
    // dnat4_addr + dnat4_port (keyed by the address) + published4 = 3; no IPv6 binding
    expect(elementOps(plan(lo, base))).toEqual([
      'add dnat4_addr 127.0.0.1 . tcp . 5432 : 172.20.0.2',
      'add dnat4_port 127.0.0.1 . tcp . 5432 : 5432',
      'add published4 172.20.0.2 . tcp . 5432',
    ]);
  });

  it('a port that shares its container port with another binding adds no published element', () => {
    const twice = world(net(['8080:80', '8088:80']), base.desired);
    // dnatany4_addr + dnatany4_port + dnatany6_addr + dnatany6_port = 4 (published4/6 already hold :80)
    expect(elementOps(plan(twice, base))).toHaveLength(4);
  });

  it('moving a binding to another container port: delete + add of the changed map values, in one transaction', () => {
    const moved = world(net(['8080:81']), base.desired);
    const p = plan(moved, base);
    // per family: the port map's value (delete old + add new) and the published element = 4; ×2
    // (the address map's element is unchanged: same host port, same container)
    expect(elementOps(p)).toEqual([
      'add dnatany4_port tcp . 8080 : 81',
      'add dnatany6_port tcp . 8080 : 81',
      'add published4 172.20.0.2 . tcp . 81',
      'add published6 fd00:20::2 . tcp . 81',
      'delete dnatany4_port tcp . 8080 : 80',
      'delete dnatany6_port tcp . 8080 : 80',
      'delete published4 172.20.0.2 . tcp . 80',
      'delete published6 fd00:20::2 . tcp . 80',
    ]);
    // deletes first: `add` of a key that still has its old value fails with EEXIST
    const verbs = tx(p).map((c) => Object.keys(c)[0]);
    expect(verbs).toEqual(['delete', 'delete', 'delete', 'delete', 'add', 'add', 'add', 'add']);
  });

  it('removing a container: its own elements and namespace only', () => {
    const gone = world(
      net(['8080:80']).replace('  b: { networks: [v4], ports: ["9090:90"] }\n', ''),
      base.desired,
    );
    const p = notDns(plan(gone, base));
    // b: 3 port elements (dnatany4_addr, dnatany4_port, published4) + its noicc_ports
    // element (v4 has enable_icc=false) = 4 element deletes; + netns.delete (the namespace
    // takes its veth with it) = 5
    expect(elementOps(p)).toEqual([
      'delete dnatany4_addr tcp . 9090 : 172.21.0.2',
      'delete dnatany4_port tcp . 9090 : 90',
      expect.stringMatching(/^delete noicc_ports veth[0-9a-f]{11}$/),
      'delete published4 172.21.0.2 . tcp . 90',
    ]);
    expect(p.filter((a) => !a.op.startsWith('nft.')).map((a) => a.op)).toEqual(['netns.delete']);
    expect(p).toHaveLength(5);
    for (const a of p) if ('container' in a) expect(a.container).toBe('b');
    // c keeps its address (172.21.0.3) and nothing of c's changes
    expect(gone.resolved.containers.c!.endpoints[0]!.ipv4).toBe('172.21.0.3');
  });

  it('per-network switches are one element each: ICC off, nat-unprotected, masquerade off', () => {
    const w = (opts: string) =>
      world(
        `networks:\n  n:\n    ipam: { config: [{ subnet: 172.22.0.0/16 }] }\n    driver_opts: { ${opts} }\ncontainers:\n  x: { networks: [n] }\n  y: { networks: [n] }\n`,
      );
    const on = w('com.docker.network.bridge.enable_icc: "true"');
    // one noicc_ports element per endpoint = 2
    expect(elementOps(plan(w('com.docker.network.bridge.enable_icc: "false"'), on))).toHaveLength(2);
    expect(elementOps(plan(w('com.docker.network.bridge.gateway_mode_ipv4: nat-unprotected'), on))).toEqual([
      expect.stringMatching(/^add unprotected4 br-/),
    ]);
    expect(elementOps(plan(w('com.docker.network.bridge.enable_ip_masquerade: "false"'), on))).toEqual([
      'delete masq4 172.22.0.0/16',
    ]);
    // host_ipv4: the masquerade element becomes an SNAT map element = 2
    expect(elementOps(plan(w('com.docker.network.host_ipv4: 203.0.113.3'), on))).toEqual([
      'add snat4 172.22.0.0/16 : 203.0.113.3',
      'delete masq4 172.22.0.0/16',
    ]);
  });
});

describe('ephemeral host ports', () => {
  const three = (names: string[]) =>
    `networks:\n  n: { ipam: { config: [{ subnet: 172.23.0.0/16 }] } }\ncontainers:\n${names
      .map((n) => `  ${n}: { networks: [n], ports: ["80", "53/udp"] }\n`)
      .join('')}`;
  // the IPv4 bindings (an IPv4-only container's proxied IPv6 binding shares the port)
  const hostPorts = (w: ReturnType<typeof world>, c: string) =>
    w.resolved.containers[c]!.ports.filter((p) => p.family === 4).map((p) => `${p.protocol}/${p.hostPort}`);

  it("are Docker's: the range start first, per protocol, the same port for both families", () => {
    const w = world(
      'networks:\n  n: { enable_ipv6: true }\ncontainers:\n  a: { networks: [n], ports: ["80", "81", "53/udp"] }\n',
    );
    expect(w.resolved.containers.a!.ports.map((p) => `${p.family} ${p.protocol}/${p.hostPort}`)).toEqual([
      '4 tcp/32768',
      '6 tcp/32768',
      '4 tcp/32769',
      '6 tcp/32769',
      '4 udp/32768',
      '6 udp/32768',
    ]);
  });

  it('stay put across re-resolve when the kernel already holds the binding', () => {
    const first = world(three(['b', 'c']));
    expect(hostPorts(first, 'b')).toEqual(['tcp/32768', 'udp/32768']);
    expect(hostPorts(first, 'c')).toEqual(['tcp/32769', 'udp/32769']);
    // b goes, a (sorting before c) arrives: c keeps 32769, a takes the free 32768
    const next = world(three(['a', 'c']), first.desired);
    expect(hostPorts(next, 'c')).toEqual(['tcp/32769', 'udp/32769']);
    expect(hostPorts(next, 'a')).toEqual(['tcp/32768', 'udp/32768']);
    // without the kernel's bindings, c would have moved (so the stickiness is what keeps it)
    expect(hostPorts(world(three(['c'])), 'c')).toEqual(['tcp/32768', 'udp/32768']);
    expect(hostPorts(world(three(['c']), first.desired), 'c')).toEqual(['tcp/32769', 'udp/32769']);
    // and re-resolving the same manifest is converged
    expect(plan(world(three(['b', 'c']), first.desired), first)).toEqual([]);
  });

  it('a binding whose kept port now falls outside its range is moved into the range', () => {
    const first = world(
      'networks:\n  n: { ipam: { config: [{ subnet: 172.23.0.0/16 }] } }\ncontainers:\n  a: { networks: [n], ports: ["8000-8010:80"] }\n',
    );
    expect(hostPorts(first, 'a')).toEqual(['tcp/8000']);
    const next = world(
      'networks:\n  n: { ipam: { config: [{ subnet: 172.23.0.0/16 }] } }\ncontainers:\n  a: { networks: [n], ports: ["8005-8010:80"] }\n',
      first.desired,
    );
    expect(hostPorts(next, 'a')).toEqual(['tcp/8005']);
  });
});

describe('bindings per address family', () => {
  const ports = (p: string[], opts = '', v6 = true, daemon = '') =>
    world(
      `${daemon}networks:\n  n:\n    enable_ipv6: ${v6}\n    ipam: { config: [{ subnet: 172.24.0.0/16 }${v6 ? ', { subnet: "fd00:24::/64" }' : ''}] }\n    driver_opts: { ${opts} }\ncontainers:\n  a: { networks: [n], ports: [${p.map((x) => JSON.stringify(x)).join(', ')}] }\n`,
    ).resolved.containers.a!.ports.map(
      (x) => `${x.hostIp} ${x.hostPort} ${x.mode}${x.proxy ? ' proxy' : ''}`,
    );

  it('the default 0.0.0.0 binds both families; an explicit 0.0.0.0 only IPv4; :: only IPv6', () => {
    expect(ports(['8080:80'])).toEqual(['0.0.0.0 8080 nat', ':: 8080 nat']);
    expect(ports(['0.0.0.0:8080:80'])).toEqual(['0.0.0.0 8080 nat']);
    expect(ports(['[::]:8080:80'])).toEqual([':: 8080 nat']);
    expect(ports(['127.0.0.1:8080:80'])).toEqual(['127.0.0.1 8080 nat']);
    expect(ports(['[::1]:8080:80'])).toEqual(['::1 8080 nat']);
  });

  it('host_binding_ipv4 changes the default: 127.0.0.1 is IPv4 only, :: IPv6 only', () => {
    expect(ports(['8080:80'], 'com.docker.network.bridge.host_binding_ipv4: 127.0.0.1')).toEqual([
      '127.0.0.1 8080 nat',
    ]);
    expect(ports(['8080:80'], 'com.docker.network.bridge.host_binding_ipv4: "::"')).toEqual([':: 8080 nat']);
    // an explicit address still wins over the network's default
    expect(ports(['0.0.0.0:8080:80'], 'com.docker.network.bridge.host_binding_ipv4: 127.0.0.1')).toEqual([
      '0.0.0.0 8080 nat',
    ]);
  });

  it("an IPv4-only container's IPv6 bindings go to the userland proxy (none without it)", () => {
    expect(ports(['8080:80'], '', false)).toEqual(['0.0.0.0 8080 nat', ':: 8080 nat proxy']);
    expect(ports(['[::]:8080:80'], '', false)).toEqual([':: 8080 nat proxy']);
    const noProxy = 'daemon: { userland-proxy: false }\n';
    expect(ports(['8080:80'], '', false, noProxy)).toEqual(['0.0.0.0 8080 nat']);
    expect(ports(['[::]:8080:80'], '', false, noProxy)).toEqual([]);
    // and the proxied binding writes no nft element (an IPv4 address in an IPv6 map)
    const w = world(
      'networks:\n  n: { ipam: { config: [{ subnet: 172.24.0.0/16 }] } }\ncontainers:\n  a: { networks: [n], ports: ["8080:80"] }\n',
    );
    expect(w.desired.nft.sets.dnatany6_addr).toEqual([]);
    expect(w.desired.nft.sets.dnatany4_addr).toEqual(['tcp . 8080 : 172.24.0.2']);
  });

  it('routed: no host port (no NAT), and the host address becomes the unspecified one', () => {
    expect(
      ports(
        ['8080:80', '127.0.0.1:8081:81'],
        'com.docker.network.bridge.gateway_mode_ipv4: routed, com.docker.network.bridge.gateway_mode_ipv6: nat',
      ),
    ).toEqual(['0.0.0.0 0 routed', ':: 8080 nat', '0.0.0.0 0 routed']);
  });

  it("container inspect shows Docker's Ports shape: one entry per family, routed with an empty HostPort", () => {
    const w = world(
      `networks:\n  n: { enable_ipv6: true, ipam: { config: [{ subnet: 172.25.0.0/16 }, { subnet: "fd00:25::/64" }] } }\n  r: { driver_opts: { com.docker.network.bridge.gateway_mode_ipv4: routed } }\ncontainers:\n  a: { networks: [n], ports: ["8080:80", "127.0.0.1:5432:5432", "53/udp"] }\n  b: { networks: [r], ports: ["8081:80"] }\n`,
    );
    const view = buildViews(w.resolved, w.desired, '2026-01-01T00:00:00Z');
    const ports = (n: string) => view.containers.find((c) => c.Name === `/${n}`)!.NetworkSettings.Ports;
    expect(ports('a')).toEqual({
      '80/tcp': [
        { HostIp: '0.0.0.0', HostPort: '8080' },
        { HostIp: '::', HostPort: '8080' },
      ],
      '5432/tcp': [{ HostIp: '127.0.0.1', HostPort: '5432' }],
      '53/udp': [
        { HostIp: '0.0.0.0', HostPort: '32768' },
        { HostIp: '::', HostPort: '32768' },
      ],
    });
    expect(ports('b')).toEqual({ '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '' }] });
  });
});

describe('input errors and warnings of publishing', () => {
  const problems = (yaml: string): string[] => {
    try {
      loadSpecFromStrings([{ path: 'm.yaml', text: yaml }]);
    } catch (e) {
      if (e instanceof SpecError) return e.problems.map((p) => `${p.src?.line}: ${p.message}`);
      throw e;
    }
    return [];
  };

  it('two containers claiming one host address/port/protocol is an error naming both', () => {
    const errs = problems(
      'containers:\n  a: { ports: ["8080:80"] }\n  b: { ports: ["0.0.0.0:8080:81"] }\n  c: { ports: ["8080:80/udp"] }\n',
    );
    expect(errs).toHaveLength(1);
    expect(errs[0]).toMatch(/8080/);
    expect(errs[0]).toMatch(/'a'|\ba\b/);
    expect(errs[0]).toMatch(/'b'|\bb\b/);
  });

  it('distinct loopback addresses and distinct protocols may share a port', () => {
    expect(
      problems(
        'containers:\n  a: { ports: ["127.0.0.1:8080:80"] }\n  b: { ports: ["127.0.0.2:8080:80"] }\n  c: { ports: ["8080:80/udp"] }\n',
      ),
    ).toEqual([]);
  });

  it("network_mode host: ports are discarded with Docker's warning", () => {
    const spec = loadSpecFromStrings([
      { path: 'm.yaml', text: 'containers:\n  h: { network_mode: host, ports: ["8080:80"] }\n' },
    ]);
    expect(spec.containers.h!.ports).toEqual([]);
    expect(spec.warnings.map((w) => w.message).join('\n')).toMatch(
      /Published ports are discarded when using host network mode/,
    );
  });
});
