/**
 * Wire handling of one DNS message, without sockets: decode, check the source, answer
 * from the local records or say "forward". The server does the I/O around it.
 *
 * dns-packet ignores an `rcode` field when encoding, so the rcode goes into the low 4
 * bits of `flags` (KERNEL-NOTES, DNS).
 */

import type { Answer, DecodedPacket, Packet, Question } from 'dns-packet';
import dnsPacket from 'dns-packet';
import { inSubnets, parseIpStrict } from './ip.js';
import { type DnsIndex, resolveLocal, upstreamsFor } from './records.js';

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
export type RcodeName = keyof typeof RCODE;

const QR = 0x8000;
const AA = 0x0400;
const TC = 0x0200;
const RD = 0x0100;
const RA = 0x0080;
const CD = 0x0010;

/** Classic DNS-over-UDP limit without EDNS (RFC 1035). */
export const UDP_DEFAULT_LIMIT = 512;
/** The largest EDNS UDP size we honour, and advertise (DNS flag day 2020). */
export const UDP_MAX_LIMIT = 1232;

/** Everything {@link handlePacket} needs besides the bytes. */
export interface PacketContext {
  /** Current compiled records (swapped on reload). */
  index: DnsIndex;
  /** Name of the network whose listener received the packet. */
  network: string;
  transport: 'udp' | 'tcp';
  /** Round-robin offset; omitted → resolveLocal's own counter. */
  rotation?: number;
}

export type PacketResult =
  /** Send nothing (malformed, a response, an unknown network). */
  | { action: 'drop'; reason: string }
  /** Send `packet` back to the client. `local` is true for answers from tether's records. */
  | { action: 'reply'; packet: Buffer; rcode: RcodeName; local: boolean }
  /**
   * Forward `query` (the client's bytes) upstream; reply with the upstream's answer under
   * the client's `id`, or with `servfail` when no upstream answers. For UDP clients an
   * upstream answer longer than `udpLimit` must not be sent as is.
   */
  | {
      action: 'forward';
      query: Buffer;
      id: number;
      udpLimit: number;
      servfail: Buffer;
      name: string;
      type: string;
    };

/** Reads the rcode of an encoded message (0 for anything shorter than a header). */
export function rcodeOf(buf: Buffer): number {
  return buf.length >= 4 ? buf[3]! & 0x0f : 0;
}

/** Whether an encoded message has the TC (truncated) bit. */
export function isTruncated(buf: Buffer): boolean {
  return buf.length >= 4 && (buf[2]! & 0x02) !== 0;
}

/** A copy of `buf` with its 16-bit message id replaced. */
export function withId(buf: Buffer, id: number): Buffer {
  const out = Buffer.from(buf);
  if (out.length >= 2) out.writeUInt16BE(id & 0xffff, 0);
  return out;
}

/**
 * The bytes of the first question (name, type, class) of a message, or null. Replies
 * echo these bytes rather than a re-encoding: dns-packet decodes labels as UTF-8, so
 * odd bytes would not survive a round trip and the client would reject the reply.
 */
export function rawQuestion(buf: Buffer): Buffer | null {
  if (buf.length < 12 || buf.readUInt16BE(4) < 1) return null;
  let off = 12;
  for (;;) {
    if (off >= buf.length) return null;
    const len = buf[off]!;
    if (len === 0) {
      off += 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      off += 2;
      break;
    }
    if ((len & 0xc0) !== 0) return null;
    off += 1 + len;
  }
  return off + 4 <= buf.length ? buf.subarray(12, off + 4) : null;
}

interface ReplyShape {
  id: number;
  reqFlags: number;
  /** The query's question bytes, echoed; null → no question section. */
  question: Buffer | null;
  rcode: number;
  authoritative: boolean;
  answers?: Answer[];
  edns: boolean;
  udpLimit: number;
}

const OPT_RECORD: Answer = {
  type: 'OPT',
  name: '.',
  udpPayloadSize: 0, // set below
  extendedRcode: 0,
  ednsVersion: 0,
  flags: 0,
  flag_do: false,
  options: [],
};

