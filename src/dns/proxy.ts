/**
 * Userland proxies for the published ports the kernel cannot NAT (docker-semantics §4.7,
 * §5.2): connections to the host's IPv6 loopback `[::1]:PORT` (IPv6 has no
 * route_localnet, so ::1 can never be DNAT'd out of `lo`), and IPv6 host bindings of
 * containers that have no IPv6 address (NAT cannot turn IPv6 into IPv4). They run in the
 * resolver process, listen where the kernel rules cannot reach, and relay to the
 * container's address — like docker-proxy, the container sees the connection come from
 * its gateway.
 */
import * as dgram from 'node:dgram';
import * as net from 'node:net';

export interface ProxySpec {
  readonly protocol: 'tcp' | 'udp';
  /** Listen address: "::1", or "::" for an IPv4-only container's IPv6 binding. */
  readonly listen: string;
  readonly port: number;
  readonly to: string;
  readonly toPort: number;
}

type Log = (level: 'info' | 'warn' | 'error', msg: string, data?: Record<string, unknown>) => void;

interface Running {
  readonly key: string;
  close(): void;
}

/** Where a proxy listens: one proxy per listen key. */
const listenKey = (p: ProxySpec) => `${p.protocol} [${p.listen}]:${p.port}`;
const keyOf = (p: ProxySpec) => `${p.protocol} [${p.listen}]:${p.port} ${p.to}:${p.toPort}`;
const UDP_IDLE_MS = 30_000;

function tcpProxy(p: ProxySpec, log: Log): Running {
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ host: p.to, port: p.toPort, allowHalfOpen: true });
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
  });
  server.on('error', (e) => log('warn', 'proxy listener failed', { proxy: keyOf(p), error: String(e) }));
  server.listen({ host: p.listen, port: p.port, ipv6Only: true });
  return { key: keyOf(p), close: () => server.close() };
}

function udpProxy(p: ProxySpec, log: Log): Running {
  const sock = dgram.createSocket({ type: 'udp6', ipv6Only: true });
  const flows = new Map<string, { s: dgram.Socket; timer?: NodeJS.Timeout }>();
  sock.on('message', (msg, from) => {
    const k = `${from.address}|${from.port}`;
    let flow = flows.get(k);
    if (!flow) {
      const s = dgram.createSocket(p.to.includes(':') ? 'udp6' : 'udp4');
      s.on('message', (reply) => sock.send(reply, from.port, from.address));
      s.on('error', () => {});
      flow = { s };
      flows.set(k, flow);
    }
    clearTimeout(flow.timer);
    flow.timer = setTimeout(() => {
      flow.s.close();
      flows.delete(k);
    }, UDP_IDLE_MS);
    flow.s.send(msg, p.toPort, p.to);
  });
  sock.on('error', (e) => log('warn', 'proxy listener failed', { proxy: keyOf(p), error: String(e) }));
  sock.bind({ address: p.listen, port: p.port });
  return {
    key: keyOf(p),
    close: () => {
      for (const f of flows.values()) {
        clearTimeout(f.timer);
        f.s.close();
      }
      sock.close();
    },
  };
}

/**
 * The running proxies, by the containers that want them. A reload changes only the proxies
 * of the containers whose part changed. Two containers cannot claim one host port (the
 * loader refuses it); should they, the first claim is served and the second waits for it
 * to go.
 */
export class Proxies {
  /** Listen key ("tcp [::1]:8080") → the proxy serving it. */
  private readonly running = new Map<string, Running>();
  /** Listen key → its claims, first served. */
  private readonly claims = new Map<string, { readonly owner: string; readonly spec: ProxySpec }[]>();
  constructor(private readonly log: Log) {}

  /**
   * Each owner's proxies were `before` and are now `after`. Every claim given up goes
   * before any new one is taken, so a port that passes from one container to another in
   * one reload is not claimed twice.
   */
  change(
    changes: readonly (readonly [owner: string, before: readonly ProxySpec[], after: readonly ProxySpec[]])[],
  ): void {
    const touched = new Set<string>();
    for (const [owner, before] of changes) {
      for (const p of before) {
        const k = listenKey(p);
        const list = this.claims.get(k)?.filter((c) => c.owner !== owner) ?? [];
        if (list.length) this.claims.set(k, list);
        else this.claims.delete(k);
        touched.add(k);
      }
    }
    for (const [owner, , after] of changes) {
      for (const p of after) {
        const k = listenKey(p);
        const list = this.claims.get(k) ?? [];
        list.push({ owner, spec: p });
        this.claims.set(k, list);
        touched.add(k);
        if (list.length > 1)
          this.log('warn', 'proxy port claimed twice; the first claim is served', {
            proxy: keyOf(p),
            containers: list.map((c) => c.owner),
          });
      }
    }
    for (const k of touched) {
      const want = this.claims.get(k)?.[0]?.spec;
      const r = this.running.get(k);
      if (r && want && r.key === keyOf(want)) continue;
      r?.close();
      this.running.delete(k);
      if (want)
        this.running.set(k, want.protocol === 'tcp' ? tcpProxy(want, this.log) : udpProxy(want, this.log));
    }
  }

  close(): void {
    for (const r of this.running.values()) r.close();
    this.running.clear();
    this.claims.clear();
  }

  list(): string[] {
    return [...this.running.values()].map((r) => r.key);
  }
}
