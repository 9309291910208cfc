/**
 * The daemon's reload after an edit of a few container entries. The daemon loads its
 * manifests after every save; when a save added, changed, moved or removed container
 * entries of files parsed in pieces (pieces.ts) and left the text of everything else as
 * it was (the daemon section, the networks, the other files), only those entries go
 * through the phases again, and the checks across containers (port and address clashes,
 * containers per network) are kept as indexes updated for them. The other containers keep
 * their very same spec objects and are not looked at. When the daemon section or the
 * networks only moved (they come after the containers, as in most Compose files), the
 * network specs are made again too, since they carry their lines. Anything else, or any
 * problem found on the way, makes the caller load everything again (load.ts), so that
 * problems are reported exactly as a whole load reports them; only a load that succeeded
 * is started from.
 */

import { freezeData } from '../model/intern.js';
import type { ContainerSpec, Spec, SpecWarning } from '../model/spec.js';
import { type CanonContainer, type CanonModel, canonicalContainer, isObj } from './canonical.js';
import {
  bridgePorts,
  type ConsistencyResult,
  checkBridgeSizes,
  checkContainer,
  PortClaims,
} from './consistency.js';
import { type DefaultsResult, defaultContainer, defaultNetworks, dnsDefaults } from './defaults.js';
import type { PieceSection, PlacedPiece } from './pieces.js';
import { manifestFiles, type ParsedFile, type ReadResult, Sources, sortByPlace } from './read.js';
import { validateSchema } from './schema.js';

/** A whole load's results, as load.ts makes them. */
export interface Built {
  readonly spec: Spec;
  readonly model: CanonModel;
  readonly defaults: DefaultsResult;
  readonly consistency: ConsistencyResult;
}

type Section = 'containers' | 'services';

/** A container entry added, changed or moved since the last load, or removed (no `placed`). */
interface Change {
  readonly file: ParsedFile;
  readonly section: Section;
  readonly name: string;
  readonly placed?: PlacedPiece;
}

interface Delta {
  readonly changes: readonly Change[];
  /** The daemon or networks sections moved (same text, other lines): their specs carry places. */
  readonly networksMoved: boolean;
  /**
   * Whether the containers keep their order when removed ones are dropped, changed ones
   * replaced where they are, and added ones put at the end (else it is taken afresh).
   */
  readonly inPlace: boolean;
}

/** What the last load made, kept for the next one (its maps are updated in place). */
interface Last {
  files: readonly ParsedFile[];
  spec: Spec;
  model: CanonModel;
  /** The spec's containers in its order, to make the next record from. */
  specs: Map<string, ContainerSpec>;
  networkWarnings: readonly SpecWarning[];
  /** Per container with warnings: those of phase 4, */
  readonly builtWarnings: Map<string, readonly SpecWarning[]>;
  /** and those of its own checks in phase 5. */
  readonly checkWarnings: Map<string, readonly SpecWarning[]>;
  /** Per container, its static addresses and MACs (consistency.ts ContainerFindings). */
  readonly addressClaims: Map<string, readonly string[]>;
  /** How many containers claim each of them; `sharedAddresses` of them are claimed twice. */
  readonly addressCount: Map<string, number>;
  sharedAddresses: number;
  /** Containers on each network. */
  readonly bridgeCounts: Map<string, number>;
}

export class Reloader {
  /** The host ports claimed by the last load: PortClaims updates from any earlier state. */
  readonly claims = new PortClaims();
  private last: Last | undefined;

  /**
   * The spec for `read`, made from the last load by redoing the container entries that
   * changed; undefined when everything must be loaded (see the top of this file).
   */
  reload(read: ReadResult): Spec | undefined {
    const last = this.last;
    // Kept again only if this load succeeds: a failed one may have updated it halfway.
    this.last = undefined;
    if (!last || read.problems.length > 0) return undefined;
    const delta = changesOf(last.files, read.files);
    const spec = delta && apply(last, delta, read, this.claims);
    if (spec) this.last = last;
    return spec;
  }

  /** Start the next reload from a whole load. */
  keep(files: readonly ParsedFile[], built: Built): void {
    const addressClaims = new Map(built.consistency.addressClaims);
    const addressCount = new Map<string, number>();
    for (const subjects of addressClaims.values()) for (const s of subjects) count(addressCount, s, 1);
    this.last = {
      files,
      spec: built.spec,
      model: built.model,
      specs: new Map(Object.entries(built.spec.containers)),
      networkWarnings: built.defaults.networkWarnings,
      builtWarnings: new Map(built.defaults.containerWarnings),
      checkWarnings: new Map(built.consistency.containerWarnings),
      addressClaims,
      addressCount,
      sharedAddresses: 0,
      bridgeCounts: new Map(built.consistency.bridgeCounts),
    };
  }
}

/**
 * The container entries that differ between two loads of the same files, or undefined
 * when anything else differs (sections may move). An entry is the same while its piece
 * (its text) and the line it starts on are: every place inside it is then the same too.
 */
