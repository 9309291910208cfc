/*
 * Conventions for these tests:
 * - every socket is on loopback: the resolver listens on 127.0.0.1 (and 127.0.0.2, ::1),
 *   the fake upstream on 127.0.0.1, all on ports the kernel picks (port 0);
 * - "container" records use 127.0.1.0/24 (net1) and 127.0.2.0/24 (net2) so that even the
 *   data in answers is loopback;
 * - positive tests allow sources in 127.0.0.0/8; the negative one allows only 127.1.0.0/16,
 *   which does not contain 127.0.0.1.
 * These are real sockets, not kernel changes: no namespace needed.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Answer, DecodedPacket, Packet, RecordType } from 'dns-packet';
import dnsPacket from 'dns-packet';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DnsConfig } from '../../src/dns/records.js';
import { type Resolver, startResolver } from '../../src/dns/server.js';

// ---- fake upstream -----------------------------------------------------------------

interface FakeUpstream {
  port: number;
  udpQueries: string[];
  tcpQueries: string[];
  close(): Promise<void>;
}

/** Answers: `*.example.test` A 127.0.9.9; `missing.test` NXDOMAIN; `big.test` TC over UDP, 3 A over TCP. */
function upstreamAnswer(q: DecodedPacket, transport: 'udp' | 'tcp'): Buffer | null {
  const question = q.questions![0]!;
  const name = question.name.toLowerCase();
  const base: Packet = {
    type: 'response',
    id: q.id,
    flags: dnsPacket.RECURSION_AVAILABLE,
    questions: q.questions,
  };
  if (name === 'slow.test') return null;
  if (name === 'missing.test') return dnsPacket.encode({ ...base, flags: (base.flags ?? 0) | 3 });
  if (name === 'big.test') {
    if (transport === 'udp')
      return dnsPacket.encode({ ...base, flags: (base.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE });
    const answers: Answer[] = [1, 2, 3].map((i) => ({
      type: 'A',
      name: question.name,
      ttl: 60,
      data: `127.0.9.${i}`,
    }));
    return dnsPacket.encode({ ...base, answers });
  }
  if (name.endsWith('example.test')) {
    return dnsPacket.encode({
      ...base,
      answers: [{ type: 'A', name: question.name, ttl: 60, data: '127.0.9.9' }],
    });
  }
  return dnsPacket.encode({ ...base, flags: (base.flags ?? 0) | 5 });
}

async function startUpstream(): Promise<FakeUpstream> {
  for (let attempt = 0; ; attempt++) {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
    const port = udp.address().port;
    const tcp = net.createServer();
    const ok = await new Promise<boolean>((r) => {
      tcp.once('error', () => r(false));
      tcp.listen(port, '127.0.0.1', () => r(true));
    });
    if (!ok) {
      udp.close();
      if (attempt > 5) throw new Error('no port for the fake upstream');
      continue;
    }
    const up: FakeUpstream = {
      port,
      udpQueries: [],
      tcpQueries: [],
      close: () =>
        new Promise<void>((r) => {
          udp.close();
          tcp.close(() => r());
          for (const s of conns) s.destroy();
        }),
    };
    const conns = new Set<net.Socket>();
    udp.on('message', (msg, rinfo) => {
      const q = dnsPacket.decode(msg);
      up.udpQueries.push(q.questions![0]!.name);
      const a = upstreamAnswer(q, 'udp');
      if (a) udp.send(a, rinfo.port, rinfo.address);
    });
    tcp.on('connection', (s) => {
      conns.add(s);
      s.on('close', () => conns.delete(s));
      let buf: Buffer = Buffer.alloc(0);
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
          buf = buf.subarray(2 + msg.length);
          const q = dnsPacket.decode(msg);
          up.tcpQueries.push(q.questions![0]!.name);
          const a = upstreamAnswer(q, 'tcp');
          if (a) s.write(Buffer.concat([Buffer.from([a.length >> 8, a.length & 0xff]), a]));
        }
      });
    });
    return up;
  }
}

