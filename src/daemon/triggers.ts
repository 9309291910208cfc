/**
 * What makes the daemon reconcile (STYLE P13): manifest changes (chokidar, debounced),
 * rtnetlink notifications about host links and addresses this instance owns, drift the
 * in-memory observation hears of (container namespaces, nftables, namespaces removed), a
 * periodic full resync (what no event reports: /etc/netns files, sysctls), and SIGHUP. Each source is an Observable<Trigger>; the loop
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
import { addrOf, linkOf, type RtMessage } from '../kernel/rtparse.js';
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
const RTM = rt.MessageType;

/**
 * Link and address notifications of the host namespace, filtered to what the instance
 * owns (KernelFilter), settled for `settleMs` into one trigger. The messages come from
 * the daemon's in-memory observation (observe/live.ts), which already listens on the
 * host: one socket, one decoding. A lost notification (ENOBUFS) becomes a trigger too:
 * the observation re-reads the host at the next reconcile anyway.
 */
export async function watchKernel(
  instance: string,
  opts: {
    settleMs: number;
    messages$: Observable<RtMessage>;
    lost$: Observable<Error>;
    seed: () => Promise<readonly NlLink[]>;
    onError?: (e: Error) => void;
  },
): Promise<Watch> {
  const filter = new KernelFilter(instance);
  const raw = new Subject<Trigger>();
  const subs = [
    opts.messages$.subscribe((m) => {
      try {
        const detail = classify(filter, m);
        if (detail) raw.next({ kind: 'kernel', detail });
      } catch (e) {
        opts.onError?.(
          new Error(`unparsable rtnetlink notification (type ${m.type}): ${(e as Error).message}`),
        );
      }
    }),
    opts.lost$.subscribe((e) =>
      raw.next({ kind: 'kernel', detail: `netlink listener: ${e.message} (notifications may be lost)` }),
    ),
  ];
  const ready = opts.seed().then((links) => filter.seed(links));
  return {
    events$: raw.pipe(auditBatch(opts.settleMs), mergeBatch('kernel')),
    ready,
    close: async () => {
      for (const sub of subs) sub.unsubscribe();
      raw.complete();
    },
  };
}

function classify(filter: KernelFilter, m: RtMessage): string | undefined {
  if (m.type === RTM.NEWLINK || m.type === RTM.DELLINK) {
    const l = linkOf(m);
    return l ? filter.link(m.type === RTM.NEWLINK ? 'new' : 'del', l) : undefined;
  }
  if (m.type === RTM.NEWADDR || m.type === RTM.DELADDR) {
    const a = addrOf(m);
    return a ? filter.addr(m.type === RTM.NEWADDR ? 'new' : 'del', a.index, a.cidr, a.scope) : undefined;
  }
  return undefined;
}
