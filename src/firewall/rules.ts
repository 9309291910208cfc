/**
 * tether's nftables table: a static skeleton (chains and rules that never change while
 * the code does not) and dynamic sets whose elements carry every per-network fact. A
 * converged system changes nothing; a new network is a few element adds.
 *
 *   table inet <instance> {
 *     set bridges  { type ifname }                       all tether bridges
 *     set internal { type ifname }                       bridges of internal networks
 *     set masq4    { type ipv4_addr; flags interval }    subnets masqueraded on egress
 *     set masq6    { type ipv6_addr; flags interval }
 *     chain skeleton-<hash> {}                           marks the skeleton version
 *     chain forward { type filter hook forward priority filter; policy accept;
 *       iifname @internal drop                            internal: nothing leaves the bridge
 *       oifname @internal drop                            … and nothing routed enters it
 *       iifname @bridges oifname @bridges drop            isolation between bridge networks
 *     }
 *     chain postrouting { type nat hook postrouting priority srcnat; policy accept;
 *       ip saddr @masq4 oifname != @bridges masquerade
 *       ip6 saddr @masq6 oifname != @bridges masquerade
 *     }
 *   }
 *
 * Traffic between containers of one bridge is switched, not routed, so it never meets
 * the forward hook: isolation drops only routed bridge-to-bridge traffic.
 */
import { sha256hex } from '../model/names.js';
import type { Resolved } from '../model/resolved.js';
import type { NftState } from '../model/state.js';
import type { NftCommand } from '../kernel/nft.js';

export const FAMILY = 'inet';

interface SetDef {
  name: string;
  type: string;
  interval?: boolean;
}

const SETS: readonly SetDef[] = [
  { name: 'bridges', type: 'ifname' },
  { name: 'internal', type: 'ifname' },
  { name: 'masq4', type: 'ipv4_addr', interval: true },
  { name: 'masq6', type: 'ipv6_addr', interval: true },
];

const meta = (key: string) => ({ meta: { key } });
const match = (left: unknown, right: unknown, op = '==') => ({ match: { op, left, right } });
const payload = (protocol: string, field: string) => ({ payload: { protocol, field } });

interface ChainDef {
  name: string;
  base?: { type: string; hook: string; prio: number; policy: string };
  rules: unknown[][];
}

const CHAINS: readonly ChainDef[] = [
  {
    name: 'forward',
    base: { type: 'filter', hook: 'forward', prio: 0, policy: 'accept' },
    rules: [
      [match(meta('iifname'), '@internal'), { drop: null }],
      [match(meta('oifname'), '@internal'), { drop: null }],
      [match(meta('iifname'), '@bridges'), match(meta('oifname'), '@bridges'), { drop: null }],
    ],
  },
  {
    name: 'postrouting',
    base: { type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' },
    rules: [
      [match(payload('ip', 'saddr'), '@masq4'), match(meta('oifname'), '@bridges', '!='), { masquerade: null }],
      [match(payload('ip6', 'saddr'), '@masq6'), match(meta('oifname'), '@bridges', '!='), { masquerade: null }],
    ],
  },
];

const SKELETON_HASH = sha256hex(JSON.stringify({ SETS, CHAINS })).slice(0, 12);
export const MARKER_CHAIN = `skeleton-${SKELETON_HASH}`;

/** The skeleton's fingerprint: marker chain plus the rule count of each chain. */
export function skeletonFingerprint(): string {
  return [MARKER_CHAIN, ...CHAINS.map((c) => `${c.name}:${c.rules.length}`)].join(' ');
}

/** Commands that create the whole skeleton (no elements) in an existing, empty table. */
export function skeletonCommands(table: string): NftCommand[] {
  const cmds: NftCommand[] = [];
  for (const s of SETS) {
    cmds.push({
      add: { set: { family: FAMILY, table, name: s.name, type: s.type, ...(s.interval ? { flags: ['interval'] } : {}) } },
    });
  }
  cmds.push({ add: { chain: { family: FAMILY, table, name: MARKER_CHAIN } } });
  for (const c of CHAINS) {
    cmds.push({ add: { chain: { family: FAMILY, table, name: c.name, ...(c.base ?? {}) } } });
    for (const expr of c.rules) cmds.push({ add: { rule: { family: FAMILY, table, chain: c.name, expr } } });
  }
  return cmds;
}

/** Element keys each set should hold for the desired world. */
export function desiredSets(r: Resolved, usedBridges: ReadonlySet<string>): Record<string, string[]> {
  const sets: Record<string, string[]> = Object.fromEntries(SETS.map((s) => [s.name, [] as string[]]));
  for (const n of Object.values(r.networks)) {
    if (!usedBridges.has(n.bridge)) continue;
    sets.bridges!.push(n.bridge);
    if (n.spec.internal) sets.internal!.push(n.bridge);
    const nat = (mode: string) => mode === 'nat' || mode === 'nat-unprotected';
    if (!n.spec.internal && n.spec.masquerade) {
      if (n.v4 && nat(n.spec.gatewayModeV4)) sets.masq4!.push(n.v4.subnet);
      if (n.v6 && nat(n.spec.gatewayModeV6)) sets.masq6!.push(n.v6.subnet);
    }
  }
  for (const k of Object.keys(sets)) sets[k] = [...new Set(sets[k])].sort();
  return sets;
}

/** JSON form of an element key for set `set`. */
export function elementJson(set: string, key: string): unknown {
  const def = SETS.find((s) => s.name === set);
  if (def?.interval) {
    const [addr, len] = key.split('/');
    return { prefix: { addr, len: Number(len) } };
  }
  return key;
}

function elementKey(set: SetDef, e: unknown): string {
  if (typeof e === 'string') {
    if (set.interval && !e.includes('/')) return `${e}/${set.type === 'ipv6_addr' ? 128 : 32}`;
    return e;
  }
  const o = e as { prefix?: { addr: string; len: number }; elem?: { val: unknown } };
  if (o.prefix) return `${o.prefix.addr}/${o.prefix.len}`;
  if (o.elem) return elementKey(set, o.elem.val);
  return JSON.stringify(e);
}

/** NftState from `nft -j list table` output (null: no table). */
export function parseNft(listing: NftCommand[] | null): NftState {
  if (!listing) return { sets: {} };
  const sets: Record<string, string[]> = {};
  const chains: string[] = [];
  const ruleCount: Record<string, number> = {};
  for (const o of listing) {
    if ('set' in o) {
      const s = o.set as { name: string; elem?: unknown[] };
      const def = SETS.find((d) => d.name === s.name);
      if (!def) continue;
      sets[s.name] = (s.elem ?? []).map((e) => elementKey(def, e)).sort();
    } else if ('chain' in o) {
      chains.push((o.chain as { name: string }).name);
    } else if ('rule' in o) {
      const c = (o.rule as { chain: string }).chain;
      ruleCount[c] = (ruleCount[c] ?? 0) + 1;
    }
  }
  const marker = chains.find((c) => c.startsWith('skeleton-')) ?? 'skeleton-none';
  const skeleton = [marker, ...CHAINS.map((c) => `${c.name}:${chains.includes(c.name) ? (ruleCount[c.name] ?? 0) : 'missing'}`)].join(' ');
  return { skeleton, sets };
}

export const SET_NAMES = SETS.map((s) => s.name);
