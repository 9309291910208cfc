/**
 * Pure IP and CIDR helpers over BigInt, for both families. One canonical string form:
 * IPv4 dotted quad, IPv6 RFC 5952 (via ipaddr.js), CIDR "addr/len" with host bits as given.
 */
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;

export interface Cidr {
  readonly family: Family;
  /** The address as written (may have host bits set, e.g. an interface address). */
  readonly addr: bigint;
  readonly len: number;
}

const BITS = { 4: 32, 6: 128 } as const;

export function familyOf(ip: string): Family {
  return ip.includes(':') ? 6 : 4;
}

/**
 * Dotted-quad decimal without leading zeros: the only IPv4 form tether accepts
 * (ipaddr.js's isValidFourPartDecimal), read here without ipaddr.js's general parser,
 * which also takes octal, hex and shortened forms. Octets still need a range check.
 */
const DOTTED_QUAD = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

/** The 32-bit value of a four-part decimal IPv4 address, or undefined for any other string. */
function dottedQuad(ip: string): number | undefined {
  const m = DOTTED_QUAD.exec(ip);
  if (!m) return undefined;
  const a = Number(m[1]);
  const b = Number(m[2]);
  const c = Number(m[3]);
  const d = Number(m[4]);
  if (a > 255 || b > 255 || c > 255 || d > 255) return undefined;
  return a * 0x1000000 + b * 0x10000 + c * 0x100 + d;
}

export function isValidIp(ip: string): boolean {
  if (!ip.includes(':')) return dottedQuad(ip) !== undefined;
  return ipaddr.isValid(ip) && ipaddr.IPv6.isValid(ip);
}

export function parseIp(ip: string): bigint {
  const quad = dottedQuad(ip);
  if (quad !== undefined) return BigInt(quad);
  const a = ipaddr.parse(ip);
  let v = 0n;
  for (const b of a.toByteArray()) v = (v << 8n) | BigInt(b);
  return v;
}

export function formatIp(v: bigint, family: Family): string {
  if (family === 4) {
    const n = Number(v & 0xffffffffn);
    return `${n >>> 24}.${(n >>> 16) & 0xff}.${(n >>> 8) & 0xff}.${n & 0xff}`;
  }
  const n = 16;
  const bytes: number[] = [];
  for (let i = n - 1; i >= 0; i--) bytes.push(Number((v >> BigInt(i * 8)) & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}

export function canonicalIp(ip: string): string {
  return formatIp(parseIp(ip), familyOf(ip));
}

export function isValidCidr(s: string): boolean {
  const i = s.indexOf('/');
  if (i < 0) return false;
  const ip = s.slice(0, i);
  const len = Number(s.slice(i + 1));
  if (!isValidIp(ip) || !/^\d+$/.test(s.slice(i + 1))) return false;
  return len >= 0 && len <= BITS[familyOf(ip)];
}

export function parseCidr(s: string): Cidr {
  const [ip, len] = s.split('/');
  const family = familyOf(ip!);
  return { family, addr: parseIp(ip!), len: len === undefined ? BITS[family] : Number(len) };
}

export function formatCidr(c: Cidr): string {
  return `${formatIp(c.addr, c.family)}/${c.len}`;
}

function hostMask(c: { family: Family; len: number }): bigint {
  return (1n << BigInt(BITS[c.family] - c.len)) - 1n;
}

/** The network address of a CIDR (host bits cleared). */
export function networkOf(c: Cidr): Cidr {
  return { ...c, addr: c.addr & ~hostMask(c) };
}

export function canonicalCidr(s: string): string {
  return formatCidr(parseCidr(s));
}

/** "172.18.0.1/16" → "172.18.0.0/16". */
export function maskedCidr(s: string): string {
  return formatCidr(networkOf(parseCidr(s)));
}

export function firstAddr(c: Cidr): bigint {
  return c.addr & ~hostMask(c);
}

export function lastAddr(c: Cidr): bigint {
  return c.addr | hostMask(c);
}

export function contains(net: string | Cidr, ip: string | bigint): boolean {
  const c = typeof net === 'string' ? parseCidr(net) : net;
  if (typeof ip === 'string' && familyOf(ip) !== c.family) return false;
  const v = typeof ip === 'string' ? parseIp(ip) : ip;
  return v >= firstAddr(c) && v <= lastAddr(c);
}

export function overlaps(a: string | Cidr, b: string | Cidr): boolean {
  const x = typeof a === 'string' ? parseCidr(a) : a;
  const y = typeof b === 'string' ? parseCidr(b) : b;
  if (x.family !== y.family) return false;
  return firstAddr(x) <= lastAddr(y) && firstAddr(y) <= lastAddr(x);
}

/** The address part of "ip/len". */
export function addrOf(cidr: string): string {
  return cidr.split('/')[0]!;
}
