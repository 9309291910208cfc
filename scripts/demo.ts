/**
 * Demo of the seed walkthrough (see manifests/README.md), in a sandbox: nothing of this
 * machine's own network is touched, and everything is removed at the end.
 */

import { cpSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { HOST_V4, Sandbox, UPLINK_V4 } from '../test/helpers/sandbox.js';

const manifests = process.argv[2] ?? join(import.meta.dirname, '../manifests');
const s = Sandbox.create({ uplink: true });
const stop = () => {
  s.teardownSync();
  process.exit(130);
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

const say = (t = '') => process.stdout.write(`${t}\n`);
const step = (t: string) => say(`\n\x1b[1m== ${t}\x1b[0m`);

try {
  for (const f of readdirSync(manifests).filter((x) => /\.ya?ml$/.test(x)))
    cpSync(join(manifests, f), join(s.manifests, f));
  say(
    `sandbox: host namespace ${s.host}, uplink ${s.uplink} (the "internet", ${UPLINK_V4}), instance ${s.instance}`,
  );
  say(`tether runs as: nsenter --net=/run/netns/${s.host} bin/tether --instance ${s.instance} ...`);

  step('tether plan');
  process.stdout.write(s.tetherOk('plan', '-f', s.manifests));

  step('tether apply (cold)');
  const t0 = performance.now();
  const applied = s.tetherOk('apply', '-f', s.manifests);
  const cold = performance.now() - t0;
  say(
    applied
      .split('\n')
      .filter((l) => l.startsWith('Applied'))
      .join('\n'),
  );
  say(`cold apply, whole command: ${cold.toFixed(0)} ms`);

  step('tether plan (again: should be empty)');
  process.stdout.write(s.tetherOk('plan', '-f', s.manifests));

  step('tether network ls');
  process.stdout.write(s.tetherOk('network', 'ls'));
  step('tether container ls');
  process.stdout.write(s.tetherOk('container', 'ls'));

  const view = JSON.parse(s.tetherOk('container', 'inspect', ...containerNames())) as any[];
  const ips: Record<string, { net: string; ip: string }[]> = {};
  for (const c of view) {
    ips[c.Name.slice(1)] = Object.entries(c.NetworkSettings.Networks as Record<string, any>)
      .filter(([, e]) => e.IPAddress)
      .map(([net, e]) => ({ net, ip: e.IPAddress as string }));
  }

  step('reachability by IP (ping from row to column)');
  const names = Object.keys(ips).filter((n) => ips[n]!.length);
  const targets = names.flatMap((n) => ips[n]!.map((t) => ({ label: `${n}@${t.net}`, ip: t.ip })));
  const w = Math.max(...names.map((n) => n.length)) + 2;
  say(`${''.padEnd(w)}${targets.map((t) => t.label.padEnd(22)).join('')}uplink(${UPLINK_V4})`);
  for (const from of names) {
    const row = targets.map((t) => (s.ping(s.ns(from), t.ip) ? 'yes' : 'no ').padEnd(22)).join('');
    say(`${from.padEnd(w)}${row}${s.ping(s.ns(from), UPLINK_V4) ? 'yes' : 'no'}`);
  }
  say(
    `(traffic to the uplink leaves masqueraded as the host's ${HOST_V4}: the uplink has no route to 172.x)`,
  );

  step('reachability by name (ping NAME from row to column; names resolve on user-defined networks only)');
  say(`${''.padEnd(w)}${names.map((n) => n.padEnd(10)).join('')}`);
  for (const from of names) {
    const row = names.map((to) => {
      if (to === from) return '-'.padEnd(10);
      const ok = s.inNs(s.ns(from), ['ping', '-c', '1', '-W', '1', '-q', to]).code === 0;
      return (ok ? 'yes' : 'no').padEnd(10);
    });
    say(`${from.padEnd(w)}${row.join('')}`);
  }

  step('tether destroy');
  process.stdout.write(s.tetherOk('destroy'));
  say(`namespaces of the instance left: ${s.instanceNetns().length}`);
} finally {
  s.teardownSync();
}

function containerNames(): string[] {
  const out = s.tetherOk('container', 'ls').trim().split('\n').slice(1);
  return out.map((l) => l.split(/\s+/)[0]!);
}
