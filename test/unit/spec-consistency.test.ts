/**
 * Phase 5 (consistency): every semantic error, with file:line:col, the message, and the
 * other place of a conflict ("[other: …]").
 * Conventions: container subnets 172.18.0.0/16-like (IPv6: fd00::/8); outside addresses
 * only from 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.
 */
import { describe, expect, it } from 'vitest';
import { loadSpecFromStrings } from '../../src/spec/load.js';
import { errorsOf, load, yaml } from './spec-helpers.js';

describe('duplicates across files', () => {
  it('names both files for a container defined twice', () => {
    expect(
      errorsOf([
        { path: 'a.yaml', text: 'containers:\n  web: {}\n' },
        { path: 'b.yaml', text: 'networks:\n  n: {}\ncontainers:\n  web:\n    networks: [n]\n' },
      ]),
    ).toEqual([
      "b.yaml:4:3: container 'web' is already defined in a.yaml; names must be unique across manifest files [other: a.yaml:2:3]",
    ]);
  });

  it('catches the same name under containers and services in one file', () => {
    expect(errorsOf('containers:\n  web: {}\nservices:\n  web: {}\n')).toEqual([
      "m.yaml:4:3: container 'web' is already defined under containers in the same file; names must be unique across manifest files [other: m.yaml:2:3]",
    ]);
  });

  it('names both files for a daemon key set twice, but merges distinct daemon keys', () => {
    expect(
      errorsOf([
        { path: 'a.yaml', text: 'daemon:\n  mtu: 1400\n' },
        { path: 'b.yaml', text: 'daemon:\n  mtu: 1500\n' },
      ]),
    ).toEqual(["b.yaml:2:3: daemon key 'mtu' is already set in a.yaml [other: a.yaml:2:3]"]);
    const spec = load([
      { path: 'a.yaml', text: 'daemon:\n  mtu: 1400\n' },
      { path: 'b.yaml', text: 'daemon:\n  icc: false\n' },
    ]);
    expect(spec.daemon).toMatchObject({ mtu: 1400, icc: false });
  });
});

