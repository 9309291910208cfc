/**
 * tether's nftables tables: a static skeleton (chains and rules that only change when
 * tether itself changes) and dynamic sets and maps whose elements carry every
 * per-network, per-container and per-port fact. A converged system changes nothing; a
 * new published port is a handful of element adds; all in one atomic transaction.
 *
 *   table inet <instance> {
 *     chain raw-prerouting  { type filter hook prerouting priority raw; policy accept;
 *       iifname != "lo" ip daddr 127.0.0.0/8 drop           loopback bindings stay local
 *       iifname != "lo" ip6 daddr ::1 drop
 *     }
 *     chain nat-prerouting  { type nat hook prerouting priority dstnat;
 *       iifname @bridges meta l4proto { tcp, udp } th dport 53 fib daddr . iif type local return
 *                                                              a container asking its own gateway for
 *                                                              DNS reaches tether's resolver there, not
 *                                                              a published port 53
 *       fib daddr type local jump published
 *     }
 *     chain nat-output      { type nat hook output priority dstnat;
 *       ip6 daddr ::1 return                                   ::1 cannot be DNAT'd out of lo: left to
 *                                                              the userland proxy (src/dns/proxy.ts)
 *       fib daddr type local jump published
 *     }
 *     chain published {
 *       dnat ip to ip daddr . meta l4proto . th dport map @dnat4_addr : ip daddr . meta l4proto . th dport map @dnat4_port
 *       dnat ip to meta l4proto . th dport map @dnatany4_addr : meta l4proto . th dport map @dnatany4_port
 *       ip6 saddr fe80::/10 return                             (Docker: no DNAT for link-local clients)
 *       (the same two for ip6)
 *     }
 *     chain filter-forward  { type filter hook forward priority filter; policy accept;
 *       iifname . oifname @samebridge ct status dnat meta mark set meta mark | 0x08000000
 *                                                              tells the bridge chain below that a
 *                                                              bridged frame was DNAT'd (published port)
 *       ct state established,related accept
 *       iifname . oifname @samebridge accept                   bridged traffic, seen here when
 *                                                              bridge-nf-call-iptables=1 ("br . br")
 *       iifname @internal drop                                 internal: nothing routed leaves …
 *       oifname @internal drop                                 … or enters
 *       oifname @bridges ct status dnat ip daddr . meta l4proto . th dport @published4 accept
 *       oifname @bridges ip daddr . meta l4proto . th dport @routed4 accept     gateway mode routed
 *       oifname @bridges ip daddr @routednet4 meta l4proto icmp accept
 *       (the same three for ip6)
 *       meta nfproto ipv4 oifname @unprotected4 accept          gateway mode nat-unprotected (per family)
 *       meta nfproto ipv6 oifname @unprotected6 accept
 *       oifname @bridges drop                                  direct access and other networks
 *     }
 *     chain nat-postrouting { type nat hook postrouting priority srcnat;
 *       oifname @bridges ct status dnat ip saddr @subnets4 masquerade    hairpin / via a published port
 *       oifname @bridges ip saddr 127.0.0.0/8 masquerade                host loopback → published port
 *       oifname != @bridges snat ip to ip saddr map @snat4               host_ipv4
 *       oifname != @bridges ip saddr @masq4 masquerade
 *       (the same for ip6, without the loopback rule)
 *     }
 *   }
 *   table bridge <instance> {
 *     set noicc_ports { type ifname }                       host veths on networks with enable_icc=false
 *     chain forward { type filter hook forward priority 100; policy accept;
 *       meta mark & 0x08000000 != 0 meta mark set meta mark & 0xf7ffffff accept
 *       iifname @noicc_ports oifname @noicc_ports drop      no frames from one such port to another
 *     }
 *   }
 *
 * Traffic between containers of one bridge is switched, not routed: without br_netfilter it
 * never meets the inet forward hook, which is why ICC is enforced in the bridge family. It
 * matches bridge ports, not `meta ibrname`: kernels built without CONFIG_NFT_BRIDGE_META
 * reject ibrname with EOPNOTSUPP.
 *
 * With br_netfilter (bridge-nf-call-iptables=1, the default once the module is loaded, as
 * Docker loads it), a frame from container A to the host's address is DNAT'd at the bridge
 * layer and, when the published container B sits on the same bridge, *bridged* to B
 * ("bridged DNAT") instead of routed. It then passes both forward hooks: the inet one (as
 * bridge → bridge, with its conntrack entry) and the bridge one (as port A → port B), where
 * the ICC drop would stop it although it is published-port traffic. The bridge family has
 * no conntrack here (`ct` is EOPNOTSUPP without nf_conntrack_bridge), so the inet forward
 * chain flags such packets with mark bit 0x08000000, and the bridge chain — at priority
 * 100, after br_netfilter's own forward hook (priority 0), which runs the inet one —
 * accepts and clears it. The bit is set only between those two hooks.
 *
 * Hairpin (a container to its own published port) is bridged DNAT back out of the port the
 * frame came in by, which a bridge does only for ports in hairpin mode (IFLA_BRPORT_MODE):
 * that is a veth setting for apply, not a rule.
 */

