/**
 * Phase 3 (canonical): Compose short/long syntaxes in, one canonical model out.
 * Conventions: container subnets 172.18.0.0/16-like; outside addresses only from
 * 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.
 */
import { describe, expect, it } from 'vitest';
import { maskedText, parseCidr, parseIp, parsePortShort } from '../../src/spec/canonical.js';
import { errorsOf, load, withoutSrc, yaml } from './spec-helpers.js';

describe('ports, short syntax', () => {
  const cases: [string, object][] = [
    ['80', { target: 80, targetEnd: 80, protocol: 'tcp' }],
    ['8080:80', { target: 80, targetEnd: 80, published: 8080, publishedEnd: 8080, protocol: 'tcp' }],
    [
      '127.0.0.1:5432:5432',
      {
        target: 5432,
        targetEnd: 5432,
        published: 5432,
        publishedEnd: 5432,
        hostIp: '127.0.0.1',
        protocol: 'tcp',
      },
    ],
    [
      '[::1]:8080:80',
      { target: 80, targetEnd: 80, published: 8080, publishedEnd: 8080, hostIp: '::1', protocol: 'tcp' },
    ],
    // Docker splits on the last two colons, so an unbracketed IPv6 address works too.
    [
      '::1:8080:80',
      { target: 80, targetEnd: 80, published: 8080, publishedEnd: 8080, hostIp: '::1', protocol: 'tcp' },
    ],
    [
      '[2001:DB8::1]:53:53/udp',
      { target: 53, targetEnd: 53, published: 53, publishedEnd: 53, hostIp: '2001:db8::1', protocol: 'udp' },
    ],
    ['53:53/udp', { target: 53, targetEnd: 53, published: 53, publishedEnd: 53, protocol: 'udp' }],
    [
      '5000:5000/SCTP',
      { target: 5000, targetEnd: 5000, published: 5000, publishedEnd: 5000, protocol: 'sctp' },
    ],
    [
      '9000-9002:9000-9002',
      { target: 9000, targetEnd: 9002, published: 9000, publishedEnd: 9002, protocol: 'tcp' },
    ],
    ['8000-8002:80', { target: 80, targetEnd: 80, published: 8000, publishedEnd: 8002, protocol: 'tcp' }],
    ['80-82', { target: 80, targetEnd: 82, protocol: 'tcp' }],
    ['127.0.0.1::80', { target: 80, targetEnd: 80, hostIp: '127.0.0.1', protocol: 'tcp' }],
    ['[::]::80/udp', { target: 80, targetEnd: 80, hostIp: '::', protocol: 'udp' }],
    ['0:80', { target: 80, targetEnd: 80, protocol: 'tcp' }],
    ['80/', { target: 80, targetEnd: 80, protocol: 'tcp' }],
  ];
  for (const [text, want] of cases) {
    it(`reads ${JSON.stringify(text)}`, () => {
      expect(parsePortShort(text)).toEqual({ port: want });
    });
  }

  const errors: [string, string][] = [
    ['', 'no port specified: <empty>'],
    ['8080:', 'no port specified: 8080:<empty>'],
    ['8080:http', 'invalid containerPort: http'],
    ['80808:80', 'invalid hostPort: 80808'],
    ['0:0', 'invalid containerPort: 0'],
    ['8080:80/icmp', 'invalid proto: icmp'],
    ['300.0.0.1:80:80', 'invalid IP address: 300.0.0.1'],
    ['[::1:80:80', 'invalid IP address: [::1'],
    ['8000-8009:80-90', 'invalid ranges specified for container and host Ports: 80-90 and 8000-8009'],
    ['90-80', 'invalid containerPort: 90-80'],
  ];
  for (const [text, message] of errors) {
    it(`rejects ${JSON.stringify(text)}: ${message}`, () => {
      expect(parsePortShort(text)).toEqual({ error: message });
    });
  }
});