describe('subnets, ranges, gateways', () => {
  it('rejects a subnet with host bits set', () => {
    expect(errorsOf('networks:\n  n:\n    ipam:\n      config:\n        - subnet: 172.18.0.1/16\n')).toEqual([
      "m.yaml:5:19: network 'n': invalid subnet 172.18.0.1/16: it should be 172.18.0.0/16",
    ]);
  });

  it('rejects overlapping subnets, naming both networks and places', () => {
    expect(
      errorsOf([
        { path: 'a.yaml', text: 'networks:\n  a: { ipam: { config: [{ subnet: 172.18.0.0/16 }] } }\n' },
        {
          path: 'b.yaml',
          text: yaml`
            networks:
              b:
                ipam:
                  config:
                    - subnet: 172.18.128.0/17
              c:
                enable_ipv6: true
                ipam:
                  config:
                    - subnet: 172.19.0.0/16
                    - subnet: fd00:18::/64
              d:
                enable_ipv6: true
                ipam:
                  config:
                    - subnet: fd00:18::/48
          `,
        },
      ]),
    ).toEqual([
      "b.yaml:5:19: subnet 172.18.128.0/17 of network 'b' overlaps subnet 172.18.0.0/16 of network 'a' [other: a.yaml:2:35]",
      "b.yaml:16:19: subnet fd00:18::/48 of network 'd' overlaps subnet fd00:18::/64 of network 'c' [other: b.yaml:11:19]",
    ]);
  });

  it('checks user subnets against the default bridge subnet from bip', () => {
    expect(
      errorsOf(yaml`
        daemon:
          bip: 172.18.0.1/16
        networks:
          n: { ipam: { config: [{ subnet: 172.18.5.0/24 }] } }
      `),
    ).toEqual([
      "m.yaml:4:35: subnet 172.18.5.0/24 of network 'n' overlaps subnet 172.18.0.0/16 of network 'bridge' [other: m.yaml:2:8]",
    ]);
  });

  it('does not compare an IPv6 subnet that was dropped because IPv6 is off', () => {
    const spec = load(yaml`
      networks:
        a: { enable_ipv6: true, ipam: { config: [{ subnet: fd00:18::/64 }] } }
        b: { ipam: { config: [{ subnet: 172.18.0.0/16 }, { subnet: fd00:18::/64 }] } }
    `);
    expect(spec.networks.b.ipam6.subnet).toBeUndefined();
  });

  it('rejects gateways, ranges and aux addresses outside the subnet', () => {
    expect(
      errorsOf(yaml`
        networks:
          n:
            ipam:
              config:
                - subnet: 172.18.0.0/16
                  ip_range: 172.19.5.0/24
                  gateway: 172.19.0.1
                  aux_addresses:
                    router: 172.18.0.254
                    outside: 192.0.2.1
      `),
    ).toEqual([
      "m.yaml:6:21: network 'n': invalid ip-range 172.19.5.0/24: parent subnet 172.18.0.0/16 doesn't contain ip-range [other: m.yaml:5:19]",
      "m.yaml:7:20: network 'n': invalid gateway 172.19.0.1: parent subnet 172.18.0.0/16 doesn't contain this address [other: m.yaml:5:19]",
      "m.yaml:10:22: network 'n': invalid auxiliary address outside: parent subnet 172.18.0.0/16 doesn't contain this address [other: m.yaml:5:19]",
    ]);
  });

  it('rejects an ip_range bigger than its subnet, or with host bits set', () => {
    expect(
      errorsOf(yaml`
        networks:
          a: { ipam: { config: [{ subnet: 172.18.0.0/24, ip_range: 172.18.0.0/16 }] } }
          b: { ipam: { config: [{ subnet: 172.19.0.0/16, ip_range: 172.19.1.7/24 }] } }
          c: { ipam: { config: [{ ip_range: 172.20.1.0/24 }] } }
      `),
    ).toEqual([
      "m.yaml:2:60: network 'a': invalid ip-range 172.18.0.0/16: CIDR block is bigger than its parent subnet 172.18.0.0/24 [other: m.yaml:2:35]",
      "m.yaml:3:60: network 'b': invalid ip-range 172.19.1.7/24: it should be 172.19.1.0/24",
      "m.yaml:4:37: network 'c': every ip-range or gateway must have a corresponding subnet",
    ]);
  });

  it('rejects more than one subnet per family', () => {
    expect(
      errorsOf(yaml`
        networks:
          n:
            ipam:
              config:
                - subnet: 172.18.0.0/16
                - subnet: 172.19.0.0/16
      `),
    ).toEqual([
      "m.yaml:6:11: network 'n': bridge driver doesn't support multiple subnets [other: m.yaml:5:11]",
    ]);
  });

  it('rejects IPv6 subnets that clash with link-local', () => {
    expect(
      errorsOf('networks:\n  n: { enable_ipv6: true, ipam: { config: [{ subnet: "fe80::/16" }] } }\n'),
    ).toEqual(["m.yaml:2:54: network 'n': 'fe80::/16' clashes with the Link-Local prefix 'fe80::/64'"]);
  });

  it('rejects size-only subnets like 0.0.0.0/24', () => {
    expect(errorsOf('networks:\n  n: { ipam: { config: [{ subnet: 0.0.0.0/24 }] } }\n')).toEqual([
      "m.yaml:2:35: network 'n': subnet 0.0.0.0/24 asks for any subnet of that size, which tether does not support; leave subnet out to have one allocated",
    ]);
  });

  it('checks the daemon fixed-cidr and default-gateway against bip', () => {
    expect(
      errorsOf(yaml`
        daemon:
          bip: 192.168.1.1/24
          fixed-cidr: 192.168.2.0/25
          default-gateway: 192.168.3.1
          mtu: -5
      `),
    ).toEqual([
      'm.yaml:3:15: daemon: fixed-cidr 192.168.2.0/25 is outside the bip subnet 192.168.1.0/24 [other: m.yaml:2:8]',
      'm.yaml:4:20: daemon: default-gateway 192.168.3.1: default gateway ip must be part of the network (192.168.1.0/24) [other: m.yaml:2:8]',
      'm.yaml:5:8: daemon: invalid MTU number: -5',
    ]);
  });
});

