/**
 * Small, strict IP helpers for the DNS module. Kept local to `src/dns/` so the resolver
 * depends on nothing but ipaddr.js: one canonical string per address (IPv4 dotted quad,
 * IPv6 RFC 5952, IPv4-mapped IPv6 folded to IPv4), and subnet containment.
 */
import ipaddr from 'ipaddr.js';

export type ParsedIp = ipaddr.IPv4 | ipaddr.IPv6;
export type ParsedCidr = [ParsedIp, number];

/**
 * Parses an address written as a dotted quad or any IPv6 form (a `%zone` suffix is
 * ignored). IPv4-mapped IPv6 (`::ffff:a.b.c.d`, as dual-stack sockets report IPv4
 * peers) becomes IPv4. Returns null for anything else, including ipaddr.js's lenient
 * IPv4 spellings such as `127.1` or `0x7f.0.0.1`.
 */
export function parseIpStrict(s: string): ParsedIp | null {
  if (typeof s !== 'string' || s.length === 0 || s.length > 64) return null;
  const bare = s.includes('%') ? s.slice(0, s.indexOf('%')) : s;
  if (bare.includes(':')) {
    if (!ipaddr.IPv6.isValid(bare)) return null;
    const v6 = ipaddr.IPv6.parse(bare);
    return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
  }
  if (!ipaddr.IPv4.isValidFourPartDecimal(bare)) return null;
  return ipaddr.IPv4.parse(bare);
}

/** The canonical text of an address, or null when it does not parse (see {@link parseIpStrict}). */
export function canonicalIp(s: string): string | null {
  const p = parseIpStrict(s);
  return p ? p.toString() : null;
}

/** Parses `addr/len` (a bare address counts as a host route). Null when invalid. */
export function parseCidrStrict(s: string): ParsedCidr | null {
  if (typeof s !== 'string') return null;
  const slash = s.indexOf('/');
  const addr = parseIpStrict(slash < 0 ? s : s.slice(0, slash));
  if (!addr) return null;
  const max = addr.kind() === 'ipv4' ? 32 : 128;
  if (slash < 0) return [addr, max];
  const lenText = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(lenText)) return null;
  const len = Number(lenText);
  // An IPv4-mapped IPv6 prefix folded to IPv4 keeps only the IPv4 part of its length.
  if (addr.kind() === 'ipv4' && s.slice(0, slash).includes(':')) {
    return len >= 96 && len <= 128 ? [addr, len - 96] : null;
  }
  return len <= max ? [addr, len] : null;
}

/** Whether `ip` lies in one of `subnets` (same family only). */
export function inSubnets(ip: ParsedIp, subnets: readonly ParsedCidr[]): boolean {
  for (const c of subnets) {
    if (c[0].kind() === ip.kind() && ip.match(c)) return true;
  }
  return false;
}
