/**
 * diff() on hand-built states: exact action counts (the arithmetic is in the comments),
 * zero actions when converged, and only the changed objects' actions otherwise.
 * Conventions: container subnets 172.18.0.0/16; no outside addresses needed here.
 */
import { describe, expect, it } from 'vitest';
import { diff, sortedDifferences } from '../../src/diff/diff.js';
import { EMPTY_STATE, type KernelState, type NamespaceState } from '../../src/model/state.js';

const T = 'tt';

function ns(container: string, ifname: string, network: string, addr: string, route = true): NamespaceState {
  return {
    container,
    netnsName: `tt-${container}`,
    path: `/run/netns/tt-${container}`,
    attached: false,
    links: { [ifname]: { name: ifname, network, addrs: [addr], up: true } },
    routes: route ? [{ family: 4, dst: 'default', via: '172.18.0.1', dev: ifname }] : [],
  };
}

function world(containers: string[]): KernelState {
  const namespaces: Record<string, NamespaceState> = {};
  const veths: KernelState['veths'] = {};
  containers.forEach((c, i) => {
    namespaces[c] = ns(c, 'eth0', 'net1', `172.18.0.${i + 2}/16`);
    (veths as Record<string, unknown>)[`veth${c}`] = {
      name: `veth${c}`,
      container: c,
      network: 'net1',
      master: 'br1',
      up: true,
    };
  });
  return {
    bridges: { br1: { name: 'br1', network: 'net1', addrs: ['172.18.0.1/16'], up: true } },
    veths,
    namespaces,
    sysctls: { 'net.ipv4.ip_forward': '1' },
    nft: { skeleton: 'S', sets: { bridges: ['br1'], masq4: ['172.18.0.0/16'] } },
    files: {},
  };
}

describe('diff', () => {
  it('is empty when desired equals actual', () => {
    const w = world(['a', 'b']);
    expect(diff(w, w, T).actions).toHaveLength(0);
  });

  it('creates everything from empty, in dependency order', () => {
    const p = diff(world(['a']), EMPTY_STATE, T);
    // sysctl 1 + netns 1 + bridge 1 + bridge addr 1 + veth 1 + ctr addr 1 + route 1
    // + nft table 1 + elements 2 = 10
    expect(p.actions.map((a) => a.op)).toEqual([
      'netns.create',
      'bridge.create',
      'addr.add',
      'sysctl.set',
      'veth.create',
      'addr.add',
      'route.add',
      'nft.table.create',
      'nft.element.add',
      'nft.element.add',
    ]);
  });

  it('one new container touches only its own objects', () => {
    const p = diff(world(['a', 'b', 'c']), world(['a', 'b']), T);
    // netns 1 + veth 1 + addr 1 + route 1 = 4, all about c
    expect(p.actions).toHaveLength(4);
    for (const a of p.actions) expect(JSON.stringify(a)).toContain('"c"');
  });

  it('removing a container deletes its namespace only (its veths go with it)', () => {
    const p = diff(world(['a']), world(['a', 'b']), T);
    expect(p.actions).toEqual([{ op: 'netns.delete', container: 'b', name: 'tt-b' }]);
  });

  it('repairs a lost address and a downed link without touching the rest', () => {
    const want = world(['a']);
    const have: KernelState = {
      ...want,
      namespaces: {
        a: {
          ...want.namespaces.a!,
          links: { eth0: { ...want.namespaces.a!.links.eth0!, addrs: [], up: false } },
        },
      },
    };
    const p = diff(want, have, T);
    expect(p.actions.map((a) => a.op)).toEqual(['link.set', 'addr.add']);
  });

  it('replaces the nft table when the skeleton differs, and re-adds all elements', () => {
    const want = world(['a']);
    const have = { ...want, nft: { skeleton: 'OLD', sets: want.nft.sets } };
    const p = diff(want, have, T);
    // replace 1 + 2 elements
    expect(p.actions.map((a) => a.op)).toEqual(['nft.table.replace', 'nft.element.add', 'nft.element.add']);
  });

  it('moves an address from one container to another in one plan (delete before add)', () => {
    const want = world(['a', 'b']);
    const have = world(['b', 'a']); // a and b swapped addresses
    const p = diff(want, have, T);
    const ops = p.actions.map((a) => a.op);
    expect(ops.filter((o) => o === 'addr.del')).toHaveLength(2);
    expect(ops.filter((o) => o === 'addr.add')).toHaveLength(2);
    expect(ops.lastIndexOf('addr.del')).toBeLessThan(ops.indexOf('addr.add'));
  });

  it('puts the default route back after a changed address (the kernel drops it with the old one)', () => {
    const want = world(['a', 'b']);
    const have = world(['b', 'a']);
    const ops = diff(want, have, T).actions.map((a) => `${a.op} ${'container' in a ? a.container : ''}`);
    for (const c of ['a', 'b']) {
      expect(ops.indexOf(`route.add ${c}`)).toBeGreaterThan(ops.indexOf(`addr.add ${c}`));
      expect(ops.indexOf(`addr.del ${c}`)).toBeGreaterThanOrEqual(0);
    }
    // An address added next to the others takes no route with it: no route.add then.
    const more: KernelState = {
      ...want,
      namespaces: {
        ...want.namespaces,
        a: {
          ...want.namespaces.a!,
          links: { eth0: { ...want.namespaces.a!.links.eth0!, addrs: ['172.18.0.2/16', '172.18.0.9/16'] } },
        },
      },
    };
    expect(diff(more, want, T).actions.map((a) => a.op)).toEqual(['addr.add']);
  });

  it('destroy: empty desired deletes bridges, namespaces and the table', () => {
    const p = diff(EMPTY_STATE, world(['a', 'b']), T);
    // 1 bridge + 2 namespaces (with their veths) + 1 table = 4
    expect(p.actions.map((a) => a.op).sort()).toEqual(
      ['bridge.delete', 'netns.delete', 'netns.delete', 'nft.table.delete'].sort(),
    );
  });
});

