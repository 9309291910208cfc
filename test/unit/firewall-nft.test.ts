/**
 * Golden nft JSON: the static skeleton, and the elements a cold apply writes for
 * representative manifests (the seed walkthrough; every port-publishing form; every gateway
 * mode and network option the firewall reads). Goldens live in test/fixtures/nft/, pretty
 * and key-sorted, element lists sorted (nft does not order them); `vitest -u` rewrites them
 * after a deliberate change, which then shows up in review as a readable diff.
 *
 * Conventions: container subnets from Docker's pools or explicit 172.2x/16 and fd00::/8 ULA;
 * host addresses only from 203.0.113.0/24 and 2001:db8::/32.
 */
import { describe, expect, it } from 'vitest';
import { BRIDGE_FAMILY, CHAINS, FAMILY, SETS, skeletonCommands } from '../../src/firewall/rules.js';
import { INSTANCE, plan, pretty, tx, world } from './firewall-world.js';

const SEED = `
networks:
  alpine-net: {}
containers:
  alpine1: { networks: [alpine-net] }
  alpine2: { networks: [alpine-net] }
  alpine3: {}
  alpine4: { networks: [alpine-net, bridge] }
`;

/** Every publishing form, on a dual-stack network, an IPv4-only one and the default bridge. */
const PORTS = `
daemon:
  ip: 127.0.0.1
networks:
  web:
    enable_ipv6: true
    ipam: { config: [{ subnet: 172.20.0.0/16 }, { subnet: "fd00:20::/64" }] }
  lo4:
    ipam: { config: [{ subnet: 172.21.0.0/16 }] }
    driver_opts: { com.docker.network.bridge.host_binding_ipv4: 127.0.0.1 }
  six:
    enable_ipv6: true
    ipam: { config: [{ subnet: 172.22.0.0/16 }, { subnet: "fd00:22::/64" }] }
    driver_opts: { com.docker.network.bridge.host_binding_ipv4: "::" }
containers:
  web:
    networks: [web]
    ports:
      - "8080:80"                 # both families
      - "127.0.0.1:5432:5432"     # IPv4 loopback only
      - "8053:53/udp"
      - "9000-9002:9000-9002"     # three bindings
      - "80"                      # ephemeral, both families share it
      - "0.0.0.0:7070:70"         # explicit 0.0.0.0: IPv4 only
      - "8100-8110:81"            # one port of the range
      - "[::1]:8181:81/tcp"
      - "8132:132/sctp"
      - { target: 443, published: 8443, host_ip: "::", protocol: tcp }
      - { target: 444, published: "8444", protocol: udp }
  loonly:
    networks: [lo4]
    ports: ["8090:90"]            # the network's host_binding_ipv4: 127.0.0.1
  v6only:
    networks: [six]
    ports: ["8091:91"]            # host_binding_ipv4 "::": IPv6 only
  legacy:
    ports: ["8092:92"]            # default bridge, daemon ip 127.0.0.1
`;

/** Gateway modes, ICC, internal, masquerade and SNAT options. */
const MODES = `
networks:
  nat: { ipam: { config: [{ subnet: 172.23.0.0/16 }] } }
  unprot:
    ipam: { config: [{ subnet: 172.24.0.0/16 }] }
    driver_opts: { com.docker.network.bridge.gateway_mode_ipv4: nat-unprotected }
  routed:
    ipam: { config: [{ subnet: 172.25.0.0/16 }] }
    driver_opts: { com.docker.network.bridge.gateway_mode_ipv4: routed }
  mixed:
    enable_ipv6: true
    ipam: { config: [{ subnet: 172.26.0.0/16 }, { subnet: "fd00:26::/64" }] }
    driver_opts:
      com.docker.network.bridge.gateway_mode_ipv4: nat-unprotected
      com.docker.network.bridge.gateway_mode_ipv6: routed
  noicc:
    ipam: { config: [{ subnet: 172.27.0.0/16 }] }
    driver_opts: { com.docker.network.bridge.enable_icc: "false" }
  internal:
    internal: true
    ipam: { config: [{ subnet: 172.28.0.0/16 }] }
  isolated:
    internal: true
    ipam: { config: [{ subnet: 172.29.0.0/16 }] }
    driver_opts: { com.docker.network.bridge.gateway_mode_ipv4: isolated }
  nomasq:
    ipam: { config: [{ subnet: 172.30.0.0/16 }] }
    driver_opts: { com.docker.network.bridge.enable_ip_masquerade: "false" }
  snat:
    enable_ipv6: true
    ipam: { config: [{ subnet: 172.31.0.0/16 }, { subnet: "fd00:31::/64" }] }
    driver_opts:
      com.docker.network.host_ipv4: 203.0.113.3
      com.docker.network.host_ipv6: "2001:db8:1::3"
containers:
  n1: { networks: [nat], ports: ["8001:80"] }
  u1: { networks: [unprot], ports: ["8002:80"] }
  r1: { networks: [routed], ports: ["8003:80", "127.0.0.1:8004:81"] }
  m1: { networks: [mixed], ports: ["8005:80"] }
  i1: { networks: [noicc], ports: ["8006:80"] }
  i2: { networks: [noicc] }
  in1: { networks: [internal], ports: ["8007:80"] }
  is1: { networks: [isolated] }
  nm1: { networks: [nomasq] }
  s1: { networks: [snat] }
`;

