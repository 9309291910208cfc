/**
 * dnsWorld(): the resolver configuration and the containers' files derived from a
 * resolved world. Conventions: container subnets from the default pools; upstream
 * resolvers from 192.0.2.0/24 and 198.51.100.0/24.
 */
import { describe, expect, it } from 'vitest';
import { dnsWorld } from '../../src/dns/config.js';
import { compileDns, upstreamsFor } from '../../src/dns/records.js';
import { EMPTY_STATE } from '../../src/model/state.js';
import { resolve } from '../../src/spec/ipam.js';
import { loadSpecFromStrings } from '../../src/spec/load.js';

const world = (text: string) =>
  dnsWorld(
    resolve(loadSpecFromStrings([{ path: 'm.yaml', text }]), 'tt', EMPTY_STATE, {
      reserved4: [],
      reserved6: [],
      ulaSeed: 's',
    }),
    'nameserver 192.0.2.53\nsearch example.internal\n',
  );

describe('dnsWorld', () => {
  const w = world(`
networks:
  web: {}
  back: { internal: true }
containers:
  a: { networks: [web], dns: [198.51.100.9] }
  b: { networks: [web] }
  i: { networks: [back] }
  d: {}
`);

  it('serves user-defined networks on their gateways, not the default bridge', () => {
    expect(w.config!.networks.map((n) => `${n.name} ${n.listen.join(',')}`)).toEqual([
      'web 172.18.0.1',
      'back 172.19.0.1',
    ]);
    expect(w.config!.upstreams).toEqual(['192.0.2.53']);
  });

  it("forwards a container's queries to its own dns:, and gives internal-only containers none", () => {
    const index = compileDns(w.config!);
    expect(upstreamsFor(index, '172.18.0.2').map((u) => u.host)).toEqual(['198.51.100.9']);
    expect(upstreamsFor(index, '172.18.0.3').map((u) => u.host)).toEqual(['192.0.2.53']);
    expect(upstreamsFor(index, '172.19.0.2')).toEqual([]);
  });

  it('points resolv.conf at the resolver on user-defined networks, at the host resolvers on the default bridge', () => {
    expect(w.files['/etc/netns/tt-a/resolv.conf']).toMatch(/^nameserver 172\.18\.0\.1$/m);
    expect(w.files['/etc/netns/tt-a/resolv.conf']).toMatch(/^search example\.internal$/m);
    expect(w.files['/etc/netns/tt-d/resolv.conf']).toMatch(/^nameserver 192\.0\.2\.53$/m);
    expect(w.files['/etc/netns/tt-d/hosts']).toMatch(/^172\.17\.0\.2\t[0-9a-f]{12} d$/m);
  });
});
