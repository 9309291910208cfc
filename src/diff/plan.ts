/**
 * A plan is data: an ordered list of actions that `plan` prints and `apply` executes.
 * Each action names one kernel object. `ns` is the container whose namespace the action
 * runs in; absent means the host namespace.
 */
export type Action =
  | { op: 'sysctl.set'; key: string; value: string; from?: string }
  | { op: 'netns.create'; container: string; name: string }
  | { op: 'netns.delete'; container: string; name: string }
  | { op: 'bridge.create'; network: string; name: string; mtu?: number }
  | { op: 'bridge.delete'; network: string; name: string }
  | {
      op: 'veth.create';
      container: string;
      network: string;
      name: string;
      peer: string;
      nsPath: string;
      master?: string;
      mtu?: number;
      mac?: string;
      /** The container end has no IPv6 address: it gets no link-local one either (as Docker). */
      noIpv6?: true;
    }
  | { op: 'veth.delete'; container: string; network: string; name: string }
  | { op: 'link.set'; container?: string; nsPath?: string; name: string; change: LinkChange }
  | { op: 'addr.add' | 'addr.del'; container?: string; nsPath?: string; dev: string; cidr: string }
  | {
      op: 'route.add' | 'route.del';
      container: string;
      nsPath: string;
      family: 4 | 6;
      via: string;
      dev: string;
    }
  | { op: 'nft.table.create' | 'nft.table.replace' | 'nft.table.delete'; table: string }
  | { op: 'nft.element.add' | 'nft.element.delete'; table: string; set: string; key: string }
  | { op: 'file.write'; path: string; content: string; exists: boolean }
  | { op: 'file.delete'; path: string }
  /** The resolver process (DNS for user-defined networks, userland proxies for what NAT cannot serve). */
  | {
      op: 'resolver.reload';
      /** The index (dns.json). */
      config: string;
      /** Container parts to write (new or changed; all when the resolver is not serving). */
      parts: Record<string, string>;
      /** Container parts to delete; "others": all but those in `parts` (then every part). */
      removeParts: string[] | 'others';
      networks: number;
      proxies: number;
      start: boolean;
    }
  | { op: 'resolver.stop' };

export interface LinkChange {
  mtu?: number;
  mac?: string;
  up?: boolean;
  master?: string;
}

export interface Plan {
  readonly actions: readonly Action[];
}

export const isDeletion = (a: Action) => /\.(delete|del)$/.test(a.op);
