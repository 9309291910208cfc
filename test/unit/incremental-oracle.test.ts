/**
 * The incremental planning path (resolve, desiredState and diff, each patching its last
 * result for the containers that changed) against a from-scratch computation, over
 * thousands of random steps: edits of the manifest (containers added, removed, moved to
 * other networks, given other ports, aliases, static addresses; a network's ICC, IPv6 or
 * `internal` switched; the daemon's DNS servers) and of the kernel (converged, observed
 * afresh, a veth or namespace gone, an address or a link changed).
 *
 * The from-scratch side is a second copy of the modules (vi.resetModules), which plans an
 * empty world before each step and is given deep copies of the step's inputs: nothing it
 * remembers applies, so it computes everything. Both sides must give equal results, or
 * fail with the same problems.
 */
import { describe, expect, it, vi } from 'vitest';
import { desiredState } from '../../src/diff/desired.js';
import { diff } from '../../src/diff/diff.js';
import { resolverOf } from '../../src/dns/config.js';
import type { ProxySpec } from '../../src/dns/proxy.js';
import { patchRecord, sameData } from '../../src/model/intern.js';
import type { Spec } from '../../src/model/spec.js';
import { EMPTY_STATE, type KernelState, type NamespaceState } from '../../src/model/state.js';
import { resolve } from '../../src/spec/ipam.js';
import { loadSpecCached, loadSpecFromStrings } from '../../src/spec/load.js';

const host = {
  reserved4: [],
  reserved6: [],
  ulaSeed: 'oracle',
  ephemeralPorts: [49153, 49200] as [number, number],
};
const RESOLV = ['nameserver 192.0.2.53\n', 'nameserver 198.51.100.7\nsearch example.internal\n'];

interface Ctr {
  nets: string[];
  port: number;
  ephemeral: boolean;
  alias?: string;
  ip?: number;
  hostname?: string;
}
interface World {
  ipv6: boolean;
  icc: boolean;
  internal: boolean;
  dns: boolean;
  containers: Map<string, Ctr>;
}

function manifest(w: World): string {
  const l: string[] = [];
  if (w.dns) l.push('daemon: { dns: [192.0.2.99] }');
  const n0 = [`ipam: { config: [{ subnet: 10.10.0.0/28 }] }`];
  if (w.ipv6) n0.push('enable_ipv6: true');
  if (!w.icc) n0.push('driver_opts: { com.docker.network.bridge.enable_icc: "false" }');
  l.push('networks:', `  n0: { ${n0.join(', ')} }`, `  n1: { internal: ${w.internal} }`, 'containers:');
  for (const [name, c] of w.containers) {
    l.push(`  ${name}:`);
    if (c.hostname) l.push(`    hostname: ${c.hostname}`);
    if (c.nets.length) {
      l.push('    networks:');
      for (const n of c.nets) {
        const o: string[] = [];
        if (c.alias) o.push(`aliases: [${c.alias}]`);
        if (n === 'n0' && c.ip !== undefined) o.push(`ipv4_address: 10.10.0.${c.ip}`);
        l.push(`      ${n}: { ${o.join(', ')} }`);
      }
    }
    const ports = [`"${c.port}:80"`];
    if (c.ephemeral) ports.push('"127.0.0.1::53/udp"', '"[::]::81"');
    l.push(`    ports: [${ports.join(', ')}]`);
  }
  return `${l.join('\n')}\n`;
}

/** What the live observer gives: a fresh state that keeps the last observation's unchanged objects. */
function observed(prev: KernelState, now: KernelState): KernelState {
  const keep = <T>(p: Readonly<Record<string, T>>, n: Readonly<Record<string, T>>) => {
    const out: Record<string, T> = {};
    for (const [k, v] of Object.entries(n))
      out[k] = Object.hasOwn(p, k) && sameData(p[k], v) ? p[k]! : structuredClone(v);
    return out;
  };
  const sets = keep(prev.nft.sets, now.nft.sets);
  return {
    bridges: keep(prev.bridges, now.bridges),
    veths: keep(prev.veths, now.veths),
    namespaces: keep(prev.namespaces, now.namespaces),
    sysctls: { ...now.sysctls },
    nft: now.nft.skeleton ? { skeleton: now.nft.skeleton, sets } : { sets: {} },
    files: { ...now.files },
    ...(now.resolver ? { resolver: { config: now.resolver.config, running: true } } : {}),
  };
}

