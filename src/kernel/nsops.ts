/**
 * Work inside one container namespace, as data: link changes, addresses, default
 * routes. Executed in-process over a netlink socket opened inside the namespace (setns
 * addon), or, without the addon, as one `ip -batch` process. Ops run in order and stop
 * at the first failure.
 */
import { KernelError } from '../model/errors.js';
import { openInNamespace } from './netlink.js';
import { batchNs, q } from './netns.js';

export type NsOp =
  | {
      readonly t: 'link';
      readonly name: string;
      readonly alias?: string;
      readonly mtu?: number;
      readonly mac?: string;
      readonly up?: boolean;
    }
  /** No IPv6 link-local address on the link (before it goes up). */
  | { readonly t: 'no-link-local'; readonly name: string }
  | { readonly t: 'addr'; readonly add: boolean; readonly dev: string; readonly cidr: string }
  | { readonly t: 'route'; readonly add: boolean; readonly via: string; readonly dev: string };

/** The `ip -batch` line of an op. */
export function ipLine(op: NsOp): string {
  switch (op.t) {
    case 'link': {
      const parts = [`link set dev ${q(op.name)}`];
      if (op.alias !== undefined) parts.push(`alias ${q(op.alias)}`);
      if (op.mtu !== undefined) parts.push(`mtu ${op.mtu}`);
      if (op.mac) parts.push(`address ${op.mac}`);
      if (op.up) parts.push('up');
      return parts.join(' ');
    }
    case 'no-link-local':
      return `link set dev ${q(op.name)} addrgenmode none`;
    case 'addr':
      return `addr ${op.add ? 'add' : 'del'} ${op.cidr} dev ${q(op.dev)}${op.add && op.cidr.includes(':') ? ' nodad' : ''}`;
    case 'route':
      return `route ${op.add ? 'replace' : 'del'} default via ${op.via} dev ${q(op.dev)}`;
  }
}

export async function runNsOps(path: string, ops: readonly NsOp[]): Promise<void> {
  if (!ops.length) return;
  const h = openInNamespace(path);
  if (!h) return batchNs(path, ops.map(ipLine));
  try {
    let index = new Map((await h.links()).map((l) => [l.name, l.index]));
    const idx = async (dev: string) => {
      if (!index.has(dev)) index = new Map((await h.links()).map((l) => [l.name, l.index]));
      const i = index.get(dev);
      if (i === undefined)
        throw new KernelError(`configure namespace ${path}`, `no interface ${dev}`, 'not-found');
      return i;
    };
    for (const op of ops) {
      try {
        if (op.t === 'link')
          await h.setLink(op.name, { alias: op.alias, mtu: op.mtu, mac: op.mac, up: op.up });
        else if (op.t === 'no-link-local') await h.setNoLinkLocal(op.name);
        else if (op.t === 'addr' && op.add) await h.addAddr(await idx(op.dev), op.cidr);
        else if (op.t === 'addr') await h.delAddr(await idx(op.dev), op.cidr);
        else if (op.add) await h.replaceDefaultRoute(op.via, await idx(op.dev));
        else await h.delDefaultRoute(op.via, await idx(op.dev));
      } catch (e) {
        throw new KernelError(`in ${path}: ${ipLine(op)}`, (e as Error).message);
      }
    }
  } finally {
    h.close();
  }
}
