/**
 * tether's embedded resolver, aardvark-dns style: one UDP and one TCP listener on each
 * user-defined network's gateway address(es), in the namespace this process runs in.
 * Containers get the gateway as their nameserver (files.ts), so no per-container DNAT
 * is needed (docker-semantics.md §6.5).
 *
 * Robustness rules: every socket has an 'error' listener, every handler runs inside
 * try/catch (an exception in a socket listener would abort the process), and malformed
 * packets are dropped silently. Nothing is cached; memory is the compiled records, one
 * socket per in-flight forwarded query (capped), and the open TCP connections (capped).
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { forward } from './forward.js';
import { handlePacket, type PacketResult, RCODE } from './packet.js';
import {
  compileDns,
  type DnsConfig,
  type DnsEndpoint,
  type DnsIndex,
  patchDns,
  type Upstream,
  upstreamsFor,
} from './records.js';

export type { PacketContext, PacketResult } from './packet.js';
export { handlePacket } from './packet.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type LogFn = (level: LogLevel, msg: string, data?: Record<string, unknown>) => void;

export interface ResolverOptions {
  /** Port for every listener, UDP and TCP. Default 53. 0 picks one free port per listener (tests). */
  port?: number;
  log?: LogFn;
  /** Per-upstream attempt timeout. Default 2000 ms. */
  upstreamTimeoutMs?: number;
  /** Forwarded queries in flight, all listeners together; past it → REFUSED. Default 1024 (Docker's). */
  maxInflight?: number;
  /** Open TCP client connections per listener. Default 128. */
  maxTcpConnections?: number;
  /** A TCP client connection idle this long is closed. Default 10 000 ms. */
  tcpIdleMs?: number;
}

/** One listening address. */
export interface ListenerInfo {
  network: string;
  address: string;
  /** The bound port (UDP and TCP share it); 0 while not listening. */
  port: number;
  state: 'listening' | 'failed';
  /** Why binding failed (state 'failed'); retried on the next reload. */
  error?: string;
}

/** Counters since start. */
interface Counters {
  /** Messages received (UDP datagrams + TCP frames). */
  received: number;
  dropped: number;
  refused: number;
  /** Local answers with NOERROR (including empty ones). */
  answered: number;
  nxdomain: number;
  forwarded: number;
  /** Forwarded queries that got an upstream answer (any rcode). */
  upstreamAnswered: number;
  /** SERVFAIL sent: no upstreams, or none answered in time. */
  servfail: number;
}

export interface ResolverStats extends Counters {
  /** Forwarded queries currently waiting for an upstream. */
  inflight: number;
  tcpConnections: number;
  listeners: ListenerInfo[];
}

/** The endpoints that changed between the loaded configuration and the next one. */
export interface DnsChange {
  /** Endpoints of the loaded configuration that are no longer listed: the very objects. */
  gone: readonly DnsEndpoint[];
  /** Endpoints listed now that were not: new objects, or ones that were also in `gone`. */
  added: readonly DnsEndpoint[];
}

export interface Resolver {
  /**
   * Swaps in new records. Sockets stay open for addresses still present; listeners are
   * opened for new addresses (and failed ones retried) and closed for removed ones.
   * Never rejects: bind failures are logged and visible in {@link listeners}.
   *
   * With `change`, and the same networks, upstreams and ttl as the loaded configuration,
   * the loaded records are patched ({@link patchDns}): the cost is that of the changed
   * endpoints, and the warnings logged are theirs. `cfg.endpoints` is then not read; the
   * caller vouches that it lists the loaded endpoints minus `gone`, plus `added` (in
   * another order at most). Otherwise, or when the patch is refused (a `gone` endpoint that
   * is not loaded), the records are compiled from `cfg` as without `change`.
   */
  reload(cfg: DnsConfig, change?: DnsChange): Promise<void>;
  /** Closes every socket and aborts forwarded queries. Idempotent. */
  close(): Promise<void>;
  stats(): ResolverStats;
  listeners(): ListenerInfo[];
}

const noopLog: LogFn = () => {};

class Listener {
  network: string;
  readonly address: string;
  port = 0;
  error: string | undefined;
  private udp: dgram.Socket | undefined;
  private tcp: net.Server | undefined;
  private readonly conns = new Set<net.Socket>();

  constructor(
    network: string,
    address: string,
    private readonly owner: ResolverImpl,
  ) {
    this.network = network;
    this.address = address;
  }

  get listening(): boolean {
    return this.udp !== undefined && this.tcp !== undefined;
  }

  get connections(): number {
    return this.conns.size;
  }

