/**
 * Minimal rtnetlink message decoders: a link, address or route message (the payload after
 * the nlmsghdr) into the few fields tether reads. The `netlink` package's generic parser
 * decodes every attribute (statistics, per-family blocks, VF info) and dominated the cost
 * of observing 1000 containers; this walks the attribute list once and keeps what it needs.
 * Used for dump replies and for notifications alike (they are the same messages).
 *
 * Layouts (linux/rtnetlink.h, linux/if_link.h, linux/if_addr.h):
 *   ifinfomsg  family u8, pad u8, type u16, index i32, flags u32, change u32   (16 bytes)
 *   ifaddrmsg  family u8, prefixlen u8, flags u8, scope u8, index u32           (8 bytes)
 *   rtmsg      family u8, dst_len u8, src_len u8, tos u8, table u8, protocol u8,
 *              scope u8, type u8, flags u32                                      (12 bytes)
 *   rtattr     len u16, type u16, value, padded to 4 bytes
 */
import type { NlAddr, NlLink, NlRoute } from './netlink.js';

const AF_INET = 2;
const AF_INET6 = 10;
const IFF_UP = 0x1;
const NLA_TYPE_MASK = 0x3fff; // without NLA_F_NESTED / NLA_F_NET_BYTEORDER

/** One attribute, encoded: len u16, type u16, value, padded to 4 bytes (for requests). */
export function rtattr(type: number, value: Buffer): Buffer {
  const out = Buffer.alloc(4 + ((value.length + 3) & ~3));
  out.writeUInt16LE(4 + value.length, 0);
  out.writeUInt16LE(type, 2);
  value.copy(out, 4);
  return out;
}

/** A netlink message as a listener receives it: its type and its payload (after the nlmsghdr). */
export interface RtMessage {
  readonly type: number;
  readonly data: Buffer;
}

/** Calls `fn(type, start, end)` for each attribute in buf[from, to). */
export function eachAttr(
  buf: Buffer,
  from: number,
  to: number,
  fn: (type: number, s: number, e: number) => void,
) {
  let off = from;
  while (off + 4 <= to) {
    const len = buf.readUInt16LE(off);
    if (len < 4 || off + len > to) break;
    fn(buf.readUInt16LE(off + 2) & NLA_TYPE_MASK, off + 4, off + len);
    off += (len + 3) & ~3;
  }
}

/** A NUL-terminated string in buf[s, e). */
export function cString(buf: Buffer, s: number, e: number): string {
  let end = s;
  while (end < e && buf[end] !== 0) end++;
  return buf.toString('utf8', s, end);
}

const hex2 = (b: number) => (b < 16 ? '0' : '') + b.toString(16);

function mac(buf: Buffer, s: number, e: number): string | undefined {
  if (e - s !== 6) return undefined;
  let out = hex2(buf[s]!);
  for (let i = s + 1; i < e; i++) out += `:${hex2(buf[i]!)}`;
  return out;
}

