/**
 * Container namespaces. Node cannot enter another network namespace, so work inside one
 * runs as ONE process per namespace per reconcile: `nsenter --net=PATH ip -batch -` for
 * writes and `ip -j -d -batch -` for reads (KERNEL-NOTES: a batch costs ≈ 4 ms where
 * one process per object costs ≈ 2 ms each).
 */
import { existsSync, readdirSync } from 'node:fs';
import { KernelError } from '../model/errors.js';
import { mustRun, run } from './exec.js';
import { openInNamespace } from './netlink.js';

export const NETNS_DIR = '/run/netns';

export interface IpLink {
  ifindex: number;
  ifname: string;
  ifalias?: string;
  flags: string[];
  mtu: number;
  address?: string;
  linkinfo?: { info_kind?: string };
  addr_info: { family: 'inet' | 'inet6'; local: string; prefixlen: number; scope: string }[];
}

export interface IpRoute {
  type?: string;
  dst: string;
  gateway?: string;
  dev?: string;
  table?: string;
  protocol?: string;
  scope?: string;
}

export interface NsView {
  links: IpLink[];
  routes: IpRoute[];
}

export function listNetns(): string[] {
  if (!existsSync(NETNS_DIR)) return [];
  return readdirSync(NETNS_DIR).sort();
}

/** `ip netns add|del` for each name, all in one `ip -batch` process. */
async function netnsBatch(verb: 'add' | 'del', what: string, names: readonly string[]): Promise<void> {
  if (!names.length) return;
  await mustRun(
    `${what} namespaces ${names.join(', ')}`,
    'ip',
    ['-batch', '-'],
    names.map((n) => `netns ${verb} ${q(n)}\n`).join(''),
  );
}

export const createNetns = (names: readonly string[]) => netnsBatch('add', 'create', names);
export const deleteNetns = (names: readonly string[]) => netnsBatch('del', 'delete', names);

function parseJsonLines(text: string): unknown[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('[') || l.startsWith('{'))
    .map((l) => JSON.parse(l) as unknown);
}

/**
 * Links with their addresses and the routes of the namespace at `path`: in-process over
 * netlink when the setns addon is built (≈ 0.3 ms a namespace), else one `ip` process.
 */
export async function readNs(path: string): Promise<NsView> {
  const h = openInNamespace(path);
  if (!h) return readNsWithIp(path);
  try {
    const [links, addrs, routes] = [await h.links(), await h.addrs(), await h.routes()];
    const name = new Map(links.map((l) => [l.index, l.name]));
    return {
      links: links.map((l) => ({
        ifindex: l.index,
        ifname: l.name,
        ifalias: l.alias,
        flags: l.up ? ['UP'] : [],
        mtu: l.mtu ?? 0,
        address: l.mac,
        addr_info: addrs
          .filter((a) => a.index === l.index)
          .map((a) => ({
            family: a.family === 6 ? 'inet6' : 'inet',
            local: a.cidr.split('/')[0]!,
            prefixlen: Number(a.cidr.split('/')[1]),
            scope: a.scope === 253 ? 'link' : a.scope === 254 ? 'host' : 'global',
          })),
      })),
      routes: routes
        .filter((r) => r.table === 254)
        .map((r) => ({
          type: r.type.toLowerCase(),
          dst: r.dstLen === 0 ? 'default' : `${r.dst}/${r.dstLen}`,
          gateway: r.gateway,
          dev: r.oif === undefined ? undefined : name.get(r.oif),
          table: 'main',
        })),
    };
  } finally {
    h.close();
  }
}

/** The same view from one `ip -j -d -batch` process. */
export async function readNsWithIp(path: string): Promise<NsView> {
  const r = await run(
    'nsenter',
    [`--net=${path}`, 'ip', '-j', '-d', '-batch', '-'],
    'addr show\nroute show table all\n',
  );
  if (r.code !== 0) throw new KernelError(`read namespace ${path}`, r.stderr || `exit ${r.code}`);
  const [links, routes] = parseJsonLines(r.stdout) as [IpLink[], IpRoute[]];
  if (!Array.isArray(links) || !Array.isArray(routes)) {
    throw new KernelError(`read namespace ${path}`, 'ip printed an incomplete view');
  }
  return { links, routes };
}

/** Run `ip` batch lines inside the namespace at `path`; stops at the first failing line. */
export async function batchNs(path: string, lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  await mustRun(
    `configure namespace ${path}`,
    'nsenter',
    [`--net=${path}`, 'ip', '-batch', '-'],
    `${lines.join('\n')}\n`,
  );
}

/** Quote one argument for an `ip -batch` line (its tokenizer honours double quotes). */
export function q(arg: string): string {
  return /^[A-Za-z0-9_.:/@-]+$/.test(arg) ? arg : `"${arg.replace(/(["\\])/g, '\\$1')}"`;
}