describe('ports in manifests', () => {
  it('reads short, numeric and long syntax', () => {
    const spec = load(yaml`
      containers:
        web:
          ports:
            - 80
            - "8080:80"
            - { target: 443, published: 8443, host_ip: "::", protocol: tcp }
            - { target: 53, published: "5353", protocol: udp }
            - { target: "9000-9001", published: "9000-9001" }
            - { target: 81, published: "8000-8002" }
            - { target: 82, host_ip: 127.0.0.1 }
    `);
    expect(withoutSrc(spec.containers.web.ports)).toEqual([
      { target: 80, targetEnd: 80, protocol: 'tcp' },
      { target: 80, targetEnd: 80, published: 8080, publishedEnd: 8080, protocol: 'tcp' },
      { target: 443, targetEnd: 443, published: 8443, publishedEnd: 8443, hostIp: '::', protocol: 'tcp' },
      { target: 53, targetEnd: 53, published: 5353, publishedEnd: 5353, protocol: 'udp' },
      { target: 9000, targetEnd: 9001, published: 9000, publishedEnd: 9001, protocol: 'tcp' },
      { target: 81, targetEnd: 81, published: 8000, publishedEnd: 8002, protocol: 'tcp' },
      { target: 82, targetEnd: 82, hostIp: '127.0.0.1', protocol: 'tcp' },
    ]);
    expect(spec.containers.web.ports[1].src).toEqual({ file: 'm.yaml', line: 5, col: 9 });
  });

  it('reports bad ports at the port, with Docker wording', () => {
    expect(
      errorsOf(yaml`
        containers:
          web:
            ports:
              - "8080:http"
              - "8000-8009:80-90"
              - { target: 0 }
              - { target: 80, published: 70000 }
              - { target: 80, host_ip: localhost }
              - 65536
      `),
    ).toEqual([
      "m.yaml:4:9: port '8080:http' of container 'web': invalid containerPort: http",
      "m.yaml:5:9: port '8000-8009:80-90' of container 'web': invalid ranges specified for container and host Ports: 80-90 and 8000-8009",
      "m.yaml:6:9: port '{\"target\":0}' of container 'web': invalid containerPort: 0",
      'm.yaml:7:9: port \'{"target":80,"published":70000}\' of container \'web\': invalid hostPort: 70000',
      'm.yaml:8:9: port \'{"target":80,"host_ip":"localhost"}\' of container \'web\': invalid IP address: localhost',
      "m.yaml:9:9: port '65536' of container 'web': invalid containerPort: 65536",
    ]);
  });
});