describe('sortedDifferences', () => {
  it('gives what set difference gives, in order, for ascending lists; nothing for unsorted ones', () => {
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let round = 0; round < 500; round++) {
      const pick = () => [...new Set(Array.from({ length: rnd(12) }, () => `k${rnd(20)}`))].sort();
      const a = pick();
      const b = pick();
      expect(sortedDifferences(a, b)).toEqual([
        a.filter((x) => !b.includes(x)),
        b.filter((x) => !a.includes(x)),
      ]);
    }
    expect(sortedDifferences(['b', 'a'], ['a'])).toBeUndefined();
    expect(sortedDifferences(['a'], ['a', 'a'])).toBeUndefined();
    const same = ['x', 'y'];
    expect(sortedDifferences(same, same)).toEqual([[], []]);
  });
});

describe('diff after diff', () => {
  // Random states where each next one keeps most of the last one's objects: the diff looks
  // again only at containers whose objects changed, and must give what a diff of fresh
  // copies (every object new, so everything looked at) gives.
  let seed = 4242;
  const rnd = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x7fffffff;
  };
  const pick = <X>(xs: readonly X[]) => xs[Math.floor(rnd() * xs.length)]!;
  const C = ['a', 'b', 'c', 'd'];
  const N = ['n0', 'n1'];
  const randomNs = (c: string): NamespaceState => {
    const links: Record<string, NamespaceState['links'][string]> = {};
    for (const n of N)
      if (rnd() < 0.6) {
        const name = pick(['eth0', 'eth1']);
        links[name] = {
          name,
          network: n,
          mtu: pick([undefined, 1500]),
          addrs: [pick(['1/16', '2/16'])],
          up: rnd() < 0.8,
        };
      }
    const routes = Object.values(links)
      .filter(() => rnd() < 0.6)
      .map((l) => ({ family: 4 as const, dst: 'default' as const, via: pick(['g1', 'g2']), dev: l.name }));
    return { container: c, netnsName: `t-${c}`, path: `/p/${c}`, attached: rnd() < 0.1, links, routes };
  };
  /** Desired: every veth belongs to a namespace that has a link on its network. */
  const mixDesired = (prev: KernelState): KernelState => {
    const namespaces: Record<string, NamespaceState> = {};
    const veths: Record<string, KernelState['veths'][string]> = {};
    for (const c of C) {
      if (rnd() < 0.7) {
        if (prev.namespaces[c]) namespaces[c] = prev.namespaces[c];
        for (const v of Object.values(prev.veths)) if (v.container === c) veths[v.name] = v;
      } else if (rnd() < 0.8) {
        const ns = randomNs(c);
        namespaces[c] = ns;
        for (const l of Object.values(ns.links))
          veths[`v${c}${l.network}`] = {
            name: `v${c}${l.network}`,
            container: c,
            network: l.network,
            master: pick(['br0', 'br1']),
            up: true,
          };
      }
    }
    return { ...EMPTY_STATE, namespaces, veths };
  };
  /** Actual: anything, veths possibly someone else's. */
  const mixActual = (prev: KernelState): KernelState => {
    const namespaces: Record<string, NamespaceState> = {};
    for (const c of C) {
      const keep = rnd() < 0.7;
      if (keep && prev.namespaces[c]) namespaces[c] = prev.namespaces[c];
      else if (!keep && rnd() < 0.7) namespaces[c] = randomNs(c);
    }
    const veths: Record<string, KernelState['veths'][string]> = {};
    for (const c of C)
      for (const n of N) {
        const name = rnd() < 0.1 ? 'vX' : `v${c}${n}`;
        if (rnd() < 0.7) {
          if (prev.veths[name]) veths[name] = prev.veths[name];
        } else if (rnd() < 0.6)
          veths[name] = { name, container: c, network: n, master: pick([undefined, 'br0']), up: rnd() < 0.8 };
      }
    return { ...EMPTY_STATE, namespaces, veths };
  };

  it('gives the same plans as diffs of fresh copies, over 20000 steps', () => {
    let d: KernelState = EMPTY_STATE;
    let a: KernelState = EMPTY_STATE;
    for (let i = 0; i < 20000; i++) {
      const [d0, a0] = [d, a];
      if (rnd() < 0.6) d = mixDesired(d);
      if (rnd() < 0.7) a = mixActual(a);
      const want = diff(structuredClone(d), structuredClone(a), T);
      diff(d0, a0, T); // the last diff is of the previous states again, not of the copies
      const got = diff(d, a, T);
      if (JSON.stringify(got) !== JSON.stringify(want))
        expect({ step: i, got }).toEqual({ step: i, got: want });
    }
  });
});