function changesOf(before: readonly ParsedFile[], now: readonly ParsedFile[]): Delta | undefined {
  if (before.length !== now.length) return undefined;
  const changes: Change[] = [];
  let inPlace = true;
  let networksMoved = false;
  for (let i = 0; i < now.length; i++) {
    const a = before[i]!;
    const b = now[i]!;
    if (a === b) continue;
    if (a.path !== b.path || !a.pieces || !b.pieces || a.pieces.sections.size !== b.pieces.sections.size) {
      return undefined;
    }
    const old = a.pieces.sections.entries();
    for (const [key, s] of b.pieces.sections) {
      const [oldKey, o] = old.next().value!;
      if (oldKey !== key || o.head.piece !== s.head.piece || !o.entries !== !s.entries) return undefined;
      if (key === 'containers' || key === 'services') {
        const r = entryChanges(b, key, o, s, changes);
        if (!r.inPlace || (r.added && containersAfter(now, i, key))) inPlace = false;
        continue;
      }
      const same = sameEntries(o, s);
      if (same === undefined) return undefined;
      if ((!same || o.head.line0 !== s.head.line0) && (key === 'daemon' || key === 'networks')) {
        networksMoved = true;
      }
    }
  }
  return { changes, inPlace, networksMoved };
}

/** Whether two sections' entries are the same (true), the same texts moved (false), or not (undefined). */
function sameEntries(a: PieceSection, b: PieceSection): boolean | undefined {
  if (!a.entries || !b.entries) return true;
  if (a.entries.size !== b.entries.size) return undefined;
  let same = true;
  for (const [name, p] of b.entries) {
    const o = a.entries.get(name);
    if (o?.piece !== p.piece) return undefined;
    if (o.line0 !== p.line0) same = false;
  }
  return same;
}

/**
 * Adds the changes of one container section to `out`. In place: the entries still there
 * are in their old order, and every added one comes after them with a name that is not
 * a number (an object lists those first).
 */
function entryChanges(
  file: ParsedFile,
  section: Section,
  before: PieceSection,
  now: PieceSection,
  out: Change[],
): { inPlace: boolean; added: boolean } {
  const old = before.entries;
  const cur = now.entries;
  if (!old || !cur) return { inPlace: true, added: false };
  let inPlace = true;
  let added = false;
  let kept = 0;
  let lastLine = -1;
  for (const [name, placed] of cur) {
    const o = old.get(name);
    if (!o) {
      out.push({ file, section, name, placed });
      added = true;
      if (/^\d+$/.test(name)) inPlace = false;
      continue;
    }
    kept++;
    if (added || o.line0 <= lastLine) inPlace = false;
    lastLine = o.line0;
    if (o.piece !== placed.piece || o.line0 !== placed.line0) out.push({ file, section, name, placed });
  }
  if (kept < old.size) for (const name of old.keys()) if (!cur.has(name)) out.push({ file, section, name });
  return { inPlace, added };
}

/** Whether containers come after `section` of file `i` in the merged order (canonical.ts). */
function containersAfter(files: readonly ParsedFile[], i: number, section: Section): boolean {
  if (section === 'containers' && hasEntries(files[i]!.data, 'services')) return true;
  for (let j = i + 1; j < files.length; j++) {
    if (hasEntries(files[j]!.data, 'containers') || hasEntries(files[j]!.data, 'services')) return true;
  }
  return false;
}

function hasEntries(data: unknown, section: Section): boolean {
  const sec = isObj(data) ? data[section] : undefined;
  if (!isObj(sec)) return false;
  for (const _ in sec) return true;
  return false;
}

