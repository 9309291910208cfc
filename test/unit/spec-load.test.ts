/**
 * The whole loader: the seed walkthrough, the shipped manifests and examples, phase
 * ordering, freezing.
 * Conventions: container subnets 172.18.0.0/16-like; outside addresses only from
 * 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { SpecError } from '../../src/model/errors.js';
import { loadSpec, loadSpecFromStrings } from '../../src/spec/load.js';
import { errorsOf, load, withoutSrc, yaml } from './spec-helpers.js';

const repo = (p: string) => fileURLToPath(new URL(`../../${p}`, import.meta.url));

/** Docker's "networking with standalone containers" walkthrough. */
const SEED = yaml`
  networks:
    alpine-net:
      driver: bridge
  containers:
    alpine1:
      networks: [alpine-net]
    alpine2:
      networks: [alpine-net]
    alpine3: {}
    alpine4:
      networks: [alpine-net, bridge]
`;

describe('the seed walkthrough', () => {
  it('loads into the normalized model', () => {
    const spec = load(SEED);
    expect(Object.keys(spec.networks)).toEqual(['bridge', 'alpine-net']);
    expect(withoutSrc(spec.networks['alpine-net'])).toEqual({
      name: 'alpine-net',
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
    const nets = (name: string) => spec.containers[name].networks.map((a) => a.network);
    expect(Object.keys(spec.containers)).toEqual(['alpine1', 'alpine2', 'alpine3', 'alpine4']);
    expect(nets('alpine1')).toEqual(['alpine-net']);
    expect(nets('alpine2')).toEqual(['alpine-net']);
    expect(nets('alpine3')).toEqual(['bridge']);
    expect(nets('alpine4')).toEqual(['alpine-net', 'bridge']);
    for (const c of Object.values(spec.containers)) {
      expect(c).toMatchObject({
        mode: 'bridge',
        ports: [],
        dns: [],
        dnsSearch: [],
        dnsOpt: [],
        extraHosts: [],
      });
    }
    expect(spec.containers.alpine4.networks[1].src).toEqual({ file: 'm.yaml', line: 11, col: 28 });
    expect(spec.warnings).toEqual([]);
  });

  it('is what manifests/ holds, and manifests/ loads', async () => {
    const spec = await loadSpec(repo('manifests'));
    expect(withoutSrc({ ...spec, files: [] })).toEqual(withoutSrc({ ...load(SEED), files: [] }));
    expect(spec.files.map((f) => f.path)).toEqual([repo('manifests/10-alpine-net.yaml')]);
    expect(spec.files[0].sha256).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe('shipped examples', () => {
  it('loads the SPEC §1 example verbatim', async () => {
    const spec = await loadSpec(repo('test/fixtures/spec/spec-section1.yaml'));
    expect(Object.keys(spec.containers)).toEqual([
      'alpine1',
      'alpine3',
      'alpine4',
      'web',
      'agent',
      'sandbox',
      'attached',
    ]);
    expect(spec.networks.bridge.ipam4).toMatchObject({
      subnet: '192.168.1.0/24',
      gateway: '192.168.1.1',
      ipRange: '192.168.1.0/25',
    });
    expect(spec.containers.web.ports).toHaveLength(6);
    expect(spec.containers.attached).toMatchObject({ netns: '/run/netns/podman-abc', mode: 'bridge' });
    expect(spec.warnings).toEqual([]);
  });

  it('loads examples/full.yaml without warnings, exercising every key', async () => {
    const spec = await loadSpec(repo('examples/full.yaml'));
    expect(spec.warnings).toEqual([]);
    expect(Object.keys(spec.networks)).toEqual(['bridge', 'alpine-net', 'backend', 'v6only', 'sealed']);
    expect(spec.networks.bridge).toMatchObject({
      enableIPv6: true,
      mtu: 1500,
      ipam6: { subnet: 'fd00:1::/64' },
    });
    expect(spec.networks.sealed).toMatchObject({
      internal: true,
      gatewayModeV4: 'isolated',
      inhibitIpv4: true,
    });
    expect(spec.containers.web.ports).toHaveLength(11);
    expect(spec.containers.web.networks.map((n) => n.interfaceName)).toEqual(['front0', 'back0']);
    expect(Object.values(spec.containers).map((c) => c.mode)).toContain('none');
    expect(spec.containers.cache.networks[0].network).toBe('backend');

    // Every key the schema knows for daemon, networks and attachments appears in the example.
    const text = readFileSync(repo('examples/full.yaml'), 'utf8');
    const schema = JSON.parse(readFileSync(repo('schema/tether.schema.json'), 'utf8'));
    for (const def of ['daemon', 'network', 'ipamConfig', 'attachment', 'port']) {
      for (const key of Object.keys(schema.$defs[def].properties)) {
        expect(text, `${def}.${key}`).toMatch(new RegExp(`[\\s{,]${key.replace(/[.-]/g, '\\$&')}:`));
      }
    }
    for (const key of [
      'networks',
      'network_mode',
      'netns',
      'ports',
      'hostname',
      'dns',
      'dns_search',
      'dns_opt',
      'extra_hosts',
      'mac_address',
      'container_name',
    ]) {
      expect(text, `container.${key}`).toMatch(new RegExp(`\\s${key}:`));
    }
  });
});

describe('phases', () => {
  it('stops at the first phase with problems', () => {
    // The unknown key (schema) hides the bad port (canonical) and the undefined network
    // (consistency) until it is fixed.
    const text = yaml`
      containers:
        web:
          networks: [nowhere]
          ports: ["80:http"]
          bogus: 1
    `;
    expect(errorsOf(text)).toEqual(["m.yaml:5:5: unknown key 'bogus' in container 'web'"]);
    expect(errorsOf(text.replace('    bogus: 1\n', ''))).toEqual([
      "m.yaml:4:13: port '80:http' of container 'web': invalid containerPort: http",
    ]);
    expect(errorsOf(text.replace('    bogus: 1\n', '').replace('80:http', '80:80'))).toEqual([
      "m.yaml:3:16: container 'web' refers to undefined network 'nowhere'",
    ]);
  });

  it('throws one SpecError whose message lists every problem', () => {
    let err: unknown;
    try {
      loadSpecFromStrings([{ path: 'm.yaml', text: 'networks:\n  a: { x: 1 }\n  b: { y: 2 }\n' }]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SpecError);
    expect((err as SpecError).message).toBe(
      "m.yaml:2:8: unknown key 'x' in network 'a'\nm.yaml:3:8: unknown key 'y' in network 'b'",
    );
    expect((err as SpecError).problems.map((p) => p.path)).toEqual(['networks.a.x', 'networks.b.y']);
  });

  it('returns a deeply frozen model', () => {
    const spec = load(`${SEED}  extra: { ports: ["8080:80"] }\n`);
    expect(Object.isFrozen(spec)).toBe(true);
    expect(Object.isFrozen(spec.networks.bridge.ipam4.aux)).toBe(true);
    expect(Object.isFrozen(spec.containers.alpine4.networks[1])).toBe(true);
    expect(Object.isFrozen(spec.containers.extra.ports[0])).toBe(true);
    expect(() => {
      (spec.networks as Record<string, unknown>).x = 1;
    }).toThrow(TypeError);
  });

  it('gives the same model for the same input (deterministic)', () => {
    expect(load(SEED)).toEqual(load(SEED));
  });
});