import type { NftCommand } from '../kernel/nft.js';
import { sha256hex } from '../model/names.js';
import type { NftState } from '../model/state.js';

export const FAMILY = 'inet';
/** Mark bit the inet forward chain sets on DNAT'd bridged frames for the bridge chain (see above). */
export const DNAT_BRIDGED_MARK = 0x08000000;
export const BRIDGE_FAMILY = 'bridge';

type NftType = 'ifname' | 'ipv4_addr' | 'ipv6_addr' | 'inet_proto' | 'inet_service';

export interface SetDef {
  readonly name: string;
  readonly family: 'inet' | 'bridge';
  /** Key type: one, or a concatenation. */
  readonly key: readonly NftType[];
  /** Map value type (absent: a plain set). */
  readonly value?: NftType;
  readonly interval?: boolean;
}

const set = (name: string, key: NftType[], extra: Partial<SetDef> = {}): SetDef => ({
  name,
  family: 'inet',
  key,
  ...extra,
});
const A4: NftType = 'ipv4_addr';
const A6: NftType = 'ipv6_addr';
const PP: NftType[] = ['inet_proto', 'inet_service'];

export const SETS: readonly SetDef[] = [
  set('bridges', ['ifname']),
  set('samebridge', ['ifname', 'ifname']),
  set('internal', ['ifname']),
  set('unprotected4', ['ifname']),
  set('unprotected6', ['ifname']),
  set('subnets4', [A4], { interval: true }),
  set('subnets6', [A6], { interval: true }),
  set('masq4', [A4], { interval: true }),
  set('masq6', [A6], { interval: true }),
  set('snat4', [A4], { interval: true, value: A4 }),
  set('snat6', [A6], { interval: true, value: A6 }),
  set('dnat4_addr', [A4, ...PP], { value: A4 }),
  set('dnat4_port', [A4, ...PP], { value: 'inet_service' }),
  set('dnatany4_addr', PP, { value: A4 }),
  set('dnatany4_port', PP, { value: 'inet_service' }),
  set('dnat6_addr', [A6, ...PP], { value: A6 }),
  set('dnat6_port', [A6, ...PP], { value: 'inet_service' }),
  set('dnatany6_addr', PP, { value: A6 }),
  set('dnatany6_port', PP, { value: 'inet_service' }),
  set('published4', [A4, ...PP]),
  set('published6', [A6, ...PP]),
  set('routed4', [A4, ...PP]),
  set('routed6', [A6, ...PP]),
  set('routednet4', [A4], { interval: true }),
  set('routednet6', [A6], { interval: true }),
  { name: 'noicc_ports', family: 'bridge', key: ['ifname'] },
];

export const SET_NAMES = SETS.map((s) => s.name);
const setDef = (name: string) => SETS.find((s) => s.name === name);

// --- expression helpers (nft JSON) ---
const meta = (key: string) => ({ meta: { key } });
const pl = (protocol: string, field: string) => ({ payload: { protocol, field } });
const match = (left: unknown, right: unknown, op = '==') => ({ match: { op, left, right } });
const concat = (...parts: unknown[]) => ({ concat: parts });
const l4 = meta('l4proto');
const dport = pl('th', 'dport');
const fibLocal = match({ fib: { result: 'type', flags: ['daddr'] } }, 'local');
const ACCEPT = { accept: null };
const DROP = { drop: null };
const MASQ = { masquerade: null };

