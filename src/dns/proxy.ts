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

/** The set of running proxies, reconciled against a wanted list on every reload. */
export class Proxies {
  private readonly running = new Map<string, Running>();
  constructor(private readonly log: Log) {}

  set(wanted: readonly ProxySpec[]): void {
    const want = new Map(wanted.map((p) => [keyOf(p), p]));
    for (const [k, r] of this.running) {
      if (!want.has(k)) {
        r.close();
        this.running.delete(k);
      }
    }
    for (const [k, p] of want) {
      if (this.running.has(k)) continue;
      this.running.set(k, p.protocol === 'tcp' ? tcpProxy(p, this.log) : udpProxy(p, this.log));
    }
  }

  close(): void {
    this.set([]);
  }

  list(): string[] {
    return [...this.running.keys()];
  }
}
