/**
 * Minimal change, stickiness, ownership and clean-up on the real kernel, each verified
 * with `ip -j` / `nft -j` rather than tether's own observe.
 *
 * Conventions: container subnets from tether's pools (172.18/16 …) or explicit
 * 172.30.x; outside addresses only from 203.0.113.0/24.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Sandbox } from '../helpers/sandbox.js';

const require = createRequire(import.meta.url);

const plan = (s: Sandbox) => JSON.parse(s.tetherOk('plan', '-f', s.manifests, '--json')).actions as any[];

function links(s: Sandbox, ns: string): string[] {
  return s
    .ipJson(ns, 'link', 'show')
    .map((l: any) => l.ifname)
    .sort();
}

describe('reconcile on the kernel', () => {
  let s: Sandbox;
  afterEach(() => s?.teardown());

  it('adds one container touching only its own objects, and keeps every address', () => {
    s = Sandbox.create({ uplink: false });
    s.write(
      'a.yaml',
      'networks:\n  web: {}\ncontainers:\n  c1: { networks: [web] }\n  c2: { networks: [web] }\n',
    );
    s.tetherOk('apply', '-f', s.manifests);
    const ip1 = s.ipJson(s.ns('c1'), 'addr', 'show', 'dev', 'eth0')[0].addr_info[0].local;
    const hostLinksBefore = links(s, s.host);

    // c0 sorts before c1 and would take .2 if addresses were handed out afresh.
    s.write('b.yaml', 'containers:\n  c0: { networks: [web] }\n');
    const p = plan(s);
    // netns + veth + address + route + resolv.conf + hosts = 6, all c0's,
    // and the resolver reloaded with c0's name = 7
    expect(p).toHaveLength(7);
    for (const a of p.filter((x) => x.op !== 'resolver.reload')) expect(a.container ?? a.path).toMatch(/c0/);
    expect(p.filter((x) => x.op === 'resolver.reload')).toHaveLength(1);
    s.tetherOk('apply', '-f', s.manifests);
    expect(plan(s)).toEqual([]);
    expect(s.ipJson(s.ns('c1'), 'addr', 'show', 'dev', 'eth0')[0].addr_info[0].local).toBe(ip1);
    const added = links(s, s.host).filter((l) => !hostLinksBefore.includes(l));
    expect(added).toHaveLength(1);
    expect(added[0]).toMatch(/^veth[0-9a-f]{11}$/);
  });

  it('removing a network removes only its bridge, its veths and its nft elements', () => {
    s = Sandbox.create({ uplink: false });
    s.write(
      'a.yaml',
      'networks:\n  front: {}\n  back: {}\ncontainers:\n  app: { networks: [front, back] }\n',
    );
    s.tetherOk('apply', '-f', s.manifests);
    const tableBefore = JSON.stringify(s.nftTable());
    s.write('a.yaml', 'networks:\n  front: {}\ncontainers:\n  app: { networks: [front] }\n');
    const p = plan(s);
    const ops = p.map((a) => a.op).sort();
    // veth of app on back, bridge of back, its 4 set elements (bridges, samebridge,
    // subnets4, masq4), app's default route moves to front ("back" < "front" had it),
    // app's resolv.conf (the resolver is now front's gateway) and hosts, the resolver = 10
    expect(ops).toEqual(
      [
        'file.write',
        'file.write',
        'resolver.reload',
        'bridge.delete',
        'nft.element.delete',
        'nft.element.delete',
        'nft.element.delete',
        'nft.element.delete',
        'route.add',
        'veth.delete',
      ].sort(),
    );
    expect(p.find((a) => a.op === 'bridge.delete').network).toBe('back');
    s.tetherOk('apply', '-f', s.manifests);
    expect(plan(s)).toEqual([]);
    expect(links(s, s.ns('app'))).toEqual(['eth0', 'lo']);
    expect(JSON.stringify(s.nftTable())).not.toEqual(tableBefore);
  });

  it('never touches foreign objects, and a name clash is an error, not a takeover', () => {
    s = Sandbox.create({ uplink: false });
    // A foreign bridge named like the one the manifest asks for, a foreign nft table.
    s.inNs(s.host, ['ip', 'link', 'add', 'br-taken', 'type', 'bridge']);
    s.inNs(s.host, ['ip', 'link', 'add', 'br-other', 'type', 'bridge']);
    s.inNs(s.host, ['nft', 'add', 'table', 'inet', 'foreign']);
    s.write(
      'a.yaml',
      'networks:\n  n: { driver_opts: { com.docker.network.bridge.name: br-taken } }\ncontainers:\n  c: { networks: [n] }\n',
    );
    const r = s.tether('apply', '-f', s.manifests);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/br-taken already exists.*not tether's/);
    expect(s.instanceNetns()).toEqual([]); // nothing was done
    s.write('a.yaml', 'networks:\n  n: {}\ncontainers:\n  c: { networks: [n] }\n');
    s.tetherOk('apply', '-f', s.manifests);
    s.tetherOk('destroy');
    expect(links(s, s.host)).toEqual(['br-other', 'br-taken', 'lo']);
    expect(s.inNs(s.host, ['nft', 'list', 'tables']).stdout.trim()).toBe('table inet foreign');
    expect(s.instanceNetns()).toEqual([]);
  });

  it('bad manifests change nothing and exit 2 with file:line:col', () => {
    s = Sandbox.create({ uplink: false });
    s.write('a.yaml', 'networks:\n  n: {}\ncontainers:\n  c: { networks: [n] }\n');
    s.tetherOk('apply', '-f', s.manifests);
    const addrs = () =>
      s
        .ipJson(s.host, 'addr', 'show')
        .flatMap((l: any) => l.addr_info.map((a: any) => `${l.ifname} ${a.local}/${a.prefixlen}`));
    const hostBefore = addrs();
    s.write('a.yaml', 'networks:\n  n: {}\ncontainers:\n  c: { networks: [nope] }\n');
    const r = s.tether('apply', '-f', s.manifests);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/a\.yaml:4:\d+/);
    expect(addrs()).toEqual(hostBefore);
    expect(s.instanceNetns()).toEqual([s.ns('c')]);
  });

  it('destroy leaves nothing of ours, and refuses nothing', () => {
    s = Sandbox.create({ uplink: false });
    s.write(
      'a.yaml',
      'networks:\n  n: {}\ncontainers:\n  a: { networks: [n] }\n  b: {}\n  h: { network_mode: host }\n  z: { network_mode: none }\n',
    );
    s.tetherOk('apply', '-f', s.manifests);
    expect(s.instanceNetns().sort()).toEqual([s.ns('a'), s.ns('b'), s.ns('z')].sort());
    expect(links(s, s.ns('z'))).toEqual(['lo']);
    s.tetherOk('destroy');
    expect(s.instanceNetns()).toEqual([]);
    expect(links(s, s.host)).toEqual(['lo']);
    expect(s.nftTable()).toBeNull();
    expect(s.inNs(s.host, ['nft', 'list', 'tables']).stdout.trim()).toBe('');
  });

  it('refuses a manifest change that would delete most of what exists, unless --prune-all', () => {
    s = Sandbox.create({ uplink: false });
    s.write('a.yaml', 'networks:\n  n: {}\ncontainers:\n  a: { networks: [n] }\n  b: { networks: [n] }\n');
    s.tetherOk('apply', '-f', s.manifests);
    s.write('a.yaml', '# emptied by mistake\n');
    const r = s.tether('apply', '-f', s.manifests);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/refusing to delete/);
    expect(s.instanceNetns()).toHaveLength(2);
    s.tetherOk('apply', '-f', s.manifests, '--prune-all');
    expect(s.instanceNetns()).toHaveLength(0);
  });

  it('an attached namespace gets its interface, and keeps existing after removal', () => {
    s = Sandbox.create({ uplink: false });
    const user = `${s.instance}x-user`;
    s.inNs(s.host, ['true']);
    require('node:child_process').execFileSync('ip', ['netns', 'add', user]);
    try {
      s.write(
        'a.yaml',
        `networks:\n  n: {}\ncontainers:\n  att:\n    netns: /run/netns/${user}\n    networks: [n]\n`,
      );
      s.tetherOk('apply', '-f', s.manifests);
      expect(plan(s)).toEqual([]);
      expect(links(s, user)).toEqual(['eth0', 'lo']);
      s.tetherOk('destroy');
      expect(links(s, user)).toEqual(['lo']);
    } finally {
      require('node:child_process').execFileSync('ip', ['netns', 'del', user]);
    }
  });
});

describe('the instance lock', () => {
  it('serializes concurrent applies of one instance: both succeed, the result is converged', async () => {
    const s = Sandbox.create({ uplink: false });
    try {
      s.write('a.yaml', 'networks:\n  n: {}\ncontainers:\n  a: { networks: [n] }\n  b: { networks: [n] }\n');
      const { spawn } = await import('node:child_process');
      const run = () =>
        new Promise<number>((res) => {
          const [cmd, ...args] = s.tetherArgv(['apply', '-f', s.manifests]);
          const p = spawn(cmd, args, { stdio: 'ignore' });
          p.on('exit', (c) => res(c ?? 1));
        });
      expect(await Promise.all([run(), run()])).toEqual([0, 0]);
      expect(JSON.parse(s.tetherOk('plan', '-f', s.manifests, '--json')).actions).toEqual([]);
      expect(s.instanceNetns()).toHaveLength(2);
    } finally {
      await s.teardown();
    }
  });
});

describe('drift repair by apply', () => {
  it('restores a deleted bridge, a downed veth, a removed route, an nft element and a killed resolver', () => {
    const s = Sandbox.create({ uplink: false });
    try {
      s.write('a.yaml', 'networks:\n  n: {}\ncontainers:\n  a: { networks: [n] }\n  b: { networks: [n] }\n');
      s.tetherOk('apply', '-f', s.manifests);
      const bridge = s.ipJson(s.host, '-d', 'link', 'show', 'type', 'bridge')[0].ifname as string;
      const veth = s.ipJson(s.host, 'link', 'show', 'master', bridge)[0].ifname as string;
      s.inNs(s.host, ['ip', 'link', 'set', veth, 'down']);
      s.inNs(s.ns('b'), ['ip', 'route', 'del', 'default']);
      s.inNs(s.host, ['nft', 'flush', 'set', 'inet', s.instance, 'masq4']);
      const pid = Number(readFileSync(join(s.runDir, s.instance, 'dns.pid'), 'utf8'));
      process.kill(pid, 'SIGKILL');
      const drift = JSON.parse(s.tetherOk('plan', '-f', s.manifests, '--json'))
        .actions.map((a: any) => a.op)
        .sort();
      // veth up, b's route, the masq4 element, the resolver
      expect(drift).toEqual(['link.set', 'nft.element.add', 'resolver.reload', 'route.add'].sort());
      s.inNs(s.host, ['ip', 'link', 'del', bridge]);
      s.tetherOk('apply', '-f', s.manifests);
      expect(JSON.parse(s.tetherOk('plan', '-f', s.manifests, '--json')).actions).toEqual([]);
      expect(s.ping(s.ns('a'), '172.18.0.3')).toBe(true);
      expect(s.inNs(s.ns('a'), ['getent', 'hosts', 'b']).stdout).toMatch(/172\.18\.0\.3/);
    } finally {
      s.teardownSync();
    }
  });
});
