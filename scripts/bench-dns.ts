/**
 * `npx tsx scripts/bench-dns.ts [QUERIES]`: the embedded resolver's latency and memory.
 * In a sandbox, applies one user-defined network with two containers, then a client in
 * one container namespace sends QUERIES (default 10,000) A queries for the other's name,
 * one at a time over UDP to the resolver on the gateway, and reports median, p99 and max
 * latency, plus the resolver process's resident memory before and after.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, Sandbox } from '../test/helpers/sandbox.js';

const queries = Number(process.argv[2] ?? 10_000);
const s = Sandbox.create({ uplink: false });
try {
  s.write(
    'm.yaml',
    'networks:\n  net: {}\ncontainers:\n  a: { networks: [net] }\n  b: { networks: [net], ports: ["8080:80"] }\n',
  );
  s.tetherOk('apply', '-f', s.manifests);
  const pid = Number(readFileSync(join(s.runDir, s.instance, 'dns.pid'), 'utf8'));
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
  const before = rss();
  const client = `
    const dgram = require('node:dgram'); const packet = require('dns-packet');
    const sock = dgram.createSocket('udp4'); const n = ${queries}; const lat = []; let id = 0; let t0 = 0;
    const ask = () => { t0 = process.hrtime.bigint(); sock.send(packet.encode({ id: ++id & 0xffff, type: 'query', flags: packet.RECURSION_DESIRED, questions: [{ type: 'A', name: 'b' }] }), 53, '172.18.0.1'); };
    sock.on('message', (m) => { const r = packet.decode(m); if (r.answers.length !== 1) { console.error('bad answer'); process.exit(1); }
      lat.push(Number(process.hrtime.bigint() - t0) / 1e6); if (lat.length === n) { sock.close(); console.log(JSON.stringify(lat)); } else ask(); });
    ask();`;
  const r = s.inNs(s.ns('a'), [
    'node',
    '-e',
    client.replace(/require\('dns-packet'\)/, `require('${join(ROOT, 'node_modules/dns-packet')}')`),
  ]);
  if (r.code !== 0) throw new Error(r.stderr);
  const lat = (JSON.parse(r.stdout) as number[]).sort((x, y) => x - y);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
  process.stdout.write(
    `${queries} sequential A queries over UDP from a container: median ${q(0.5).toFixed(3)} ms, p99 ${q(0.99).toFixed(3)} ms, max ${lat.at(-1)!.toFixed(3)} ms\n` +
      `resolver RSS: ${before.toFixed(1)} MiB before, ${rss().toFixed(1)} MiB after\n`,
  );
} finally {
  s.teardownSync();
}
