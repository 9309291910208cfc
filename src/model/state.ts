/**
 * The kernel-level model that `diff` compares. `desired` (from the resolved manifests)
 * and `actual` (from observe/) have this same shape. Only objects tether owns appear.
 *
 * Field conventions: addresses are canonical CIDR strings ("172.18.0.2/16"), sorted;
 * MACs lowercase; an `undefined` optional field in the *desired* state means
 * "whatever the kernel has is fine" (e.g. a MAC the user did not pin).
 */

import type { ProxySpec } from '../dns/proxy.js';

export interface BridgeState {
  /** Interface name (≤ 15 bytes). */
  readonly name: string;
  /** The tether network it implements. */
  readonly network: string;
  readonly mtu?: number;
  /** Gateway addresses with the subnet's prefix length, sorted. */
  readonly addrs: readonly string[];
  readonly up: boolean;
}

/** The host end of a container's veth pair, a port of a bridge. */
export interface VethState {
  readonly name: string;
  readonly container: string;
  readonly network: string;
  /** Bridge it is enslaved to. */
  readonly master?: string;
  readonly mtu?: number;
  readonly up: boolean;
}

/** A tether-made interface inside a container namespace (the veth's peer). */
export interface ContainerLinkState {
  readonly name: string;
  readonly network: string;
  readonly mac?: string;
  readonly mtu?: number;
  readonly addrs: readonly string[];
  readonly up: boolean;
}

export interface RouteState {
  readonly family: 4 | 6;
  /** Only default routes are managed. */
  readonly dst: 'default';
  readonly via: string;
  readonly dev: string;
}

export interface NamespaceState {
  readonly container: string;
  /** Named namespace (under /run/netns) when tether created it. */
  readonly netnsName?: string;
  /** Path used to enter it. */
  readonly path: string;
  /** True when the namespace is the user's (`netns:`): tether only adds and removes its own interfaces. */
  readonly attached: boolean;
  readonly links: Readonly<Record<string, ContainerLinkState>>;
  readonly routes: readonly RouteState[];
}

/** tether's nftables table(s): a static skeleton plus elements in named sets/maps. */
export interface NftState {
  /** Fingerprint of the static part (chains and rules); undefined when the table is absent. */
  readonly skeleton?: string;
  /** set/map name → sorted element keys (map elements as "key => value"). */
  readonly sets: Readonly<Record<string, readonly string[]>>;
  /** Which of tether's tables exist (observed only). */
  readonly tables?: { readonly inet: boolean; readonly bridge: boolean };
}

/**
 * The embedded resolver: its configuration and whether it serves it. `config` is the
 * index (dns/service.ts): networks, upstreams, proxies and a hash per container part; the
 * parts (each container's names) are files of their own, so an edit rewrites one.
 */
export interface ResolverState {
  /** The index as written (JSON, one line). */
  readonly config: string;
  readonly running: boolean;
  /** Desired only: container → the text of its part (the index holds its hash). */
  readonly parts?: Readonly<Record<string, string>>;
  /** Desired only: container → its part's hash, as in the index (saves parsing it back). */
  readonly partHashes?: Readonly<Record<string, string>>;
  /** Desired only: container → its proxies on host ports tether chose, as in the index. */
  readonly chosen?: Readonly<Record<string, readonly ProxySpec[]>>;
  /** Desired only: served networks and proxies, for the plan's description. */
  readonly networks?: number;
  readonly proxies?: number;
}

export interface KernelState {
  readonly bridges: Readonly<Record<string, BridgeState>>;
  readonly veths: Readonly<Record<string, VethState>>;
  readonly namespaces: Readonly<Record<string, NamespaceState>>;
  /** sysctls of the host namespace tether manages: key → value. Desired lists only keys it wants. */
  readonly sysctls: Readonly<Record<string, string>>;
  readonly nft: NftState;
  /** Files tether writes (containers' resolv.conf and hosts): path → content. */
  readonly files: Readonly<Record<string, string>>;
  /** Absent: no resolver wanted / none present. */
  readonly resolver?: ResolverState;
}

export const EMPTY_STATE: KernelState = Object.freeze({
  bridges: {},
  veths: {},
  namespaces: {},
  sysctls: {},
  nft: { sets: {} },
  files: {},
});

/** The link of a namespace on `network`, if any (the first, as Object.values finds it). */
export function linkOn(ns: NamespaceState, network: string): ContainerLinkState | undefined {
  for (const l of Object.values(ns.links)) if (l.network === network) return l;
  return undefined;
}
