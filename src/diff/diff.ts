/**
 * diff(desired, actual) → Plan. Pure, total and deterministic: objects are visited in
 * sorted order; deletions come first (reverse dependency order), then creations and
 * updates (dependency order), then the nft changes.
 */
import type { KernelState, NamespaceState, VethState } from '../model/state.js';
import type { Action, LinkChange, Plan } from './plan.js';

const keys = <T>(o: Readonly<Record<string, T>>) => Object.keys(o).sort();
/** The items of `a` not in `b`, in `a`'s order (through a Set when `b` is big: nft sets hold thousands). */
function minus(a: readonly string[], b: readonly string[]): string[] {
  if (a.length === 0 || b.length <= 8) return a.filter((x) => !b.includes(x));
  const drop = new Set(b);
  return a.filter((x) => !drop.has(x));
}

export function diff(desired: KernelState, actual: KernelState, table: string): Plan {
  const del: Action[] = [];
  const add: Action[] = [];
  const wantVeth = indexVeths(desired);
  const haveVeth = indexVeths(actual);
  const haveNs = keys(actual.namespaces);
  const wantNs = keys(desired.namespaces);

  // Namespaces tether created and no longer wants.
  const dyingNs = new Set<string>();
  for (const c of haveNs) {
    const a = actual.namespaces[c]!;
    if (!desired.namespaces[c] && !a.attached && a.netnsName) {
      dyingNs.add(c);
    } else if (desired.namespaces[c] && a.netnsName && desired.namespaces[c]!.attached) {
      dyingNs.add(c); // was created by tether, now attached to a user namespace
    }
  }

  // Veths: delete those not wanted, or wanted differently (other peer name or namespace).
  const dyingVeth = new Set<string>();
  for (const v of keys(actual.veths)) {
    const a = actual.veths[v]!;
    const d = desired.veths[v];
    const ans = actual.namespaces[a.container];
    const peerNow = ans && Object.values(ans.links).find((l) => l.network === a.network);
    const dns = desired.namespaces[a.container];
    const peerWant = dns && Object.values(dns.links).find((l) => l.network === a.network);
    const recreate =
      d && (!peerNow || !peerWant || peerNow.name !== peerWant.name || dyingNs.has(a.container));
    if (!d || recreate) {
      dyingVeth.add(v);
      // A dying namespace takes its veths with it: the kernel removes all of a
      // namespace's interfaces in one batch (one RCU grace period instead of one per
      // veth), which apply waits for.
      if (!dyingNs.has(a.container))
        del.push({ op: 'veth.delete', container: a.container, network: a.network, name: v });
    }
  }

  // Inside surviving namespaces: routes and addresses to remove.
  for (const c of haveNs) {
    if (dyingNs.has(c)) continue;
    const a = actual.namespaces[c]!;
    const d = desired.namespaces[c];
    if (!d) continue;
    for (const r of a.routes) {
      const keep = d.routes.some((x) => x.family === r.family && x.via === r.via && x.dev === r.dev);
      const linkDying = isLinkDying(a, r.dev, dyingVeth, haveVeth);
      if (!keep && !linkDying)
        del.push({ op: 'route.del', container: c, nsPath: a.path, family: r.family, via: r.via, dev: r.dev });
    }
    for (const name of keys(a.links)) {
      const dl = d.links[name];
      if (!dl || isLinkDying(a, name, dyingVeth, haveVeth)) continue;
      for (const cidr of minus(a.links[name]!.addrs, dl.addrs))
        del.push({ op: 'addr.del', container: c, nsPath: a.path, dev: name, cidr });
    }
  }

  // Bridges.
  for (const b of keys(actual.bridges)) {
    const a = actual.bridges[b]!;
    const d = desired.bridges[b];
    if (!d || d.network !== a.network) del.push({ op: 'bridge.delete', network: a.network, name: b });
    else for (const cidr of minus(a.addrs, d.addrs)) del.push({ op: 'addr.del', dev: b, cidr });
  }
  for (const c of [...dyingNs].sort()) {
    const a = actual.namespaces[c]!;
    del.push({ op: 'netns.delete', container: c, name: a.netnsName! });
  }

  // Creations and updates.
  for (const c of wantNs) {
    const d = desired.namespaces[c]!;
    if (d.attached || !d.netnsName) continue;
    if (!actual.namespaces[c] || dyingNs.has(c))
      add.push({ op: 'netns.create', container: c, name: d.netnsName });
  }
  for (const b of keys(desired.bridges)) {
    const d = desired.bridges[b]!;
    const a = actual.bridges[b];
    const fresh = !a || a.network !== d.network;
    if (fresh) add.push({ op: 'bridge.create', network: d.network, name: b, mtu: d.mtu });
    else {
      const change: LinkChange = {};
      if (d.mtu !== undefined && d.mtu !== a.mtu) change.mtu = d.mtu;
      if (!a.up) change.up = true;
      if (Object.keys(change).length) add.push({ op: 'link.set', name: b, change });
    }
    for (const cidr of fresh ? d.addrs : minus(d.addrs, a!.addrs)) add.push({ op: 'addr.add', dev: b, cidr });
  }
  // sysctls after the bridges they may name (route_localnet is per bridge)
  for (const k of keys(desired.sysctls)) {
    const want = desired.sysctls[k]!;
    if (actual.sysctls[k] !== want)
      add.push({ op: 'sysctl.set', key: k, value: want, from: actual.sysctls[k] });
  }
  for (const v of keys(desired.veths)) {
    const d = desired.veths[v]!;
    const a = actual.veths[v];
    const ns = desired.namespaces[d.container]!;
    const peer = Object.values(ns.links).find((l) => l.network === d.network)!;
    if (!a || dyingVeth.has(v)) {
      add.push({
        op: 'veth.create',
        container: d.container,
        network: d.network,
        name: v,
        peer: peer.name,
        nsPath: ns.path,
        master: d.master,
        mtu: d.mtu,
        mac: peer.mac,
      });
      continue;
    }
    const change: LinkChange = {};
    if (d.master !== a.master) change.master = d.master;
    if (d.mtu !== undefined && d.mtu !== a.mtu) change.mtu = d.mtu;
    if (!a.up) change.up = true;
    if (Object.keys(change).length) add.push({ op: 'link.set', name: v, change });
  }
  for (const c of wantNs) {
    const d = desired.namespaces[c]!;
    const a = dyingNs.has(c) ? undefined : actual.namespaces[c];
    for (const name of keys(d.links)) {
      const dl = d.links[name]!;
      const veth = wantVeth.get(epKey(c, dl.network))!;
      const fresh = !a?.links[name] || dyingVeth.has(veth.name) || !actual.veths[veth.name];
      const al = fresh ? undefined : a!.links[name]!;
      if (al) {
        const change: LinkChange = {};
        if (dl.mac && dl.mac !== al.mac) change.mac = dl.mac;
        if (dl.mtu !== undefined && dl.mtu !== al.mtu) change.mtu = dl.mtu;
        if (!al.up) change.up = true;
        if (Object.keys(change).length)
          add.push({ op: 'link.set', container: c, nsPath: d.path, name, change });
      }
      for (const cidr of al ? minus(dl.addrs, al.addrs) : dl.addrs)
        add.push({ op: 'addr.add', container: c, nsPath: d.path, dev: name, cidr });
    }
    for (const r of d.routes) {
      const fresh =
        !a?.links[r.dev] || dyingVeth.has(wantVeth.get(epKey(c, d.links[r.dev]?.network ?? ''))?.name ?? '');
      const have =
        !fresh && a!.routes.some((x) => x.family === r.family && x.via === r.via && x.dev === r.dev);
      if (!have)
        add.push({ op: 'route.add', container: c, nsPath: d.path, family: r.family, via: r.via, dev: r.dev });
    }
  }

  // nftables: replace the table when its skeleton differs, else element adds/deletes.
  const nft: Action[] = [];
  const dn = desired.nft;
  const an = actual.nft;
  if (!dn.skeleton) {
    if (an.skeleton) nft.push({ op: 'nft.table.delete', table });
  } else {
    const replace = an.skeleton !== undefined && an.skeleton !== dn.skeleton;
    if (!an.skeleton) nft.push({ op: 'nft.table.create', table });
    if (replace) nft.push({ op: 'nft.table.replace', table });
    const fresh = !an.skeleton || replace;
    for (const set of keys(dn.sets)) {
      const want = dn.sets[set]!;
      const have = fresh ? [] : (an.sets[set] ?? []);
      for (const key of minus(have, want)) nft.push({ op: 'nft.element.delete', table, set, key });
      for (const key of minus(want, have)) nft.push({ op: 'nft.element.add', table, set, key });
    }
  }
  // Files (resolv.conf, hosts) and the resolver: after the kernel objects they describe.
  const rest: Action[] = [];
  // (Thousands of files, nearly all unchanged: sort only the ones that are not.)
  const gone = Object.keys(actual.files).filter((path) => !(path in desired.files));
  for (const path of gone.sort()) rest.push({ op: 'file.delete', path });
  const changed = Object.keys(desired.files).filter((path) => actual.files[path] !== desired.files[path]);
  for (const path of changed.sort())
    rest.push({ op: 'file.write', path, content: desired.files[path]!, exists: path in actual.files });
  const dr = desired.resolver;
  const ar = actual.resolver;
  if (!dr) {
    if (ar) rest.push({ op: 'resolver.stop' });
  } else if (!ar?.running || ar.config !== dr.config) {
    const cfg = JSON.parse(dr.config) as { dns: { networks: unknown[] } | null; proxies: unknown[] };
    rest.push({
      op: 'resolver.reload',
      config: dr.config,
      networks: cfg.dns?.networks.length ?? 0,
      proxies: cfg.proxies.length,
      start: !ar?.running,
    });
  }
  return { actions: [...del, ...add, ...nft, ...rest] };
}

/** A link of a surviving namespace whose veth is being deleted or recreated. */
function isLinkDying(
  a: NamespaceState,
  dev: string,
  dyingVeth: ReadonlySet<string>,
  haveVeth: VethIndex,
): boolean {
  const v = haveVeth.get(epKey(a.container, a.links[dev]?.network ?? ''));
  return !!v && dyingVeth.has(v.name);
}

type VethIndex = ReadonlyMap<string, VethState>;
const epKey = (container: string, network: string) => `${container}\u0000${network}`;
const indexVeths = (s: KernelState): VethIndex =>
  new Map(Object.values(s.veths).map((v) => [epKey(v.container, v.network), v]));
