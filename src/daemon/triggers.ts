/**
 * What makes the daemon reconcile (STYLE P13): manifest changes (chokidar, debounced),
 * rtnetlink notifications about links and addresses this instance owns, a periodic full
 * resync (catches what no event reports: nft rules, namespaces and container-side
 * changes made by hand), and SIGHUP. Each source is an Observable<Trigger>; the loop
 * merges them and coalesces them into runs (loop.ts).
 */
import { stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import { watch } from 'chokidar';
import * as nl from 'netlink';
import {
  asyncScheduler,
  auditTime,
  buffer,
  connect,
  debounceTime,
  fromEvent,
  map,
  type Observable,
  type OperatorFunction,
  type SchedulerLike,
  Subject,
  timer,
} from 'rxjs';
import type { NlLink } from '../kernel/netlink.js';
import { parseAlias } from '../model/names.js';

export type TriggerKind = 'start' | 'file' | 'kernel' | 'resync' | 'sighup';

export interface Trigger {
  readonly kind: TriggerKind;
  /** What happened, for the log: "a.yaml changed", "link br-1234 deleted", … */
  readonly detail?: string;
}

/**
 * Collects values and emits them as one array once `ms` passed without a new one: a
 * debounce that keeps every value (editors save in several steps; each step is one
 * chokidar event).
 */
export function debounceBatch<T>(
  ms: number,
  scheduler: SchedulerLike = asyncScheduler,
): OperatorFunction<T, T[]> {
  return connect((shared) => shared.pipe(buffer(shared.pipe(debounceTime(ms, scheduler)))));
}

/**
 * Collects values for `ms` after the first one, then emits them as one array: bounded
 * latency even under a steady stream (one `ip link del` of a bridge is a burst of
 * notifications: the bridge, each port's master change, its addresses).
 */
export function auditBatch<T>(
  ms: number,
  scheduler: SchedulerLike = asyncScheduler,
): OperatorFunction<T, T[]> {
  return connect((shared) => shared.pipe(buffer(shared.pipe(auditTime(ms, scheduler)))));
}

/** A batch of triggers of one kind as one trigger whose detail lists the distinct details. */
export function mergeBatch(kind: TriggerKind): OperatorFunction<readonly Trigger[], Trigger> {
  return map((batch) => {
    const details = [...new Set(batch.map((t) => t.detail).filter((d): d is string => !!d))];
    const shown = details.length > 5 ? [...details.slice(0, 5), `${details.length - 5} more`] : details;
    return { kind, detail: shown.join('; ') || undefined };
  });
}

/** A full resync every `ms`. */
export function resyncTriggers(ms: number, scheduler: SchedulerLike = asyncScheduler): Observable<Trigger> {
  return timer(ms, ms, scheduler).pipe(map(() => ({ kind: 'resync' as const })));
}

/**
 * Drift the in-memory observation hears of (observe/live.ts: container namespaces,
 * namespaces removed, nftables), settled
 * like the host's into one 'kernel' trigger.
 */
export function observerTriggers(
  changes$: Observable<string>,
  settleMs: number,
  scheduler: SchedulerLike = asyncScheduler,
): Observable<Trigger> {
  return changes$.pipe(
    map((detail): Trigger => ({ kind: 'kernel', detail })),
    auditBatch(settleMs, scheduler),
    mergeBatch('kernel'),
  );
}

/** SIGHUP → reload. Subscribing installs the handler (so SIGHUP no longer terminates). */
export function sighupTriggers(): Observable<Trigger> {
  return fromEvent(process, 'SIGHUP').pipe(map(() => ({ kind: 'sighup' as const, detail: 'SIGHUP' })));
}

/** A watcher with a lifetime: `ready` once it watches, `close` to stop. */
export interface Watch {
  readonly events$: Observable<Trigger>;
  readonly ready: Promise<void>;
  close(): Promise<void>;
}

const MANIFEST_EXT = /\.ya?ml$/;

/**
 * Watches `-f PATH`. A directory: its *.yaml/*.yml files (not subdirectories), as the
 * loader reads them. A file: its parent directory, filtered to that name — so an
 * editor's rename-and-replace save (write a temp file, rename it over the original; or
 * rename the original to a backup and write a new one) is seen even though the inode
 * that was being watched is gone. Events are debounced into one trigger.
 */
export async function watchManifests(
  path: string,
  opts: { debounceMs: number; onError?: (e: Error) => void },
): Promise<Watch> {
  const abs = resolve(path);
  const isDir = await stat(abs).then(
    (s) => s.isDirectory(),
    () => false,
  );
  const dir = isDir ? abs : dirname(abs);
  const relevant = (p: string) =>
    isDir ? p === abs || (dirname(p) === abs && MANIFEST_EXT.test(basename(p))) : p === abs;
  const raw = new Subject<Trigger>();
  const watcher = watch(dir, { ignoreInitial: true, depth: 0, atomic: true });
  watcher.on('all', (event, p) => {
    if (relevant(p)) raw.next({ kind: 'file', detail: `${basename(p)} ${verb(event)}` });
  });
  watcher.on('error', (e) => opts.onError?.(e instanceof Error ? e : new Error(String(e))));
  const ready = new Promise<void>((res) => watcher.once('ready', () => res()));
  return {
    events$: raw.pipe(debounceBatch(opts.debounceMs), mergeBatch('file')),
    ready,
    close: async () => {
      raw.complete();
      await watcher.close();
    },
  };
}

function verb(event: string): string {
  switch (event) {
    case 'add':
      return 'added';
    case 'unlink':
      return 'removed';
    case 'change':
      return 'changed';
    case 'unlinkDir':
      return 'directory removed';
    case 'addDir':
      return 'directory added';
    default:
      return event;
  }
}

/** The link facts whose change is worth a reconcile (not carrier, not statistics). */
export interface LinkFacts {
  readonly index: number;
  readonly name?: string;
  readonly alias?: string;
  readonly master?: number;
  readonly mtu?: number;
  readonly mac?: string;
  readonly up?: boolean;
}

const RT_SCOPE_LINK = 253;

/**
 * Decides which rtnetlink notifications concern this instance. Pure: fed with parsed
 * messages, it answers with a detail string for a relevant one, else undefined.
 * Owned links are those whose alias starts with `tether:<instance>:`; the filter keeps
 * their last facts by ifindex, because address notifications carry only the index and
 * a link whose alias was removed by hand is no longer recognisable by its alias.
 */
export class KernelFilter {
  private readonly owned = new Map<number, { name: string; key: string }>();
  constructor(private readonly instance: string) {}

  private isOwned(alias: string | undefined): boolean {
    return parseAlias(this.instance, alias) !== undefined;
  }

  /** Start from a dump of the links that exist now. */
  seed(links: readonly LinkFacts[]): void {
    for (const l of links)
      if (this.isOwned(l.alias)) this.owned.set(l.index, { name: l.name ?? '', key: key(l) });
  }

  ownedCount(): number {
    return this.owned.size;
  }

  link(type: 'new' | 'del', l: LinkFacts): string | undefined {
    const prev = this.owned.get(l.index);
    const name = l.name ?? prev?.name ?? `#${l.index}`;
    if (type === 'del') {
      if (!prev && !this.isOwned(l.alias)) return undefined;
      this.owned.delete(l.index);
      return `link ${name} deleted`;
    }
    if (!this.isOwned(l.alias)) {
      if (!prev) return undefined;
      this.owned.delete(l.index);
      return `link ${name} lost its tether alias`;
    }
    const k = key(l);
    if (prev?.key === k) return undefined;
    this.owned.set(l.index, { name, key: k });
    return prev ? `link ${name} changed` : `link ${name} appeared`;
  }

  addr(type: 'new' | 'del', index: number, cidr: string, scope: number): string | undefined {
    const link = this.owned.get(index);
    if (!link || scope === RT_SCOPE_LINK) return undefined;
    return `address ${cidr} ${type === 'new' ? 'added to' : 'removed from'} ${link.name}`;
  }
}

function key(l: LinkFacts): string {
  return JSON.stringify([l.name, l.alias, l.master ?? 0, l.mtu, l.mac, !!l.up]);
}

const { rt } = nl;
const AF_UNSPEC = 0;
const AF_INET6 = 10;

function mac(b?: Buffer): string | undefined {
  return b?.length === 6 ? [...b].map((x) => x.toString(16).padStart(2, '0')).join(':') : undefined;
}

function ip(b: Buffer): string {
  if (b.length === 4) return [...b].join('.');
  const parts: string[] = [];
  for (let i = 0; i < b.length; i += 2) parts.push(b.readUInt16BE(i).toString(16));
  return parts.join(':');
}

/**
 * rtnetlink link and address notifications of this process's namespace, filtered to
 * what the instance owns (KernelFilter), settled for `settleMs` into one trigger.
 *
 * KERNEL-NOTES: the listener is a socket of its own created with `{ref: true}` (a
 * listen-only socket otherwise lets the process exit); it listens on the raw netlink
 * socket, because the high-level 'message' event drops the message type (NEWLINK vs
 * DELLINK), and parses inside try/catch, because an exception thrown in a socket
 * listener aborts the process. A receive error (ENOBUFS: notifications were lost)
 * becomes a trigger too: the next reconcile observes everything anyway.
 */
export async function watchKernel(
  instance: string,
  opts: { settleMs: number; seed: () => Promise<readonly NlLink[]>; onError?: (e: Error) => void },
): Promise<Watch> {
  const filter = new KernelFilter(instance);
  const raw = new Subject<Trigger>();
  const sock = nl.createRtNetlink({ ref: true, recvBufferSize: 4 << 20, sendBufferSize: 0 });
  for (const g of ['LINK', 'IPV4_IFADDR', 'IPV6_IFADDR'] as const) sock.addMembership(g);
  sock.socket.on('message', (msgs) => {
    for (const m of msgs) {
      try {
        const detail = classify(filter, m.type, m.data);
        if (detail) raw.next({ kind: 'kernel', detail });
      } catch (e) {
        opts.onError?.(
          new Error(`unparsable rtnetlink notification (type ${m.type}): ${(e as Error).message}`),
        );
      }
    }
  });
  sock.socket.socket.on('error', () => {}); // see HostNetlink: never let an error escape a native callback
  sock.socket.on('error', (e) => {
    raw.next({ kind: 'kernel', detail: `netlink listener: ${e.message} (notifications may be lost)` });
  });
  const ready = opts.seed().then((links) => filter.seed(links));
  return {
    events$: raw.pipe(auditBatch(opts.settleMs), mergeBatch('kernel')),
    ready,
    close: async () => {
      raw.complete();
      sock.socket.close();
    },
  };
}

function classify(filter: KernelFilter, type: number, data: Buffer): string | undefined {
  if (type === rt.MessageType.NEWLINK || type === rt.MessageType.DELLINK) {
    const m = rt.parseMessage(type, data);
    if (m.kind !== 'link' || (m.data.family ?? AF_UNSPEC) !== AF_UNSPEC) return undefined;
    return filter.link(type === rt.MessageType.NEWLINK ? 'new' : 'del', {
      index: m.data.index!,
      name: m.attrs.ifname,
      alias: m.attrs.ifalias,
      master: m.attrs.master,
      mtu: m.attrs.mtu,
      mac: mac(m.attrs.address),
      up: !!m.data.flags?.up,
    });
  }
  if (type === rt.MessageType.NEWADDR || type === rt.MessageType.DELADDR) {
    const m = rt.parseMessage(type, data);
    if (m.kind !== 'address') return undefined;
    const a = m.attrs.local ?? m.attrs.address;
    const cidr = a ? `${ip(a)}/${m.data.prefixlen}` : `(${m.data.family === AF_INET6 ? 'IPv6' : 'IPv4'})`;
    return filter.addr(
      type === rt.MessageType.NEWADDR ? 'new' : 'del',
      m.data.index!,
      cidr,
      m.data.scope ?? 0,
    );
  }
  return undefined;
}
