/**
 * The elements each nft set and map should hold for a resolved world. Pure.
 * Key strings follow nft's text: "a . b . c" for concatenations, "key : value" for maps.
 */
import { ObjectMemo } from '../model/intern.js';
import { canonicalIp } from '../model/ip.js';
import type { Resolved, ResolvedContainer, ResolvedNetwork } from '../model/resolved.js';
import { SETS } from './rules.js';

const isNat = (mode: string) => mode === 'nat' || mode === 'nat-unprotected';

export function desiredSets(r: Resolved, usedBridges: ReadonlySet<string>): Record<string, string[]> {
  const sets: Record<string, string[]> = Object.fromEntries(SETS.map((s) => [s.name, [] as string[]]));
  const add = (name: string, key: string) => sets[name]!.push(key);
  for (const n of Object.values(r.networks)) {
    if (!usedBridges.has(n.bridge)) continue;
    const s = n.spec;
    add('bridges', n.bridge);
    add('samebridge', `${n.bridge} . ${n.bridge}`);
    if (s.internal) add('internal', n.bridge);
    for (const [v, fc, mode, hostIp] of [
      ['4', n.v4, s.gatewayModeV4, s.hostIpv4],
      ['6', n.v6, s.gatewayModeV6, s.hostIpv6],
    ] as const) {
      if (!fc) continue;
      add(`subnets${v}`, fc.subnet);
      if (s.internal) continue;
      if (mode === 'nat-unprotected') add(`unprotected${v}`, n.bridge);
      if (mode === 'routed') add(`routednet${v}`, fc.subnet);
      if (s.masquerade && isNat(mode)) {
        if (hostIp) add(`snat${v}`, `${fc.subnet} : ${canonicalIp(hostIp)}`);
        else add(`masq${v}`, fc.subnet);
      }
    }
  }
  for (const c of Object.values(r.containers)) {
    const nets = c.endpoints.map((e) => r.networks[e.network]!);
    for (const [set, key] of parts.of(c, nets, () => containerElements(c, nets))) add(set, key);
  }
  for (const k of Object.keys(sets)) sets[k] = [...new Set(sets[k])].sort();
  return sets;
}

/**
 * One container's elements, remembered per resolved container (kept by resolve() while
 * unchanged) and the networks it is on.
 */
const parts = new ObjectMemo<ResolvedContainer, readonly [string, string][]>();

function containerElements(c: ResolvedContainer, nets: readonly ResolvedNetwork[]): [string, string][] {
  const out: [string, string][] = [];
  const add = (name: string, key: string) => out.push([name, key]);
  c.endpoints.forEach((e, i) => {
    if (!nets[i]!.spec.icc) add('noicc_ports', e.hostVeth);
  });
  for (const p of c.ports) {
    const v = String(p.family);
    const cip = canonicalIp(p.containerIp);
    const inner = `${cip} . ${p.protocol} . ${p.containerPort}`;
    if (p.mode === 'routed') {
      add(`routed${v}`, inner);
      continue;
    }
    // No host port: nothing to NAT. proxy: served in userland (IPv6 → an IPv4-only
    // container). ::1: IPv6 loopback cannot be DNAT'd out of `lo`; the userland proxy
    // serves it (nat-output lets ::1 through untouched).
    if (!p.hostPort || p.proxy || p.hostIp === '::1') continue;
    const any = p.hostIp === '0.0.0.0' || p.hostIp === '::';
    const key = any
      ? `${p.protocol} . ${p.hostPort}`
      : `${canonicalIp(p.hostIp)} . ${p.protocol} . ${p.hostPort}`;
    const map = any ? `dnatany${v}` : `dnat${v}`;
    add(`${map}_addr`, `${key} : ${cip}`);
    add(`${map}_port`, `${key} : ${p.containerPort}`);
    add(`published${v}`, inner);
  }
  return out;
}