describe('services, networks, lists and maps', () => {
  it('reads services as containers, and merges both sections', () => {
    const spec = load(yaml`
      services:
        a: {}
      containers:
        b:
    `);
    expect(Object.keys(spec.containers)).toEqual(['b', 'a']);
  });

  it('turns a networks list into attachments with default settings', () => {
    const spec = load(yaml`
      networks:
        front: {}
        back:
      containers:
        web:
          networks: [front, back]
    `);
    expect(withoutSrc(spec.containers.web.networks)).toEqual([
      { network: 'front', aliases: [], gwPriority: 0 },
      { network: 'back', aliases: [], gwPriority: 0 },
    ]);
    expect(spec.containers.web.networks[1].src).toEqual({ file: 'm.yaml', line: 6, col: 23 });
  });

  it('reads a networks map with per-network settings, null meaning defaults', () => {
    const spec = load(yaml`
      networks:
        front:
          ipam: { config: [{ subnet: 172.18.0.0/16 }] }
          enable_ipv6: true
        back: {}
      containers:
        web:
          networks:
            front:
              aliases: [www, web.local]
              ipv4_address: 172.18.0.50
              ipv6_address: FD00:0:0:0::50
              mac_address: 02-42-AC-12-00-32
              gw_priority: -1
              priority: 5
              driver_opts:
                com.docker.network.endpoint.ifname: front0
            back:
    `);
    expect(withoutSrc(spec.containers.web.networks)).toEqual([
      {
        network: 'front',
        aliases: ['www', 'web.local'],
        ipv4Address: '172.18.0.50',
        ipv6Address: 'fd00::50',
        macAddress: '02:42:ac:12:00:32',
        gwPriority: -1,
        interfaceName: 'front0',
      },
      { network: 'back', aliases: [], gwPriority: 0 },
    ]);
  });

  it('prefers interface_name over the endpoint ifname option', () => {
    const spec = load(yaml`
      networks: { n: {} }
      containers:
        c:
          networks:
            n:
              interface_name: lan0
              driver_opts: { com.docker.network.endpoint.ifname: other0 }
    `);
    expect(spec.containers.c.networks[0].interfaceName).toBe('lan0');
  });

  it('reads dns and dns_search as a string or a list, dns_opt as a list', () => {
    const spec = load(yaml`
      containers:
        a:
          dns: 192.0.2.53
          dns_search: example.internal
          dns_opt: ["ndots:2"]
        b:
          dns: [192.0.2.53, "2001:DB8::53"]
          dns_search: [a.example, b.example]
    `);
    expect(spec.containers.a).toMatchObject({
      dns: ['192.0.2.53'],
      dnsSearch: ['example.internal'],
      dnsOpt: ['ndots:2'],
    });
    expect(spec.containers.b).toMatchObject({
      dns: ['192.0.2.53', '2001:db8::53'],
      dnsSearch: ['a.example', 'b.example'],
    });
  });

  it('reads extra_hosts as host:ip, host=ip (IPv6), [ip] and map forms', () => {
    const spec = load(yaml`
      containers:
        a:
          extra_hosts:
            - "gw.local:172.18.0.1"
            - "v6.local=2001:db8::1"
            - "v6b.local:[2001:db8::2]"
            - "v6c.local:2001:db8::3"
            - "docker.host:host-gateway"
        b:
          extra_hosts:
            one.example: 192.0.2.1
            two.example: [192.0.2.2, "2001:db8::2"]
    `);
    expect(spec.containers.a.extraHosts).toEqual([
      { host: 'gw.local', ip: '172.18.0.1' },
      { host: 'v6.local', ip: '2001:db8::1' },
      { host: 'v6b.local', ip: '2001:db8::2' },
      { host: 'v6c.local', ip: '2001:db8::3' },
      { host: 'docker.host', ip: 'host-gateway' },
    ]);
    expect(spec.containers.b.extraHosts).toEqual([
      { host: 'one.example', ip: '192.0.2.1' },
      { host: 'two.example', ip: '192.0.2.2' },
      { host: 'two.example', ip: '2001:db8::2' },
    ]);
  });

  it('reports bad extra_hosts, dns and netns values at the value', () => {
    expect(
      errorsOf(yaml`
        containers:
          a:
            extra_hosts: ["nohost", ":192.0.2.1", "x:not-an-ip"]
            dns: [192.0.2.300]
            netns: run/netns/x
      `),
    ).toEqual([
      "m.yaml:3:19: extra_hosts entry 'nohost' of container 'a' is not host:ip or host=ip",
      "m.yaml:3:29: extra_hosts entry ':192.0.2.1' of container 'a' has no host name (write host:ip or host=ip)",
      "m.yaml:3:43: extra_hosts entry 'x:not-an-ip' of container 'a': invalid IP address 'not-an-ip'",
      "m.yaml:4:11: dns server of container 'a' '192.0.2.300' is not a valid IP address",
      "m.yaml:5:12: netns 'run/netns/x' of container 'a' must be an absolute path, like /run/netns/NAME",
    ]);
  });

  it('turns labels lists into maps and driver_opts values into strings', () => {
    const spec = load(yaml`
      networks:
        a:
          labels: ["team=web", "flag", "eq=a=b"]
          driver_opts:
            com.docker.network.bridge.enable_icc: false
            com.docker.network.driver.mtu: 1400
            com.docker.network.bridge.name: br-a
        b:
          labels: { n: 1, t: true, e: null }
    `);
    expect(spec.networks.a.labels).toEqual({ team: 'web', flag: '', eq: 'a=b' });
    expect(spec.networks.a.options).toEqual({
      'com.docker.network.bridge.enable_icc': 'false',
      'com.docker.network.driver.mtu': '1400',
      'com.docker.network.bridge.name': 'br-a',
    });
    expect(spec.networks.b.labels).toEqual({ n: '1', t: 'true', e: '' });
  });

  it('writes addresses in canonical form', () => {
    const spec = load(yaml`
      networks:
        n:
          enable_ipv6: true
          ipam:
            config:
              - subnet: FD00:0DB8:0000::/64
                gateway: fd00:db8:0:0:0:0:0:1
                aux_addresses: { r: "FD00:DB8::FE" }
    `);
    expect(withoutSrc(spec.networks.n.ipam6)).toEqual({
      subnet: 'fd00:db8::/64',
      gateway: 'fd00:db8::1',
      aux: { r: 'fd00:db8::fe' },
    });
  });

  it('reports malformed addresses and CIDRs, and wrong families', () => {
    expect(
      errorsOf(yaml`
        daemon:
          bip: 192.168.1.1
          default-gateway-v6: 192.168.1.254
          dns: [192.0.2.1, dns.example]
        networks:
          n:
            ipam:
              config:
                - subnet: 172.18.0.0/33
                  gateway: 172.18.0.1.1
                  aux_addresses: { r: "127.1" }
        containers:
          c:
            networks:
              n:
                ipv4_address: fd00::5
                ipv6_address: 172.18.0.5
      `),
    ).toEqual([
      "m.yaml:2:8: daemon bip '192.168.1.1' is not a valid CIDR (an address and a prefix length, like 172.18.0.0/16)",
      "m.yaml:3:23: daemon default-gateway-v6 '192.168.1.254' must be an IPv6 address",
      "m.yaml:4:20: daemon dns server 'dns.example' is not a valid IP address",
      "m.yaml:9:19: subnet of network 'n' '172.18.0.0/33' is not a valid CIDR (an address and a prefix length, like 172.18.0.0/16)",
      "m.yaml:10:20: gateway of network 'n' '172.18.0.1.1' is not a valid IP address",
      "m.yaml:11:31: auxiliary address 'r' of network 'n' '127.1' is not a valid IP address",
      "m.yaml:16:23: ipv4_address of container 'c' on network 'n' 'fd00::5' must be an IPv4 address",
      "m.yaml:17:23: ipv6_address of container 'c' on network 'n' '172.18.0.5' must be an IPv6 address",
    ]);
  });

  it('requires a network name to equal its key', () => {
    expect(errorsOf('networks:\n  front:\n    name: frontend\n')).toEqual([
      "m.yaml:3:11: network 'front' declares name 'frontend': tether uses the key as the network's name, so the two must be equal",
    ]);
    expect(load('networks:\n  front:\n    name: front\n').networks.front.name).toBe('front');
  });

  it('checks default-address-pools sizes', () => {
    expect(errorsOf('daemon:\n  default-address-pools:\n    - { base: 172.30.0.0/16, size: 8 }\n')).toEqual([
      'm.yaml:3:36: default-address-pools size 8 does not fit base 172.30.0.0/16: it must be between 16 and 32',
    ]);
  });
});

describe('IP toolkit', () => {
  it('parses strictly', () => {
    expect(parseIp('192.0.2.1')?.text).toBe('192.0.2.1');
    expect(parseIp('2001:0DB8::0001')?.text).toBe('2001:db8::1');
    for (const bad of ['1', '0x7f.0.0.1', '010.0.0.1', 'fe80::1%eth0', '192.0.2.1/24', ''])
      expect(parseIp(bad)).toBeUndefined();
  });

  it('masks CIDRs', () => {
    expect(maskedText(parseCidr('172.18.0.1/16')!)).toBe('172.18.0.0/16');
    expect(maskedText(parseCidr('fd00::1:2/64')!)).toBe('fd00::/64');
    expect(parseCidr('172.18.0.0/33')).toBeUndefined();
  });
});
