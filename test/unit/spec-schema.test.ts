/**
 * Phase 2 (schema): the shipped JSON Schema, and its errors as plain sentences at
 * file:line:col.
 * Conventions: container subnets 172.18.0.0/16-like; outside addresses only from
 * 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.
 */
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { loadSchema } from '../../src/spec/schema.js';
import { errorsOf, load, yaml } from './spec-helpers.js';

describe('the shipped schema', () => {
  const schema = loadSchema();

  it('is a valid draft 2020-12 schema that compiles in strict mode', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    const ajv = new Ajv2020({ strict: true, allowUnionTypes: true });
    expect(ajv.validateSchema(schema)).toBe(true);
    expect(() => ajv.compile(schema)).not.toThrow();
  });

  it('describes every property, for editors', () => {
    const missing: string[] = [];
    const defs = schema.$defs as Record<string, Record<string, unknown>>;
    const described = (s: Record<string, unknown>): boolean => {
      if (typeof s.description === 'string') return true;
      const ref = s.$ref as string | undefined;
      return ref !== undefined && described(defs[ref.replace('#/$defs/', '')]);
    };
    const walk = (s: unknown, where: string) => {
      if (!s || typeof s !== 'object') return;
      const props = (s as { properties?: Record<string, Record<string, unknown>> }).properties;
      for (const [k, v] of Object.entries(props ?? {})) {
        if (!described(v)) missing.push(`${where}.${k}`);
        walk(v, `${where}.${k}`);
      }
      for (const key of ['items', 'additionalProperties'])
        walk((s as Record<string, unknown>)[key], `${where}.${key}`);
    };
    walk(schema, '');
    for (const [name, def] of Object.entries(defs)) walk(def, `$defs.${name}`);
    expect(missing).toEqual([]);
  });

  it('lists the daemon.json keys of SPEC §1', () => {
    const daemon = (schema.$defs as Record<string, { properties: object }>).daemon;
    expect(Object.keys(daemon.properties).sort()).toEqual(
      [
        'bip',
        'default-address-pools',
        'default-gateway',
        'default-gateway-v6',
        'dns',
        'dns-opts',
        'dns-search',
        'fixed-cidr',
        'fixed-cidr-v6',
        'icc',
        'ip',
        'ip-masq',
        'ipv6',
        'bip6',
        'mtu',
        'userland-proxy',
      ].sort(),
    );
  });

  it('validates the example manifests', () => {
    const ajv = new Ajv2020({ strict: true, allowUnionTypes: true });
    const validate = ajv.compile(schema);
    for (const f of ['manifests/10-alpine-net.yaml', 'examples/full.yaml']) {
      const text = readFileSync(new URL(`../../${f}`, import.meta.url), 'utf8');
      expect(text.split('\n')[0]).toBe(`# yaml-language-server: $schema=../schema/tether.schema.json`);
    }
    expect(validate({ networks: { n: { driver: 'bridge' } }, containers: { c: { networks: ['n'] } } })).toBe(
      true,
    );
  });
});