  info(): ListenerInfo {
    return {
      network: this.network,
      address: this.address,
      port: this.listening ? this.port : 0,
      state: this.listening ? 'listening' : 'failed',
      ...(this.error !== undefined ? { error: this.error } : {}),
    };
  }

  /** Binds UDP then TCP on the same port; with port 0, retries a few ports if TCP's is taken. */
  async open(port: number): Promise<void> {
    let lastErr: unknown;
    for (let attempt = 0; attempt < (port === 0 ? 8 : 1); attempt++) {
      let udp: dgram.Socket | undefined;
      try {
        udp = await this.bindUdp(port);
        const bound = udp.address().port;
        const tcp = await this.listenTcp(bound);
        this.udp = udp;
        this.tcp = tcp;
        this.port = bound;
        this.error = undefined;
        return;
      } catch (e) {
        lastErr = e;
        if (udp) closeQuietly(udp);
      }
    }
    this.error = lastErr instanceof Error ? lastErr.message : String(lastErr);
    throw lastErr;
  }

  private bindUdp(port: number): Promise<dgram.Socket> {
    return new Promise((resolve, reject) => {
      const family = net.isIPv6(this.address) ? 'udp6' : 'udp4';
      const sock = dgram.createSocket({ type: family, reuseAddr: true });
      const onBindError = (e: Error): void => {
        closeQuietly(sock);
        reject(e);
      };
      sock.once('error', onBindError);
      sock.bind({ address: this.address, port, exclusive: true }, () => {
        sock.off('error', onBindError);
        sock.on('error', (e) =>
          this.owner.log('warn', 'udp socket error', { address: this.address, error: e.message }),
        );
        sock.on('message', (msg, rinfo) => {
          try {
            this.owner.onUdp(this, sock, msg, rinfo);
          } catch (e) {
            this.owner.log('error', 'udp handler failed', { error: String(e) });
          }
        });
        resolve(sock);
      });
    });
  }

  private listenTcp(port: number): Promise<net.Server> {
    return new Promise((resolve, reject) => {
      // allowHalfOpen: a client may send its query and shut down its side (FIN) before the
      // answer comes; we end our side once every pending answer is written.
      const server = net.createServer({ allowHalfOpen: true }, (sock) => {
        try {
          this.owner.onTcpConnection(this, sock, this.conns);
        } catch (e) {
          sock.destroy();
          this.owner.log('error', 'tcp handler failed', { error: String(e) });
        }
      });
      server.maxConnections = this.owner.maxTcpConnections;
      const onListenError = (e: Error): void => {
        server.close();
        reject(e);
      };
      server.once('error', onListenError);
      // Node sets SO_REUSEADDR on TCP listeners; a restarted daemon rebinds at once.
      server.listen({ host: this.address, port, exclusive: true }, () => {
        server.off('error', onListenError);
        server.on('error', (e) =>
          this.owner.log('warn', 'tcp server error', { address: this.address, error: e.message }),
        );
        resolve(server);
      });
    });
  }

  async close(): Promise<void> {
    const udp = this.udp;
    const tcp = this.tcp;
    this.udp = undefined;
    this.tcp = undefined;
    for (const c of this.conns) c.destroy();
    this.conns.clear();
    const waits: Promise<void>[] = [];
    if (udp) waits.push(new Promise((r) => closeQuietly(udp, r)));
    if (tcp) waits.push(new Promise((r) => tcp.close(() => r())));
    await Promise.all(waits);
  }
}

/** What must be equal for a reload to patch the loaded records rather than compile anew. */
function shapeOf(cfg: DnsConfig): string {
  return JSON.stringify([cfg.networks ?? [], cfg.upstreams ?? [], cfg.ttl ?? null]);
}

function closeQuietly(sock: dgram.Socket, cb?: () => void): void {
  try {
    sock.close(cb);
  } catch {
    cb?.();
  }
}

class ResolverImpl implements Resolver {
  private index: DnsIndex;
  /** The networks, upstreams and ttl the index was compiled with, as JSON: what a patch keeps. */
  private shape: string;
  private readonly listenersByAddr = new Map<string, Listener>();
  private readonly counters: Counters = {
    received: 0,
    dropped: 0,
    refused: 0,
    answered: 0,
    nxdomain: 0,
    forwarded: 0,
    upstreamAnswered: 0,
    servfail: 0,
  };
  private inflight = 0;
  private rotation = 0;
  private closed = false;
  private readonly abort = new AbortController();
  private chain: Promise<void> = Promise.resolve();
  readonly port: number;
  readonly timeoutMs: number;
  readonly maxInflight: number;
  readonly maxTcpConnections: number;
  readonly tcpIdleMs: number;
  private readonly logFn: LogFn;