/** An address in its usual text form (IPv6 compressed as inet_ntop does). */
export function ipText(buf: Buffer, s: number, e: number): string {
  if (e - s === 4) return `${buf[s]}.${buf[s + 1]}.${buf[s + 2]}.${buf[s + 3]}`;
  const words: number[] = [];
  for (let i = s; i + 1 < e; i += 2) words.push(buf.readUInt16BE(i));
  // Longest run of two or more zero words becomes "::" (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < words.length; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < words.length && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(':');
  if (best < 0) return hex(words);
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

/** RTM_NEWLINK / RTM_DELLINK payload; undefined for per-family (AF_BRIDGE …) link messages. */
export function parseLink(buf: Buffer): NlLink | undefined {
  if (buf.length < 16 || buf[0] !== 0) return undefined;
  const link: NlLink = { index: buf.readInt32LE(4), name: '', up: (buf.readUInt32LE(8) & IFF_UP) !== 0 };
  eachAttr(buf, 16, buf.length, (t, s, e) => {
    switch (t) {
      case 1: // IFLA_ADDRESS
        link.mac = mac(buf, s, e);
        break;
      case 3: // IFLA_IFNAME
        link.name = cString(buf, s, e);
        break;
      case 4: // IFLA_MTU
        if (e - s >= 4) link.mtu = buf.readUInt32LE(s);
        break;
      case 10: // IFLA_MASTER
        if (e - s >= 4) link.master = buf.readUInt32LE(s) || undefined;
        break;
      case 18: // IFLA_LINKINFO → IFLA_INFO_KIND
        eachAttr(buf, s, e, (it, is, ie) => {
          if (it === 1) link.kind = cString(buf, is, ie);
        });
        break;
      case 20: // IFLA_IFALIAS
        link.alias = cString(buf, s, e) || undefined;
        break;
    }
  });
  return link;
}

/** RTM_NEWADDR / RTM_DELADDR payload. */
export function parseAddr(buf: Buffer): NlAddr | undefined {
  if (buf.length < 8) return undefined;
  const family = buf[0];
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  let local: string | undefined;
  let address: string | undefined;
  eachAttr(buf, 8, buf.length, (t, s, e) => {
    if (t === 1)
      address = ipText(buf, s, e); // IFA_ADDRESS
    else if (t === 2) local = ipText(buf, s, e); // IFA_LOCAL
  });
  const ip = local ?? address;
  if (!ip) return undefined;
  return {
    index: buf.readUInt32LE(4),
    family: family === AF_INET6 ? 6 : 4,
    cidr: `${ip}/${buf[1]}`,
    scope: buf[3]!,
  };
}

const SCOPES: Record<number, string> = {
  0: 'UNIVERSE',
  200: 'SITE',
  253: 'LINK',
  254: 'HOST',
  255: 'NOWHERE',
};
const TYPES = [
  'UNSPEC',
  'UNICAST',
  'LOCAL',
  'BROADCAST',
  'ANYCAST',
  'MULTICAST',
  'BLACKHOLE',
  'UNREACHABLE',
  'PROHIBIT',
  'THROW',
  'NAT',
  'XRESOLVE',
];
const PROTOCOLS = ['UNSPEC', 'REDIRECT', 'KERNEL', 'BOOT', 'STATIC'];

/** RTM_NEWROUTE / RTM_DELROUTE payload, IPv4 and IPv6 only. */
export function parseRoute(buf: Buffer): NlRoute | undefined {
  if (buf.length < 12) return undefined;
  const family = buf[0];
  if (family !== AF_INET && family !== AF_INET6) return undefined;
  const route: NlRoute = {
    family: family === AF_INET6 ? 6 : 4,
    dstLen: buf[1]!,
    scope: SCOPES[buf[6]!] ?? String(buf[6]),
    protocol: PROTOCOLS[buf[5]!] ?? String(buf[5]),
    table: buf[4]!,
    type: TYPES[buf[7]!] ?? String(buf[7]),
  };
  eachAttr(buf, 12, buf.length, (t, s, e) => {
    switch (t) {
      case 1: // RTA_DST
        route.dst = ipText(buf, s, e);
        break;
      case 4: // RTA_OIF
        if (e - s >= 4) route.oif = buf.readUInt32LE(s);
        break;
      case 5: // RTA_GATEWAY
        route.gateway = ipText(buf, s, e);
        break;
      case 6: // RTA_PRIORITY
        if (e - s >= 4) route.metric = buf.readUInt32LE(s);
        break;
      case 15: // RTA_TABLE
        if (e - s >= 4) route.table = buf.readUInt32LE(s);
        break;
    }
  });
  return route;
}

/**
 * A notification's object, decoded once: the live observer and the daemon's kernel trigger
 * look at the same host notifications. (A message is one kind: link, address or route.)
 */
const decoded = new WeakMap<RtMessage, NlLink | NlAddr | NlRoute | undefined>();
function decodeOnce<T extends NlLink | NlAddr | NlRoute>(m: RtMessage, parse: (b: Buffer) => T | undefined) {
  if (decoded.has(m)) return decoded.get(m) as T | undefined;
  const x = parse(m.data);
  decoded.set(m, x);
  return x;
}
export const linkOf = (m: RtMessage) => decodeOnce(m, parseLink);
export const addrOf = (m: RtMessage) => decodeOnce(m, parseAddr);
export const routeOf = (m: RtMessage) => decodeOnce(m, parseRoute);
