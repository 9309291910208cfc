/**
 * The one naming scheme for everything tether creates, and the ownership markers that
 * let observe/ recognise its own objects. Kernel objects carry their owner in the
 * interface alias (IFLA_IFALIAS), so ownership is visible with `ip -d link` and
 * survives restarts without a state file:
 *
 *   bridge            alias "tether:<instance>:net:<network>"
 *   veth (both ends)  alias "tether:<instance>:ep:<container>:<network>"
 *   container netns   named "<instance>-<container>", its `lo` aliased "tether:<instance>:ns:<container>"
 *   nft tables        "inet <instance>" and "bridge <instance>"
 */
import crypto from 'node:crypto';

export const IFNAMSIZ = 15;

/**
 * One-shot crypto.hash (Node 20.12+) is about three times as fast as a Hash object for
 * short strings, and IPAM names two things per container with it.
 */
export function sha256hex(s: string): string {
  if (typeof crypto.hash === 'function') return crypto.hash('sha256', s, 'hex');
  return crypto.createHash('sha256').update(s).digest('hex');
}

/** The first 16 hex digits of the SHA-256 of `s`: how files tether writes in parts are named in their index. */
export const shortHash = (s: string): string => sha256hex(s).slice(0, 16);

export const INSTANCE_RE = /^[a-z][a-z0-9_-]{0,13}$/;

export function isValidIfName(name: string): boolean {
  return (
    Buffer.byteLength(name) <= IFNAMSIZ &&
    name.length > 0 &&
    !/[\s/:]/.test(name) &&
    name !== '.' &&
    name !== '..'
  );
}

/** Docker-shaped 64-hex network id, stable per instance and name. */
export function networkId(instance: string, network: string): string {
  return sha256hex(`tether/${instance}/network/${network}`);
}

export function containerId(instance: string, container: string): string {
  return sha256hex(`tether/${instance}/container/${container}`);
}

/** Bridge device of a network: the option, else `<instance>0` for the default bridge, else `br-<id12>`. */
export function bridgeName(instance: string, network: string, isDefault: boolean, explicit?: string): string {
  if (explicit) return explicit;
  if (isDefault && isValidIfName(`${instance}0`)) return `${instance}0`;
  return `br-${networkId(instance, network).slice(0, 12)}`;
}

/** Host end of a container's veth: "veth" + 11 hex, stable per (instance, container, network). */
export function vethName(instance: string, container: string, network: string): string {
  return `veth${sha256hex(`tether/${instance}/ep/${container}/${network}`).slice(0, 11)}`;
}

export function netnsName(instance: string, container: string): string {
  return `${instance}-${container}`;
}

export const netAlias = (instance: string, network: string) => `tether:${instance}:net:${network}`;
export const epAlias = (instance: string, container: string, network: string) =>
  `tether:${instance}:ep:${container}:${network}`;
export const nsAlias = (instance: string, container: string) => `tether:${instance}:ns:${container}`;

export type ParsedAlias =
  | { kind: 'net'; network: string }
  | { kind: 'ep'; container: string; network: string }
  | { kind: 'ns'; container: string };

/** Parsed aliases by instance, then text: observing parses the same thousands of aliases each time. */
const aliasCache = new Map<string, Map<string, ParsedAlias | null>>();

/** Parses an alias written by this instance; undefined for anything else (foreign). */
export function parseAlias(instance: string, alias: string | undefined): ParsedAlias | undefined {
  if (!alias) return undefined;
  let cache = aliasCache.get(instance);
  if (!cache) aliasCache.set(instance, (cache = new Map()));
  let parsed = cache.get(alias);
  if (parsed === undefined) {
    if (cache.size >= 1 << 14) cache.clear();
    parsed = parseAliasText(instance, alias) ?? null;
    if (parsed) Object.freeze(parsed);
    cache.set(alias, parsed);
  }
  return parsed ?? undefined;
}

function parseAliasText(instance: string, alias: string): ParsedAlias | undefined {
  const prefix = `tether:${instance}:`;
  if (!alias.startsWith(prefix)) return undefined;
  const rest = alias.slice(prefix.length).split(':');
  if (rest[0] === 'net' && rest.length === 2) return { kind: 'net', network: rest[1]! };
  if (rest[0] === 'ep' && rest.length === 3) return { kind: 'ep', container: rest[1]!, network: rest[2]! };
  if (rest[0] === 'ns' && rest.length === 2) return { kind: 'ns', container: rest[1]! };
  return undefined;
}

export function nftTableName(instance: string): string {
  return instance;
}
