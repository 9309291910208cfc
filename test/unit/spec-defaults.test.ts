/**
 * Phase 4 (defaults): predefined networks, daemon keys, Docker's defaults for networks
 * and containers.
 * Conventions: container subnets 172.18.0.0/16-like; outside addresses only from
 * 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.
 */
import { describe, expect, it } from 'vitest';
import { errorsOf, load, withoutSrc, yaml } from './spec-helpers.js';

describe('the default bridge', () => {
  it('always exists, first, with Docker defaults, even with an empty manifest', () => {
    const spec = load('');
    expect(Object.keys(spec.networks)).toEqual(['bridge']);
    expect(withoutSrc(spec.networks.bridge)).toEqual({
      name: 'bridge',
      driver: 'bridge',
      isDefault: true,
      internal: false,
      enableIPv4: true,
      enableIPv6: false,
      ipam4: { aux: {} },
      ipam6: { aux: {} },
      icc: true,
      masquerade: true,
      hostBindingIpv4: '0.0.0.0',
      gatewayModeV4: 'nat',
      gatewayModeV6: 'nat',
      inhibitIpv4: false,
      ifacePrefix: 'eth',
      options: {
        'com.docker.network.bridge.default_bridge': 'true',
        'com.docker.network.bridge.enable_icc': 'true',
        'com.docker.network.bridge.enable_ip_masquerade': 'true',
        'com.docker.network.bridge.host_binding_ipv4': '0.0.0.0',
      },
      labels: {},
    });
    expect(withoutSrc(spec.daemon)).toEqual({
      dns: [],
      dnsSearch: [],
      dnsOpts: [],
      icc: true,
      ipMasq: true,
      ip: '0.0.0.0',
      ipv6: false,
      userlandProxy: true,
    });
  });

  it('stays first when user networks are defined', () => {
    const spec = load('networks:\n  zeta: {}\n  alpha: {}\n');
    expect(Object.keys(spec.networks)).toEqual(['bridge', 'zeta', 'alpha']);
  });

  it('is configured from daemon keys', () => {
    const spec = load(yaml`
      daemon:
        bip: 192.168.1.1/24
        fixed-cidr: 192.168.1.128/25
        default-gateway: 192.168.1.254
        mtu: 1400
        icc: false
        ip-masq: false
        ip: 127.0.0.1
        ipv6: true
        bip6: fd00:1::1/64
        fixed-cidr-v6: fd00:1::/80
        default-gateway-v6: fd00:1::fffe
        userland-proxy: false
        dns: [192.0.2.53]
        default-address-pools: [{ base: 172.30.0.0/16, size: 24 }]
    `);
    const b = spec.networks.bridge;
    expect(withoutSrc(b.ipam4)).toEqual({
      subnet: '192.168.1.0/24',
      gateway: '192.168.1.1',
      ipRange: '192.168.1.128/25',
      aux: { DefaultGatewayIPv4: '192.168.1.254' },
    });
    expect(withoutSrc(b.ipam6)).toEqual({
      subnet: 'fd00:1::/64',
      gateway: 'fd00:1::1',
      ipRange: 'fd00:1::/80',
      aux: { DefaultGatewayIPv6: 'fd00:1::fffe' },
    });
    expect(b.ipam4.src).toEqual({ file: 'm.yaml', line: 2, col: 8 });
    expect(b).toMatchObject({
      mtu: 1400,
      icc: false,
      masquerade: false,
      hostBindingIpv4: '127.0.0.1',
      enableIPv6: true,
    });
    expect(b.options['com.docker.network.driver.mtu']).toBe('1400');
    expect(b.src).toEqual({ file: 'm.yaml', line: 1, col: 1 });
    expect(spec.daemon).toMatchObject({
      bip: '192.168.1.1/24',
      fixedCidr: '192.168.1.128/25',
      userlandProxy: false,
      defaultAddressPools: [{ base: '172.30.0.0/16', size: 24 }],
    });
  });

  it('takes its subnet from fixed-cidr without bip, and widens bip to a larger fixed-cidr', () => {
    expect(withoutSrc(load('daemon:\n  fixed-cidr: 10.20.0.0/16\n').networks.bridge.ipam4)).toEqual({
      subnet: '10.20.0.0/16',
      ipRange: '10.20.0.0/16',
      aux: {},
    });
    expect(
      withoutSrc(load('daemon:\n  bip: 10.20.1.1/24\n  fixed-cidr: 10.20.0.0/16\n').networks.bridge.ipam4),
    ).toEqual({
      subnet: '10.20.0.0/16',
      gateway: '10.20.1.1',
      ipRange: '10.20.0.0/16',
      aux: {},
    });
  });

  it('ignores IPv6 keys unless ipv6 is true', () => {
    const spec = load('daemon:\n  bip6: fd00:1::1/64\n');
    expect(spec.networks.bridge.enableIPv6).toBe(false);
    expect(spec.networks.bridge.ipam6).toEqual({ aux: {} });
  });
});

