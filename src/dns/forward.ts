/**
 * Forwarding to upstream resolvers: one UDP or TCP exchange per attempt, each on its
 * own short-lived socket (a random source port per query), with a fresh random message
 * id checked on the way back. Nothing is cached.
 */
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import { isTruncated, RCODE, rcodeOf, withId } from './packet.js';
import type { Upstream } from './records.js';

export type ExchangeResult = { ok: true; response: Buffer } | { ok: false; error: string };

/** Options shared by the exchanges. */
export interface ExchangeOptions {
  timeoutMs: number;
  /** Aborts the exchange (resolver closing). */
  signal?: AbortSignal;
}

function validResponse(buf: Buffer, id: number): boolean {
  return buf.length >= 12 && buf.readUInt16BE(0) === id && (buf[2]! & 0x80) !== 0;
}

/**
 * Sends `query` to `up` over UDP from a connected socket and waits for a response with
 * the same (rewritten) id. Returns the response with the query's original id.
 */
export function udpExchange(query: Buffer, up: Upstream, opts: ExchangeOptions): Promise<ExchangeResult> {
  return new Promise((resolve) => {
    if (opts.signal?.aborted) return resolve({ ok: false, error: 'aborted' });
    const clientId = query.readUInt16BE(0);
    const id = randomInt(0, 0x10000);
    const wire = withId(query, id);
    const sock = dgram.createSocket(up.family === 4 ? 'udp4' : 'udp6');
    let done = false;
    const finish = (r: ExchangeResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      try {
        sock.close();
      } catch {
        // already closed
      }
      resolve(r);
    };
    const onAbort = (): void => finish({ ok: false, error: 'aborted' });
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }), opts.timeoutMs);
    opts.signal?.addEventListener('abort', onAbort);
    sock.on('error', (e) => finish({ ok: false, error: e.message }));
    sock.on('message', (msg) => {
      // A connected socket only hears from the upstream; still check the id.
      if (validResponse(msg, id)) finish({ ok: true, response: withId(msg, clientId) });
    });
    try {
      sock.connect(up.port, up.host, () => {
        // The exchange may have ended (timeout, abort) before connect completed: a send on
        // a closed socket throws from inside this callback, which would end the process.
        if (done) return;
        try {
          sock.send(wire, (err) => {
            if (err) finish({ ok: false, error: err.message });
          });
        } catch (e) {
          finish({ ok: false, error: e instanceof Error ? e.message : String(e) });
        }
      });
    } catch (e) {
      finish({ ok: false, error: e instanceof Error ? e.message : String(e) });
    }
  });
}

/** Sends `query` to `up` over TCP (2-byte length framing) and reads one response. */
export function tcpExchange(query: Buffer, up: Upstream, opts: ExchangeOptions): Promise<ExchangeResult> {
  return new Promise((resolve) => {
    if (opts.signal?.aborted) return resolve({ ok: false, error: 'aborted' });
    const clientId = query.readUInt16BE(0);
    const id = randomInt(0, 0x10000);
    const wire = withId(query, id);
    const framed = Buffer.alloc(2 + wire.length);
    framed.writeUInt16BE(wire.length, 0);
    wire.copy(framed, 2);
    let done = false;
    let buf: Buffer = Buffer.alloc(0);
    const sock = net.connect({ host: up.host, port: up.port });
    const finish = (r: ExchangeResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      sock.destroy();
      resolve(r);
    };
    const onAbort = (): void => finish({ ok: false, error: 'aborted' });
    const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }), opts.timeoutMs);
    opts.signal?.addEventListener('abort', onAbort);
    sock.on('error', (e) => finish({ ok: false, error: e.message }));
    sock.on('close', () => finish({ ok: false, error: 'connection closed' }));
    sock.on('connect', () => sock.write(framed));
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) return;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        if (validResponse(msg, id)) return finish({ ok: true, response: withId(msg, clientId) });
      }
    });
  });
}

export interface ForwardOptions extends ExchangeOptions {
  /** How the client reached us: UDP clients are forwarded over UDP (TCP after a TC answer). */
  transport: 'udp' | 'tcp';
  /** Largest answer the UDP client accepts. */
  udpLimit: number;
}

export type ForwardResult =
  | { ok: true; response: Buffer; upstream: Upstream; attempts: string[] }
  | { ok: false; attempts: string[] };

/**
 * Tries the upstreams in order (Docker, §6.3): the next one is tried only after a
 * timeout, a socket error, SERVFAIL or REFUSED; any other answer — NXDOMAIN and empty
 * answers included — is returned at once. A truncated UDP answer is retried over TCP
 * with the same upstream; the full answer is used when it fits the client's UDP size,
 * otherwise the truncated one is passed on so the client retries over TCP itself.
 * Each attempt is bounded by `timeoutMs`, so the worst case is `upstreams × timeoutMs`.
 */
export async function forward(
  query: Buffer,
  upstreams: readonly Upstream[],
  opts: ForwardOptions,
): Promise<ForwardResult> {
  const attempts: string[] = [];
  for (const up of upstreams) {
    if (opts.signal?.aborted) break;
    const where = up.family === 6 ? `[${up.host}]:${up.port}` : `${up.host}:${up.port}`;
    let r: ExchangeResult;
    if (opts.transport === 'tcp') {
      r = await tcpExchange(query, up, opts);
    } else {
      r = await udpExchange(query, up, opts);
      if (r.ok && isTruncated(r.response)) {
        const t = await tcpExchange(query, up, opts);
        if (t.ok && !isTruncated(t.response) && t.response.length <= opts.udpLimit) r = t;
      }
    }
    if (!r.ok) {
      attempts.push(`${where} ${opts.transport}: ${r.error}`);
      continue;
    }
    const rc = rcodeOf(r.response);
    if (rc === RCODE.SERVFAIL || rc === RCODE.REFUSED) {
      attempts.push(`${where}: rcode ${rc}`);
      continue;
    }
    return { ok: true, response: r.response, upstream: up, attempts };
  }
  return { ok: false, attempts };
}