describe('schema errors', () => {
  it('names an unknown key and where it is, pointing at the key', () => {
    expect(
      errorsOf(yaml`
        networks:
          x:
            internal: false
            foo: 1
      `),
    ).toEqual(["m.yaml:4:5: unknown key 'foo' in network 'x'"]);
  });

  it('suggests the closest known key', () => {
    expect(
      errorsOf(yaml`
        daemon:
          fixed_cidr: 192.168.1.0/25
        networks:
          x:
            enable-ipv6: true
            ipam:
              config:
                - subnet: 172.18.0.0/16
                  gatway: 172.18.0.1
        containers:
          web:
            netwroks: [x]
      `),
    ).toEqual([
      "m.yaml:2:3: unknown key 'fixed_cidr' in daemon (did you mean 'fixed-cidr'?)",
      "m.yaml:5:5: unknown key 'enable-ipv6' in network 'x' (did you mean 'enable_ipv6'?)",
      "m.yaml:9:11: unknown key 'gatway' in 'ipam.config[0]' of network 'x' (did you mean 'gateway'?)",
      "m.yaml:12:5: unknown key 'netwroks' in container 'web' (did you mean 'networks'?)",
    ]);
  });

  it('rejects unknown top-level keys and unknown keys in attachments and ports', () => {
    expect(
      errorsOf(yaml`
        include: [other.yaml]
        networks:
          x: {}
        services:
          web:
            networks:
              x:
                ipv4_adress: 172.18.0.5
            ports:
              - { target: 80, hostip: 127.0.0.1 }
      `),
    ).toEqual([
      "m.yaml:1:1: unknown key 'include' at the top level",
      "m.yaml:8:9: unknown key 'ipv4_adress' in 'networks.x' of service 'web' (did you mean 'ipv4_address'?)",
      "m.yaml:10:23: unknown key 'hostip' in 'ports[0]' of service 'web' (did you mean 'host_ip'?)",
    ]);
  });

  it('says what type was expected and what was found', () => {
    expect(
      errorsOf(yaml`
        daemon:
          mtu: 1500.5
          icc: "no"
        networks:
          x:
            internal: "yes"
            ipam:
              config: { subnet: 172.18.0.0/16 }
        containers:
          web:
            ports: [true]
            dns_opt: ndots:1
            networks: host
      `),
    ).toEqual([
      "m.yaml:2:8: 'mtu' in daemon must be a whole number, got the number 1500.5",
      'm.yaml:3:8: \'icc\' in daemon must be true or false, got the string "no"',
      "m.yaml:6:15: 'internal' in network 'x' must be true or false, got the string \"yes\"",
      "m.yaml:8:15: 'ipam.config' in network 'x' must be a list, got a mapping",
      "m.yaml:11:13: 'ports[0]' in container 'web' must be a string, a whole number or a mapping, got true",
      "m.yaml:12:14: 'dns_opt' in container 'web' must be a list, got the string \"ndots:1\"",
      "m.yaml:13:15: 'networks' in container 'web' must be a list, a mapping or empty, got the string \"host\"",
    ]);
  });

  it('rejects a document that is not a mapping', () => {
    expect(errorsOf('- networks\n')).toEqual([
      'm.yaml:1:1: a manifest must be a mapping (keys such as networks and containers), got a list',
    ]);
  });

  it('rejects names Docker would reject, at the name', () => {
    expect(
      errorsOf(yaml`
        networks:
          _private: {}
        containers:
          "web server": {}
          ok:
            networks:
              -bad: {}
      `),
    ).toEqual([
      "m.yaml:2:3: invalid network name '_private': only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
      "m.yaml:4:3: invalid container name 'web server': only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
      "m.yaml:7:7: invalid network name '-bad': only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
    ]);
  });

  it('explains unsupported drivers and network modes', () => {
    expect(
      errorsOf(yaml`
        networks:
          a: { driver: overlay }
          b: { driver: host }
          c: { ipam: { driver: dhcp } }
        containers:
          web:
            network_mode: "service:db"
          p:
            ports: [{ target: 80, protocol: quic }]
      `),
    ).toEqual([
      "m.yaml:2:16: driver 'overlay' of network 'a' is not supported: tether manages bridge networks only",
      "m.yaml:3:16: network 'b' cannot use driver 'host': 'host' is a predefined network (use network_mode: host on the container)",
      "m.yaml:4:24: 'ipam.driver' in network 'c' must be 'default', got 'dhcp'",
      "m.yaml:7:19: network_mode 'service:db' of container 'web' is not supported: use bridge, host or none",
      "m.yaml:9:37: 'ports[0].protocol' in container 'p' must be 'tcp', 'udp' or 'sctp', got 'quic'",
    ]);
  });

  it('reports a missing required key and a network listed twice', () => {
    expect(
      errorsOf(yaml`
        daemon:
          default-address-pools:
            - base: 172.30.0.0/16
        containers:
          web:
            networks: [a, b, a]
            ports:
              - published: 8080
      `),
    ).toEqual([
      "m.yaml:3:7: 'default-address-pools[0]' in daemon needs the key 'size'",
      "m.yaml:6:22: 'networks' in container 'web' lists \"a\" twice",
      "m.yaml:8:9: 'ports[0]' in container 'web' needs the key 'target'",
    ]);
  });

  it('collects the errors of every file before stopping', () => {
    expect(
      errorsOf([
        { path: 'a.yaml', text: 'networks:\n  x:\n    bogus: 1\n' },
        { path: 'b.yaml', text: 'containers:\n  c:\n    bogus: 1\n' },
      ]),
    ).toEqual([
      "a.yaml:3:5: unknown key 'bogus' in network 'x'",
      "b.yaml:3:5: unknown key 'bogus' in container 'c'",
    ]);
  });
});

describe('Compose compatibility', () => {
  it('loads a Compose file: version, name, top-level volumes, ignored service keys, x- extensions', () => {
    const spec = load(yaml`
      version: "3.8"
      name: shop
      x-defaults: &defaults
        restart: unless-stopped
      services:
        web:
          <<: *defaults
          image: nginx:1.27
          container_name: shop-web
          command: ["nginx", "-g", "daemon off;"]
          environment:
            - MODE=prod
          volumes: [data:/srv]
          depends_on: [db]
          labels: { tier: front }
          healthcheck: { test: ["CMD", "true"] }
          deploy: { replicas: 1 }
          ports: ["8080:80"]
          networks: [front]
          x-owner: team-a
        db:
          image: postgres:16
          networks:
            front:
              aliases: [database]
              priority: 10
      networks:
        front:
          name: front
          attachable: true
          labels: [com.example.purpose=shop]
          x-note: free text
      volumes:
        data: {}
      secrets: {}
      configs: {}
    `);
    expect(Object.keys(spec.containers)).toEqual(['web', 'db']);
    expect(spec.containers.web.ports).toMatchObject([{ target: 80, published: 8080, protocol: 'tcp' }]);
    expect(spec.containers.db.networks[0].aliases).toEqual(['database']);
    expect(spec.networks.front.labels).toEqual({ 'com.example.purpose': 'shop' });
  });

  it('still rejects service keys that are not known Compose keys', () => {
    expect(errorsOf('services:\n  web:\n    image: nginx\n    imagee: x\n')).toEqual([
      "m.yaml:4:5: unknown key 'imagee' in service 'web' (did you mean 'image'?)",
    ]);
  });
});