describe('static addresses', () => {
  const net = yaml`
    networks:
      n:
        enable_ipv6: true
        ipam:
          config:
            - subnet: 172.18.0.0/16
              gateway: 172.18.0.1
              aux_addresses: { router: 172.18.0.254 }
            - subnet: fd00:18::/64
  `;

  it('rejects an address outside the subnet', () => {
    expect(
      errorsOf(`${net}containers:\n  web:\n    networks:\n      n:\n        ipv4_address: 172.19.0.5\n`),
    ).toEqual([
      "m.yaml:14:23: ipv4_address 172.19.0.5 of container 'web' is outside the subnet 172.18.0.0/16 of network 'n' [other: m.yaml:6:19]",
    ]);
  });

  it('rejects the same address given to two containers, naming both', () => {
    expect(
      errorsOf(
        net +
          yaml`
            containers:
              a:
                networks:
                  n: { ipv4_address: 172.18.0.5, ipv6_address: "fd00:18::5" }
              b:
                networks:
                  n: { ipv4_address: 172.18.0.5, ipv6_address: "fd00:18:0::5" }
          `,
      ),
    ).toEqual([
      "m.yaml:16:26: address 172.18.0.5 on network 'n' is given to both container 'a' and container 'b' [other: m.yaml:13:26]",
      "m.yaml:16:52: address fd00:18::5 on network 'n' is given to both container 'a' and container 'b' [other: m.yaml:13:52]",
    ]);
  });

  it('rejects the gateway, an aux address, the network and the broadcast address', () => {
    expect(
      errorsOf(
        net +
          yaml`
            containers:
              a: { networks: { n: { ipv4_address: 172.18.0.1 } } }
              b: { networks: { n: { ipv4_address: 172.18.0.254 } } }
              c: { networks: { n: { ipv4_address: 172.18.0.0 } } }
              d: { networks: { n: { ipv4_address: 172.18.255.255 } } }
          `,
      ),
    ).toEqual([
      "m.yaml:11:39: ipv4_address 172.18.0.1 of container 'a' is the gateway address of network 'n' [other: m.yaml:7:20]",
      "m.yaml:12:39: ipv4_address 172.18.0.254 of container 'b' is reserved as auxiliary address 'router' of network 'n' [other: m.yaml:8:36]",
      "m.yaml:13:39: ipv4_address 172.18.0.0 of container 'c' is the network address of subnet 172.18.0.0/16 of network 'n' [other: m.yaml:6:19]",
      "m.yaml:14:39: ipv4_address 172.18.255.255 of container 'd' is the broadcast address of subnet 172.18.0.0/16 of network 'n' [other: m.yaml:6:19]",
    ]);
  });

  it('rejects static addresses and aliases on the default bridge', () => {
    expect(
      errorsOf(yaml`
        containers:
          a:
            networks:
              bridge:
                ipv4_address: 172.17.0.5
                aliases: [x]
      `),
    ).toEqual([
      "m.yaml:5:23: container 'a' on network 'bridge': user-specified IP address is supported on user-defined networks only",
      "m.yaml:6:18: container 'a' on network 'bridge': network-scoped alias is supported only for containers in user defined networks",
    ]);
  });

  it('rejects addresses of a family the network does not enable', () => {
    expect(
      errorsOf(yaml`
        networks:
          v4: {}
          v6: { enable_ipv4: false, enable_ipv6: true }
        containers:
          a:
            networks:
              v4: { ipv6_address: "fd00::5" }
              v6: { ipv4_address: 172.18.0.5 }
      `),
    ).toEqual([
      "m.yaml:7:27: container 'a' on network 'v4': ipv6_address is set but the network does not enable IPv6 (enable_ipv6: true)",
      "m.yaml:8:27: container 'a' on network 'v6': ipv4_address is set but the network has IPv4 disabled",
    ]);
  });

  it('accepts a static address on a network without an explicit subnet (IPAM checks it later)', () => {
    const spec = load(
      'networks:\n  n: {}\ncontainers:\n  a:\n    networks:\n      n: { ipv4_address: 172.18.0.5 }\n',
    );
    expect(spec.containers.a.networks[0].ipv4Address).toBe('172.18.0.5');
  });
});