/** dns-packet decodes `rcode` but its typings omit it. */
type Reply = DecodedPacket & { rcode: string };

// ---- clients -----------------------------------------------------------------------

let nextId = 1;

function query(name: string, type: RecordType = 'A'): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: nextId++ & 0xffff,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type, name }],
  });
}

/** Sends raw bytes from 127.0.0.1 (or ::1) and waits for one datagram (null on timeout). */
function udpRaw(
  server: { address: string; port: number },
  msg: Buffer,
  timeoutMs = 2000,
): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const v6 = server.address.includes(':');
    const sock = dgram.createSocket(v6 ? 'udp6' : 'udp4');
    const timer = setTimeout(() => {
      sock.close();
      resolve(null);
    }, timeoutMs);
    sock.on('error', () => {});
    sock.on('message', (m) => {
      clearTimeout(timer);
      sock.close();
      resolve(m);
    });
    sock.bind(0, v6 ? '::1' : '127.0.0.1', () => sock.send(msg, server.port, server.address));
  });
}

async function udpAsk(server: { address: string; port: number }, name: string, type: RecordType = 'A') {
  const msg = query(name, type);
  const raw = await udpRaw(server, msg);
  expect(raw, `no UDP answer for ${name}`).not.toBeNull();
  const r = dnsPacket.decode(raw!) as Reply;
  expect(r.id).toBe(msg.readUInt16BE(0));
  return r;
}

/** One TCP connection, several framed queries (pipelined), their answers in any order. */
function tcpAsk(
  server: { address: string; port: number },
  msgs: Buffer[],
  timeoutMs = 3000,
): Promise<Reply[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: server.address, port: server.port, localAddress: '127.0.0.1' });
    const out: Reply[] = [];
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`TCP: ${out.length}/${msgs.length} answers`));
    }, timeoutMs);
    sock.on('error', reject);
    sock.on('connect', () => {
      for (const m of msgs) sock.write(Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m]));
    });
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        out.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))) as Reply);
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (out.length === msgs.length) {
        clearTimeout(timer);
        sock.destroy();
        resolve(out);
      }
    });
  });
}

const data = (r: DecodedPacket): string[] =>
  (r.answers ?? []).map((a) => String((a as { data: unknown }).data));

// ---- fixtures ----------------------------------------------------------------------

function config(upstreamPort: number, subnets = ['127.0.0.0/8']): DnsConfig {
  return {
    networks: [
      { name: 'net1', listen: ['127.0.0.1'], subnets },
      { name: 'net2', listen: [], subnets: ['127.0.2.0/24'] },
    ],
    endpoints: [
      { container: 'web', network: 'net1', names: ['web', 'www'], ipv4: '127.0.1.2' },
      { container: 'lb1', network: 'net1', names: ['lb1', 'lb'], ipv4: '127.0.1.10' },
      { container: 'lb2', network: 'net1', names: ['lb2', 'lb'], ipv4: '127.0.1.11' },
      { container: 'db', network: 'net2', names: ['db'], ipv4: '127.0.2.4' },
    ],
    upstreams: [`127.0.0.1:${upstreamPort}`],
  };
}

let upstream: FakeUpstream;
let resolver: Resolver | undefined;
const logs: { level: string; msg: string }[] = [];

async function start(cfg: DnsConfig, timeoutMs = 300): Promise<{ address: string; port: number }> {
  resolver = await startResolver(cfg, {
    port: 0,
    upstreamTimeoutMs: timeoutMs,
    log: (level, msg) => logs.push({ level, msg }),
  });
  const l = resolver.listeners().find((x) => x.address === '127.0.0.1')!;
  expect(l.state).toBe('listening');
  return { address: l.address, port: l.port };
}

beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream.close();
});
afterEach(async () => {
  await resolver?.close();
  resolver = undefined;
});

// ---- tests -------------------------------------------------------------------------

describe('embedded resolver over UDP', () => {
  it('answers local names authoritatively, AAAA-less names with NOERROR and no records', async () => {
    const srv = await start(config(upstream.port));
    const a = await udpAsk(srv, 'WWW.');
    expect(a.rcode).toBe('NOERROR');
    expect(a.flag_aa).toBe(true);
    expect(a.flag_rd).toBe(true);
    expect(data(a)).toEqual(['127.0.1.2']);
    expect((a.answers![0] as { ttl?: number }).ttl).toBe(600);
    const empty = await udpAsk(srv, 'lb', 'AAAA');
    expect(empty.rcode).toBe('NOERROR');
    expect(empty.answers).toEqual([]);
    const ptr = await udpAsk(srv, '2.1.0.127.in-addr.arpa', 'PTR');
    expect(data(ptr)).toEqual(['web']);
    expect(upstream.udpQueries).not.toContain('www');
  });

  it('round-robins a shared alias', async () => {
    const srv = await start(config(upstream.port));
    const firsts = new Set<string>();
    for (let i = 0; i < 4; i++) {
      const r = await udpAsk(srv, 'lb');
      expect(data(r).sort()).toEqual(['127.0.1.10', '127.0.1.11']);
      firsts.add(data(r)[0]!);
    }
    expect(firsts.size).toBe(2);
  });

  it('answers NXDOMAIN for a container on a network the querier does not share, without forwarding', async () => {
    const srv = await start(config(upstream.port));
    const before = upstream.udpQueries.length;
    const r = await udpAsk(srv, 'db');
    expect(r.rcode).toBe('NXDOMAIN');
    expect(upstream.udpQueries.length).toBe(before);
  });

  it('forwards other names and passes the upstream answer back with the client id', async () => {
    const srv = await start(config(upstream.port));
    const r = await udpAsk(srv, 'www.example.test');
    expect(r.rcode).toBe('NOERROR');
    expect(r.flag_aa).toBe(false);
    expect(data(r)).toEqual(['127.0.9.9']);
    expect(upstream.udpQueries).toContain('www.example.test');
  });

  it('passes an upstream NXDOMAIN back', async () => {
    const srv = await start(config(upstream.port));
    const r = await udpAsk(srv, 'missing.test');
    expect(r.rcode).toBe('NXDOMAIN');
  });

  it('retries a truncated upstream answer over TCP', async () => {
    const srv = await start(config(upstream.port));
    const r = await udpAsk(srv, 'big.test');
    expect(r.flag_tc).toBe(false);
    expect(data(r)).toEqual(['127.0.9.1', '127.0.9.2', '127.0.9.3']);
    expect(upstream.tcpQueries).toContain('big.test');
  });

  it('answers SERVFAIL within bounded time when the upstream does not answer or is gone', async () => {
    const srv = await start(config(upstream.port), 200);
    let t0 = Date.now();
    const slow = await udpAsk(srv, 'slow.test');
    expect(slow.rcode).toBe('SERVFAIL');
    expect(Date.now() - t0).toBeLessThan(1500);

    const gone = await startUpstream();
    await gone.close();
    await resolver!.reload({
      ...config(gone.port),
      upstreams: [`127.0.0.1:${gone.port}`, `127.0.0.1:${gone.port}`],
    });
    t0 = Date.now();
    const r = await udpAsk(srv, 'anything.example.test');
    expect(r.rcode).toBe('SERVFAIL');
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(resolver!.stats().servfail).toBe(2);
    expect(resolver!.stats().inflight).toBe(0);
  });

  it('refuses a source outside the network’s subnets', async () => {
    const srv = await start(config(upstream.port, ['127.1.0.0/16']));
    const local = await udpAsk(srv, 'web');
    expect(local.rcode).toBe('REFUSED');
    expect(local.answers).toEqual([]);
    const fwd = await udpAsk(srv, 'www.example.test');
    expect(fwd.rcode).toBe('REFUSED');
    expect(resolver!.stats().refused).toBe(2);
  });

  it('ignores malformed packets and keeps answering', async () => {
    const srv = await start(config(upstream.port));
    const garbage = [
      Buffer.alloc(0),
      Buffer.from([1, 2, 3]),
      Buffer.alloc(12, 0xff),
      Buffer.concat([query('web').subarray(0, 14)]),
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
    ];
    for (const g of garbage) expect(await udpRaw(srv, g, 150)).toBeNull();
    const r = await udpAsk(srv, 'web');
    expect(data(r)).toEqual(['127.0.1.2']);
    expect(resolver!.stats().dropped).toBe(garbage.length);
  });

  it('truncates a local answer to 512 bytes for a client without EDNS, with TC', async () => {
    const many: DnsConfig = {
      ...config(upstream.port),
      endpoints: Array.from({ length: 60 }, (_, i) => ({
        container: `c${i}`,
        network: 'net1',
        names: [`c${i}`, 'crowd-with-a-long-shared-alias-name'],
        ipv4: `127.0.1.${i + 20}`,
      })),
    };
    const srv = await start(many);
    const raw = await udpRaw(srv, query('crowd-with-a-long-shared-alias-name'));
    expect(raw!.length).toBeLessThanOrEqual(512);
    const r = dnsPacket.decode(raw!);
    expect(r.flag_tc).toBe(true);
    expect(r.answers!.length).toBeGreaterThan(0);
    expect(r.answers!.length).toBeLessThan(60);
    const [full] = await tcpAsk(srv, [query('crowd-with-a-long-shared-alias-name')]);
    expect(full!.flag_tc).toBe(false);
    expect(full!.answers!.length).toBe(60);
  });
});

