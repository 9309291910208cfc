/**
 * Phase 1 of loading: find the manifest files, read them, parse them as YAML with
 * positions. Nothing here knows the manifest format; it only keeps enough of each
 * document (its node tree and a LineCounter) to turn any JSON path into file:line:col
 * for the later phases.
 */
import type { Stats } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type Document,
  isAlias,
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  type Pair,
  parseDocument,
  type YAMLMap,
} from 'yaml';
import type { SpecProblem } from '../model/errors.js';
import { sha256hex } from '../model/names.js';
import type { ManifestFile, SourceRef, SpecWarning } from '../model/spec.js';
import { mayRepeatKey, type Piece, type PiecewiseParse, parsePieces } from './pieces.js';

/** A JSON path inside one document: map keys and sequence indexes. */
export type Path = readonly (string | number)[];

/** A place in the manifests, before it is turned into line:col. */
export interface Origin {
  readonly file: string;
  readonly path: Path;
}

/**
 * One manifest file, parsed. `data` is the plain JS value of the document (null when
 * empty). Its nodes are either one document (`doc`) or pieces (pieces.ts), whose values
 * are shared, frozen, with earlier parses of the same piece text.
 */
export interface ParsedFile {
  readonly path: string;
  readonly text: string;
  readonly sha256: string;
  readonly whole?: { readonly doc: Document.Parsed; readonly lineCounter: LineCounter };
  readonly pieces?: PiecewiseParse;
  readonly data: unknown;
}

export interface ReadResult {
  readonly files: readonly ParsedFile[];
  readonly problems: readonly SpecProblem[];
  readonly warnings: readonly SpecWarning[];
}

/** YAML-level warnings (an unresolved tag, …): the document still loads. */
export const W_YAML = 'TETHER_W0100';

const MANIFEST_EXT = /\.ya?ml$/;

/**
 * Resolve `-f PATH`: a file is read as is; a directory contributes every `*.yaml` and
 * `*.yml` file directly in it (not in subdirectories), sorted by name (code point order,
 * so "10-a.yaml" comes before "9-b.yaml": number prefixes should be zero-padded).
 */
export async function resolveManifestPaths(path: string): Promise<string[]> {
  let st: Stats;
  try {
    st = await stat(path);
  } catch (err) {
    throw new ReadError(describeFsError(path, err));
  }
  if (!st.isDirectory()) return [path];
  const names: string[] = [];
  for (const entry of await readdir(path, { withFileTypes: true })) {
    if (!MANIFEST_EXT.test(entry.name)) continue;
    // A symlink to a file counts as a file; stat() follows it.
    if (entry.isFile() || (entry.isSymbolicLink() && (await stat(join(path, entry.name))).isFile())) {
      names.push(entry.name);
    }
  }
  names.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return names.map((n) => join(path, n));
}

/** Read and parse every manifest under `path`. A missing path is a problem, not an exception. */
export async function readManifests(path: string): Promise<ReadResult> {
  let paths: string[];
  try {
    paths = await resolveManifestPaths(path);
  } catch (err) {
    if (err instanceof ReadError) return { files: [], problems: [{ message: err.message }], warnings: [] };
    throw err;
  }
  const texts: { path: string; text: string }[] = [];
  const problems: SpecProblem[] = [];
  for (const p of paths) {
    try {
      texts.push({ path: p, text: await readFile(p, 'utf8') });
    } catch (err) {
      problems.push({ message: describeFsError(p, err) });
    }
  }
  const parsed = parseManifests(texts);
  return { ...parsed, problems: [...problems, ...parsed.problems] };
}

/**
 * Parse manifests already in memory (tests, the daemon's file watcher). Given `pieces`
 * (one cache per path, which the daemon keeps between loads), a file in the plain subset
 * of YAML that pieces.ts splits is parsed in pieces, reusing the cached ones; any other
 * file, one with a YAML problem, or any file when there is no cache, as one document.
 */