describe('predefined networks', () => {
  it('does not list host and none as networks', () => {
    const spec = load('containers:\n  a: { network_mode: host }\n  b: { network_mode: none }\n');
    expect(Object.keys(spec.networks)).toEqual(['bridge']);
  });

  it('refuses to define bridge, host or none', () => {
    expect(
      errorsOf(yaml`
        networks:
          bridge: {}
          host: {}
          none: {}
      `),
    ).toEqual([
      "m.yaml:2:3: network 'bridge' is predefined (the default bridge) and cannot be defined: configure it under daemon: (bip, fixed-cidr, mtu, icc, ...)",
      "m.yaml:3:3: network 'host' is predefined and cannot be defined: use network_mode: host on a container",
      "m.yaml:4:3: network 'none' is predefined and cannot be defined: use network_mode: none on a container",
    ]);
  });
});

describe('user-defined networks', () => {
  it('get the bridge driver defaults', () => {
    const spec = load('networks:\n  front:\n');
    expect(withoutSrc(spec.networks.front)).toEqual({
      name: 'front',
      driver: 'bridge',
      isDefault: false,
      internal: false,
      enableIPv4: true,
      enableIPv6: false,
      ipam4: { aux: {} },
      ipam6: { aux: {} },
      icc: true,
      masquerade: true,
      hostBindingIpv4: '0.0.0.0',
      gatewayModeV4: 'nat',
      gatewayModeV6: 'nat',
      inhibitIpv4: false,
      ifacePrefix: 'eth',
      options: {},
      labels: {},
    });
    expect(spec.networks.front.src).toEqual({ file: 'm.yaml', line: 2, col: 3 });
  });

  it('read Docker option keys', () => {
    const spec = load(yaml`
      networks:
        n:
          internal: true
          driver_opts:
            com.docker.network.bridge.name: br-n
            com.docker.network.bridge.enable_icc: "0"
            com.docker.network.bridge.enable_ip_masquerade: False
            com.docker.network.bridge.host_binding_ipv4: "::"
            com.docker.network.bridge.gateway_mode_ipv4: routed
            com.docker.network.bridge.gateway_mode_ipv6: isolated
            com.docker.network.bridge.inhibit_ipv4: t
            com.docker.network.driver.mtu: "9000"
            com.docker.network.container_iface_prefix: lan
            com.docker.network.host_ipv4: 192.0.2.10
            com.docker.network.host_ipv6: 2001:db8::10
    `);
    expect(spec.networks.n).toMatchObject({
      internal: true,
      bridgeName: 'br-n',
      icc: false,
      masquerade: false,
      hostBindingIpv4: '::',
      gatewayModeV4: 'routed',
      gatewayModeV6: 'isolated',
      inhibitIpv4: true,
      mtu: 9000,
      ifacePrefix: 'lan',
      hostIpv4: '192.0.2.10',
      hostIpv6: '2001:db8::10',
    });
    expect(spec.warnings).toEqual([]);
  });

  it('keep unknown option keys, with a warning naming them', () => {
    const spec = load(yaml`
      networks:
        n:
          driver_opts:
            com.docker.network.bridge.trusted_host_interfaces: eth1
            com.example.thing: x
    `);
    expect(spec.networks.n.options).toEqual({
      'com.docker.network.bridge.trusted_host_interfaces': 'eth1',
      'com.example.thing': 'x',
    });
    expect(spec.warnings).toEqual([
      {
        code: 'TETHER_W0101',
        message:
          "network 'n': driver options com.docker.network.bridge.trusted_host_interfaces, com.example.thing are not known to tether; kept, with no effect",
        src: { file: 'm.yaml', line: 4, col: 7 },
      },
    ]);
  });

  it('let enable_ipv4/enable_ipv6 win over the option keys', () => {
    const spec = load(yaml`
      networks:
        a:
          enable_ipv6: false
          driver_opts: { com.docker.network.enable_ipv6: "true" }
        b:
          driver_opts: { com.docker.network.enable_ipv6: "true", com.docker.network.enable_ipv4: "false" }
    `);
    expect(spec.networks.a.enableIPv6).toBe(false);
    expect(spec.networks.b).toMatchObject({ enableIPv4: false, enableIPv6: true });
  });

  it('drop an IPv6 subnet silently unless enable_ipv6 is true', () => {
    const spec = load(yaml`
      networks:
        a:
          ipam:
            config:
              - subnet: 172.18.0.0/16
              - subnet: fd00:18::/64
        b:
          enable_ipv6: true
          ipam:
            config:
              - subnet: fd00:19::/64
        c:
          enable_ipv6: true
    `);
    expect(withoutSrc(spec.networks.a.ipam4)).toEqual({ subnet: '172.18.0.0/16', aux: {} });
    expect(spec.networks.a.ipam6).toEqual({ aux: {} });
    expect(spec.networks.a.enableIPv6).toBe(false);
    expect(withoutSrc(spec.networks.b.ipam6)).toEqual({ subnet: 'fd00:19::/64', aux: {} });
    expect(spec.networks.b.ipam6.src).toEqual({ file: 'm.yaml', line: 11, col: 11 });
    expect(spec.networks.c).toMatchObject({ enableIPv6: true, ipam6: { aux: {} } });
    expect(spec.warnings).toEqual([]);
  });

  it('warn when an IPv4 config is ignored because IPv4 is disabled', () => {
    const spec = load(yaml`
      networks:
        v6:
          enable_ipv4: false
          enable_ipv6: true
          ipam:
            config:
              - subnet: 172.18.0.0/16
    `);
    expect(spec.networks.v6.ipam4).toEqual({ aux: {} });
    expect(spec.warnings.map((w) => [w.code, w.message])).toEqual([
      ['TETHER_W0103', "network 'v6' has enable_ipv4: false, so its IPv4 ipam config is ignored"],
    ]);
  });

  it('leave unspecified subnets undefined (no IPAM here)', () => {
    const spec = load('networks:\n  n: { ipam: { driver: default, config: [{}] } }\n');
    expect(spec.networks.n.ipam4.subnet).toBeUndefined();
  });
});