describe('embedded resolver over TCP', () => {
  it('answers local names and forwards over TCP, pipelined on one connection', async () => {
    const srv = await start(config(upstream.port));
    const before = upstream.tcpQueries.length;
    const msgs = [query('web'), query('tcp.example.test'), query('missing.test'), query('db')];
    const ids = msgs.map((m) => m.readUInt16BE(0));
    const answers = await tcpAsk(srv, msgs);
    const byId = new Map(answers.map((a) => [a.id, a]));
    expect(data(byId.get(ids[0]!)!)).toEqual(['127.0.1.2']);
    expect(data(byId.get(ids[1]!)!)).toEqual(['127.0.9.9']);
    expect(byId.get(ids[2]!)!.rcode).toBe('NXDOMAIN');
    expect(byId.get(ids[3]!)!.rcode).toBe('NXDOMAIN');
    expect(upstream.tcpQueries.slice(before).sort()).toEqual(['missing.test', 'tcp.example.test']);
  });

  it('survives a garbage frame and answers the next one', async () => {
    const srv = await start(config(upstream.port));
    const sock = net.connect({ host: srv.address, port: srv.port });
    await new Promise((r) => sock.on('connect', r));
    const bad = Buffer.from([0x00, 0x03, 1, 2, 3]);
    const good = query('web');
    sock.write(Buffer.concat([bad, Buffer.from([good.length >> 8, good.length & 0xff]), good]));
    const reply = await new Promise<Buffer>((r) => sock.once('data', r));
    sock.destroy();
    expect(data(dnsPacket.decode(reply.subarray(2)))).toEqual(['127.0.1.2']);
  });
});