function dnat(fam: 'ip' | 'ip6', keyParts: unknown[], addrMap: string, portMap: string) {
  const key = concat(...keyParts);
  return {
    dnat: {
      family: fam,
      addr: { map: { key, data: `@${addrMap}` } },
      port: { map: { key, data: `@${portMap}` } },
    },
  };
}

interface ChainDef {
  readonly family: 'inet' | 'bridge';
  readonly name: string;
  readonly base?: { type: string; hook: string; prio: number; policy: string };
  readonly rules: readonly unknown[][];
}

function familyRules(v: '4' | '6') {
  const fam = v === '4' ? 'ip' : 'ip6';
  return {
    dnat: [
      ...(v === '6'
        ? [[match(pl('ip6', 'saddr'), { prefix: { addr: 'fe80::', len: 10 } }), { return: null }]]
        : []),
      [dnat(fam, [pl(fam, 'daddr'), l4, dport], `dnat${v}_addr`, `dnat${v}_port`)],
      [dnat(fam, [l4, dport], `dnatany${v}_addr`, `dnatany${v}_port`)],
    ],
    forward: [
      [
        match(meta('oifname'), '@bridges'),
        match({ ct: { key: 'status' } }, 'dnat', 'in'),
        match(concat(pl(fam, 'daddr'), l4, dport), `@published${v}`),
        ACCEPT,
      ],
      [match(meta('oifname'), '@bridges'), match(concat(pl(fam, 'daddr'), l4, dport), `@routed${v}`), ACCEPT],
      [
        match(meta('oifname'), '@bridges'),
        match(pl(fam, 'daddr'), `@routednet${v}`),
        match(l4, v === '4' ? 'icmp' : 'ipv6-icmp'),
        ACCEPT,
      ],
    ],
    postrouting: [
      [
        match(meta('oifname'), '@bridges'),
        match({ ct: { key: 'status' } }, 'dnat', 'in'),
        match(pl(fam, 'saddr'), `@subnets${v}`),
        MASQ,
      ],
      ...(v === '4'
        ? [
            [
              match(meta('oifname'), '@bridges'),
              match(pl(fam, 'saddr'), { prefix: { addr: '127.0.0.0', len: 8 } }),
              MASQ,
            ],
          ]
        : []),
      [
        match(meta('oifname'), '@bridges', '!='),
        { snat: { family: fam, addr: { map: { key: pl(fam, 'saddr'), data: `@snat${v}` } } } },
      ],
      [match(meta('oifname'), '@bridges', '!='), match(pl(fam, 'saddr'), `@masq${v}`), MASQ],
    ],
  };
}

const F4 = familyRules('4');
const F6 = familyRules('6');

