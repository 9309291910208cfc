/**
 * `tether dns-serve`: the resolver process started by apply (see service.ts). It serves
 * the embedded DNS and the userland proxies for published ports NAT cannot reach.
 */
import { writeFileSync } from 'node:fs';
import { Proxies } from './proxy.js';
import type { DnsConfig, DnsEndpoint } from './records.js';
import { startResolver } from './server.js';
import { dnsFiles, loadResolverConfig } from './service.js';

const EMPTY_DNS: DnsConfig = { networks: [], endpoints: [], upstreams: [] };

export async function serveDns(instance: string): Promise<void> {
  const f = dnsFiles(instance);
  const log = (level: string, msg: string, data?: Record<string, unknown>) =>
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...data })}\n`);
  // Parts by container, as last loaded: a reload reads only the parts whose hash changed.
  let known = new Map<string, { hash: string; endpoints: DnsEndpoint[] }>();
  const load = () => {
    const { index, hash, parts } = loadResolverConfig(instance, known);
    known = parts;
    const endpoints: DnsEndpoint[] = [];
    for (const p of parts.values()) for (const e of p.endpoints) endpoints.push(e);
    const cfg: DnsConfig = index.dns ? { ...index.dns, endpoints } : EMPTY_DNS;
    return { cfg, proxies: [...(index.proxies ?? [])], hash };
  };
  // A resolver must outlive a bug in one query's handling: log it and keep serving.
  process.on('uncaughtException', (e) =>
    log('error', 'uncaught exception', { error: String(e?.stack ?? e) }),
  );
  process.on('unhandledRejection', (e) => log('error', 'unhandled rejection', { error: String(e) }));
  let { cfg, proxies: wanted, hash } = load();
  const resolver = await startResolver(cfg, { port: Number(process.env.TETHER_DNS_PORT ?? 53), log });
  const proxies = new Proxies(log);
  proxies.set(wanted);
  writeFileSync(f.pid, String(process.pid));
  writeFileSync(f.loaded, hash);
  log('info', 'resolver ready', {
    listeners: resolver.listeners().map((l) => `${l.address}:${l.port} ${l.state}`),
    proxies: proxies.list(),
  });
  let chain = Promise.resolve();
  process.on('SIGHUP', () => {
    chain = chain.then(async () => {
      try {
        const t0 = performance.now();
        ({ cfg, proxies: wanted, hash } = load());
        const t1 = performance.now();
        await resolver.reload(cfg);
        const t2 = performance.now();
        proxies.set(wanted);
        writeFileSync(f.loaded, hash);
        const ms = (a: number, b: number) => Math.round((b - a) * 10) / 10;
        log('info', 'resolver reloaded', {
          listeners: resolver.listeners().map((l) => `${l.address}:${l.port} ${l.state}`),
          ms: { read: ms(t0, t1), dns: ms(t1, t2), proxies: ms(t2, performance.now()) },
        });
      } catch (e) {
        log('error', 'reload failed; keeping the previous configuration', { error: String(e) });
      }
    });
  });
  const stop = async () => {
    proxies.close();
    await resolver.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