/** The spec after `delta`, updating `last`; undefined when the whole load must run. */
function apply(last: Last, delta: Delta, read: ReadResult, claims: PortClaims): Spec | undefined {
  const sources = new Sources(read.files);
  const live = delta.changes.filter((c) => c.placed);
  // Phases 2 and 3.
  if (!schemaValid(live, sources)) return undefined;
  const canon = new Map<Change, CanonContainer>();
  for (const c of live) {
    const r = canonicalContainer(c.file.path, c.section, c.name, c.placed!.piece.value, sources);
    if (r.problems.length > 0) return undefined;
    canon.set(c, r.container);
  }
  if (!mergeChanges(last, delta, canon, read.files)) return undefined;
  const model = last.model;

  // Phase 4.
  const daemon = last.spec.daemon;
  let networks = last.spec.networks;
  if (delta.networksMoved) {
    const made = defaultNetworks(model, daemon, sources);
    if (made.problems.length > 0) return undefined;
    networks = made.networks;
    last.networkWarnings = made.warnings;
  }
  const base = { ...last.spec, networks };
  const dns = dnsDefaults(daemon);
  const built = new Map<string, ContainerSpec>();
  for (const [{ name }, c] of canon) {
    const b = defaultContainer(c, daemon, dns, sources);
    built.set(name, b.spec);
    setOrDelete(last.builtWarnings, name, b.warnings);
  }
  const before = last.spec.containers;
  if (delta.inPlace) {
    for (const c of delta.changes) if (!c.placed) last.specs.delete(c.name);
    for (const [name, ct] of built) last.specs.set(name, ct);
  } else {
    const specs = new Map<string, ContainerSpec>();
    for (const name of model.containers.keys()) specs.set(name, built.get(name) ?? before[name]!);
    last.specs = specs;
  }
  const containers: Record<string, ContainerSpec> = {};
  for (const [name, ct] of last.specs) containers[name] = ct;

  // Phase 5: the changed containers' own checks, and the indexes across containers.
  for (const name of new Set(delta.changes.map((c) => c.name))) {
    const old = before[name];
    if (old) for (const n of bridgePorts(old)) count(last.bridgeCounts, n, -1);
    for (const s of last.addressClaims.get(name) ?? [])
      last.sharedAddresses -= count(last.addressCount, s, -1);
    last.addressClaims.delete(name);
    last.checkWarnings.delete(name);
    if (!built.has(name)) {
      last.builtWarnings.delete(name);
      claims.replace(name, []);
    }
  }
  for (const ct of built.values()) {
    const f = checkContainer(base, model, sources, ct);
    if (f.problems.length > 0) return undefined;
    setOrDelete(last.checkWarnings, ct.name, f.warnings);
    for (const n of bridgePorts(ct)) count(last.bridgeCounts, n, 1);
    if (f.addressClaims.length > 0) last.addressClaims.set(ct.name, f.addressClaims);
    for (const s of f.addressClaims) last.sharedAddresses += count(last.addressCount, s, 1);
    claims.replace(ct.name, f.bindings);
  }
  if (last.sharedAddresses > 0 || claims.clashes()) return undefined;
  const sizes = checkBridgeSizes(base, model, sources, last.bridgeCounts);
  if (sizes.problems.length > 0) return undefined;

  const warnings = sortByPlace([
    ...read.warnings,
    ...last.networkWarnings,
    ...[...last.builtWarnings.values()].flat(),
    ...[...last.checkWarnings.values()].flat(),
    ...sizes.warnings,
  ]);
  const spec = freezeData({
    daemon,
    networks,
    containers: Object.freeze(containers),
    files: manifestFiles(read.files),
    warnings,
  });
  last.files = read.files;
  last.spec = spec;
  return spec;
}

/** Phase 2 for the entries that changed: each entry's schema reads only the entry. */
function schemaValid(live: readonly Change[], sources: Sources): boolean {
  const docs = new Map<ParsedFile, Record<string, Record<string, unknown>>>();
  for (const c of live) {
    let doc = docs.get(c.file);
    if (!doc) docs.set(c.file, (doc = {}));
    (doc[c.section] ??= {})[c.name] = c.placed!.piece.value;
  }
  return (
    validateSchema(
      [...docs].map(([f, data]) => ({ ...f, data })),
      sources,
    ).length === 0
  );
}

/**
 * The changed entries into the last canonical model: false when a name is defined twice
 * (the whole load reports where).
 */
function mergeChanges(
  last: Last,
  delta: Delta,
  canon: ReadonlyMap<Change, CanonContainer>,
  files: readonly ParsedFile[],
): boolean {
  const defs = last.model.containers as Map<string, readonly CanonContainer[]>;
  const ours = (c: Change) => {
    const d = defs.get(c.name);
    return d?.length === 1 && d[0]!.at.file === c.file.path && d[0]!.at.path[0] === c.section;
  };
  for (const c of delta.changes) {
    if (c.placed) continue;
    if (!ours(c)) return false;
    defs.delete(c.name);
  }
  for (const c of delta.changes) {
    if (!c.placed) continue;
    if (defs.has(c.name) && !ours(c)) return false;
    defs.set(c.name, [canon.get(c)!]);
  }
  if (delta.inPlace) return true;
  // In merged order: files in order, each file's containers, then its services.
  const ordered = new Map<string, readonly CanonContainer[]>();
  for (const f of files) {
    if (!isObj(f.data)) continue;
    for (const section of ['containers', 'services'] as const) {
      const sec = f.data[section];
      if (!isObj(sec)) continue;
      for (const name of Object.keys(sec)) {
        const d = defs.get(name);
        if (!d || ordered.has(name)) return false;
        ordered.set(name, d);
      }
    }
  }
  if (ordered.size !== defs.size) return false;
  last.model = { ...last.model, containers: ordered };
  return true;
}

/** Adds `by` to `key`'s count; 1 when the key just became shared, -1 when it stopped being, else 0. */
function count(counts: Map<string, number>, key: string, by: 1 | -1): number {
  const before = counts.get(key) ?? 0;
  const after = before + by;
  if (after === 0) counts.delete(key);
  else counts.set(key, after);
  if (before < 2 && after >= 2) return 1;
  if (before >= 2 && after < 2) return -1;
  return 0;
}

function setOrDelete<T>(m: Map<string, readonly T[]>, key: string, items: readonly T[]): void {
  m.delete(key);
  if (items.length > 0) m.set(key, items);
}