describe('incremental planning oracle', () => {
  it('gives what a from-scratch resolve, desired state and diff give, over 1200 random steps', async () => {
    vi.resetModules();
    const other = {
      resolve: (await import('../../src/spec/ipam.js')).resolve,
      desiredState: (await import('../../src/diff/desired.js')).desiredState,
      diff: (await import('../../src/diff/diff.js')).diff,
    };
    expect(other.resolve).not.toBe(resolve);
    const empty = loadSpecFromStrings([{ path: '/m/empty.yaml', text: '' }]);
    /** The from-scratch side: after a plan of nothing, on copies (no object seen before). */
    const fromScratch = (spec: Spec, actual: KernelState, resolvConf: string) => {
      other.diff(other.desiredState(other.resolve(empty, 'orc', EMPTY_STATE, host)), EMPTY_STATE, 'orc');
      const copy = { ...spec, ...structuredClone({ networks: spec.networks, containers: spec.containers }) };
      const r = other.resolve(copy, 'orc', structuredClone(actual), host);
      const d = other.desiredState(r, resolvConf);
      return { r, d, plan: other.diff(d, structuredClone(actual), 'orc') };
    };

    let seed = 20261129;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x7fffffff;
    };
    const int = (n: number) => Math.floor(rnd() * n);
    const pick = <X>(xs: readonly X[]) => xs[int(xs.length)]!;
    let serial = 0;
    let ports = 20000;
    const newCtr = (): Ctr => ({
      nets: pick([['n0'], ['n0'], ['n0', 'n1'], ['n1'], []]),
      port: ports++,
      ephemeral: rnd() < 0.04,
      alias: rnd() < 0.3 ? `al${int(5)}` : undefined,
      ip: rnd() < 0.2 ? 2 + int(16) : undefined,
    });
    const w: World = { ipv6: false, icc: true, internal: false, dns: false, containers: new Map() };
    // Some names are array indexes, which records hold ahead of the others.
    const newName = () => (rnd() < 0.15 ? `${serial++}` : `c${serial++}`);
    for (let i = 0; i < 8; i++) w.containers.set(newName(), newCtr());

    const parsed = new Map();
    const pieces = new Map();
    let actual: KernelState = EMPTY_STATE;
    let resolvConf = RESOLV[0]!;
    let failures = 0;
    let patchedSteps = 0;
    let patchedResolves = 0;
    for (let step = 0; step < 1200; step++) {
      // An edit of the manifest, most of the time one container (undone if the loader refuses it).
      const before = structuredClone(w);
      const names = [...w.containers.keys()];
      const r = rnd();
      if (r < 0.25 && w.containers.size < 20) {
        // Added at the end, or in the middle (the containers after it move down).
        const entries = [...w.containers];
        entries.splice(rnd() < 0.7 ? entries.length : int(entries.length + 1), 0, [newName(), newCtr()]);
        w.containers = new Map(entries);
      } else if (r < 0.45 && names.length) w.containers.delete(pick(names));
      else if (r < 0.6 && names.length) {
        const c = w.containers.get(pick(names))!;
        const what = int(6);
        if (what === 0 || what === 5) c.nets = pick([['n0'], ['n1'], ['n0', 'n1'], []]);
        else if (what === 1) c.port = ports++;
        else if (what === 2) c.alias = rnd() < 0.5 ? `al${int(5)}` : undefined;
        else if (what === 3) c.ip = rnd() < 0.5 ? 2 + int(16) : undefined;
        else c.hostname = rnd() < 0.5 ? `h${int(3)}` : undefined;
      } else if (r < 0.63) w.icc = !w.icc;
      else if (r < 0.66) w.ipv6 = !w.ipv6;
      else if (r < 0.68) w.internal = !w.internal;
      else if (r < 0.7) w.dns = !w.dns;
      else if (r < 0.72) resolvConf = pick(RESOLV);
      const text = manifest(w);
      let spec: ReturnType<typeof loadSpecCached>;
      try {
        spec = loadSpecCached([{ path: '/m/m.yaml', text, sha256: String(step) }], parsed, pieces);
      } catch {
        Object.assign(w, before);
        continue;
      } finally {
        parsed.clear();
      }

      const outcome = (f: () => unknown) => {
        try {
          return { ok: f() };
        } catch (e) {
          return { error: String(e) };
        }
      };
      let got: { r: ReturnType<typeof resolve>; d: KernelState } | undefined;
      const a = outcome(() => {
        const res = resolve(spec, 'orc', actual, host);
        const d = desiredState(res, resolvConf);
        got = { r: res, d };
        return { r: res, d, plan: diff(d, actual, 'orc') };
      });
      const b = outcome(() => fromScratch(spec, actual, resolvConf));
      if ('error' in b || 'error' in a) {
        expect({ step, a: 'error' in a && a.error }).toEqual({ step, a: 'error' in b && b.error });
        failures++;
        // Undo the bad edit now and then, so the world does not stay broken.
        if (rnd() < 0.5) for (const c of w.containers.values()) c.ip = undefined;
        continue;
      }
      const x = a.ok as { r: ReturnType<typeof resolve>; d: KernelState; plan: unknown };
      const y = b.ok as typeof x;
      if (!sameData(x.r, y.r) || !sameData(x.d, y.d) || JSON.stringify(x.plan) !== JSON.stringify(y.plan)) {
        expect({ step, r: x.r }).toEqual({ step, r: y.r });
        expect({ step, d: x.d }).toEqual({ step, d: y.d });
        expect({ step, plan: x.plan }).toEqual({ step, plan: y.plan });
      }
      // Orders that texts and listings follow.
      expect(Object.keys(x.r.containers)).toEqual(Object.keys(y.r.containers));
      // (Records patched by intern.ts patchRecord have no prototype.)
      if (Object.getPrototypeOf(x.r.containers) === null) patchedResolves++;
      if (got && got.d.veths !== actual.veths && Object.getPrototypeOf(got.d.veths) === null) patchedSteps++;

      // The kernel after this step.
      const k = rnd();
      const d = got!.d;
      if (k < 0.4) actual = d;
      else if (k < 0.65) actual = observed(actual, d);
      else if (k < 0.73 && Object.keys(actual.veths).length) {
        const veths = { ...actual.veths };
        delete veths[pick(Object.keys(veths))];
        actual = { ...actual, veths };
      } else if (k < 0.78 && Object.keys(actual.namespaces).length) {
        const gone = pick(Object.keys(actual.namespaces));
        const namespaces = { ...actual.namespaces };
        delete namespaces[gone];
        const veths = Object.fromEntries(
          Object.entries(actual.veths).filter(([, v]) => v.container !== gone),
        );
        actual = { ...actual, namespaces, veths };
      } else if (k < 0.96 && Object.keys(actual.namespaces).length) {
        // Another address, or a link down, in one namespace.
        const c = pick(Object.keys(actual.namespaces));
        const ns = actual.namespaces[c]!;
        const links: Record<string, NamespaceState['links'][string]> = {};
        for (const [name, l] of Object.entries(ns.links))
          links[name] =
            rnd() < 0.5
              ? { ...l, addrs: l.addrs.map((a) => a.replace(/\.(\d+)\//, `.${2 + int(14)}/`)) }
              : { ...l, up: false };
        actual = { ...actual, namespaces: { ...actual.namespaces, [c]: { ...ns, links } } };
      }
    }
    // The run did go through failures and through the patching paths.
    expect(failures).toBeGreaterThan(5);
    expect(patchedSteps).toBeGreaterThan(300);
    expect(patchedResolves).toBeGreaterThan(150);
  });
});

describe('desiredState of one resolved world', () => {
  it('follows the host resolv.conf it is given', () => {
    const spec = loadSpecFromStrings([
      { path: '/m/m.yaml', text: 'networks:\n  n0: {}\ncontainers:\n  a: { networks: [n0] }\n  b: {}\n' },
    ]);
    const r = resolve(spec, 'same', EMPTY_STATE, host);
    const first = desiredState(r, RESOLV[0]!);
    const second = desiredState(r, RESOLV[1]!);
    expect(second).not.toEqual(first);
    expect(desiredState(r, RESOLV[0]!)).toEqual(first);
  });
});

describe('the resolver index of patched part hashes and chosen ports', () => {
  it("is JSON.stringify's text, also when a patch adds a key that is an array index", () => {
    let hashes: Readonly<Record<string, string>> = { b: '1', a: '2' };
    const proxy = (port: number) =>
      ({ protocol: 'tcp', listen: '::', port, to: '10.0.0.2', toPort: 80 }) as const;
    let chosen: Readonly<Record<string, readonly ProxySpec[]>> = { a: [proxy(1)] };
    for (const [k, v] of [
      ['c', '3'],
      ['7', '4'],
      ['a', undefined],
      ['10', '5'],
      ['b', '6'],
    ] as const) {
      hashes = patchRecord(hashes, new Map([[k, v]]));
      chosen = patchRecord(chosen, new Map([[k, v && [proxy(Number(v))]]]));
      const { config } = resolverOf(null, {}, hashes, chosen, 0);
      expect(config).toBe(`${JSON.stringify({ dns: null, parts: hashes, chosen })}\n`);
    }
  });
});
