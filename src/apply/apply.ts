/**
 * apply(plan): execute exactly the plan's actions, batched per namespace:
 *
 *   1. inside surviving containers: route and address removals (one `ip -batch` each)
 *   2. host: veth, address and bridge removals (rtnetlink)
 *   3. namespace removals
 *   4. namespace creations
 *   5. host: bridges, addresses, link changes, veth pairs born inside their namespace; sysctls
 *   6. inside containers: loopback, peer set-up, addresses, routes (one `ip -batch` each, in parallel)
 *   7. files (containers' resolv.conf and hosts)
 *   8. one atomic nft transaction, while the resolver process loads its configuration
 *
 * The first failing phase stops the run with a KernelError naming the action; the
 * next reconcile starts from a fresh observation.
 */

import { mkdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Action, Plan } from '../diff/plan.js';
import { reloadResolver, stopResolver } from '../dns/service.js';
import { BRIDGE_FAMILY, elementJson, FAMILY, SETS, skeletonCommands } from '../firewall/rules.js';
import { mapLimit } from '../kernel/exec.js';
import type { HostNetlink } from '../kernel/netlink.js';
import { createNetns, deleteNetns } from '../kernel/netns.js';
import { type NftCommand, nftRun } from '../kernel/nft.js';
import { type NsOp, runNsOps } from '../kernel/nsops.js';
import { writeSysctl, writeSysctlIfPresent } from '../kernel/sysctl.js';
import { KernelError } from '../model/errors.js';
import { epAlias, netAlias, nsAlias } from '../model/names.js';

export interface ApplyContext {
  readonly instance: string;
  readonly nl: HostNetlink;
  /** The host ends of each container's veths as observed (a namespace deletion waits on them by name). */
  readonly vethsOf: (container: string) => readonly string[];
}

export interface ApplyResult {
  /** Kernel write operations performed (netlink requests, batch lines, nft commands). */
  readonly writes: number;
  /** Milliseconds spent in each phase, for the benchmark. */
  readonly phases: Readonly<Record<string, number>>;
}

type Of<K extends Action['op']> = Extract<Action, { op: K }>;

function ctx(a: Action, e: unknown): never {
  if (e instanceof KernelError) throw e;
  throw new KernelError(a.op, e instanceof Error ? e.message : String(e));
}

/** Namespaces worked on at once: many in-process, few when each costs an `ip` process. */
const NS_CONCURRENCY = 32;

async function runBatches(batches: Map<string, NsOp[]>): Promise<number> {
  const entries = [...batches.entries()].filter(([, l]) => l.length);
  await mapLimit(entries, NS_CONCURRENCY, ([path, ops]) => runNsOps(path, ops));
  return entries.reduce((n, [, l]) => n + l.length, 0);
}

function push(m: Map<string, NsOp[]>, path: string, op: NsOp) {
  let l = m.get(path);
  if (!l) m.set(path, (l = []));
  l.push(op);
}

