import { describe, expect, it } from 'vitest';
import { differences } from '../../src/observe/live.js';
import type { Observation } from '../../src/observe/observe.js';

function obs(over: Partial<Observation['state']> = {}, reserved4: string[] = []): Observation {
  return {
    state: {
      bridges: { br1: { name: 'br1', network: 'web', addrs: ['172.18.0.1/16'], up: true } },
      veths: {},
      namespaces: {},
      sysctls: {},
      nft: { skeleton: 'skeleton-abc', sets: { bridges: ['br1'] } },
      files: {},
      ...over,
    },
    resolvConf: '',
    host: { reserved4, reserved6: [], ulaSeed: 'x', ephemeralPorts: [49153, 65535] },
    foreign: { hostLinks: ['lo'], netns: [], nsLinks: {} },
  };
}

describe('differences (memory against a full read)', () => {
  it('finds nothing between equal observations, files and direct facts aside', () => {
    expect(differences(obs(), obs({ files: { '/etc/netns/x/hosts': 'edited by hand' } }))).toEqual([]);
  });

  it('names what differs: a bridge, an nft set, the reserved subnets', () => {
    const b = obs(
      {
        bridges: { br1: { name: 'br1', network: 'web', addrs: [], up: true } },
        nft: { skeleton: 'skeleton-abc', sets: { bridges: [] } },
      },
      ['10.0.0.0/8'],
    );
    expect(differences(obs(), b)).toEqual(['bridge br1', 'nft set bridges', 'host reserved4']);
  });
});