export function parseManifests(
  files: readonly { path: string; text: string; sha256?: string }[],
  pieces?: Map<string, ReadonlyMap<string, Piece>>,
): ReadResult {
  const out: ParsedFile[] = [];
  const problems: SpecProblem[] = [];
  const warnings: SpecWarning[] = [];
  for (const f of files) {
    const sha256 = f.sha256 ?? sha256hex(f.text);
    // One-shot parses (no cache to keep) take the whole document: a little cheaper once.
    const split = pieces && parsePieces(f.text, pieces.get(f.path) ?? new Map());
    if (split) {
      pieces.set(f.path, split.pieces);
      out.push({ path: f.path, text: f.text, sha256, pieces: split, data: split.data });
      continue;
    }
    const { doc, lineCounter } = parseYaml(f.text);
    const at = (offset: number): SourceRef => ({ file: f.path, ...lineCounter.linePos(offset) });
    for (const e of doc.errors) {
      problems.push({ message: yamlMessage(e.code, e.message), src: at(e.pos[0]) });
    }
    for (const w of doc.warnings) {
      warnings.push({ code: W_YAML, message: `YAML: ${w.message}`, src: at(w.pos[0]) });
    }
    const data = doc.errors.length === 0 ? doc.toJS({ maxAliasCount: 1000 }) : null;
    out.push({ path: f.path, text: f.text, sha256, whole: { doc, lineCounter }, data: data ?? null });
  }
  return { files: out, problems, warnings };
}

/**
 * parseDocument with unique keys enforced. yaml's own check compares each key with every
 * earlier key of its mapping, which is quadratic in a `containers:` mapping of a thousand
 * entries. So the text is parsed without it first and every mapping's keys are checked
 * with a Set; a document with any error, or with a key that may repeat, is parsed again
 * with yaml's check on, so that its errors (and their order) are exactly yaml's.
 */
function parseYaml(text: string): { doc: Document.Parsed; lineCounter: LineCounter } {
  const parse = (uniqueKeys: boolean) => {
    const lineCounter = new LineCounter();
    const doc = parseDocument(text, { lineCounter, prettyErrors: false, merge: true, uniqueKeys });
    return { doc, lineCounter };
  };
  const fast = parse(false);
  if (fast.doc.errors.length === 0 && !mayRepeatKey(fast.doc.contents)) return fast;
  return parse(true);
}

export function manifestFiles(files: readonly ParsedFile[]): ManifestFile[] {
  return files.map((f) => ({ path: f.path, sha256: f.sha256 }));
}

function yamlMessage(code: string, message: string): string {
  if (code === 'MULTIPLE_DOCS') {
    return 'YAML syntax error: a manifest file holds one YAML document, and a second one starts here';
  }
  if (code === 'DUPLICATE_KEY') return 'YAML syntax error: this key appears twice in the same mapping';
  return `YAML syntax error: ${message.replace(/\s+/g, ' ').trim()}`;
}

class ReadError extends Error {}

function describeFsError(path: string, err: unknown): string {
  const code = (err as { code?: string })?.code;
  if (code === 'ENOENT') return `manifest path ${path} does not exist`;
  if (code === 'EACCES' || code === 'EPERM') return `manifest path ${path} cannot be read: permission denied`;
  if (code === 'EISDIR') return `manifest path ${path} is a directory`;
  return `manifest path ${path} cannot be read: ${(err as Error)?.message ?? String(err)}`;
}

/**
 * Turns JSON paths into file:line:col. Points at the value node by default, at the key
 * of the last path segment with `{ key: true }`. When the path leads nowhere (a value
 * that came through a YAML merge key, a missing key), it points at the deepest node
 * found on the way, which is where the user has to look anyway.
 */
export class Sources {
  private readonly byPath = new Map<string, ParsedFile>();
  /**
   * Each mapping's pairs by key text (the first pair of a key wins, as a linear search
   * would), built on first lookup: the phases ask for one place per container, and
   * scanning a 1000-entry `containers:` mapping for each is quadratic. Parsed documents
   * are not modified after parsing, so the index never goes stale.
   */
  private readonly pairIndex = new WeakMap<YAMLMap, Map<string, Pair>>();

  constructor(files: readonly ParsedFile[]) {
    for (const f of files) this.byPath.set(f.path, f);
  }

  ref(origin: Origin, opts: { key?: boolean } = {}): SourceRef {
    const f = this.byPath.get(origin.file);
    if (!f) return { file: origin.file, line: 1, col: 1 };
    const { doc, lineCounter, line0, path } = docOf(f, origin.path);
    const offset = locate(doc, path, opts.key ?? false, (m, key) => this.pair(m, key));
    const { line, col } = lineCounter.linePos(offset);
    return { file: f.path, line: line + line0, col };
  }