export async function apply(plan: Plan, { instance, nl, vethsOf }: ApplyContext): Promise<ApplyResult> {
  const acts = plan.actions;
  let writes = 0;
  const phases: Record<string, number> = {};
  let mark = performance.now();
  const lap = (name: string) => {
    const now = performance.now();
    phases[name] = Math.round((now - mark) * 10) / 10;
    mark = now;
  };
  const of = <K extends Action['op']>(...ops: K[]) =>
    acts.filter((a): a is Of<K> => (ops as string[]).includes(a.op));

  // 1. container-side removals
  const pre = new Map<string, NsOp[]>();
  for (const a of acts) {
    if (a.op === 'route.del') push(pre, a.nsPath, { t: 'route', add: false, via: a.via, dev: a.dev });
    else if (a.op === 'addr.del' && a.nsPath)
      push(pre, a.nsPath, { t: 'addr', add: false, dev: a.dev, cidr: a.cidr });
  }
  writes += await runBatches(pre);

  lap('container-removals');
  // 2. host removals
  // Interface indexes of the host links a phase names, asked for one by one (no dump: at
  // 1000 veths a link dump costs more than a small plan's writes).
  const linkIndex = async (names: Iterable<string | undefined>) => {
    const out = new Map<string, number>();
    for (const n of new Set(names)) {
      const l = n === undefined ? undefined : await nl.linkByName(n);
      if (l) out.set(l.name, l.index);
    }
    return out;
  };
  let index = await linkIndex(acts.flatMap((a) => (a.op === 'addr.del' && !a.nsPath ? [a.dev] : [])));
  for (const a of acts) {
    try {
      if (a.op === 'veth.delete') await nl.deleteLink(a.name);
      else if (a.op === 'addr.del' && !a.nsPath) await nl.delAddr(index.get(a.dev)!, a.cidr);
      else if (a.op === 'bridge.delete') await nl.deleteLink(a.name);
      else continue;
      writes++;
    } catch (e) {
      ctx(a, e);
    }
  }

  lap('host-removals');
  // 3. namespace removals
  const gone = of('netns.delete');
  await deleteNetns(gone.map((a) => a.name));
  writes += gone.length;
  if (gone.length)
    writes += await vethsGone(
      nl,
      gone.flatMap((a) => vethsOf(a.container)),
    );

  lap('netns-removals');
  // 4. namespace creations
  const post = new Map<string, NsOp[]>();
  const born = of('netns.create');
  await createNetns(born.map((a) => a.name));
  writes += born.length;
  for (const a of born) {
    const path = `/run/netns/${a.name}`;
    push(post, path, { t: 'link', name: 'lo', alias: nsAlias(instance, a.container), up: true });
  }

  lap('netns-creations');
  // 5. host creations and changes
  // Bridges and their addresses first (veths are enslaved to them), then the veth pairs,
  // pipelined: each pair is independent, and netlink requests in flight overlap.
  const hostActs = acts.filter(
    (a) =>
      a.op === 'bridge.create' || (a.op === 'addr.add' && !a.nsPath) || (a.op === 'link.set' && !a.nsPath),
  );
  const run = async (a: Action, fn: () => Promise<number>) => {
    try {
      writes += await fn();
    } catch (e) {
      ctx(a, e);
    }
  };
  for (const a of hostActs.filter((x) => x.op === 'bridge.create')) {
    await run(a, async () => {
      if (a.op !== 'bridge.create') return 0;
      await nl.createBridge(a.name, a.mtu);
      // Before the link comes up: no duplicate address detection on the bridge's own
      // link-local address, which would hold IPv6 neighbour discovery (and so forwarded
      // IPv6) back for 1-2 s. The gateway addresses are added with nodad as well.
      writeSysctlIfPresent(`net.ipv6.conf.${a.name}.accept_dad`, '0');
      // No router advertisements taken from the bridge (as Docker): a container must not
      // give the host addresses or a default route.
      writeSysctlIfPresent(`net.ipv6.conf.${a.name}.accept_ra`, '0');
      await nl.setLink(a.name, { alias: netAlias(instance, a.network), up: true });
      return 2;
    });
  }
  const veths = of('veth.create');
  index = await linkIndex([
    ...veths.map((a) => a.master),
    ...hostActs.flatMap((a) =>
      a.op === 'addr.add' ? [a.dev] : a.op === 'link.set' && a.change.master ? [a.change.master] : [],
    ),
  ]);
  await mapLimit(veths, 32, (a) =>
    run(a, async () => {
      await nl.createVeth(a.name, a.peer, a.nsPath, { mtu: a.mtu, peerMac: a.mac });
      const master = a.master ? index.get(a.master) : undefined;
      if (a.master && master === undefined) throw new KernelError(a.op, `bridge ${a.master} not found`);
      await nl.setLink(a.name, { master, alias: epAlias(instance, a.container, a.network), up: true });
      // Hairpin on the container's bridge port: with bridge-nf-call-iptables on, a packet a
      // container sends to its own published port is DNAT'd and bridged back out of the
      // port it came in on, which a bridge does only for hairpin ports (Docker sets it
      // too when it runs without its userland proxy).
      if (master === undefined) return 2;
      await nl.setHairpin(a.name);
      return 3;
    }),
  );
  for (const a of veths) {
    // An IPv4-only endpoint has no IPv6 link-local address either (Docker sets disable_ipv6
    // there): it does not announce itself (DAD, MLD, router solicitations) to every
    // container of the bridge.
    if (a.noIpv6) push(post, a.nsPath, { t: 'no-link-local', name: a.peer });
    push(post, a.nsPath, {
      t: 'link',
      name: a.peer,
      alias: epAlias(instance, a.container, a.network),
      up: true,
    });
  }
  for (const a of hostActs) {
    if (a.op === 'addr.add') {
      await run(a, async () => {
        await nl.addAddr(index.get(a.dev)!, a.cidr);
        return 1;
      });
    } else if (a.op === 'link.set') {
      const master = a.change.master === undefined ? undefined : (index.get(a.change.master) ?? null);
      await run(a, async () => {
        await nl.setLink(a.name, { mtu: a.change.mtu, mac: a.change.mac, up: a.change.up, master });
        return 1;
      });
    }
  }

  lap('host-creations');
  // 5b. sysctls (after the bridges they may name exist)
  for (const a of of('sysctl.set')) {
    writeSysctl(a.key, a.value);
    writes++;
  }

  lap('sysctls');
  // 6. container-side creations
  for (const a of acts) {
    if (a.op === 'link.set' && a.nsPath)
      push(post, a.nsPath, {
        t: 'link',
        name: a.name,
        mtu: a.change.mtu,
        mac: a.change.mac,
        up: a.change.up,
      });
    else if (a.op === 'addr.add' && a.nsPath)
      push(post, a.nsPath, { t: 'addr', add: true, dev: a.dev, cidr: a.cidr });
    else if (a.op === 'route.add') push(post, a.nsPath, { t: 'route', add: true, via: a.via, dev: a.dev });
  }
  writes += await runBatches(post);

  lap('container-creations');
  // 7. files and the resolver
  for (const a of acts) {
    // In place, not by rename: `ip netns exec` bind-mounts these files over /etc, and a
    // program already running there keeps the inode it mounted (and rename-replace is
    // ~25x slower on this ext4).
    if (a.op === 'file.write') {
      mkdirSync(dirname(a.path), { recursive: true });
      writeFileSync(a.path, a.content);
    } else if (a.op === 'file.delete') {
      rmSync(a.path, { force: true });
      try {
        rmdirSync(dirname(a.path));
      } catch {
        /* not empty yet, or gone */
      }
    } else continue;
    writes++;
  }
  lap('files');
  // 8. nftables, one transaction, while the resolver (its own process) loads its new
  // configuration: neither waits for the other, and at 1000 containers each takes
  // milliseconds. The apply ends when both are done. nft is started first: it takes the
  // longer, and the signal that wakes the resolver can hand it this process's core at once.
  const started = performance.now();
  const since = () => Math.round((performance.now() - started) * 10) / 10;
  const tx = nftTransaction(acts);
  const nft = nftRun(tx).then(() => {
    writes += tx.length;
    phases.nft = since();
  });
  const resolver = (async () => {
    for (const a of acts) {
      if (a.op === 'resolver.reload') await reloadResolver(instance, a.config, a.parts, a.removeParts);
      else if (a.op === 'resolver.stop') await stopResolver(instance);
      else continue;
      writes++;
    }
    phases.resolver = since();
  })();
  try {
    await nft;
  } finally {
    // A failed transaction still waits for the resolver, and is the error reported.
    await resolver.catch((e) => {
      if (phases.nft !== undefined) throw e;
    });
  }
  lap('resolver+nft');
  return { writes, phases };
}

