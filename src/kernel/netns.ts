/**
 * Container namespaces. Node cannot enter another network namespace, so work inside one
 * runs as ONE process per namespace per reconcile: `nsenter --net=PATH ip -batch -` for
 * writes and `ip -j -d -batch -` for reads (KERNEL-NOTES: a batch costs ≈ 4 ms where
 * one process per object costs ≈ 2 ms each).
 */
import { existsSync, readdirSync } from 'node:fs';
import { KernelError } from '../model/errors.js';
import { mustRun, run } from './exec.js';

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

export async function createNetns(name: string): Promise<void> {
  await mustRun(`create namespace ${name}`, 'ip', ['netns', 'add', name]);
}

export async function deleteNetns(name: string): Promise<void> {
  await mustRun(`delete namespace ${name}`, 'ip', ['netns', 'del', name]);
}

function parseJsonLines(text: string): unknown[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('[') || l.startsWith('{'))
    .map((l) => JSON.parse(l) as unknown);
}

/** Links with their addresses and all routes of the namespace at `path`, in one process. */
export async function readNs(path: string): Promise<NsView> {
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
