/**
 * The loader on large manifests and on the paths made linear for them: the port-clash
 * index (every clash, in order), the key index behind file:line:col, deep freezing.
 * Conventions: container subnets 172.18.0.0/16-like; outside addresses only from
 * 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.
 */
import { describe, expect, it } from 'vitest';
import { errorsOf, load, yaml } from './spec-helpers.js';

/** `n` containers on one network, container i publishing 20000+i. */
function many(n: number, extra = ''): string {
  const lines = ['networks:', '  n0: {}', '  n1: {}', 'containers:'];
  for (let i = 0; i < n; i++) lines.push(`  c${i}: { networks: [n${i % 2}], ports: ["${20000 + i}:80"] }`);
  return `${lines.join('\n')}\n${extra}`;
}

describe('port clashes', () => {
  it('reports each binding against every earlier one it clashes with, in order, once per pair', () => {
    expect(
      errorsOf(yaml`
        containers:
          a: { ports: ["8080:80"] }
          b: { ports: ["127.0.0.1:8080:80"] }
          c: { ports: ["8079-8081:79-81", "8081:80/udp"] }
          d: { ports: ["[::1]:8081:80", "[::1]:8081:81/udp"] }
          e: { ports: ["127.0.0.2:8079-8080:79-80"] }
      `),
    ).toEqual([
      "m.yaml:3:16: container 'b' publishes 127.0.0.1:8080/tcp ('127.0.0.1:8080:80'), which clashes with 0.0.0.0:8080/tcp ('8080:80') published by container 'a' [other: m.yaml:2:16]",
      "m.yaml:4:16: container 'c' publishes 0.0.0.0:8079-8081/tcp ('8079-8081:79-81'), which clashes with 0.0.0.0:8080/tcp ('8080:80') published by container 'a' [other: m.yaml:2:16]",
      "m.yaml:4:16: container 'c' publishes 0.0.0.0:8079-8081/tcp ('8079-8081:79-81'), which clashes with 127.0.0.1:8080/tcp ('127.0.0.1:8080:80') published by container 'b' [other: m.yaml:3:16]",
      "m.yaml:5:16: container 'd' publishes [::1]:8081/tcp ('[::1]:8081:80'), which clashes with [::]:8079-8081/tcp ('8079-8081:79-81') published by container 'c' [other: m.yaml:4:16]",
      "m.yaml:5:33: container 'd' publishes [::1]:8081/udp ('[::1]:8081:81/udp'), which clashes with [::]:8081/udp ('8081:80/udp') published by container 'c' [other: m.yaml:4:35]",
      "m.yaml:6:16: container 'e' publishes 127.0.0.2:8079-8080/tcp ('127.0.0.2:8079-8080:79-80'), which clashes with 0.0.0.0:8080/tcp ('8080:80') published by container 'a' [other: m.yaml:2:16]",
      "m.yaml:6:16: container 'e' publishes 127.0.0.2:8079-8080/tcp ('127.0.0.2:8079-8080:79-80'), which clashes with 0.0.0.0:8079-8081/tcp ('8079-8081:79-81') published by container 'c' [other: m.yaml:4:16]",
    ]);
  });

  it('finds the one clash among 1500 containers, at its place', () => {
    expect(errorsOf(many(1500, '  late: { networks: [n1], ports: ["127.0.0.1:21234:80"] }\n'))).toEqual([
      "m.yaml:1505:35: container 'late' publishes 127.0.0.1:21234/tcp ('127.0.0.1:21234:80'), which clashes with 0.0.0.0:21234/tcp ('21234:80') published by container 'c1234' [other: m.yaml:1239:36]",
    ]);
  });
});

describe('places in large manifests', () => {
  it('points at the right key of a mapping with thousands of entries', () => {
    const spec = load(many(1500));
    expect(spec.containers.c0!.src).toEqual({ file: 'm.yaml', line: 5, col: 3 });
    expect(spec.containers.c1499!.src).toEqual({ file: 'm.yaml', line: 1504, col: 3 });
    expect(spec.containers.c1499!.networks[0]!.src).toEqual({ file: 'm.yaml', line: 1504, col: 23 });
    expect(spec.containers.c1499!.ports[0]!.src).toEqual({ file: 'm.yaml', line: 1504, col: 36 });
  });

  it('reports a repeated container name at the repeat', () => {
    expect(errorsOf(many(1500, '  c700: {}\n'))).toEqual([
      'm.yaml:1505:3: YAML syntax error: this key appears twice in the same mapping',
    ]);
  });
});

describe('freezing', () => {
  it('freezes every object and array of the model', () => {
    const spec = load(yaml`
      daemon: { dns: [192.0.2.53], default-address-pools: [{ base: 172.30.0.0/16, size: 24 }] }
      networks:
        n: { ipam: { config: [{ subnet: 172.18.0.0/16, aux_addresses: { a: 172.18.0.9 } }] }, labels: [x=y] }
      containers:
        a:
          networks: { n: { aliases: [web], ipv4_address: 172.18.0.5 } }
          ports: ["8080:80", { target: 81, published: 8081, host_ip: 127.0.0.1 }]
          extra_hosts: ["h:192.0.2.1"]
          dns_search: [example.com]
    `);
    const unfrozen: string[] = [];
    const walk = (x: unknown, path: string) => {
      if (x === null || typeof x !== 'object') return;
      if (!Object.isFrozen(x)) unfrozen.push(path);
      for (const [k, v] of Object.entries(x)) walk(v, `${path}.${k}`);
    };
    walk(spec, 'spec');
    expect(unfrozen).toEqual([]);
  });
});
