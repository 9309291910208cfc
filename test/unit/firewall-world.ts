/**
 * The pure firewall path for the firewall-* unit tests: manifest text → loadSpecFromStrings
 * → resolve (IPAM, ports) → desiredState → diff → nftTransaction. No kernel.
 *
 * Conventions: container subnets from Docker's pools (172.17/16, 172.18/16, …) or explicit
 * 172.2x/16 and fd00::/8 ULA; host addresses only from 203.0.113.0/24 and 2001:db8::/32.
 */
import { nftTransaction } from '../../src/apply/apply.js';
import { desiredState } from '../../src/diff/desired.js';
import { diff } from '../../src/diff/diff.js';
import type { Action } from '../../src/diff/plan.js';
import type { NftCommand } from '../../src/kernel/nft.js';
import type { Resolved } from '../../src/model/resolved.js';
import { EMPTY_STATE, type KernelState } from '../../src/model/state.js';
import { type HostFacts, resolve } from '../../src/spec/ipam.js';
import { loadSpecFromStrings } from '../../src/spec/load.js';

export const INSTANCE = 'tt';
export const HOST: HostFacts = {
  reserved4: [],
  reserved6: [],
  ulaSeed: 'firewall-unit-tests',
  ephemeralPorts: [32768, 60999],
};

export interface World {
  readonly resolved: Resolved;
  readonly desired: KernelState;
}

/** Load and resolve `yaml` against `actual` (what the kernel holds), and derive the desired state. */
export function world(yaml: string, actual: KernelState = EMPTY_STATE): World {
  const spec = loadSpecFromStrings([{ path: 'm.yaml', text: yaml }]);
  const resolved = resolve(spec, INSTANCE, actual, HOST);
  return { resolved, desired: desiredState(resolved) };
}

/** The plan from `before` (as if applied and observed) to `after`. */
export function plan(after: World, before: World | KernelState = EMPTY_STATE): Action[] {
  const actual = 'desired' in before ? before.desired : before;
  return [...diff(after.desired, actual, INSTANCE).actions];
}

/** Just the nft element actions, as "op set key" lines (sorted). */
export function elementOps(actions: readonly Action[]): string[] {
  return actions
    .filter((a) => a.op === 'nft.element.add' || a.op === 'nft.element.delete')
    .map((a) =>
      a.op === 'nft.element.add' || a.op === 'nft.element.delete'
        ? `${a.op.slice(12)} ${a.set} ${a.key}`
        : '',
    )
    .sort();
}

export const tx = (actions: readonly Action[]): NftCommand[] => nftTransaction(actions);

/** Deep copy with object keys sorted and set/map element lists sorted: order-insensitive where nft is. */
export function canonical(v: unknown, inElem = false): unknown {
  if (Array.isArray(v)) {
    const items = v.map((x) => canonical(x));
    return inElem ? items.sort((a, b) => (JSON.stringify(a) < JSON.stringify(b) ? -1 : 1)) : items;
  }
  if (v && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return Object.fromEntries(
      Object.keys(o)
        .sort()
        .map((k) => [k, canonical(o[k], k === 'elem')]),
    );
  }
  return v;
}

/** Pretty, key-sorted JSON of nft commands, element lists sorted; a trailing newline. */
export const pretty = (cmds: readonly NftCommand[]): string =>
  `${JSON.stringify(canonical(cmds), null, 2)}\n`;
