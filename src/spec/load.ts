/**
 * The manifest loader: read → schema → canonical → defaults → consistency, each phase
 * collecting all of its problems; the first phase with problems stops the load with one
 * SpecError listing them (sorted by file, line, column). The result is deeply frozen.
 * See docs/loading.md.
 */
import { SpecError, type SpecProblem } from '../model/errors.js';
import { freezeData } from '../model/intern.js';
import type { Spec, SpecWarning } from '../model/spec.js';
import { canonicalise } from './canonical.js';
import { checkConsistency, type PortClaims } from './consistency.js';
import { applyDefaults } from './defaults.js';
import { type Built, Reloader } from './incremental.js';
import type { Piece } from './pieces.js';
import {
  manifestFiles,
  type ParsedFile,
  parseManifests,
  type ReadResult,
  readManifests,
  Sources,
  sortByPlace,
} from './read.js';
import { validateSchema } from './schema.js';

/** Load `-f PATH` (a file, or a directory of *.yaml/*.yml files). Throws SpecError. */
export async function loadSpec(path: string): Promise<Spec> {
  return finish(await readManifests(path));
}

/** The same phases over in-memory files (tests, watchers). Throws SpecError. */
export function loadSpecFromStrings(files: { path: string; text: string }[]): Spec {
  return finish(parseManifests(files));
}

/**
 * Like loadSpecFromStrings, parsing only files not in `cache` (keyed by path and
 * content): the daemon keeps one, so a save re-parses the file that changed, not the
 * whole directory. The cache is left holding exactly the files given. With `pieces` (see
 * read.ts), a load that changed only container entries redoes only those
 * (incremental.ts), starting from the last load made with the same `pieces`.
 */
export function loadSpecCached(
  files: { path: string; text: string; sha256: string }[],
  cache: Map<string, ReadResult>,
  pieces?: Map<string, ReadonlyMap<string, Piece>>,
): Spec {
  const parts: ReadResult[] = [];
  const keep = new Set<string>();
  for (const f of files) {
    const key = `${f.path}@${f.sha256}`;
    keep.add(key);
    let part = cache.get(key);
    if (!part) cache.set(key, (part = parseManifests([f], pieces)));
    parts.push(part);
  }
  for (const k of [...cache.keys()]) if (!keep.has(k)) cache.delete(k);
  if (pieces) {
    const paths = new Set(files.map((f) => f.path));
    for (const p of [...pieces.keys()]) if (!paths.has(p)) pieces.delete(p);
  }
  const read: ReadResult = {
    files: parts.flatMap((p) => p.files),
    problems: parts.flatMap((p) => p.problems),
    warnings: parts.flatMap((p) => p.warnings),
  };
  if (!pieces) return finish(read);
  let reloader = reloaders.get(pieces);
  if (!reloader) reloaders.set(pieces, (reloader = new Reloader()));
  const spec = reloader.reload(read);
  if (spec) return spec;
  stopOn(read.problems);
  const built = build(read.files, read.warnings, reloader.claims);
  reloader.keep(read.files, built);
  return built.spec;
}

/** The daemon's state between its loads, one per pieces cache. */
const reloaders = new WeakMap<object, Reloader>();

function finish(read: ReadResult): Spec {
  stopOn(read.problems);
  return build(read.files, read.warnings).spec;
}

/** All phases over all files; `claims` are the host-port claims of an earlier load. */
function build(
  files: readonly ParsedFile[],
  readWarnings: readonly SpecWarning[],
  claims?: PortClaims,
): Built {
  const sources = new Sources(files);
  stopOn(validateSchema(files, sources));
  const canon = canonicalise(files, sources);
  stopOn(canon.problems);
  const defaults = applyDefaults(canon.model, sources, manifestFiles(files));
  stopOn(defaults.problems);
  const consistency = checkConsistency(defaults.spec, canon.model, sources, claims);
  stopOn(consistency.problems);
  const warnings = sortByPlace([...readWarnings, ...defaults.warnings, ...consistency.warnings]);
  const spec = freezeData({ ...defaults.spec, warnings });
  return { spec, model: canon.model, defaults, consistency };
}

function stopOn(problems: readonly SpecProblem[]): void {
  if (problems.length > 0) throw new SpecError(sortByPlace(problems));
}