  constructor(cfg: DnsConfig, opts: ResolverOptions) {
    this.index = compileDns(cfg);
    this.shape = shapeOf(cfg);
    this.port = opts.port ?? 53;
    this.timeoutMs = opts.upstreamTimeoutMs ?? 2000;
    this.maxInflight = opts.maxInflight ?? 1024;
    this.maxTcpConnections = opts.maxTcpConnections ?? 128;
    this.tcpIdleMs = opts.tcpIdleMs ?? 10_000;
    this.logFn = opts.log ?? noopLog;
  }

  log(level: LogLevel, msg: string, data?: Record<string, unknown>): void {
    try {
      this.logFn(level, msg, data);
    } catch {
      // A failing logger must not take the resolver down.
    }
  }

  private logWarnings(): void {
    for (const w of this.index.warnings) this.log('warn', `dns config: ${w}`);
  }

  /**
   * Opens/closes listeners to match the current index. Called under `chain`. Cheap when
   * nothing is to change (one look at each listener), so it also runs after a patch: that
   * retries listeners that failed to bind.
   */
  private async sync(): Promise<void> {
    const wanted = this.index.listen;
    const closing: Promise<void>[] = [];
    for (const [addr, l] of this.listenersByAddr) {
      if (!wanted.has(addr)) {
        this.listenersByAddr.delete(addr);
        closing.push(l.close());
        this.log('info', 'dns listener closed', { address: addr, network: l.network });
      }
    }
    await Promise.all(closing);
    const opening: Promise<void>[] = [];
    for (const [addr, network] of wanted) {
      let l = this.listenersByAddr.get(addr);
      if (l) {
        l.network = network;
        if (l.listening) continue;
      } else {
        l = new Listener(network, addr, this);
        this.listenersByAddr.set(addr, l);
      }
      const listener = l;
      opening.push(
        listener.open(this.port).then(
          () => this.log('info', 'dns listener open', { address: addr, port: listener.port, network }),
          (e: unknown) =>
            this.log('error', 'dns listener failed to bind', {
              address: addr,
              port: this.port,
              network,
              error: e instanceof Error ? e.message : String(e),
            }),
        ),
      );
    }
    await Promise.all(opening);
  }

  reload(cfg: DnsConfig, change?: DnsChange): Promise<void> {
    const run = async (): Promise<void> => {
      if (this.closed) return;
      try {
        const shape = shapeOf(cfg);
        let patched = false;
        if (change && shape === this.shape) {
          try {
            this.index = patchDns(this.index, change.gone, change.added);
            patched = true;
          } catch (e) {
            this.log('warn', 'dns records could not be patched; compiling them', { error: String(e) });
          }
        }
        if (!patched) {
          this.index = compileDns(cfg);
          this.shape = shape;
        }
        this.logWarnings();
        await this.sync();
      } catch (e) {
        this.log('error', 'dns reload failed', { error: String(e) });
      }
    };
    this.chain = this.chain.then(run, run);
    return this.chain;
  }

  async initial(): Promise<void> {
    this.logWarnings();
    this.chain = this.chain.then(() => this.sync());
    await this.chain;
  }

  async close(): Promise<void> {
    if (this.closed) return this.chain;
    this.closed = true;
    this.abort.abort();
    const done = this.chain.then(async () => {
      const all = [...this.listenersByAddr.values()];
      this.listenersByAddr.clear();
      await Promise.all(all.map((l) => l.close()));
    });
    this.chain = done.catch(() => {});
    return this.chain;
  }

  listeners(): ListenerInfo[] {
    return [...this.listenersByAddr.values()].map((l) => l.info());
  }

  stats(): ResolverStats {
    let tcpConnections = 0;
    for (const l of this.listenersByAddr.values()) tcpConnections += l.connections;
    return { ...this.counters, inflight: this.inflight, tcpConnections, listeners: this.listeners() };
  }

  /** Upstreams minus our own listeners (the resolver must never forward to itself). */
  private upstreams(source: string): Upstream[] {
    return upstreamsFor(this.index, source).filter((u) => {
      const l = this.listenersByAddr.get(u.host);
      return !(l && l.port === u.port);
    });
  }

