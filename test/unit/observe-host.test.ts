/**
 * The live observer patches the host part of its observation for the links a notification
 * changed (observe.ts patchHostPart), and the namespaces part for the namespaces read again
 * or gone (patchNamespacesPart). Through random changes, every patched part must equal the
 * part shaped afresh from the same reads, or the patch must decline.
 */
import { describe, expect, it } from 'vitest';
import type { NlAddr, NlLink, NlRoute } from '../../src/kernel/netlink.js';
import type { NsView } from '../../src/kernel/netns.js';
import { patchedKeys } from '../../src/model/intern.js';
import { epAlias, netAlias, nsAlias } from '../../src/model/names.js';
import {
  type HostPart,
  hostPart,
  type LinkKind,
  type NamespacesPart,
  type NsEntry,
  type NsKind,
  namespacesPart,
  patchHostPart,
  patchNamespacesPart,
} from '../../src/observe/observe.js';

const I = 'tp';

/** A patched record knows which of its keys changed (the diff looks at those only). */
function expectChangesNoted(
  before: Readonly<Record<string, unknown>>,
  after: Readonly<Record<string, unknown>>,
) {
  const noted = new Set(patchedKeys(before, after));
  for (const k of new Set([...Object.keys(before), ...Object.keys(after)]))
    if (before[k] !== after[k]) expect(noted.has(k)).toBe(true);
}

/** A small deterministic generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomLink(r: () => number, index: number, bridges: readonly number[]): NlLink {
  const pick = r();
  const name = `l${index}-${Math.floor(r() * 3)}`;
  if (pick < 0.15)
    return { index, name: `br${index}`, kind: 'bridge', alias: netAlias(I, `n${index}`), up: r() < 0.9 };
  if (pick < 0.25) return { index, name: `fbr${index}-${Math.floor(r() * 3)}`, kind: 'bridge', up: true };
  if (pick < 0.7) {
    const master = bridges.length && r() < 0.8 ? bridges[Math.floor(r() * bridges.length)] : undefined;
    const c = `c${Math.floor(r() * 20)}`;
    return {
      index,
      name,
      kind: 'veth',
      alias: epAlias(I, c, 'n1'),
      master,
      mtu: r() < 0.5 ? 1500 : 9000,
      up: r() < 0.8,
    };
  }
  if (pick < 0.8) return { index, name, kind: 'veth', alias: epAlias('other', 'c', 'n1'), up: true };
  return { index, name, kind: r() < 0.5 ? 'dummy' : undefined, up: true };
}

describe('patchHostPart', () => {
  it('equals a fresh hostPart after every change it accepts, over 5000 random steps', () => {
    const r = rng(7);
    const links = new Map<number, NlLink>();
    const addrs: NlAddr[] = [{ index: 1, family: 4, cidr: '198.51.100.2/24', scope: 0 }];
    const routes: NlRoute[] = [];
    links.set(1, { index: 1, name: 'eth0', up: true });
    for (let i = 2; i < 30; i++) links.set(i, randomLink(r, i, []));
    let kinds = new Map<number, LinkKind>();
    let part: HostPart = hostPart(I, links.values(), addrs, routes, kinds);
    let patchedSteps = 0;
    for (let step = 0; step < 5000; step++) {
      const changes = new Map<number, NlLink | undefined>();
      for (let k = 1 + Math.floor(r() * 3); k > 0; k--) {
        const index = 2 + Math.floor(r() * 40);
        const bridges = [...links.values()].filter((l) => l.kind === 'bridge').map((l) => l.index);
        const l = r() < 0.3 ? undefined : randomLink(r, index, bridges);
        if (l) links.set(index, l);
        else links.delete(index);
        changes.set(index, l);
        // As the kernel does: a bridge that goes (or is replaced) releases its ports, and
        // says so in a notification for each.
        if (l?.kind === 'bridge') continue;
        for (const port of links.values()) {
          if (port.master !== index) continue;
          const freed = { ...port, master: undefined };
          links.set(port.index, freed);
          changes.set(port.index, freed);
        }
      }
      const fresh = hostPart(I, links.values(), addrs, routes);
      const patched = patchHostPart(I, part, changes, kinds, (i) => links.get(i));
      if (patched) {
        patchedSteps++;
        expect(patched).toEqual(fresh);
        expectChangesNoted(part.veths, patched.veths);
        part = patched;
      } else {
        kinds = new Map();
        part = hostPart(I, links.values(), addrs, routes, kinds);
      }
    }
    // Most steps touch veths and foreign links only: the patch must take them.
    expect(patchedSteps).toBeGreaterThan(1000);
  });

  it('declines a change to a bridge and leaves what it knows untouched', () => {
    const links = new Map<number, NlLink>([
      [2, { index: 2, name: 'br2', kind: 'bridge', alias: netAlias(I, 'n'), up: true }],
      [3, { index: 3, name: 've3', kind: 'veth', alias: epAlias(I, 'c', 'n'), master: 2, up: true }],
    ]);
    const kinds = new Map<number, LinkKind>();
    const part = hostPart(I, links.values(), [], [], kinds);
    const before = new Map(kinds);
    const renamed: NlLink = { ...links.get(2)!, name: 'br2b' };
    links.set(2, renamed);
    expect(patchHostPart(I, part, new Map([[2, renamed]]), kinds, (i) => links.get(i))).toBeUndefined();
    expect(kinds).toEqual(before);
  });
});

/** A namespace's view: tether's (its loopback names container `c`), or a stranger's. */
function randomView(r: () => number, c: string | undefined): NsView {
  const lo = { ifindex: 1, ifname: 'lo', flags: ['UP'], mtu: 65536, addr_info: [] };
  const links: NsView['links'] = [c ? { ...lo, ifalias: nsAlias(I, c) } : lo];
  const ep = c ?? 'x';
  if (r() < 0.8)
    links.push({
      ifindex: 2,
      ifname: 'eth0',
      ifalias: epAlias(I, ep, 'n1'),
      flags: r() < 0.8 ? ['UP'] : [],
      mtu: 1500,
      address: '02:42:ac:12:00:02',
      addr_info: [
        { family: 'inet', local: `172.18.0.${2 + Math.floor(r() * 9)}`, prefixlen: 16, scope: 'global' },
      ],
    });
  if (r() < 0.2) links.push({ ifindex: 3, ifname: 'extra0', flags: [], mtu: 1500, addr_info: [] });
  return { links, routes: [{ dst: 'default', gateway: '172.18.0.1', dev: 'eth0' }] };
}