describe('references, modes and MACs', () => {
  it('rejects a reference to an undefined network', () => {
    expect(
      errorsOf(yaml`
        networks:
          front: {}
        containers:
          web:
            networks: [front, back]
          db:
            networks:
              store: {}
      `),
    ).toEqual([
      "m.yaml:5:23: container 'web' refers to undefined network 'back'",
      "m.yaml:8:7: container 'db' refers to undefined network 'store'",
    ]);
  });

  it('rejects host or none combined with other networks', () => {
    expect(
      errorsOf(yaml`
        networks:
          n: {}
        containers:
          a: { networks: [n, host] }
          b: { networks: [none, n] }
          c:
            network_mode: host
            networks: [n]
      `),
    ).toEqual([
      "m.yaml:4:22: container 'a': container sharing network namespace with another container or host cannot be connected to any other network",
      "m.yaml:5:19: container 'b': container cannot be connected to multiple networks with one of the networks in private (none) mode",
      "m.yaml:7:5: container 'c' declares mutually exclusive network_mode and networks [other: m.yaml:8:5]",
    ]);
  });

  it('rejects netns with network mode host or none', () => {
    expect(
      errorsOf(yaml`
        containers:
          a: { network_mode: host, netns: /run/netns/a }
          b: { networks: [none], netns: /proc/1/ns/net }
          c: { netns: /run/netns/c }
      `),
    ).toEqual([
      "m.yaml:2:35: container 'a': netns cannot be used with network mode host",
      "m.yaml:3:33: container 'b': netns cannot be used with network mode none",
    ]);
  });

  it('warns, with Docker’s text, that ports are discarded in host mode', () => {
    const spec = load('containers:\n  agent:\n    network_mode: host\n    ports: ["8080:80"]\n');
    expect(spec.warnings).toEqual([
      {
        code: 'TETHER_W0102',
        message: "container 'agent': Published ports are discarded when using host network mode",
        src: { file: 'm.yaml', line: 4, col: 5 },
      },
    ]);
    expect(spec.containers.agent.ports).toEqual([]);
  });

  it('warns of a pinned MAC that tether would give the container holding another address', () => {
    const spec = load(
      [
        'networks:',
        '  n: {}',
        'containers:',
        '  a: { networks: { n: { mac_address: "02:42:AC:12:00:05" } } }',
        '  b: { networks: { n: { mac_address: "02:42:ac:12:00:06", ipv4_address: 172.18.0.6 } } }',
        '  c: { networks: { n: { mac_address: "02:11:22:33:44:55" } } }',
        '  d: { networks: [n], mac_address: "02:42:0a:00:00:01" }',
        '',
      ].join('\n'),
    );
    expect(spec.warnings.map((w) => `${w.code} ${w.src?.line}: ${w.message.split(';')[0]}`)).toEqual([
      "TETHER_W0105 4: container 'a' on network 'n': mac_address 02:42:ac:12:00:05 is the MAC tether gives the container at 172.18.0.5",
      "TETHER_W0105 7: container 'd' on network 'n': mac_address 02:42:0a:00:00:01 is the MAC tether gives the container at 10.0.0.1",
    ]);
  });

  it('rejects malformed, multicast and duplicate MAC addresses', () => {
    expect(
      errorsOf(yaml`
        networks:
          n: {}
        containers:
          a: { networks: { n: { mac_address: "02:42:ac:12:00" } } }
          b: { networks: { n: { mac_address: "01:00:5e:00:00:01" } } }
          c: { networks: { n: { mac_address: "02:42:ac:12:00:07" } } }
          d: { networks: [n], mac_address: "02-42-AC-12-00-07" }
          e: { network_mode: none, mac_address: "02:42:ac:12:00:08" }
      `),
    ).toEqual([
      "m.yaml:4:38: container 'a' on network 'n': invalid MAC address: 02:42:ac:12:00 (expected six hex bytes like 02:42:ac:12:00:02)",
      "m.yaml:5:38: container 'b' on network 'n': MAC address 01:00:5e:00:00:01 is a multicast address",
      "m.yaml:7:36: MAC address 02:42:ac:12:00:07 on network 'n' is given to both container 'c' and container 'd' [other: m.yaml:6:38]",
      "m.yaml:8:41: container 'e': conflicting options: mac_address and the network mode none",
    ]);
  });
});

