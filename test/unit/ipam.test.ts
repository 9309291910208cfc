/**
 * IPAM (src/spec/ipam.ts) on loaded manifests against fake observed states.
 * Conventions: container subnets 172.16-31.x and 192.168.x from Docker's pools; host
 * routes and addresses of "other" interfaces from 192.0.2.0/24 and 198.51.100.0/24;
 * IPv6 from the per-host ULA or 2001:db8::/32.
 */
import { describe, expect, it } from 'vitest';
import { desiredState } from '../../src/diff/desired.js';
import { SpecError } from '../../src/model/errors.js';
import { EMPTY_STATE, type KernelState } from '../../src/model/state.js';
import { type HostFacts, resolve, ulaBase } from '../../src/spec/ipam.js';
import { loadSpecFromStrings } from '../../src/spec/load.js';

const HOST: HostFacts = {
  reserved4: [],
  reserved6: [],
  ulaSeed: 'test-machine',
  ephemeralPorts: [32768, 60999],
};
const load = (text: string) => loadSpecFromStrings([{ path: 'm.yaml', text }]);
const res = (text: string, actual: KernelState = EMPTY_STATE, host: HostFacts = HOST) =>
  resolve(load(text), 'tt', actual, host);

describe('IPAM', () => {
  it("gives Docker's subnets: default bridge 172.17/16, then 172.18/16, 172.19/16, …", () => {
    const r = res('networks:\n  a: {}\n  b: {}\n  c: {}\ncontainers:\n  x: {}\n');
    expect(r.networks.bridge!.v4).toMatchObject({ subnet: '172.17.0.0/16', gateway: '172.17.0.1' });
    expect(r.networks.a!.v4!.subnet).toBe('172.18.0.0/16');
    expect(r.networks.b!.v4!.subnet).toBe('172.19.0.0/16');
    expect(r.networks.c!.v4!.subnet).toBe('172.20.0.0/16');
    expect(r.networks.a!.bridge).toMatch(/^br-[0-9a-f]{12}$/);
    expect(r.networks.bridge!.bridge).toBe('tt0');
  });

  it('skips subnets overlapping host routes and addresses, and explicit subnets', () => {
    const r = res(
      'networks:\n  a: {}\n  b: { ipam: { config: [{ subnet: 172.19.0.0/16 }] } }\n  c: {}\n',
      EMPTY_STATE,
      { ...HOST, reserved4: ['172.18.5.0/24'] },
    );
    expect(r.networks.a!.v4!.subnet).toBe('172.20.0.0/16');
    expect(r.networks.b!.v4!.subnet).toBe('172.19.0.0/16');
    expect(r.networks.c!.v4!.subnet).toBe('172.21.0.0/16');
  });

  it('moves the default bridge off 172.17/16 when the host uses it', () => {
    const r = res('containers:\n  x: {}\n', EMPTY_STATE, { ...HOST, reserved4: ['172.17.0.0/16'] });
    expect(r.networks.bridge!.v4!.subnet).toBe('172.18.0.0/16');
  });

  it('honours daemon bip, fixed-cidr and default-address-pools', () => {
    const r = res('daemon:\n  bip: 192.168.1.1/24\n  fixed-cidr: 192.168.1.128/25\ncontainers:\n  x: {}\n');
    expect(r.networks.bridge!.v4).toMatchObject({
      subnet: '192.168.1.0/24',
      gateway: '192.168.1.1',
      ipRange: '192.168.1.128/25',
    });
    expect(r.containers.x!.endpoints[0]!.ipv4).toBe('192.168.1.128');
    const p = res(
      'daemon:\n  default-address-pools: [{ base: 10.10.0.0/16, size: 24 }]\nnetworks:\n  a: {}\n',
    );
    expect(p.networks.bridge!.v4!.subnet).toBe('10.10.0.0/24');
    expect(p.networks.a!.v4!.subnet).toBe('10.10.1.0/24');
  });

  it('allocates lowest free, honouring static addresses, aux addresses and ip_range', () => {
    const r = res(`
networks:
  n:
    ipam:
      config:
        - { subnet: 172.30.0.0/16, ip_range: 172.30.5.0/24, aux_addresses: { router: 172.30.5.1 } }
containers:
  a: { networks: [n] }
  b: { networks: { n: { ipv4_address: 172.30.5.2 } } }
  c: { networks: [n] }
`);
    // gateway: first address of the range (Docker); .1 aux-reserved; .2 static
    expect(r.networks.n!.v4!.gateway).toBe('172.30.5.0');
    expect(r.containers.a!.endpoints[0]!.ipv4).toBe('172.30.5.3');
    expect(r.containers.b!.endpoints[0]!.ipv4).toBe('172.30.5.2');
    expect(r.containers.c!.endpoints[0]!.ipv4).toBe('172.30.5.4');
  });

  it('keeps addresses and subnets already on the kernel (sticky across re-apply)', () => {
    const actual: KernelState = {
      ...EMPTY_STATE,
      bridges: { brx: { name: 'brx', network: 'a', addrs: ['172.25.0.1/16'], up: true } },
      namespaces: {
        y: {
          container: 'y',
          path: '/run/netns/tt-y',
          netnsName: 'tt-y',
          attached: false,
          links: { eth0: { name: 'eth0', network: 'a', addrs: ['172.25.0.9/16'], up: true } },
          routes: [],
        },
      },
    };
    const r = res(
      'networks:\n  a: {}\ncontainers:\n  x: { networks: [a] }\n  y: { networks: [a] }\n',
      actual,
    );
    expect(r.networks.a!.v4!.subnet).toBe('172.25.0.0/16');
    expect(r.containers.y!.endpoints[0]!.ipv4).toBe('172.25.0.9');
    expect(r.containers.x!.endpoints[0]!.ipv4).toBe('172.25.0.2');
  });

  it('gives IPv6 a /64 of the per-host ULA /48, and IPv6-only networks no IPv4', () => {
    const r = res(
      'networks:\n  d: { enable_ipv6: true }\n  o: { enable_ipv4: false, enable_ipv6: true }\ncontainers:\n  x: { networks: [d, o] }\n',
    );
    const ula = ulaBase('test-machine');
    expect(ula).toMatch(/^fd[0-9a-f]{2}:[0-9a-f]{1,4}:[0-9a-f]{1,4}::\/48$/);
    expect(r.networks.d!.v6!.subnet.endsWith('/64')).toBe(true);
    expect(r.networks.d!.v6!.subnet).not.toBe(r.networks.o!.v6!.subnet);
    expect(r.networks.o!.v4).toBeUndefined();
    const eps = r.containers.x!.endpoints;
    expect(eps[1]!.ipv4).toBeUndefined();
    expect(eps[1]!.ipv6).toMatch(/::2$/);
  });

  it('names interfaces eth0, eth1 in manifest order and picks the gateway by gw_priority, then name', () => {
    const r = res(
      'networks:\n  zz: {}\n  aa: {}\ncontainers:\n  x: { networks: [zz, aa] }\n  y: { networks: { zz: { gw_priority: 5 }, aa: {} } }\n',
    );
    const x = r.containers.x!.endpoints;
    expect(x.map((e) => `${e.ifname}:${e.network}`)).toEqual(['eth0:zz', 'eth1:aa']);
    expect(x.find((e) => e.isGateway4)!.network).toBe('aa');
    expect(r.containers.y!.endpoints.find((e) => e.isGateway4)!.network).toBe('zz');
  });

  it('gives internal networks no default route', () => {
    const r = res('networks:\n  i: { internal: true }\ncontainers:\n  x: { networks: [i] }\n');
    expect(r.networks.i!.v4!.routeVia).toBeUndefined();
    expect(r.containers.x!.endpoints[0]!.isGateway4).toBe(false);
  });

  it('reports exhausted pools and a full subnet as input errors', () => {
    const many = Array.from({ length: 32 }, (_, i) => `  n${i}: {}`).join('\n');
    expect(() => res(`networks:\n${many}\n`)).toThrow(
      /all predefined address pools have been fully subnetted/,
    );
    const full =
      'networks:\n  n: { ipam: { config: [{ subnet: 172.30.0.0/30 }] } }\ncontainers:\n  a: { networks: [n] }\n  b: { networks: [n] }\n';
    expect(() => res(full)).toThrow(SpecError);
  });

  it('publishes ports on the gateway endpoint; ephemeral ports start at the range start and stay', () => {
    const r = res(
      'networks:\n  n: {}\ncontainers:\n  a: { networks: [n], ports: ["8080:80", "53/udp", "127.0.0.1::5432"] }\n',
    );
    const ports = r.containers.a!.ports.map(
      (p) => `${p.hostIp}:${p.hostPort}->${p.containerPort}/${p.protocol}`,
    );
    // The default binding is IPv4 and IPv6 with one host port; this IPv4-only container's
    // IPv6 bindings are served by the userland proxy (Docker's docker-proxy does the same).
    expect(ports).toEqual([
      '0.0.0.0:8080->80/tcp',
      ':::8080->80/tcp',
      '0.0.0.0:32768->53/udp',
      ':::32768->53/udp',
      '127.0.0.1:32768->5432/tcp',
    ]);
    expect(r.containers.a!.ports.filter((p) => p.proxy).map((p) => p.family)).toEqual([6, 6]);
  });

  it('keeps the ephemeral port of a binding only the userland proxy serves', () => {
    const m = 'networks:\n  n: {}\ncontainers:\n  a: { networks: [n], ports: ["[::]::80"] }\n';
    const proxy = { protocol: 'tcp', listen: '::', port: 40123, to: '172.18.0.2', toPort: 80 };
    const chosen = { a: [proxy] };
    const actual: KernelState = {
      ...EMPTY_STATE,
      resolver: { config: JSON.stringify({ dns: null, parts: {}, chosen }), running: true },
    };
    const p = res(m, actual).containers.a!.ports;
    expect(p.map((x) => `${x.hostIp}:${x.hostPort} proxy=${!!x.proxy}`)).toEqual([':::40123 proxy=true']);
    // The desired index records the port it keeps.
    const index = JSON.parse(desiredState(res(m, actual)).resolver!.config);
    expect(index.chosen).toEqual(chosen);
  });
});