/** Encodes a reply: header + echoed question + answers (+ OPT). Throws only on bad answers. */
function encodeReply(r: ReplyShape): Buffer {
  const answers = r.answers ?? [];
  const additionals: Answer[] = r.edns ? [{ ...OPT_RECORD, udpPayloadSize: UDP_MAX_LIMIT } as Answer] : [];
  const baseFlags = (r.reqFlags & (RD | CD)) | RA | (r.authoritative ? AA : 0) | (r.rcode & 0x0f);
  const question = r.question ?? Buffer.alloc(0);
  const build = (n: number, tc: boolean): Buffer => {
    const p: Packet = {
      type: 'response',
      id: r.id,
      flags: baseFlags | (tc ? TC : 0),
      questions: [],
      answers: answers.slice(0, n),
      additionals,
    };
    const body = dnsPacket.encode(p);
    // dns-packet never compresses names, so splicing the question in moves no offsets.
    if (r.question) body.writeUInt16BE(1, 4);
    return Buffer.concat([body.subarray(0, 12), question, body.subarray(12)]);
  };
  const out = build(answers.length, false);
  if (out.length <= r.udpLimit) return out;
  // UDP: keep as many whole answers as fit and set TC (the client retries over TCP).
  let lo = 0;
  let hi = answers.length - 1;
  let best = build(0, true);
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const b = build(mid, true);
    if (b.length <= r.udpLimit) {
      best = b;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return best;
}

function udpLimitOf(q: DecodedPacket, transport: 'udp' | 'tcp'): { limit: number; edns: boolean } {
  const opt = (q.additionals ?? []).find((a) => a && a.type === 'OPT') as
    | { udpPayloadSize?: number }
    | undefined;
  const edns = opt !== undefined;
  if (transport === 'tcp') return { limit: 65535, edns };
  const size = typeof opt?.udpPayloadSize === 'number' ? opt.udpPayloadSize : UDP_DEFAULT_LIMIT;
  return { limit: Math.max(UDP_DEFAULT_LIMIT, Math.min(size, UDP_MAX_LIMIT)), edns };
}

/**
 * Handles one DNS message received by a listener. Pure apart from the round-robin
 * counter; never throws (any internal error becomes a drop).
 *
 * - Shorter than a header, undecodable (malformed), or a response (QR set) → drop,
 *   silently: answering garbage only helps reflection and loops.
 * - Source outside the network's subnets → REFUSED.
 * - Opcode other than QUERY → NOTIMP; not exactly one question → FORMERR.
 * - Then {@link resolveLocal}: local answer (authoritative, truncated to the client's
 *   UDP size with TC), NXDOMAIN, or forward (SERVFAIL at once when there are no upstreams).
 */
export function handlePacket(buf: Buffer, source: string, ctx: PacketContext): PacketResult {
  try {
    return handle(buf, source, ctx);
  } catch (e) {
    return { action: 'drop', reason: `internal error: ${e instanceof Error ? e.message : String(e)}` };
  }
}

function handle(buf: Buffer, source: string, ctx: PacketContext): PacketResult {
  if (!Buffer.isBuffer(buf) || buf.length < 12)
    return { action: 'drop', reason: 'shorter than a DNS header' };
  if (buf.length > 65535) return { action: 'drop', reason: 'longer than a DNS message' };
  if ((buf.readUInt16BE(2) & QR) !== 0) return { action: 'drop', reason: 'a response, not a query' };

  const net = ctx.index.networks.get(ctx.network);
  if (!net) return { action: 'drop', reason: `no network ${ctx.network}` };
  const src = parseIpStrict(source);
  if (!src) return { action: 'drop', reason: 'unparsable source address' };
  const allowed = inSubnets(src, net.subnets);

  let q: DecodedPacket;
  try {
    q = dnsPacket.decode(buf);
  } catch {
    return { action: 'drop', reason: 'malformed' };
  }
  const questions = (q.questions ?? []) as Question[];
  const { limit: udpLimit, edns } = udpLimitOf(q, ctx.transport);
  const reqFlags = buf.readUInt16BE(2);
  const reply = (rcode: RcodeName, answers?: Answer[], authoritative = false): PacketResult => ({
    action: 'reply',
    packet: encodeReply({
      id: q.id ?? 0,
      reqFlags,
      question: questions.length === 1 ? rawQuestion(buf) : null,
      rcode: RCODE[rcode],
      authoritative,
      answers,
      edns,
      udpLimit,
    }),
    rcode,
    local: true,
  });

  if (!allowed) return reply('REFUSED');
  const opcode = (reqFlags >> 11) & 0x0f;
  if (opcode !== 0) return reply('NOTIMP');
  if (questions.length !== 1) return reply('FORMERR');
  const question = questions[0]!;
  const name = typeof question.name === 'string' ? question.name : '';
  const type = String(question.type);
  const klass = question.class ?? 'IN';

  if (klass === 'IN' || klass === 'ANY') {
    const r = resolveLocal(
      ctx.index,
      { name, type, source, network: ctx.network },
      { rotation: ctx.rotation },
    );
    if (r.kind === 'answer') return reply('NOERROR', r.records, true);
    if (r.kind === 'nxdomain') return reply('NXDOMAIN', undefined, true);
  }
  if (upstreamsFor(ctx.index, source).length === 0) return reply('SERVFAIL');
  const servfail = (reply('SERVFAIL') as { packet: Buffer }).packet;
  return { action: 'forward', query: buf, id: q.id ?? 0, udpLimit, servfail, name, type };
}