export const CHAINS: readonly ChainDef[] = [
  {
    family: 'inet',
    name: 'raw-prerouting',
    base: { type: 'filter', hook: 'prerouting', prio: -300, policy: 'accept' },
    rules: [
      [
        match(meta('iifname'), 'lo', '!='),
        match(pl('ip', 'daddr'), { prefix: { addr: '127.0.0.0', len: 8 } }),
        DROP,
      ],
      [match(meta('iifname'), 'lo', '!='), match(pl('ip6', 'daddr'), '::1'), DROP],
    ],
  },
  { family: 'inet', name: 'published', rules: [...F4.dnat, ...F6.dnat] },
  {
    family: 'inet',
    name: 'nat-prerouting',
    base: { type: 'nat', hook: 'prerouting', prio: -100, policy: 'accept' },
    rules: [
      // The embedded resolver (src/dns) listens on port 53 of user networks' gateways.
      [
        match(meta('iifname'), '@bridges'),
        match(l4, { set: ['tcp', 'udp'] }),
        match(dport, 53),
        match({ fib: { result: 'type', flags: ['daddr', 'iif'] } }, 'local'),
        { return: null },
      ],
      [fibLocal, { jump: { target: 'published' } }],
    ],
  },
  {
    family: 'inet',
    name: 'nat-output',
    base: { type: 'nat', hook: 'output', prio: -100, policy: 'accept' },
    rules: [
      [match(pl('ip6', 'daddr'), '::1'), { return: null }],
      [fibLocal, { jump: { target: 'published' } }],
    ],
  },
  {
    family: 'inet',
    name: 'filter-forward',
    base: { type: 'filter', hook: 'forward', prio: 0, policy: 'accept' },
    rules: [
      [
        match(concat(meta('iifname'), meta('oifname')), '@samebridge'),
        match({ ct: { key: 'status' } }, 'dnat', 'in'),
        { mangle: { key: meta('mark'), value: { '|': [meta('mark'), DNAT_BRIDGED_MARK] } } },
      ],
      [match({ ct: { key: 'state' } }, ['established', 'related'], 'in'), ACCEPT],
      [match(concat(meta('iifname'), meta('oifname')), '@samebridge'), ACCEPT],
      [match(meta('iifname'), '@internal'), DROP],
      [match(meta('oifname'), '@internal'), DROP],
      ...F4.forward,
      ...F6.forward,
      [match(meta('nfproto'), 'ipv4'), match(meta('oifname'), '@unprotected4'), ACCEPT],
      [match(meta('nfproto'), 'ipv6'), match(meta('oifname'), '@unprotected6'), ACCEPT],
      [match(meta('oifname'), '@bridges'), DROP],
    ],
  },
  {
    family: 'inet',
    name: 'nat-postrouting',
    base: { type: 'nat', hook: 'postrouting', prio: 100, policy: 'accept' },
    rules: [...F4.postrouting, ...F6.postrouting],
  },
  {
    family: 'bridge',
    name: 'forward',
    // After br_netfilter's forward hook (priority 0), which runs the inet forward chain.
    base: { type: 'filter', hook: 'forward', prio: 100, policy: 'accept' },
    rules: [
      [
        match({ '&': [meta('mark'), DNAT_BRIDGED_MARK] }, 0, '!='),
        { mangle: { key: meta('mark'), value: { '&': [meta('mark'), ~DNAT_BRIDGED_MARK >>> 0] } } },
        ACCEPT,
      ],
      [match(meta('iifname'), '@noicc_ports'), match(meta('oifname'), '@noicc_ports'), DROP],
    ],
  },
];

const SKELETON_HASH = sha256hex(JSON.stringify({ SETS, CHAINS })).slice(0, 12);
export const MARKER_CHAIN = `skeleton-${SKELETON_HASH}`;

/** The skeleton's fingerprint: the marker chain plus the rule count of each chain. */
export function skeletonFingerprint(): string {
  return [MARKER_CHAIN, ...CHAINS.map((c) => `${c.family}/${c.name}:${c.rules.length}`)].join(' ');
}

/** Commands that create both tables' skeletons (tables included, no elements). */
export function skeletonCommands(table: string): NftCommand[] {
  const cmds: NftCommand[] = [];
  for (const family of [FAMILY, BRIDGE_FAMILY]) cmds.push({ add: { table: { family, name: table } } });
  for (const s of SETS) {
    const kind = s.value ? 'map' : 'set';
    cmds.push({
      add: {
        [kind]: {
          family: s.family,
          table,
          name: s.name,
          type: s.key.length === 1 ? s.key[0] : s.key,
          ...(s.value ? { map: s.value } : {}),
          ...(s.interval ? { flags: ['interval'] } : {}),
        },
      },
    });
  }
  cmds.push({ add: { chain: { family: FAMILY, table, name: MARKER_CHAIN } } });
  // Regular chains first: base chains jump to them.
  const ordered = [...CHAINS].sort((a, b) => Number(!!a.base) - Number(!!b.base));
  for (const c of ordered) {
    cmds.push({ add: { chain: { family: c.family, table, name: c.name, ...(c.base ?? {}) } } });
    for (const expr of c.rules)
      cmds.push({ add: { rule: { family: c.family, table, chain: c.name, expr } } });
  }
  return cmds;
}

/** Commands that delete both tables (each only if present: `deleteBridge` false skips it). */
export function deleteTablesCommands(
  table: string,
  present: { inet: boolean; bridge: boolean },
): NftCommand[] {
  const out: NftCommand[] = [];
  if (present.inet) out.push({ delete: { table: { family: FAMILY, name: table } } });
  if (present.bridge) out.push({ delete: { table: { family: BRIDGE_FAMILY, name: table } } });
  return out;
}

