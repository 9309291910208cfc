/*
 * A name many endpoints share (a service alias on a thousand replicas) lists each address
 * once, in endpoint order, however many times it is registered.
 * Conventions: container subnet 172.18.0.0/16, outside addresses from 192.0.2.0/24.
 */
import { describe, expect, it } from 'vitest';
import { compileDns } from '../../src/dns/records.js';

describe('compileDns with a widely shared name', () => {
  it('keeps every address once, in order', () => {
    const ip = (i: number) => `172.18.${(i >> 8) + 1}.${i & 255}`;
    const endpoints = Array.from({ length: 3000 }, (_, i) => ({
      container: `c${i}`,
      network: 'net',
      names: [`c${i}`, 'web', 'WEB'],
      ipv4: ip(i),
    }));
    // The same container registered twice, and a second container on an address in use.
    endpoints.push({ ...endpoints[7]!, names: ['web'] }, { ...endpoints[8]!, container: 'twin' });
    const index = compileDns({
      networks: [{ name: 'net', listen: ['172.18.0.1'], subnets: ['172.18.0.0/16'] }],
      endpoints,
      upstreams: ['192.0.2.53'],
    });
    const web = index.networks.get('net')!.names.get('web')!;
    expect(web.v4).toEqual(Array.from({ length: 3000 }, (_, i) => ip(i)));
    expect(web.v6).toEqual([]);
    expect(index.networks.get('net')!.names.get('twin')!.v4).toEqual([ip(8)]);
  });
});