describe('containers', () => {
  it('attach to the default bridge when they list no networks', () => {
    const spec = load('containers:\n  a: {}\n  b:\n  c: { networks: [] }\n');
    for (const name of ['a', 'b', 'c']) {
      expect(spec.containers[name].mode).toBe('bridge');
      expect(withoutSrc(spec.containers[name].networks)).toEqual([
        { network: 'bridge', aliases: [], gwPriority: 0 },
      ]);
    }
    expect(spec.containers.a.networks[0].src).toEqual({ file: 'm.yaml', line: 2, col: 3 });
  });

  it('get their mode from network_mode, or from host/none listed alone', () => {
    const spec = load(yaml`
      containers:
        a: { network_mode: host, ports: ["80:80"] }
        b: { network_mode: none }
        c: { networks: [host] }
        d: { networks: { none: } }
        e: { network_mode: bridge }
    `);
    expect(Object.values(spec.containers).map((c) => [c.name, c.mode, c.networks.length])).toEqual([
      ['a', 'host', 0],
      ['b', 'none', 0],
      ['c', 'host', 0],
      ['d', 'none', 0],
      ['e', 'bridge', 1],
    ]);
    expect(spec.containers.a.ports).toEqual([]);
  });

  it('fall back to the daemon dns settings', () => {
    const spec = load(yaml`
      daemon:
        dns: [192.0.2.53]
        dns-search: [example.internal]
        dns-opts: ["ndots:1"]
      containers:
        a: {}
        b: { dns: [198.51.100.53], dns_search: [b.example], dns_opt: ["timeout:2"] }
    `);
    expect(spec.containers.a).toMatchObject({
      dns: ['192.0.2.53'],
      dnsSearch: ['example.internal'],
      dnsOpt: ['ndots:1'],
    });
    expect(spec.containers.b).toMatchObject({
      dns: ['198.51.100.53'],
      dnsSearch: ['b.example'],
      dnsOpt: ['timeout:2'],
    });
  });

  it('apply a service-level mac_address to the first network', () => {
    const spec = load(yaml`
      networks: { n: {}, m: {} }
      containers:
        a: { networks: [n, m], mac_address: "02:42:AC:12:00:05" }
        b: { mac_address: 02:42:ac:11:00:09 }
    `);
    expect(spec.containers.a.networks.map((n) => n.macAddress)).toEqual(['02:42:ac:12:00:05', undefined]);
    expect(spec.containers.b.networks[0]).toMatchObject({
      network: 'bridge',
      macAddress: '02:42:ac:11:00:09',
    });
  });

  it('warn about endpoint driver options tether does not use', () => {
    const spec = load(yaml`
      networks: { n: {} }
      containers:
        a:
          networks:
            n:
              driver_opts: { com.docker.network.endpoint.sysctls: "net.ipv4.conf.IFNAME.log_martians=1" }
    `);
    expect(spec.warnings.map((w) => [w.code, w.message, w.src?.line])).toEqual([
      [
        'TETHER_W0101',
        "container 'a' on network 'n': endpoint driver option com.docker.network.endpoint.sysctls is not supported by tether and ignored",
        6,
      ],
    ]);
  });
});
