/**
 * The daemon's observation: the kernel state kept in memory and refreshed by what the
 * kernel reports, so that a reconcile costs O(what changed), not O(everything owned).
 *
 * - Host links, addresses and routes: one full dump, then every rtnetlink notification
 *   (NEWLINK/DELLINK, NEWADDR/DELADDR, NEWROUTE/DELROUTE) applied to the maps. Each
 *   notification carries the whole object, so replaying them in order ends at the
 *   kernel's current state. A barrier (a request on the listening socket, answered after
 *   every notification queued before it) makes apply's own changes visible before the
 *   verification reads the maps.
 * - Container namespaces: a listening socket inside each; a notification marks that
 *   namespace stale, and only stale namespaces are read again (three dumps).
 * - nftables: a NETLINK_NETFILTER listener. A transaction touching the instance's tables
 *   marks the cached sets stale, unless the kernel names one of tether's own `nft`
 *   processes as its author; tether's own transactions are applied to the cache when
 *   they succeed (nft transactions are atomic).
 * - /etc/netns files: re-read when tether wrote them, and on every full refresh.
 * - Cheap facts no event reports (sysctls, resolv.conf, the resolver's state) are read
 *   every time (observe.ts assemble()).
 *
 * Anything lost (ENOBUFS on a listener, a failed apply, an unreadable message) makes
 * that part stale; `invalidate()` makes everything stale (the daemon's periodic resync,
 * start and SIGHUP), so the memory is never trusted for longer than one resync.
 */
import { type FSWatcher, watch as fsWatch, readFileSync, statSync } from 'node:fs';
import * as nl from 'netlink';
import { Subject } from 'rxjs';
import type { Action, Plan } from '../diff/plan.js';
import { BRIDGE_FAMILY, FAMILY, parseNft } from '../firewall/rules.js';
import { mapLimit } from '../kernel/exec.js';
import {
  createInNamespace,
  type HostNetlink,
  type NlAddr,
  type NlLink,
  type NlRoute,
} from '../kernel/netlink.js';
import { NETNS_DIR, type NsView } from '../kernel/netns.js';
import { nftListTable, nftWriterPids } from '../kernel/nft.js';
import {
  addrOf,
  cString,
  eachAttr,
  linkOf,
  parseAddr,
  parseLink,
  parseRoute,
  type RtMessage,
  routeOf,
} from '../kernel/rtparse.js';
import { patchRecord, sameData } from '../model/intern.js';
import { netnsName, nftTableName, parseAlias } from '../model/names.js';
import type { NftState } from '../model/state.js';
import {
  assemble,
  directFactsChanged,
  type HostPart,
  hostPart,
  instanceNetns,
  type LinkKind,
  type NamespacesPart,
  type NsEntry,
  type NsKind,
  type NsTarget,
  namespacesPart,
  nsTargets,
  type Observation,
  type ObserveScope,
  ownFiles,
  patchHostPart,
  patchNamespacesPart,
  readTarget,
} from './observe.js';

const { rt } = nl;
const RTM = rt.MessageType;
const GROUPS = ['LINK', 'IPV4_IFADDR', 'IPV6_IFADDR', 'IPV4_ROUTE', 'IPV6_ROUTE'] as const;
const NETLINK_NETFILTER = 12;
const NFNLGRP_NFTABLES = 7;
const NFNL_SUBSYS_NFTABLES = 10;
const NFT_MSG_NEWGEN = 15;
const NFPROTO_INET = 1;
const NFPROTO_BRIDGE = 7;

type RtSocket = ReturnType<typeof nl.createRtNetlink>;

const addrKey = (a: NlAddr) => `${a.index} ${a.cidr}`;
const routeKey = (r: NlRoute) =>
  `${r.family} ${r.table} ${r.type} ${r.dst ?? ''}/${r.dstLen} ${r.oif ?? ''} ${r.gateway ?? ''} ${r.metric ?? ''}`;

/** What a notification inside a container namespace changed, when it is worth a reconcile. */
function nsDetail(m: RtMessage): string | undefined {
  switch (m.type) {
    case RTM.NEWLINK:
    case RTM.DELLINK: {
      const l = parseLink(m.data);
      return l
        ? `link ${l.name || `#${l.index}`} ${m.type === RTM.DELLINK ? 'deleted' : 'changed'}`
        : undefined;
    }
    case RTM.NEWADDR:
    case RTM.DELADDR: {
      const a = parseAddr(m.data);
      // IPv6 link-local addresses come and go with the kernel's own duplicate detection.
      if (!a || a.scope === 253) return undefined;
      return `address ${a.cidr} ${m.type === RTM.DELADDR ? 'removed' : 'added'}`;
    }
    case RTM.NEWROUTE:
    case RTM.DELROUTE: {
      const r = parseRoute(m.data);
      if (r?.table !== 254 || r.dstLen !== 0) return undefined;
      return `default route ${m.type === RTM.DELROUTE ? 'removed' : 'changed'}`;
    }
  }
  return undefined;
}