/** The cold apply's element commands (the transaction minus the table replace and skeleton). */
function coldElements(yaml: string) {
  const t = tx(plan(world(yaml)));
  const head = t.slice(0, 4 + skeletonCommands(INSTANCE).length);
  expect(head).toEqual([
    { add: { table: { family: FAMILY, name: INSTANCE } } },
    { delete: { table: { family: FAMILY, name: INSTANCE } } },
    { add: { table: { family: BRIDGE_FAMILY, name: INSTANCE } } },
    { delete: { table: { family: BRIDGE_FAMILY, name: INSTANCE } } },
    ...skeletonCommands(INSTANCE),
  ]);
  const rest = t.slice(head.length);
  for (const c of rest) expect(Object.keys(c)).toEqual(['add']);
  for (const c of rest) expect(Object.keys((c as { add: object }).add)).toEqual(['element']);
  return rest;
}

describe('nft golden JSON', () => {
  it('skeleton: both tables, every set and map, chains before the rules that jump to them', async () => {
    const sk = skeletonCommands(INSTANCE);
    // 2 tables + one set/map per SETS entry + marker chain + each chain and its rules
    expect(sk).toHaveLength(2 + SETS.length + 1 + CHAINS.reduce((n, c) => n + 1 + c.rules.length, 0));
    const chainAt = (name: string) =>
      sk.findIndex((c) => (c as { add?: { chain?: { name: string } } }).add?.chain?.name === name);
    expect(chainAt('published')).toBeLessThan(chainAt('nat-prerouting'));
    expect(chainAt('published')).toBeLessThan(chainAt('nat-output'));
    await expect(pretty(sk)).toMatchFileSnapshot('../fixtures/nft/skeleton.json');
  });

  it('seed walkthrough: per-network facts only (no ports)', async () => {
    const el = coldElements(SEED);
    // bridges, samebridge, subnets4, masq4 — two elements each (alpine-net, the default bridge)
    expect(el.map((c: any) => `${c.add.element.name}:${c.add.element.elem.length}`)).toEqual([
      'bridges:2',
      'masq4:2',
      'samebridge:2',
      'subnets4:2',
    ]);
    await expect(pretty(el)).toMatchFileSnapshot('../fixtures/nft/seed.elements.json');
  });

  it('every port-publishing form', async () => {
    await expect(pretty(coldElements(PORTS))).toMatchFileSnapshot('../fixtures/nft/ports.elements.json');
  });

  it('gateway modes, ICC, internal, isolated, masquerade off, host_ipv4/host_ipv6 SNAT', async () => {
    await expect(pretty(coldElements(MODES))).toMatchFileSnapshot('../fixtures/nft/modes.elements.json');
  });

  it('destroy is one transaction that removes both tables, even if one is already gone', () => {
    const w = world(SEED);
    const t = tx(plan({ resolved: w.resolved, desired: { ...w.desired, nft: { sets: {} } } }, w));
    // add+delete per family: deleting a missing table alone would abort the transaction
    expect(t).toEqual([
      { add: { table: { family: FAMILY, name: INSTANCE } } },
      { delete: { table: { family: FAMILY, name: INSTANCE } } },
      { add: { table: { family: BRIDGE_FAMILY, name: INSTANCE } } },
      { delete: { table: { family: BRIDGE_FAMILY, name: INSTANCE } } },
    ]);
  });
});