describe('patchNamespacesPart', () => {
  it('equals a fresh namespacesPart after every change it accepts, over 5000 random steps', () => {
    const r = rng(11);
    const entries = new Map<string, NsEntry>();
    const pathOf = (k: number) => `/run/netns/${I}-p${k}`;
    const randomEntry = (k: number): NsEntry => {
      const attached = r() < 0.1;
      // Mostly the namespace of "its" container; now and then another's (two paths, one container).
      const c = r() < 0.15 ? undefined : `c${r() < 0.9 ? k : Math.floor(r() * 30)}`;
      const target = attached
        ? { path: pathOf(k), container: `c${k}` }
        : { name: `${I}-p${k}`, path: pathOf(k) };
      return { target, view: r() < 0.1 ? undefined : randomView(r, c) };
    };
    for (let k = 0; k < 20; k++) entries.set(pathOf(k), randomEntry(k));
    let kinds = new Map<string, NsKind>();
    let part: NamespacesPart = namespacesPart(I, entries.values(), kinds);
    let patchedSteps = 0;
    for (let step = 0; step < 5000; step++) {
      const changes = new Map<string, NsEntry | undefined>();
      for (let n = 1 + Math.floor(r() * 3); n > 0; n--) {
        const k = Math.floor(r() * 30);
        const e = r() < 0.25 ? undefined : randomEntry(k);
        if (e) entries.set(pathOf(k), e);
        else entries.delete(pathOf(k));
        changes.set(pathOf(k), e);
      }
      const fresh = namespacesPart(I, entries.values());
      const patched = patchNamespacesPart(I, part, changes, kinds);
      if (patched) {
        patchedSteps++;
        expect(patched).toEqual(fresh);
        expectChangesNoted(part.namespaces, patched.namespaces);
        part = patched;
      } else {
        kinds = new Map();
        part = namespacesPart(I, entries.values(), kinds);
      }
    }
    expect(patchedSteps).toBeGreaterThan(1000);
  });
});