describe('network options', () => {
  it('rejects both families disabled', () => {
    expect(errorsOf('networks:\n  n:\n    enable_ipv4: false\n')).toEqual([
      "m.yaml:3:18: network 'n': IPv4 or IPv6 must be enabled",
    ]);
  });

  it("rejects gateway mode 'isolated' without internal, and unknown gateway modes", () => {
    expect(
      errorsOf(yaml`
        networks:
          a:
            driver_opts:
              com.docker.network.bridge.gateway_mode_ipv4: isolated
          b:
            internal: true
            driver_opts:
              com.docker.network.bridge.gateway_mode_ipv4: isolated
              com.docker.network.bridge.gateway_mode_ipv6: natty
      `),
    ).toEqual([
      "m.yaml:4:52: network 'a': gateway mode 'isolated' can only be used for an internal network",
      "m.yaml:9:52: network 'b': failed to parse com.docker.network.bridge.gateway_mode_ipv6 value: natty (unknown gateway mode natty)",
    ]);
  });

  it('rejects a negative or non-numeric MTU', () => {
    expect(
      errorsOf(yaml`
        networks:
          a: { driver_opts: { com.docker.network.driver.mtu: -5 } }
          b: { driver_opts: { com.docker.network.driver.mtu: "15OO" } }
      `),
    ).toEqual([
      "m.yaml:2:54: network 'a': invalid MTU number: -5",
      "m.yaml:3:54: network 'b': failed to parse com.docker.network.driver.mtu value: 15OO (not a whole number)",
    ]);
  });

  it('rejects booleans and addresses that do not parse', () => {
    expect(
      errorsOf(yaml`
        networks:
          a:
            driver_opts:
              com.docker.network.bridge.enable_icc: "yes"
              com.docker.network.bridge.host_binding_ipv4: localhost
              com.docker.network.host_ipv4: "2001:db8::1"
      `),
    ).toEqual([
      "m.yaml:4:45: network 'a': failed to parse com.docker.network.bridge.enable_icc value: yes (expected true or false)",
      "m.yaml:5:52: network 'a': failed to parse com.docker.network.bridge.host_binding_ipv4 value: localhost (not an IP address)",
      "m.yaml:6:37: network 'a': com.docker.network.host_ipv4 must be an IPv4 address, got 2001:db8::1",
    ]);
  });
});