/**
 * A deleted namespace's interfaces are freed by the kernel asynchronously (cleanup_net);
 * wait until the host ends of its veths are gone, so the next observation is clean and a
 * bridge deleted next has no ports left.
 */
async function vethsGone(nl: HostNetlink, veths: readonly string[]): Promise<number> {
  const graceUntil = Date.now() + 1000;
  let waiting = veths;
  const left = async () =>
    (await Promise.all(waiting.map((n) => nl.linkByName(n)))).filter((l) => l !== undefined);
  for (;;) {
    const now = await left();
    if (!now.length) return 0;
    waiting = now.map((l) => l.name); // ask again only for those still there
    if (Date.now() > graceUntil) {
      // A process still running in the namespace keeps it (and its veths) alive after
      // `ip netns del`: remove those veths one by one.
      for (const l of now) await nl.deleteLink(l.name).catch(() => undefined);
      const still = await left();
      if (still.length)
        throw new KernelError(
          'delete namespaces',
          `${still.length} veths of deleted namespaces could not be removed`,
        );
      return now.length;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The single nft transaction of a plan (empty when the plan has no nft actions). */
export function nftTransaction(acts: readonly Action[]): NftCommand[] {
  const tx: NftCommand[] = [];
  for (const a of acts) {
    if (a.op === 'nft.table.delete') {
      // add-then-delete: deleting a table that is already gone would fail the transaction
      for (const family of [FAMILY, BRIDGE_FAMILY]) {
        tx.push(
          { add: { table: { family, name: a.table } } },
          { delete: { table: { family, name: a.table } } },
        );
      }
    } else if (a.op === 'nft.table.create' || a.op === 'nft.table.replace') {
      // add + delete + add in one batch is an atomic replace (KERNEL-NOTES)
      for (const family of [FAMILY, BRIDGE_FAMILY]) {
        tx.push(
          { add: { table: { family, name: a.table } } },
          { delete: { table: { family, name: a.table } } },
        );
      }
      tx.push(...skeletonCommands(a.table));
    }
  }
  const groups = new Map<string, { verb: 'add' | 'delete'; table: string; set: string; keys: string[] }>();
  for (const a of acts) {
    if (a.op !== 'nft.element.add' && a.op !== 'nft.element.delete') continue;
    const verb = a.op === 'nft.element.add' ? 'add' : 'delete';
    const k = `${verb} ${a.set}`;
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { verb, table: a.table, set: a.set, keys: [] }));
    g.keys.push(a.key);
  }
  const ordered = [...groups.values()].sort((x, y) => (x.verb === y.verb ? 0 : x.verb === 'delete' ? -1 : 1));
  for (const g of ordered) {
    const family = SETS.find((s) => s.name === g.set)?.family ?? FAMILY;
    tx.push({
      [g.verb]: {
        element: { family, table: g.table, name: g.set, elem: g.keys.map((k) => elementJson(g.set, k)) },
      },
    });
  }
  return tx;
}
