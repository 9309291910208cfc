import { describe, expect, it } from 'vitest';
import { differences, withElementChanges } from '../../src/observe/live.js';
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

  it('keeps an nft set sorted after elements are added and deleted, as a full read lists it', () => {
    const before = obs({
      nft: { skeleton: 'skeleton-abc', sets: { published4: ['tcp . 20000', 'tcp . 30000'] } },
    });
    const after = withElementChanges(before.state.nft, [
      { op: 'nft.element.add', table: 't', set: 'published4', key: 'tcp . 1000' },
      { op: 'nft.element.delete', table: 't', set: 'published4', key: 'tcp . 30000' },
    ]);
    expect(after.sets.published4).toEqual(['tcp . 1000', 'tcp . 20000']);
    const fresh = obs({
      nft: { skeleton: 'skeleton-abc', sets: { published4: ['tcp . 1000', 'tcp . 20000'] } },
    });
    expect(differences(obs({ nft: after }), fresh)).toEqual([]);
  });
});