describe('embedded resolver over TCP, continued', () => {
  it('answers a client that half-closes right after its query', async () => {
    const srv = await start(config(upstream.port));
    const sock = net.connect({ host: srv.address, port: srv.port });
    await new Promise((r) => sock.on('connect', r));
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    const closed = new Promise((r) => sock.on('end', r));
    const q1 = query('web');
    const q2 = query('half.example.test');
    sock.end(
      Buffer.concat([q1, q2].map((m) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m]))),
    );
    await closed;
    let all = Buffer.concat(chunks);
    const replies: Reply[] = [];
    while (all.length >= 2) {
      replies.push(dnsPacket.decode(all.subarray(2, 2 + all.readUInt16BE(0))) as Reply);
      all = all.subarray(2 + all.readUInt16BE(0));
    }
    expect(replies.map((r) => data(r)[0]).sort()).toEqual(['127.0.1.2', '127.0.9.9']);
  });
});

describe('lifecycle', () => {
  it('reload swaps records without closing sockets and adds/removes listeners', async () => {
    const cfg = config(upstream.port);
    const srv = await start(cfg);
    expect(data(await udpAsk(srv, 'web'))).toEqual(['127.0.1.2']);

    const moved: DnsConfig = {
      ...cfg,
      networks: [cfg.networks[0]!, { ...cfg.networks[1]!, listen: ['127.0.0.2', '::1'] }],
      endpoints: [
        { container: 'web', network: 'net1', names: ['web'], ipv4: '127.0.1.3' },
        { container: 'db', network: 'net2', names: ['db'], ipv4: '127.0.2.4' },
      ],
    };
    await resolver!.reload(moved);
    const ls = resolver!.listeners();
    expect(ls.map((l) => `${l.network} ${l.address} ${l.state}`).sort()).toEqual([
      'net1 127.0.0.1 listening',
      'net2 127.0.0.2 listening',
      'net2 ::1 listening',
    ]);
    // Same port for net1: the socket was kept.
    expect(ls.find((l) => l.address === '127.0.0.1')!.port).toBe(srv.port);
    expect(data(await udpAsk(srv, 'web'))).toEqual(['127.0.1.3']);

    // net2 only allows 127.0.2.0/24: our loopback client is refused there.
    const net2 = ls.find((l) => l.address === '127.0.0.2')!;
    expect((await udpAsk(net2, 'db')).rcode).toBe('REFUSED');
    await resolver!.reload({
      ...moved,
      networks: [moved.networks[0]!, { ...moved.networks[1]!, subnets: ['127.0.0.0/8', '::1/128'] }],
    });
    expect(data(await udpAsk(net2, 'db'))).toEqual(['127.0.2.4']);
    const v6 = resolver!.listeners().find((l) => l.address === '::1')!;
    expect(data(await udpAsk(v6, 'db'))).toEqual(['127.0.2.4']);

    await resolver!.reload(cfg);
    expect(resolver!.listeners().map((l) => l.address)).toEqual(['127.0.0.1']);
    expect(await udpRaw(net2, query('db'), 150)).toBeNull();
  });

  it('reports a listener that cannot bind instead of failing, and close is idempotent', async () => {
    const cfg = config(upstream.port);
    const srv = await start(cfg);
    const clash = await startResolver(cfg, {
      port: srv.port,
      log: (level, msg) => logs.push({ level, msg }),
    });
    expect(clash.listeners()).toEqual([
      expect.objectContaining({
        address: '127.0.0.1',
        state: 'failed',
        port: 0,
        error: expect.stringContaining('EADDRINUSE'),
      }),
    ]);
    await clash.close();
    await clash.close();
    expect(data(await udpAsk(srv, 'web'))).toEqual(['127.0.1.2']);
  });

  it('close() aborts forwarded queries in flight', async () => {
    const srv = await start(config(upstream.port), 5000);
    const pending = udpRaw(srv, query('slow.test'), 300);
    await new Promise((r) => setTimeout(r, 50));
    expect(resolver!.stats().inflight).toBe(1);
    const t0 = Date.now();
    await resolver!.close();
    expect(Date.now() - t0).toBeLessThan(500);
    await pending;
    expect(resolver!.stats().inflight).toBe(0);
  });
});
