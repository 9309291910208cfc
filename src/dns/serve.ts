/**
 * `tether dns-serve`: the resolver process started by apply (see service.ts). It serves
 * the embedded DNS and the userland proxies for published ports NAT cannot reach.
 */
import { writeFileSync } from 'node:fs';
import { Proxies, type ProxySpec } from './proxy.js';
import type { DnsConfig, DnsEndpoint } from './records.js';
import { startResolver } from './server.js';
import { dnsFiles, type LoadedPart, loadedMark, loadResolverConfig } from './service.js';

const EMPTY_DNS: DnsConfig = { networks: [], endpoints: [], upstreams: [] };

export async function serveDns(instance: string): Promise<void> {
  const f = dnsFiles(instance);
  const log = (level: string, msg: string, data?: Record<string, unknown>) =>
    process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, msg, ...data })}\n`);
  const proxies = new Proxies(log);
  // Parts by container, as last loaded: a reload reads and applies only the parts whose
  // hash changed (their names to the resolver's tables, their proxies to the running ones).
  let known = new Map<string, LoadedPart>();
  const load = () => {
    const { index, hash, parts } = loadResolverConfig(instance, known);
    const gone: DnsEndpoint[] = [];
    const added: DnsEndpoint[] = [];
    // Per changed container: its proxies before and now (Proxies.change).
    const proxyChanges: [string, readonly ProxySpec[], readonly ProxySpec[]][] = [];
    for (const [name, was] of known) {
      const now = parts.get(name);
      if (now === was) continue;
      for (const e of was.endpoints) gone.push(e);
      if (!now) proxyChanges.push([name, was.proxies, []]);
    }
    const endpoints: DnsEndpoint[] = [];
    for (const [name, p] of parts) {
      for (const e of p.endpoints) endpoints.push(e);
      const was = known.get(name);
      if (was === p) continue;
      for (const e of p.endpoints) added.push(e);
      proxyChanges.push([name, was?.proxies ?? [], p.proxies]);
    }
    known = parts;
    const cfg: DnsConfig = index.dns ? { ...index.dns, endpoints } : EMPTY_DNS;
    const applyProxies = () => proxies.change(proxyChanges);
    return { cfg, change: { gone, added }, applyProxies, hash };
  };
  // A resolver must outlive a bug in one query's handling: log it and keep serving.
  process.on('uncaughtException', (e) =>
    log('error', 'uncaught exception', { error: String(e?.stack ?? e) }),
  );
  process.on('unhandledRejection', (e) => log('error', 'unhandled rejection', { error: String(e) }));
  const first = load();
  const resolver = await startResolver(first.cfg, { port: Number(process.env.TETHER_DNS_PORT ?? 53), log });
  first.applyProxies();
  writeFileSync(f.pid, String(process.pid));
  writeFileSync(f.loaded, loadedMark(first.hash));
  log('info', 'resolver ready', {
    listeners: resolver.listeners().map((l) => `${l.address}:${l.port} ${l.state}`),
    proxies: proxies.list(),
  });
  let chain = Promise.resolve();
  process.on('SIGHUP', () => {
    chain = chain.then(async () => {
      try {
        const t0 = performance.now();
        const next = load();
        const t1 = performance.now();
        await resolver.reload(next.cfg, next.change);
        const t2 = performance.now();
        next.applyProxies();
        writeFileSync(f.loaded, loadedMark(next.hash));
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
