/**
 * Container DNS with real clients (dig, getent, ping) in container namespaces, against
 * tether's resolver started by a one-shot apply, with a fake upstream in the uplink
 * namespace (203.0.113.1) standing for the internet's resolvers.
 *
 * Conventions: container subnets from tether's pools (alpine-net 172.18.0.0/16, the
 * default bridge 172.17.0.0/16); outside addresses from 203.0.113.0/24 and 192.0.2.0/24.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Background, startInNs } from '../helpers/process.js';
import { ROOT, Sandbox, UPLINK_V4 } from '../helpers/sandbox.js';

const MANIFEST = `
daemon:
  dns: [${UPLINK_V4}]
networks:
  alpine-net: {}
  other: {}
containers:
  alpine1: { networks: [alpine-net] }
  alpine2: { networks: [alpine-net] }
  alpine3: {}
  alpine4: { networks: [alpine-net, bridge] }
  web1:
    hostname: webhost
    networks: { alpine-net: { aliases: [www] } }
    extra_hosts: ["gateway.local:172.18.0.1"]
  web2:
    networks: { alpine-net: { aliases: [www] } }
  stranger: { networks: [other] }
`;

describe('container DNS on the kernel', () => {
  let s: Sandbox;
  let upstream: Background;
  const dig = (c: string, ...args: string[]) =>
    s.inNs(s.ns(c), ['dig', '+time=2', '+tries=1', ...args]).stdout;
  const short = (c: string, ...args: string[]) =>
    dig(c, '+short', ...args)
      .trim()
      .split('\n')
      .filter(Boolean)
      .sort();
  const status = (c: string, ...args: string[]) => /status: (\w+)/.exec(dig(c, ...args))?.[1];

  beforeAll(async () => {
    s = Sandbox.create();
    upstream = startInNs(s.uplink, ['node', join(ROOT, 'test/helpers/dns-upstream.cjs'), UPLINK_V4]);
    await upstream.ready;
    s.write('m.yaml', MANIFEST);
    s.tetherOk('apply', '-f', s.manifests);
  });
  afterAll(async () => {
    upstream?.stop();
    await s?.teardown();
  });

  it('resolves the seed walkthrough by name: alpine1 reaches alpine2 and alpine4, not alpine3', () => {
    expect(s.inNs(s.ns('alpine1'), ['ping', '-c1', '-W1', 'alpine2']).code).toBe(0);
    expect(s.inNs(s.ns('alpine1'), ['ping', '-c1', '-W1', 'alpine4']).code).toBe(0);
    const r = s.inNs(s.ns('alpine1'), ['ping', '-c1', '-W1', 'alpine3']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/alpine3/);
    // alpine4 reaches alpine3 only by IP; alpine3 (default bridge) resolves no container names.
    expect(s.inNs(s.ns('alpine4'), ['getent', 'hosts', 'alpine3']).code).not.toBe(0);
    expect(s.ping(s.ns('alpine4'), '172.17.0.2')).toBe(true);
    expect(s.inNs(s.ns('alpine3'), ['getent', 'hosts', 'alpine1']).code).not.toBe(0);
  });

  it('answers names, aliases and hostnames, all holders of a shared alias, and PTR', () => {
    expect(short('alpine1', 'alpine2')).toEqual(['172.18.0.3']);
    const web = [...short('alpine1', 'web1'), ...short('alpine1', 'web2')].sort();
    expect(short('alpine1', 'www')).toEqual(web);
    expect(short('alpine1', 'webhost')).toEqual(short('alpine1', 'web1'));
    expect(short('alpine1', '-x', '172.18.0.3')).toEqual(['alpine2.']);
    expect(short('alpine1', 'ALPINE2')).toEqual(['172.18.0.3']);
  });

  it('scopes names to shared networks: other networks give NXDOMAIN', () => {
    expect(status('alpine1', 'stranger')).toBe('NXDOMAIN');
    expect(status('stranger', 'alpine1')).toBe('NXDOMAIN');
  });

  it('forwards other names upstream over UDP and TCP, passing NXDOMAIN back', () => {
    expect(short('alpine1', 'example.test')).toEqual(['192.0.2.80']);
    expect(short('alpine1', '+tcp', 'example.test')).toEqual(['192.0.2.80']);
    expect(status('alpine1', 'nothing.test')).toBe('NXDOMAIN');
    expect(s.inNs(s.ns('alpine1'), ['getent', 'hosts', 'example.test']).stdout).toMatch(/192\.0\.2\.80/);
  });

  it('writes resolv.conf and hosts that ip netns exec shows', () => {
    const rc = s.inNs(s.ns('alpine1'), ['cat', '/etc/resolv.conf']).stdout;
    expect(rc).toMatch(/^nameserver 172\.18\.0\.1$/m);
    expect(rc).toMatch(/ndots:0/);
    const rc3 = s.inNs(s.ns('alpine3'), ['cat', '/etc/resolv.conf']).stdout;
    expect(rc3).toMatch(new RegExp(`^nameserver ${UPLINK_V4.replace(/\./g, '\\.')}$`, 'm'));
    const hosts = s.inNs(s.ns('web1'), ['cat', '/etc/hosts']).stdout;
    expect(hosts).toMatch(/^172\.18\.0\.1\tgateway\.local$/m);
    expect(hosts).toMatch(/\twebhost web1$/m);
    // Docker's IPv6 defaults too: the container's lo has ::1, though its network is IPv4-only.
    expect(hosts).toMatch(/^::1\tlocalhost ip6-localhost ip6-loopback$/m);
    expect(s.inNs(s.ns('web1'), ['ip', '-6', 'addr', 'show', 'dev', 'lo']).stdout).toMatch(/::1\/128/);
    expect(s.tetherOk('exec', 'web1', '--', 'getent', 'hosts', 'gateway.local')).toMatch(/172\.18\.0\.1/);
  });

  it('refuses queries from outside the network', () => {
    s.inNs(s.uplink, ['ip', 'route', 'add', '172.18.0.0/16', 'via', '203.0.113.2']);
    const out = s.inNs(s.uplink, ['dig', '+time=2', '+tries=1', '@172.18.0.1', 'alpine1']).stdout;
    expect(out).toMatch(/status: REFUSED/);
  });

  it('survives malformed packets', () => {
    s.inNs(s.ns('alpine1'), ['bash', '-c', 'printf "\\x00\\x01garbage" > /dev/udp/172.18.0.1/53']);
    expect(short('alpine1', 'alpine2')).toEqual(['172.18.0.3']);
  });

  it('answers SERVFAIL in bounded time when the upstream is gone', () => {
    upstream.stop();
    const t0 = Date.now();
    expect(status('alpine1', 'example.test')).toBe('SERVFAIL');
    expect(Date.now() - t0).toBeLessThan(4000);
  });

  it('keeps one part file per named container; a resolver that died is started again with all of them', async () => {
    const run = join(s.dir, 'run', s.instance);
    const parts = () => readdirSync(join(run, 'dns')).sort();
    // alpine3 is on the default bridge only: no embedded DNS, no part.
    const named = ['alpine1', 'alpine2', 'alpine4', 'stranger', 'web1', 'web2'].map((n) => `${n}.json`);
    expect(parts()).toEqual(named);
    // The resolver this sandbox's apply started, by its recorded pid; a part left over.
    const pid = Number(readFileSync(join(run, 'dns.pid'), 'utf8'));
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).toMatch(/dns-serve/);
    process.kill(pid, 'SIGKILL');
    while (existsSync(`/proc/${pid}`)) await new Promise((r) => setTimeout(r, 10));
    writeFileSync(join(run, 'dns', 'ghost.json'), '{"endpoints":[]}\n');
    const plan = JSON.parse(s.tetherOk('plan', '-f', s.manifests, '--json')).actions;
    expect(plan).toMatchObject([{ op: 'resolver.reload', start: true, removeParts: 'others' }]);
    expect(Object.keys(plan[0].parts).sort()).toEqual(named.map((f) => f.slice(0, -5)));
    s.tetherOk('apply', '-f', s.manifests);
    expect(parts()).toEqual(named);
    expect(short('alpine1', 'www')).toEqual(['172.18.0.5', '172.18.0.6']);
  });

  it('follows edits in the running resolver: a new container, a changed alias, a container gone', () => {
    const run = join(s.dir, 'run', s.instance);
    const pid = readFileSync(join(run, 'dns.pid'), 'utf8');
    const edited = MANIFEST.replace(
      'web2:\n    networks: { alpine-net: { aliases: [www] } }',
      'web2:\n    networks: { alpine-net: { aliases: [api] } }',
    )
      .replace('  alpine2: { networks: [alpine-net] }\n', '')
      .concat('  alpine5:\n    networks: { alpine-net: { aliases: [www] } }\n');
    expect(edited).not.toBe(MANIFEST);
    s.write('m.yaml', edited);
    s.tetherOk('apply', '-f', s.manifests, '--prune-all');
    // The same resolver process, reloaded with the changed parts only.
    expect(readFileSync(join(run, 'dns.pid'), 'utf8')).toBe(pid);
    const [five] = short('alpine1', 'alpine5');
    expect(five).toMatch(/^172\.18\.0\.\d+$/);
    expect(short('alpine1', 'www')).toEqual([...short('alpine1', 'web1'), five!].sort());
    expect(short('alpine1', 'api')).toEqual(short('alpine1', 'web2'));
    expect(short('alpine1', '-x', five!)).toEqual(['alpine5.']);
    expect(status('alpine1', 'alpine2')).not.toBe('NOERROR');
    expect(short('alpine5', 'alpine1')).toEqual(short('alpine4', 'alpine1'));
    // And back: the seed's names again.
    s.write('m.yaml', MANIFEST);
    s.tetherOk('apply', '-f', s.manifests, '--prune-all');
    expect(readFileSync(join(run, 'dns.pid'), 'utf8')).toBe(pid);
    expect(short('alpine1', 'alpine2')).toEqual(['172.18.0.3']);
    expect(status('alpine1', 'alpine5')).not.toBe('NOERROR');
    expect(short('alpine1', 'www')).toEqual(
      [...short('alpine1', 'web1'), ...short('alpine1', 'web2')].sort(),
    );
  });

  it('replaces a resolver that speaks another protocol instead of reloading it', () => {
    const run = join(s.dir, 'run', s.instance);
    const pid = readFileSync(join(run, 'dns.pid'), 'utf8');
    // What the resolver of an older tether leaves in dns.loaded: the bare hash.
    const loaded = join(run, 'dns.loaded');
    writeFileSync(loaded, readFileSync(loaded, 'utf8').split(' ').at(-1)!);
    const plan = JSON.parse(s.tetherOk('plan', '-f', s.manifests, '--json')).actions;
    expect(plan).toMatchObject([{ op: 'resolver.reload', start: true, removeParts: 'others' }]);
    s.tetherOk('apply', '-f', s.manifests);
    expect(readFileSync(join(run, 'dns.pid'), 'utf8')).not.toBe(pid);
    const cmdline = `/proc/${pid}/cmdline`;
    expect(existsSync(cmdline) ? readFileSync(cmdline, 'utf8') : '').not.toMatch(/dns-serve/);
    expect(short('alpine1', 'alpine2')).toEqual(['172.18.0.3']);
  });

  it('plan is empty after apply; destroy stops the resolver and removes the files', () => {
    expect(JSON.parse(s.tetherOk('plan', '-f', s.manifests, '--json')).actions).toEqual([]);
    s.tetherOk('destroy');
    expect(s.inNs(s.host, ['ss', '-lun']).stdout).not.toMatch(/:53\b/);
    expect(readdirSync('/etc/netns').filter((d: string) => d.startsWith(`${s.instance}-`))).toEqual([]);
    expect(existsSync(join(s.dir, 'run', s.instance, 'dns'))).toBe(false);
    expect(existsSync(join(s.dir, 'run', s.instance, 'dns.json'))).toBe(false);
  });
});