describe('interface names', () => {
  it('rejects bridge names over 15 bytes or with invalid characters, and shared bridge names', () => {
    expect(
      errorsOf(yaml`
        networks:
          a: { driver_opts: { com.docker.network.bridge.name: br-averylongname } }
          b: { driver_opts: { com.docker.network.bridge.name: "br:b" } }
          c: { driver_opts: { com.docker.network.bridge.name: br-shared } }
          d: { driver_opts: { com.docker.network.bridge.name: br-shared } }
      `),
    ).toEqual([
      "m.yaml:2:55: bridge name of network 'a' 'br-averylongname' is 16 bytes long; interface names are limited to 15 bytes",
      "m.yaml:3:55: bridge name of network 'b' 'br:b' is not a valid interface name (no '/', ':' or white space, not '.' or '..')",
      "m.yaml:5:55: network 'd': bridge name 'br-shared' is already used by network 'c' [other: m.yaml:4:55]",
    ]);
  });

  it('counts bytes, not characters', () => {
    expect(
      errorsOf('networks:\n  a: { driver_opts: { com.docker.network.bridge.name: "brüü-012345678" } }\n'),
    ).toEqual([
      "m.yaml:2:55: bridge name of network 'a' 'brüü-012345678' is 16 bytes long; interface names are limited to 15 bytes",
    ]);
  });

  it('rejects interface_name over 15 bytes, and twice in one container', () => {
    expect(
      errorsOf(yaml`
        networks: { a: {}, b: {}, c: {} }
        containers:
          x:
            networks:
              a: { interface_name: averyverylongif0 }
              b: { interface_name: lan0 }
              c: { interface_name: lan0 }
      `),
    ).toEqual([
      "m.yaml:5:28: interface name of container 'x' on network 'a' 'averyverylongif0' is 16 bytes long; interface names are limited to 15 bytes",
      "m.yaml:7:28: container 'x' uses interface name 'lan0' twice [other: m.yaml:6:28]",
    ]);
  });

  it('rejects a generated name (prefix + index) over 15 bytes, naming the prefix option', () => {
    expect(
      errorsOf(yaml`
        networks:
          a: { driver_opts: { com.docker.network.container_iface_prefix: longprefix12345 } }
          b: { driver_opts: { com.docker.network.container_iface_prefix: abcdefghijklmn } }
          c: { driver_opts: { com.docker.network.container_iface_prefix: abcdefghijklmn } }
        containers:
          x: { networks: [a] }
          y:
            networks:
              b: { interface_name: abcdefghijklmn0 }
              c: {}
      `),
    ).toEqual([
      "m.yaml:6:19: container 'x': interface name 'longprefix123450' on network 'a' (prefix 'longprefix12345' + index 0) is 16 bytes long; interface names are limited to 15 bytes [other: m.yaml:2:66]",
    ]);
  });
});

describe('published ports', () => {
  it('rejects two containers publishing the same host port, naming both', () => {
    expect(
      errorsOf(yaml`
        containers:
          a: { ports: ["8080:80"] }
          b: { ports: ["8080:8080"] }
      `),
    ).toEqual([
      "m.yaml:3:16: container 'b' publishes 0.0.0.0:8080/tcp ('8080:8080'), which clashes with 0.0.0.0:8080/tcp ('8080:80') published by container 'a' [other: m.yaml:2:16]",
    ]);
  });

  it('treats 0.0.0.0 as clashing with any IPv4 address and :: with any IPv6 address', () => {
    expect(
      errorsOf(yaml`
        containers:
          a: { ports: ["127.0.0.1:8080:80", "[::1]:9090:80"] }
          b: { ports: ["0.0.0.0:8080:80", { target: 80, published: 9090, host_ip: "::" }] }
      `),
    ).toEqual([
      "m.yaml:3:16: container 'b' publishes 0.0.0.0:8080/tcp ('0.0.0.0:8080:80'), which clashes with 127.0.0.1:8080/tcp ('127.0.0.1:8080:80') published by container 'a' [other: m.yaml:2:16]",
      `m.yaml:3:35: container 'b' publishes [::]:9090/tcp ('{"target":80,"published":9090,"host_ip":"::"}'), which clashes with [::1]:9090/tcp ('[::1]:9090:80') published by container 'a' [other: m.yaml:2:37]`,
    ]);
  });

  it('counts overlapping ranges', () => {
    expect(
      errorsOf(yaml`
        containers:
          a: { ports: ["9000-9002:9000-9002"] }
          b: { ports: ["9002-9003:80-81/tcp"] }
      `),
    ).toEqual([
      "m.yaml:3:16: container 'b' publishes 0.0.0.0:9002-9003/tcp ('9002-9003:80-81/tcp'), which clashes with 0.0.0.0:9000-9002/tcp ('9000-9002:9000-9002') published by container 'a' [other: m.yaml:2:16]",
    ]);
  });

  it('catches the same port twice in one container', () => {
    expect(errorsOf('containers:\n  a: { ports: ["53:53/udp", "127.0.0.1:53:5353/udp"] }\n')).toEqual([
      "m.yaml:2:29: container 'a' publishes 127.0.0.1:53/udp ('127.0.0.1:53:5353/udp'), which clashes with 0.0.0.0:53/udp ('53:53/udp') published by container 'a' [other: m.yaml:2:16]",
    ]);
  });

  it('allows what Docker allows', () => {
    const spec = load(yaml`
      networks:
        v6bind: { driver_opts: { com.docker.network.bridge.host_binding_ipv4: "::" } }
        inner: { internal: true }
      containers:
        a: { ports: ["8080:80", "127.0.0.1:9000:80", "7000-7002:80", "53:53/udp", "80", "127.0.0.1::81"] }
        b: { ports: ["8080:80/udp", "127.0.0.2:9000:80", "7001:80", "80", "127.0.0.1::81"] }
        c: { networks: [v6bind], ports: ["0.0.0.0:6000:80"] }
        d: { ports: ["[::1]:6000:80"], network_mode: bridge }
        e: { networks: [inner], ports: ["8080:80"] }
        f: { network_mode: host, ports: ["8080:80"] }
    `);
    expect(Object.keys(spec.containers)).toHaveLength(6);
  });

  it('uses the gateway network’s host binding address for ports without host_ip', () => {
    expect(
      errorsOf(yaml`
        networks:
          local: { driver_opts: { com.docker.network.bridge.host_binding_ipv4: 127.0.0.1 } }
          other: {}
        containers:
          a: { networks: [local], ports: ["8080:80"] }
          b: { ports: ["127.0.0.1:8080:80"] }
          c:
            networks:
              local: {}
              other: { gw_priority: 1 }
            ports: ["5000:80"]
          d: { ports: ["127.0.0.1:5000:80"] }
      `),
    ).toEqual([
      "m.yaml:6:16: container 'b' publishes 127.0.0.1:8080/tcp ('127.0.0.1:8080:80'), which clashes with 127.0.0.1:8080/tcp ('8080:80') published by container 'a' [other: m.yaml:5:35]",
      "m.yaml:12:16: container 'd' publishes 127.0.0.1:5000/tcp ('127.0.0.1:5000:80'), which clashes with 0.0.0.0:5000/tcp ('5000:80') published by container 'c' [other: m.yaml:11:13]",
    ]);
  });
});