interface ObservedStamp {
  readonly generation: number;
  readonly targets: string;
}

interface NsWatch {
  readonly ino: number;
  readonly sock: RtSocket;
}

/** The soft limit on open files of this process (1024 when unreadable). */
function openFileLimit(): number {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m?.[1] === 'unlimited' ? 1 << 20 : Number(m?.[1] ?? 1024);
  } catch {
    return 1024;
  }
}

/** An address the host part is shaped from (IPv6 link-scope ones come and go on their own). */
const shapesAddr = (a: NlAddr) => !(a.family === 6 && a.scope === 253);
/** A route the host part is shaped from: main-table IPv4 link-scope ones. */
const shapesRoute = (r: NlRoute) => r.family === 4 && r.table === 254 && r.scope === 'LINK';

/** The nsfs inode behind a namespace path: a namespace deleted and made again has a new one. */
function nsInode(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

export class LiveObserver {
  /**
   * Changes worth a reconcile (drift) that the host link listener (daemon/triggers.ts)
   * does not report: inside container namespaces, namespaces removed, nftables.
   */
  readonly changes$ = new Subject<string>();

  private host: RtSocket | undefined;
  private nftSock: ReturnType<typeof nl.createNetlink> | undefined;
  private readonly links = new Map<number, NlLink>();
  private readonly addrs = new Map<string, NlAddr>();
  private readonly routes = new Map<string, NlRoute>();
  private hostStale = true;
  /** Notifications that arrived while a dump was under way: replayed on top of it. */
  private replay: RtMessage[] | undefined;

  private readonly views = new Map<string, NsView | undefined>();
  private readonly watches = new Map<string, NsWatch>();
  private readonly staleNs = new Set<string>();
  private allNsStale = true;

  private nft: NftState | undefined;
  private nftStale = true;
  /** Our tables were touched in the nft transaction being reported. */
  private nftTouched = false;
  /** Between releasing() and applied(): tether's apply is under way. */
  private applying = false;
  /** Generations of our tables committed during an apply by a pid not (yet) known as ours. */
  private unjudged: { pid: number; change: string }[] = [];

  private files: Readonly<Record<string, string>> | undefined;
  private readonly staleFiles = new Set<string>();

  /** Bumped by every change to what is held (a notification applied, anything read again). */
  private generation = 0;
  /**
   * The namespaces to observe and their key, kept while the directory watch reports no
   * event and the attached paths are the same (listing /run/netns costs ~1 ms at 1000).
   */
  private targetsCache: { attached: string; targets: NsTarget[]; key: string } | undefined;
  /**
   * The instance's names in /run/netns, listed once and then kept by the directory watch and
   * the applies (listing takes milliseconds at 1000, and every add or removal changes it).
   */
  private netnsNames: Set<string> | undefined;
  /** A name of the instance's came or went in /run/netns (`present`: it is there now). */
  private netnsSeen(name: string, present: boolean): void {
    this.targetsCache = undefined;
    this.nsChanged.add(`${NETNS_DIR}/${name}`);
    if (present) this.netnsNames?.add(name);
    else this.netnsNames?.delete(name);
  }
  /** The directory may have changed in any way: list it again at the next observe. */
  private netnsUnknown(): void {
    this.targetsCache = undefined;
    this.netnsNames = undefined;
    this.nsReshape = true;
  }
  private targetsOf(scope: ObserveScope): { targets: NsTarget[]; key: string } {
    const attached = JSON.stringify(scope.attached);
    const hit = this.dirWatch && this.targetsCache?.attached === attached ? this.targetsCache : undefined;
    if (hit) return hit;
    if (!this.dirWatch || !this.netnsNames) {
      this.netnsNames = new Set(instanceNetns(this.instance));
      this.nsReshape = true;
    }
    const targets = nsTargets(scope, this.netnsNames);
    if (attached !== this.attachedKey) {
      this.attachedKey = attached;
      this.attachedPaths = new Map(Object.entries(scope.attached).map(([c, p]) => [p, c]));
      this.nsReshape = true;
    }
    this.targetsCache = { attached, targets, key: targetsKey(targets) };
    return this.targetsCache;
  }
  /** The attached paths of the last targets (path → container), and their key. */
  private attachedKey: string | undefined;
  private attachedPaths = new Map<string, string>();

  /** The target at `path` now, as targetsOf lists them (named namespaces, attached paths). */
  private targetAt(path: string): NsTarget | undefined {
    const container = this.attachedPaths.get(path);
    if (container !== undefined) return { path, container };
    const name = this.namedAt(path);
    return name === undefined ? undefined : { name, path };
  }

  /** The name of the instance's named namespace at `path`, if it is one. */
  private namedAt(path: string): string | undefined {
    const name = path.slice(NETNS_DIR.length + 1);
    return path.startsWith(`${NETNS_DIR}/`) && this.netnsNames?.has(name) ? name : undefined;
  }

  /** The last observe()'s result and the generation and namespace list it was shaped from. */
  private lastObservation: { stamp: ObservedStamp; observation: Observation } | undefined;

  /** Counters for the status socket and the bench. */
  readonly stats = {
    fullHost: 0,
    fullNft: 0,
    nsReads: 0,
    notifications: 0,
    unwatched: 0,
    plansReused: 0,
    observationsReused: 0,
    mismatches: 0,
  };

  constructor(
    private readonly nl: HostNetlink,
    private readonly instance: string,
  ) {}

  /** Forget everything: the next observe reads all of it afresh. */
  invalidate(): void {
    this.generation++;
    this.dirChanged = undefined;
    this.netnsUnknown();
    this.hostStale = true;
    this.allNsStale = true;
    this.nftStale = true;
    this.files = undefined;
  }

  /** Every host notification, as received (the daemon's host triggers filter them). */
  readonly hostMessages$ = new Subject<RtMessage>();
  /** Host notifications were lost (ENOBUFS): the next observe re-reads the host. */
  readonly hostLost$ = new Subject<Error>();

  /**
   * Open the listeners (observe() does it too). The host socket is referenced: a daemon
   * listening only to the kernel stays alive.
   */
  start(): void {
    if (this.host) return;
    const host = nl.createRtNetlink({ ref: true, recvBufferSize: 8 << 20, sendBufferSize: 0 });
    for (const g of GROUPS) host.addMembership(g);
    host.socket.on('message', (msgs) => {
      for (const m of msgs) {
        this.hostMessage(m);
        this.hostMessages$.next(m);
      }
    });
    host.socket.socket.on('error', () => {});
    host.socket.on('error', (e) => {
      this.hostStale = true; // ENOBUFS: notifications were lost
      this.hostLost$.next(e);
    });
    this.host = host;

    const table = nftTableName(this.instance);
    const nfs = nl.createNetlink(NETLINK_NETFILTER, {
      ref: false,
      recvBufferSize: 8 << 20,
      sendBufferSize: 0,
    });
    nfs.addMembership(NFNLGRP_NFTABLES);
    nfs.on('message', (msgs) => {
      for (const m of msgs) this.nftMessage(m, table);
    });
    nfs.socket.on('error', () => {});
    nfs.on('error', () => {
      this.nftStale = true;
    });
    this.nftSock = nfs;

    // Named namespaces removed by hand: the listener inside one keeps it alive, so no
    // DELLINK of its veth reports it; the directory does.
    try {
      const prefix = `${this.instance}-`;
      this.dirWatch = fsWatch(NETNS_DIR, (_event, name) => {
        if (!name) {
          // An event without a name: anything may have changed.
          this.netnsUnknown();
          this.dirChanged = undefined;
          this.generation++;
          return;
        }
        // Only the instance's own names are ever listed or stat'ed (nsTargets).
        if (!name.startsWith(prefix)) return;
        const path = `${NETNS_DIR}/${name}`;
        this.dirChanged?.add(path);
        const ino = nsInode(path);
        this.netnsSeen(name, ino !== undefined);
        const held = this.watches.get(path);
        // What is held changes only when a namespace held is gone or replaced, or one
        // not held appears (events of a namespace tether made and read already are not).
        if (ino === undefined ? held || this.views.has(path) : held?.ino !== ino) this.generation++;
        if (ino === undefined) this.changes$.next(`namespace ${name} removed`);
        else if (held && held.ino !== ino) this.changes$.next(`namespace ${name} replaced`);
      });
      this.dirWatch.on('error', () => {});
    } catch {
      /* no /run/netns yet: nothing of ours to lose */
    }
  }

  private dirWatch: FSWatcher | undefined;
  /**
   * Named namespace paths the directory watch reported since the last observe: only they
   * (and namespaces not yet listened to) are stat'ed for a new inode. Undefined: no watch,
   * or an event without a name: stat them all.
   */
  private dirChanged: Set<string> | undefined = new Set();

  private hostMessage(m: RtMessage): void {
    this.stats.notifications++;
    try {
      this.replay?.push(m);
      if (this.applyHost(m)) this.generation++;
    } catch {
      this.hostStale = true;
    }
  }

  /**
   * Apply one notification to the maps. True when it may change what an observation is
   * shaped from: not for IPv6 link-local addresses and routes other than main-table IPv4
   * link-scope ones, which assemble() ignores (they come and go with the kernel's own
   * address autoconfiguration long after a veth is made).
   */
  private applyHost(m: RtMessage): boolean {
    switch (m.type) {
      case RTM.NEWLINK: {
        const l = linkOf(m);
        if (!l) return false;
        // The kernel repeats a link on changes tether does not model (carrier, operstate,
        // statistics): the link held stays, and nothing is to be read again.
        const held = this.links.get(l.index);
        if (held && sameData(held, l)) return false;
        this.links.set(l.index, l);
        this.linkChanges.set(l.index, l);
        this.peerChanged(l);
        return true;
      }
      case RTM.DELLINK: {
        const l = linkOf(m);
        if (!l) return false;
        this.links.delete(l.index);
        this.linkChanges.set(l.index, undefined);
        this.peerChanged(l);
        for (const [k, a] of this.addrs) {
          if (a.index !== l.index) continue;
          this.addrs.delete(k);
          if (shapesAddr(a)) this.hostReshape = true;
        }
        for (const [k, r] of this.routes) {
          if (r.oif !== l.index) continue;
          this.routes.delete(k);
          if (shapesRoute(r)) this.hostReshape = true;
        }
        return true;
      }
      case RTM.NEWADDR:
      case RTM.DELADDR: {
        const a = addrOf(m);
        if (!a) return false;
        if (m.type === RTM.NEWADDR) this.addrs.set(addrKey(a), a);
        else this.addrs.delete(addrKey(a));
        if (shapesAddr(a)) this.hostReshape = true;
        return shapesAddr(a);
      }
      case RTM.NEWROUTE:
      case RTM.DELROUTE: {
        const r = routeOf(m);
        if (!r) return false;
        if (m.type === RTM.NEWROUTE) this.routes.set(routeKey(r), r);
        else this.routes.delete(routeKey(r));
        if (shapesRoute(r)) this.hostReshape = true;
        return shapesRoute(r);
      }
    }
    return false;
  }

  /**
   * A veth pair spans two namespaces: a change to tether's host end (deleted, say, which
   * takes the container's end with it) marks the container's namespace stale at once, so
   * a reconcile triggered by the host notification does not plan from a container view
   * whose own notification has not arrived yet.
   */
  private peerChanged(l: NlLink): void {
    const a = parseAlias(this.instance, l.alias);
    if (a?.kind === 'ep') this.staleNs.add(`${NETNS_DIR}/${netnsName(this.instance, a.container)}`);
  }

  /** Another process changed our tables: read them again, and reconcile. */
  private foreignNft(change: string): void {
    this.nftStale = true;
    this.changes$.next(change);
  }

  /**
   * nfnetlink: every object message of a transaction names its table in attribute 1
   * (after the 4-byte nfgenmsg); the transaction ends with NEWGEN, whose attributes 2 and
   * 3 are the pid and the name of the process that committed it.
   */
  private nftMessage(m: RtMessage, table: string): void {
    if (m.type >> 8 !== NFNL_SUBSYS_NFTABLES) return;
    const msg = m.type & 0xff;
    const d = m.data;
    if (msg === NFT_MSG_NEWGEN) {
      let pid = 0;
      let who = '';
      eachAttr(d, 4, d.length, (type, s, e) => {
        if (type === 2 && e - s >= 4) pid = d.readUInt32BE(s);
        else if (type === 3) who = ` by ${cString(d, s, e)}`;
      });
      if (this.nftTouched && !nftWriterPids.includes(pid)) {
        // During an apply, tether's own nft may commit before its pid is known (the spawner
        // reports it): judged once the apply is over.
        if (this.applying)
          this.unjudged.push({ pid, change: `nftables table ${table} changed${who} (pid ${pid})` });
        else this.foreignNft(`nftables table ${table} changed${who} (pid ${pid})`);
      }
      this.nftTouched = false;
      return;
    }
    const family = d[0];
    if (family !== NFPROTO_INET && family !== NFPROTO_BRIDGE) return;
    eachAttr(d, 4, d.length, (type, s, e) => {
      if (type === 1 && cString(d, s, e) === table) this.nftTouched = true;
    });
  }

  /** A request on the listening socket: answered after every notification queued before it. */
  async barrier(): Promise<void> {
    if (!this.host) return;
    const hdr = Buffer.alloc(16);
    hdr.writeInt32LE(1, 4); // ifindex 1 (lo) always exists
    await this.host.socket.request(RTM.GETLINK, hdr, {});
  }

  private async dumpHost(): Promise<void> {
    this.replay = [];
    try {
      const [links, addrs, routes] = await Promise.all([this.nl.links(), this.nl.addrs(), this.nl.routes()]);
      this.links.clear();
      this.addrs.clear();
      this.routes.clear();
      for (const l of links) this.links.set(l.index, l);
      for (const a of addrs) this.addrs.set(addrKey(a), a);
      for (const r of routes) this.routes.set(routeKey(r), r);
      for (const m of this.replay) this.applyHost(m);
      this.hostStale = false;
      this.generation++;
      this.hostReshape = true;
      this.stats.fullHost++;
    } finally {
      this.replay = undefined;
    }
  }

  private async listNft(): Promise<void> {
    const name = nftTableName(this.instance);
    // Cleared first: a change made while the list runs marks it stale again.
    this.nftStale = false;
    try {
      const [inet, bridge] = await Promise.all([
        nftListTable(FAMILY, name),
        nftListTable(BRIDGE_FAMILY, name),
      ]);
      this.nft = parseNft(inet, bridge);
      this.generation++;
      this.stats.fullNft++;
    } catch (e) {
      this.nftStale = true;
      throw e;
    }
  }

  /**
   * Listeners stop short of the open-file limit (/proc/self/limits), keeping 512
   * descriptors for everything else; namespaces beyond it are read afresh every time.
   */
  private readonly maxWatches = openFileLimit() - 512;

  private watch(path: string, ino: number): void {
    if (this.watches.size >= this.maxWatches) return;
    const sock = createInNamespace(path, () =>
      nl.createRtNetlink({ ref: false, recvBufferSize: 256 << 10, sendBufferSize: 0 }),
    );
    if (!sock) return; // no setns addon: every read is fresh (staleNs is never cleared)
    for (const g of GROUPS) sock.addMembership(g);
    sock.socket.on('message', (msgs) => {
      for (const m of msgs) {
        let detail: string | undefined;
        try {
          detail = nsDetail(m);
        } catch {
          detail = 'unparsable notification';
        }
        // What nsDetail passes over (link-local addresses, other routes) is not observed.
        if (detail) this.staleNs.add(path);
        if (detail)
          this.changes$.next(
            `${path.startsWith(NETNS_DIR) ? path.slice(NETNS_DIR.length + 1) : path}: ${detail}`,
          );
      }
    });
    sock.socket.socket.on('error', () => {});
    sock.socket.on('error', () => this.staleNs.add(path));
    this.watches.set(path, { ino, sock });
  }

  private unwatch(path: string): void {
    this.watches.get(path)?.sock.socket.close();
    this.watches.delete(path);
  }

  /**
   * The namespaces to look at again: after an edit of one container at 1000, those the
   * directory watch, the applies and the listeners named, not every target. All of them when
   * the namespace list was read afresh, the attached paths changed (both make the next
   * shape start afresh too), some named namespace is not listened to, or the directory
   * watch is not there to name them. (A refresh comes before the shape that clears
   * nsChanged: the paths that came or went since the last one are in it.)
   */
  private nsCandidates(changed: ReadonlySet<string> | undefined): Iterable<NsTarget> | undefined {
    if (this.allNsStale || !changed || this.nsReshape || this.stats.unwatched > 0) return undefined;
    const paths = new Set([...this.staleNs, ...changed, ...this.nsChanged, ...this.attachedPaths.keys()]);
    const out: NsTarget[] = [];
    for (const p of paths) {
      const t = this.targetAt(p);
      if (t) out.push(t);
      else this.dropView(p);
    }
    return out;
  }

  /** A path that is no longer a target: its view and listener go. */
  private dropView(p: string): void {
    if (this.views.has(p)) {
      this.generation++;
      this.nsChanged.add(p);
      this.views.delete(p);
    }
    this.unwatch(p);
    this.staleNs.delete(p);
  }

  /** Every target, the views of paths that are no longer targets dropped. */
  private everyTarget(targets: readonly NsTarget[]): readonly NsTarget[] {
    const wanted = new Set(targets.map((t) => t.path));
    for (const p of [...this.views.keys()]) if (!wanted.has(p)) this.dropView(p);
    // A namespace no longer observed (deleted with its container) is not to be read again.
    for (const p of this.staleNs) if (!wanted.has(p)) this.staleNs.delete(p);
    return targets;
  }

  private async refreshNamespaces(targets: readonly NsTarget[]): Promise<void> {
    const changed = this.dirWatch ? this.dirChanged : undefined;
    this.dirChanged = new Set();
    const look = this.nsCandidates(changed) ?? this.everyTarget(targets);
    const toRead: NsTarget[] = [];
    for (const t of look) {
      const w = this.watches.get(t.path);
      // A listened-to named namespace keeps its inode until the directory says otherwise.
      const ino = w && !t.container && changed && !changed.has(t.path) ? w.ino : nsInode(t.path);
      if (w && w.ino !== ino) this.unwatch(t.path); // replaced by another namespace
      if (t.container) {
        // An attached namespace is someone else's: no listener (it would keep the
        // namespace alive after its owner let go), read afresh every time.
        toRead.push(t);
      } else if (ino !== undefined && !this.watches.has(t.path)) {
        // Listen before reading: a change after the read is then never missed.
        try {
          this.watch(t.path, ino);
        } catch {
          /* gone meanwhile: the read below decides */
        }
        toRead.push(t);
      } else if (
        this.allNsStale ||
        this.staleNs.has(t.path) ||
        !this.views.has(t.path) ||
        !this.watches.has(t.path)
      ) {
        toRead.push(t);
      }
    }
    this.allNsStale = false;
    const unwatched = (ts: Iterable<NsTarget>) => {
      let n = 0;
      for (const t of ts) if (!t.container && !this.watches.has(t.path)) n++;
      return n;
    };
    // (Looking only at some, every other named target was listened to before.)
    this.stats.unwatched = unwatched(look);
    for (const t of toRead) this.staleNs.delete(t.path);
    const views = await mapLimit(toRead, 32, async (t) => {
      try {
        return await readTarget(t);
      } catch (e) {
        this.staleNs.add(t.path);
        throw e;
      }
    });
    toRead.forEach((t, i) => {
      this.views.set(t.path, views[i]);
      this.nsChanged.add(t.path);
    });
    if (toRead.length) this.generation++;
    this.stats.nsReads += toRead.length;
  }

  /**
   * The files as known now. The record is never changed once handed out in an
   * observation: files read again go into a copy. (Not frozen: freezing 2000 entries costs
   * more than the copy.)
   */
  private refreshFiles(): void {
    if (!this.files || this.staleFiles.size) this.generation++;
    if (!this.files) {
      this.files = ownFiles(this.instance);
      this.staleFiles.clear();
    }
    if (this.staleFiles.size) {
      const changes = new Map<string, string | undefined>();
      for (const p of this.staleFiles) {
        try {
          changes.set(p, readFileSync(p, 'utf8'));
        } catch {
          changes.set(p, undefined);
        }
      }
      // A patched copy that knows its changed paths (intern.ts patchRecord).
      this.files = patchRecord(this.files, changes);
    }
    this.staleFiles.clear();
  }

  /**
   * Read everything afresh at the next observe() (the daemon's resync, start, SIGHUP),
   * and check what memory held against it: a difference means a notification was missed
   * or misapplied. It is counted (`stats.mismatches`) and reported to `onMismatch`.
   */
  fullRead(): void {
    this.checkNext = this.lastObservation?.stamp.generation === this.generation && !this.pending();
    this.invalidate();
  }

  /** Something is waiting to be read again. */
  private pending(): boolean {
    return this.hostStale || this.nftStale || this.allNsStale || this.staleNs.size > 0;
  }

  private checkNext = false;
  /** Told of each difference a full read finds between memory and the kernel. */
  onMismatch: ((detail: string) => void) | undefined;

  /**
   * The host and namespaces parts of the last shape, with the versions of what they were
   * shaped from: after an edit of one container the host part is shaped again only when a
   * host notification changed something, the namespaces part only when a view did.
   */
  private hostShaped: HostPart | undefined;
  /** What each host link was when the host part was shaped (index → kind, name). */
  private linkKinds = new Map<number, LinkKind>();
  /** Host links changed since the host part was shaped (undefined: deleted). */
  private readonly linkChanges = new Map<number, NlLink | undefined>();
  /** Addresses or routes the host part is shaped from changed, or all was read again. */
  private hostReshape = true;
  private nsShaped: NamespacesPart | undefined;
  /** What each namespace path held when the namespaces part was shaped. */
  private nsKinds = new Map<string, NsKind>();
  /** Paths whose view or target changed since the namespaces part was shaped. */
  private readonly nsChanged = new Set<string>();
  /** The namespace list was read again or the attached paths changed: shape it afresh. */
  private nsReshape = true;

  /** The host part: kept, patched for the links that changed, or shaped afresh. */
  private hostShape(): HostPart {
    const had = this.hostShaped;
    if (had && !this.hostReshape && this.linkChanges.size === 0) return had;
    const patched =
      had && !this.hostReshape
        ? patchHostPart(this.instance, had, this.linkChanges, this.linkKinds, (i) => this.links.get(i))
        : undefined;
    this.linkChanges.clear();
    if (patched) return (this.hostShaped = patched);
    this.hostReshape = false;
    this.linkKinds = new Map();
    const links = this.links.values();
    this.hostShaped = hostPart(
      this.instance,
      links,
      this.addrs.values(),
      this.routes.values(),
      this.linkKinds,
    );
    return this.hostShaped;
  }

  /** The namespaces part: kept, patched for the paths that changed, or shaped afresh. */
  private nsShape(targets: readonly NsTarget[]): NamespacesPart {
    const had = this.nsShaped;
    // (An attached path that is also a named namespace is two targets at one path.)
    const doubled = [...this.attachedPaths.keys()].some((p) => this.namedAt(p) !== undefined);
    if (had && !this.nsReshape && !doubled) {
      if (this.nsChanged.size === 0) return had;
      const changes = new Map<string, NsEntry | undefined>();
      for (const path of this.nsChanged) {
        const target = this.targetAt(path);
        changes.set(path, target && { target, view: this.views.get(path) });
      }
      const patched = patchNamespacesPart(this.instance, had, changes, this.nsKinds);
      this.nsChanged.clear();
      if (patched) return (this.nsShaped = patched);
    }
    this.nsReshape = false;
    this.nsChanged.clear();
    this.nsKinds = new Map();
    const entries = targets.map((target) => ({ target, view: this.views.get(target.path) }));
    this.nsShaped = namespacesPart(this.instance, entries, this.nsKinds);
    return this.nsShaped;
  }

  private shape(targets: readonly NsTarget[]): Observation {
    const host = this.hostShape();
    const namespaces = this.nsShape(targets);
    return assemble(this.instance, { host, namespaces, nft: this.nft!, files: this.files ?? {} });
  }

  async observe(scope: ObserveScope): Promise<Observation> {
    this.start();
    const { targets, key } = this.targetsOf(scope);
    // Nothing changed since the last observation (no notification, nothing stale, the
    // facts read directly the same): it is still the kernel's state.
    const last = this.lastObservation;
    if (
      !this.checkNext &&
      last &&
      this.unchanged(last.stamp, key) &&
      !directFactsChanged(this.instance, last.observation)
    ) {
      this.stats.observationsReused++;
      return last.observation;
    }
    let remembered: Observation | undefined;
    if (this.checkNext) {
      this.checkNext = false;
      await this.barrier();
      if (this.nft && last?.stamp.targets === key) remembered = this.shape(targets);
      // What memory holds (patched along the way) is checked against a shape made afresh.
      this.nsReshape = true;
    }
    await Promise.all([
      this.hostStale ? this.dumpHost() : undefined,
      this.nftStale || !this.nft ? this.listNft() : undefined,
      this.refreshNamespaces(targets),
    ]);
    this.refreshFiles();
    const fresh = this.shape(targets);
    this.lastObservation = { stamp: { generation: this.generation, targets: key }, observation: fresh };
    if (remembered) {
      const diffs = differences(remembered, fresh);
      if (diffs.length) {
        this.stats.mismatches++;
        this.onMismatch?.(diffs.join('; '));
      }
    }
    return fresh;
  }

  /**
   * Before apply: close the listeners inside namespaces the plan deletes (an open socket
   * would keep a deleted namespace, and its veths, alive).
   */
  releasing(plan: Plan): void {
    this.applying = true;
    for (const a of plan.actions) {
      if (a.op !== 'netns.delete') continue;
      const p = nsPathOf(a)!;
      this.unwatch(p);
      this.views.delete(p);
      this.nsChanged.add(p);
    }
  }

  /**
   * After apply: what it touched becomes stale (namespaces it wrote in, files it wrote),
   * its nft transaction is applied to the cached sets, and host notifications up to now
   * are taken in. `ok` false (apply failed midway): everything is read afresh.
   */
  async applied(plan: Plan, ok: boolean): Promise<void> {
    this.generation++;
    if (!ok) {
      this.applying = false;
      this.unjudged = [];
      this.invalidate();
      return;
    }
    for (const a of plan.actions) {
      const p = nsPathOf(a);
      if (p) this.staleNs.add(p);
      if (a.op === 'file.write' || a.op === 'file.delete') this.staleFiles.add(a.path);
      if (a.op.startsWith('nft.table.')) this.nftStale = true;
      // The directory's own event for a namespace made or deleted may come later.
      if (a.op === 'netns.create' || a.op === 'netns.delete') this.netnsSeen(a.name, a.op === 'netns.create');
    }
    if (this.nft) this.nft = withElementChanges(this.nft, plan.actions);
    await this.barrier();
    this.applying = false;
    const unjudged = this.unjudged;
    this.unjudged = [];
    const foreign = unjudged.find((g) => !nftWriterPids.includes(g.pid));
    if (foreign) this.foreignNft(foreign.change);
  }

  /**
   * Nothing held has changed since the observe() that `stamp` came from, and nothing is
   * waiting to be read again: that observation is still the kernel's state, but for the
   * facts read directly every time (observe.ts directFactsChanged), which the caller compares.
   */
  private unchanged(stamp: ObservedStamp, key: string): boolean {
    return (
      // Attached namespaces have no listener: only reading them tells.
      this.attachedPaths.size === 0 &&
      stamp.generation === this.generation &&
      !this.pending() &&
      this.staleFiles.size === 0 &&
      this.files !== undefined &&
      this.stats.unwatched === 0 &&
      stamp.targets === key
    );
  }

  close(): void {
    this.host?.socket.close();
    this.nftSock?.close();
    this.dirWatch?.close();
    for (const p of [...this.watches.keys()]) this.unwatch(p);
    this.changes$.complete();
    this.hostMessages$.complete();
    this.hostLost$.complete();
  }
}

/**
 * Where two observations differ, in what the kernel's notifications keep current (not the
 * files, which hand edits change silently, nor the facts read directly every time).
 */
export function differences(a: Observation, b: Observation): string[] {
  const out: string[] = [];
  const byName = (
    what: string,
    x: Readonly<Record<string, unknown>>,
    y: Readonly<Record<string, unknown>>,
  ) => {
    const names = [...new Set([...Object.keys(x), ...Object.keys(y)])].filter((n) => !sameData(x[n], y[n]));
    if (names.length)
      out.push(`${what} ${names.slice(0, 5).join(', ')}${names.length > 5 ? ` (+${names.length - 5})` : ''}`);
  };
  byName('bridge', a.state.bridges, b.state.bridges);
  byName('veth', a.state.veths, b.state.veths);
  byName('namespace of', a.state.namespaces, b.state.namespaces);
  byName('nft set', a.state.nft.sets, b.state.nft.sets);
  if (a.state.nft.skeleton !== b.state.nft.skeleton) out.push('nft skeleton');
  for (const k of ['reserved4', 'reserved6'] as const)
    if (!sameData(a.host[k], b.host[k])) out.push(`host ${k}`);
  if (!sameData(a.foreign, b.foreign)) out.push('foreign names');
  return out;
}

/**
 * `nft` after a successful transaction's element adds and deletes (nft transactions are
 * atomic: all of them happened). Changed sets stay sorted, as an observation lists them.
 */
export function withElementChanges(nft: NftState, actions: readonly Action[]): NftState {
  const sets = new Map<string, Set<string>>();
  for (const a of actions) {
    if (a.op !== 'nft.element.add' && a.op !== 'nft.element.delete') continue;
    let set = sets.get(a.set);
    if (!set) sets.set(a.set, (set = new Set(nft.sets[a.set] ?? [])));
    if (a.op === 'nft.element.add') set.add(a.key);
    else set.delete(a.key);
  }
  if (!sets.size) return nft;
  const changed = Object.fromEntries([...sets].map(([name, set]) => [name, [...set].sort()]));
  return { ...nft, sets: { ...nft.sets, ...changed } };
}

const targetsKey = (targets: readonly NsTarget[]) =>
  targets.map((t) => `${t.path}=${t.container ?? ''}`).join('\n');

function nsPathOf(a: Action): string | undefined {
  if ('nsPath' in a && a.nsPath) return a.nsPath;
  if (a.op === 'netns.create' || a.op === 'netns.delete') return `${NETNS_DIR}/${a.name}`;
  return undefined;
}