// --- element keys: "a . b . c" for concatenations, "key : value" for maps ---

function partJson(t: NftType, s: string): unknown {
  if ((t === 'ipv4_addr' || t === 'ipv6_addr') && s.includes('/')) {
    const [addr, len] = s.split('/');
    return { prefix: { addr, len: Number(len) } };
  }
  if (t === 'inet_service') return Number(s);
  return s;
}

/** JSON form of an element key string for set `name`. */
export function elementJson(name: string, key: string): unknown {
  const def = setDef(name);
  if (!def) throw new Error(`unknown nft set ${name}`);
  const [k, v] = def.value ? key.split(' : ') : [key, undefined];
  const parts = k!.split(' . ');
  const kj =
    parts.length === 1
      ? partJson(def.key[0]!, parts[0]!)
      : concat(...parts.map((p, i) => partJson(def.key[i]!, p)));
  return def.value ? [kj, partJson(def.value, v!)] : kj;
}

/** One part of an element key; `t` is the part's type, `interval` whether the set has the flag. */
function partKey(t: NftType | undefined, interval: boolean | undefined, e: unknown): string {
  if (typeof e === 'number') return String(e);
  if (typeof e === 'string') {
    if (interval && (t === 'ipv4_addr' || t === 'ipv6_addr') && !e.includes('/'))
      return `${e}/${t === 'ipv6_addr' ? 128 : 32}`;
    return e;
  }
  const o = e as { prefix?: { addr: string; len: number }; range?: [string, string] };
  if (o.prefix) return `${o.prefix.addr}/${o.prefix.len}`;
  return JSON.stringify(e);
}

function keyString(def: SetDef, e: unknown): string {
  const o = e as { concat?: unknown[]; elem?: { val: unknown } };
  if (o && typeof o === 'object' && 'elem' in o && o.elem) return keyString(def, o.elem.val);
  if (o && typeof o === 'object' && Array.isArray(o.concat))
    return o.concat.map((p, i) => partKey(def.key[i], def.interval, p)).join(' . ');
  return partKey(def.key[0], def.interval, e);
}

/** Element key string from its `nft -j list` form. */
export function elementKey(def: SetDef, e: unknown): string {
  if (def.value && Array.isArray(e)) {
    return `${keyString(def, e[0])} : ${partKey(def.value, false, e[1])}`;
  }
  return keyString(def, e);
}

/** NftState from the `nft -j list table` output of both tables (null: absent). */
export function parseNft(inet: NftCommand[] | null, bridge: NftCommand[] | null): NftState {
  if (!inet && !bridge) return { sets: {} };
  const sets: Record<string, string[]> = {};
  const chains: string[] = [];
  const ruleCount: Record<string, number> = {};
  for (const [family, listing] of [
    [FAMILY, inet],
    [BRIDGE_FAMILY, bridge],
  ] as const) {
    for (const o of listing ?? []) {
      const s = (o.set ?? o.map) as { name: string; elem?: unknown[] } | undefined;
      if (s) {
        const def = setDef(s.name);
        if (def && def.family === family) sets[s.name] = (s.elem ?? []).map((e) => elementKey(def, e)).sort();
      } else if ('chain' in o) {
        chains.push(`${family}/${(o.chain as { name: string }).name}`);
      } else if ('rule' in o) {
        const c = `${family}/${(o.rule as { chain: string }).chain}`;
        ruleCount[c] = (ruleCount[c] ?? 0) + 1;
      }
    }
  }
  const marker =
    chains.find((c) => c.startsWith(`${FAMILY}/skeleton-`))?.slice(FAMILY.length + 1) ?? 'skeleton-none';
  const skeleton = [
    marker,
    ...CHAINS.map((c) => {
      const id = `${c.family}/${c.name}`;
      return `${id}:${chains.includes(id) ? (ruleCount[id] ?? 0) : 'missing'}`;
    }),
  ].join(' ');
  for (const d of SETS) if (!(d.name in sets)) sets[d.name] = [];
  // Only the inet table carries the marker; a lone bridge table reads as a damaged skeleton.
  return {
    skeleton: inet ? skeleton : `skeleton-partial ${skeleton}`,
    sets,
    tables: { inet: !!inet, bridge: !!bridge },
  };
}