  private pair(map: YAMLMap, key: string): Pair | undefined {
    let index = this.pairIndex.get(map);
    if (!index) {
      index = new Map();
      for (const p of map.items) {
        if (!isPair(p)) continue;
        const k = keyText(p.key);
        if (k !== undefined && !index.has(k)) index.set(k, p);
      }
      this.pairIndex.set(map, index);
    }
    return index.get(key);
  }

  /**
   * Where the entry at `origin` (a [section, name] path) of a file parsed in pieces
   * starts: while it is the same, every place inside the entry is the same too (its piece
   * text is). Undefined for a file parsed whole.
   */
  entryLine(origin: Origin): number | undefined {
    const sections = this.byPath.get(origin.file)?.pieces?.sections;
    return sections?.get(String(origin.path[0]))?.entries?.get(String(origin.path[1]))?.line0;
  }

  /** The file's data, for phases that walk values. */
  file(path: string): ParsedFile | undefined {
    return this.byPath.get(path);
  }
}

/** Stable sort by file, line, column; entries without a place come first. */
export function sortByPlace<T extends { src?: { file: string; line: number; col: number } }>(
  items: readonly T[],
): T[] {
  return items
    .map((item, i) => ({ item, i }))
    .sort((x, y) => {
      const a = x.item.src;
      const b = y.item.src;
      if (!a || !b) return (a ? 1 : 0) - (b ? 1 : 0) || x.i - y.i;
      if (a.file !== b.file) return a.file < b.file ? -1 : 1;
      return a.line - b.line || a.col - b.col || x.i - y.i;
    })
    .map((x) => x.item);
}

/** The document holding `path` in `f`, `path` inside it, and how many lines come before it. */
function docOf(
  f: ParsedFile,
  path: Path,
): { doc: Document.Parsed; lineCounter: LineCounter; line0: number; path: Path } {
  if (f.whole) return { ...f.whole, line0: 0, path };
  const sections = f.pieces!.sections;
  const section = sections.get(String(path[0])) ?? sections.values().next().value!;
  const entry = path.length > 1 ? section.entries?.get(String(path[1])) : undefined;
  const at = entry ?? section.head;
  return {
    doc: at.piece.doc,
    lineCounter: at.piece.lineCounter,
    line0: at.line0,
    path: entry ? path.slice(1) : path,
  };
}

function locate(
  doc: Document.Parsed,
  path: Path,
  wantKey: boolean,
  pairOf: (map: YAMLMap, key: string) => Pair | undefined,
): number {
  let node: unknown = doc.contents;
  let parentOffset = startOf(node) ?? 0;
  let keyNode: Node | undefined;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i];
    if (isAlias(node)) node = node.resolve(doc);
    const here = placeOf(node, keyNode, parentOffset);
    if (isMap(node)) {
      const pair = pairOf(node, String(seg));
      if (!pair) return here;
      keyNode = pair.key as Node;
      node = pair.value;
    } else if (isSeq(node)) {
      const item = node.items[Number(seg)];
      if (item === undefined) return here;
      keyNode = undefined;
      node = item;
    } else {
      return here;
    }
    parentOffset = here;
  }
  if (wantKey && keyNode) return startOf(keyNode) ?? parentOffset;
  return placeOf(node, keyNode, parentOffset);
}

/**
 * Where to point for a node reached through `keyNode`: a block collection or an empty
 * value is best shown by its key (`web:` rather than the first line inside it); a scalar
 * or a flow collection by itself.
 */
function placeOf(node: unknown, keyNode: Node | undefined, fallback: number): number {
  const keyStart = keyNode ? startOf(keyNode) : undefined;
  const isBlock = (isMap(node) || isSeq(node)) && !node.flow;
  if (keyStart !== undefined && (isBlock || nonEmptyStart(node) === undefined)) return keyStart;
  return nonEmptyStart(node) ?? keyStart ?? fallback;
}

function keyText(key: unknown): string | undefined {
  if (isScalar(key)) return String(key.value);
  return undefined;
}

function startOf(node: unknown): number | undefined {
  const r = (node as { range?: [number, number, number] } | null)?.range;
  return r ? r[0] : undefined;
}

/** `key:` with nothing after it has a zero-length null scalar: point at the key instead. */
function nonEmptyStart(node: unknown): number | undefined {
  const r = (node as { range?: [number, number, number] } | null)?.range;
  if (!r || r[1] <= r[0]) return undefined;
  return r[0];
}