  /**
   * Runs the packet logic and turns its verdict into bytes for `send` (now, or when the
   * upstream answers). Returns false when nothing will be sent (a drop).
   */
  private dispatch(
    l: Listener,
    msg: Buffer,
    source: string,
    transport: 'udp' | 'tcp',
    send: (b: Buffer) => void,
  ): boolean {
    this.counters.received++;
    this.rotation = (this.rotation + 1) & 0x3fffffff;
    const r: PacketResult = handlePacket(msg, source, {
      index: this.index,
      network: l.network,
      transport,
      rotation: this.rotation,
    });
    switch (r.action) {
      case 'drop':
        this.counters.dropped++;
        this.log('debug', 'dns packet dropped', { source, reason: r.reason });
        return false;
      case 'reply':
        if (r.rcode === 'REFUSED') this.counters.refused++;
        else if (r.rcode === 'NXDOMAIN') this.counters.nxdomain++;
        else if (r.rcode === 'SERVFAIL') this.counters.servfail++;
        else if (r.rcode === 'NOERROR') this.counters.answered++;
        send(r.packet);
        return true;
      case 'forward': {
        const ups = this.upstreams(source);
        if (ups.length === 0) {
          this.counters.servfail++;
          send(r.servfail);
          return true;
        }
        if (this.inflight >= this.maxInflight) {
          this.counters.refused++;
          const refused = Buffer.from(r.servfail);
          refused[3] = (refused[3]! & 0xf0) | RCODE.REFUSED;
          send(refused);
          return true;
        }
        this.counters.forwarded++;
        this.inflight++;
        forward(r.query, ups, {
          transport,
          udpLimit: r.udpLimit,
          timeoutMs: this.timeoutMs,
          signal: this.abort.signal,
        })
          .then((res) => {
            if (res.ok) {
              this.counters.upstreamAnswered++;
              send(res.response);
            } else {
              this.counters.servfail++;
              this.log('debug', 'no upstream answered', {
                name: r.name,
                type: r.type,
                attempts: res.attempts,
              });
              send(r.servfail);
            }
          })
          .catch((e: unknown) => this.log('error', 'forward failed', { error: String(e) }))
          .finally(() => {
            this.inflight--;
          });
        return true;
      }
    }
  }

  onUdp(l: Listener, sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.dispatch(l, msg, rinfo.address, 'udp', (b) => {
      try {
        sock.send(b, rinfo.port, rinfo.address, (err) => {
          if (err) this.log('debug', 'udp send failed', { to: rinfo.address, error: err.message });
        });
      } catch (e) {
        // The socket was closed (listener removed) while the answer was pending.
        this.log('debug', 'udp send failed', { to: rinfo.address, error: String(e) });
      }
    });
  }

  onTcpConnection(l: Listener, sock: net.Socket, conns: Set<net.Socket>): void {
    const source = sock.remoteAddress;
    if (this.closed || source === undefined) {
      sock.destroy();
      return;
    }
    conns.add(sock);
    let buf: Buffer = Buffer.alloc(0);
    let pending = 0;
    let ended = false;
    const maxPending = 32;
    const endIfDone = (): void => {
      if (ended && pending === 0 && !sock.destroyed) sock.end();
    };
    sock.setNoDelay(true);
    sock.setTimeout(this.tcpIdleMs, () => sock.destroy());
    sock.on('error', (e) => this.log('debug', 'tcp client error', { source, error: e.message }));
    sock.on('close', () => conns.delete(sock));
    sock.on('end', () => {
      ended = true;
      endIfDone();
    });
    const send = (b: Buffer): void => {
      pending--;
      if (sock.destroyed || !sock.writable) return;
      const frame = Buffer.alloc(2 + b.length);
      frame.writeUInt16BE(b.length, 0);
      b.copy(frame, 2);
      sock.write(frame);
      endIfDone();
    };
    sock.on('data', (chunk: Buffer) => {
      try {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        while (buf.length >= 2) {
          const len = buf.readUInt16BE(0);
          if (buf.length < 2 + len) break;
          const msg = Buffer.from(buf.subarray(2, 2 + len));
          buf = buf.subarray(2 + len);
          if (++pending > maxPending) {
            // A client pipelining without reading: cut it off rather than buffer for it.
            sock.destroy();
            return;
          }
          if (!this.dispatch(l, msg, source, 'tcp', send)) pending--;
        }
        endIfDone();
      } catch (e) {
        this.log('error', 'tcp handler failed', { error: String(e) });
        sock.destroy();
      }
    });
  }
}

/**
 * Starts the resolver: binds UDP+TCP on every network's `listen` addresses (port 53
 * unless `opts.port`), inside the current network namespace. IPv6 addresses are bound
 * as given: the caller adds them with `nodad` so they are usable at once.
 *
 * Resolves once every listener is bound or has failed; failures are logged and shown
 * in `listeners()`/`stats()`, and the next `reload` retries them.
 */
export async function startResolver(cfg: DnsConfig, opts: ResolverOptions = {}): Promise<Resolver> {
  const r = new ResolverImpl(cfg, opts);
  await r.initial();
  return r;
}