describe('all problems at once', () => {
  it('reports every consistency problem of every file, sorted by file name and line', () => {
    const errs = errorsOf([
      { path: 'b.yaml', text: 'containers:\n  y: { networks: [nope] }\n  z: { ports: ["80:80"] }\n' },
      {
        path: 'a.yaml',
        text: 'networks:\n  n: { enable_ipv4: false }\ncontainers:\n  x: { ports: ["80:80"] }\n',
      },
    ]);
    expect(errs.map((e) => e.split(': ')[0])).toEqual(['a.yaml:2:21', 'a.yaml:4:16', 'b.yaml:2:19']);
  });
});

describe('bridge size limits', () => {
  const many = (n: number) =>
    `networks:\n  big: {}\ncontainers:\n${Array.from({ length: n }, (_, i) => `  c${i}: { networks: [big] }`).join('\n')}\n`;

  it("warns from 1000 containers on one bridge (Docker's documented limit)", () => {
    const spec = loadSpecFromStrings([{ path: 'm.yaml', text: many(1000) }]);
    expect(spec.warnings.map((w) => w.code)).toContain('TETHER_W0104');
    expect(loadSpecFromStrings([{ path: 'm.yaml', text: many(999) }]).warnings).toEqual([]);
  });

  it('refuses more than the kernel bridge port limit, at the network', () => {
    expect(() => loadSpecFromStrings([{ path: 'm.yaml', text: many(1024) }])).toThrow(
      /m\.yaml:2:3: network 'big' has 1024 containers: a Linux bridge holds at most 1023 ports/,
    );
  });
});

describe('routed bindings claim no host port', () => {
  it('accepts a routed network and a nat network publishing the same host port', () => {
    const text = `
networks:
  r: { driver_opts: { com.docker.network.bridge.gateway_mode_ipv4: routed } }
  n: {}
containers:
  a: { networks: [r], ports: ["8080:80"] }
  b: { networks: [n], ports: ["8080:80"] }
`;
    expect(() => loadSpecFromStrings([{ path: 'm.yaml', text }])).not.toThrow();
    expect(() =>
      loadSpecFromStrings([{ path: 'm.yaml', text: text.replace('networks: [r]', 'networks: [n]') }]),
    ).toThrow(/8080/);
  });
});
