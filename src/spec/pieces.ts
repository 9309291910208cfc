/**
 * A manifest parsed in pieces: each top-level key, and each entry of a top-level block
 * mapping (`containers:` → one piece per container), is parsed as its own small YAML
 * document. A piece is cached by its text, so when one container of a thousand changes
 * only its piece is parsed again, and every unchanged entry keeps the very same (frozen)
 * value object, which later phases can memoise on.
 *
 * Only a plain subset of YAML is split: no tabs, CRs, anchors, aliases, tags, merge keys,
 * directives or document markers, plain or simply quoted keys, every line inside a
 * section indented at least as far as its entries. Anything else, or any piece with an
 * error, a warning or a repeated key, makes `parsePieces` return undefined and the caller
 * parses the whole text as one document (which then reports the exact YAML errors).
 */

import { type Document, isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import { freezeData } from '../model/intern.js';

/** One piece: its document, and the one key it maps to its value. */
export interface Piece {
  readonly doc: Document.Parsed;
  readonly lineCounter: LineCounter;
  readonly key: string;
  /** The value under `key`, deeply frozen. */
  readonly value: unknown;
}

/** A piece where it sits in the file: `line0` lines come before it. */
export interface PlacedPiece {
  readonly piece: Piece;
  readonly line0: number;
}

export interface PieceSection {
  /** The whole top-level key (when not split), or just its `key:` header line(s). */
  readonly head: PlacedPiece;
  /** The entries of a split block mapping, by key, in file order. */
  readonly entries?: ReadonlyMap<string, PlacedPiece>;
}

export interface PiecewiseParse {
  readonly sections: ReadonlyMap<string, PieceSection>;
  /** The document's value, as the whole-document parse would give it. */
  readonly data: Record<string, unknown>;
  /** This text's pieces by their text: the cache for parsing the file's next version. */
  readonly pieces: ReadonlyMap<string, Piece>;
}

/** Text outside the plain subset of YAML this module splits (tabs, CR, anchors, aliases, tags, merge keys, directives, document markers). */
const UNSPLITTABLE = /[\t\r&*!]|<<|^(?:%|---|\.\.\.)/m;
/** A plain or simply quoted key. */
const KEY_TEXT = String.raw`(?:[A-Za-z0-9_][^\s:#]*|"[^"\\\n]*"|'[^'\n]*') *:`;
/** A key at the start of a line (after its indentation). */
const KEY = new RegExp(String.raw`^${KEY_TEXT}(?: |$)`);
/** A top-level key with nothing but a comment after it: its value is the indented block below. */
const HEADER = new RegExp(String.raw`^${KEY_TEXT}(?: +#.*)? *$`);
const BLANK = /^ *(?:#.*)?$/;

interface Span {
  start: number;
  end: number;
  line0: number;
}

interface SectionSpan extends Span {
  header: boolean;
  indent?: number;
  split: boolean;
  entries: Span[];
}

/** Cut `text` into sections and entries by indentation alone; undefined when it is not the plain subset. */
function cut(text: string): SectionSpan[] | undefined {
  if (UNSPLITTABLE.test(text) || text.charCodeAt(0) === 0xfeff) return undefined;
  const sections: SectionSpan[] = [];
  let cur: SectionSpan | undefined;
  let line0 = 0;
  for (let pos = 0; pos < text.length; line0++) {
    const nl = text.indexOf('\n', pos);
    const end = nl === -1 ? text.length : nl + 1;
    const line = text.slice(pos, nl === -1 ? text.length : nl);
    let indent = 0;
    while (line.charCodeAt(indent) === 32) indent++;
    if (!BLANK.test(line)) {
      if (indent === 0) {
        if (!KEY.test(line)) return undefined;
        if (cur) cur.end = pos;
        // Comments and blank lines before the first key belong to the first section.
        cur = {
          start: cur ? pos : 0,
          end: text.length,
          line0: cur ? line0 : 0,
          header: HEADER.test(line),
          split: true,
          entries: [],
        };
        sections.push(cur);
      } else if (!cur) {
        return undefined;
      } else if (cur.header && cur.split) {
        cur.indent ??= indent;
        if (indent < cur.indent) cur.split = false;
        else if (indent === cur.indent) {
          if (!KEY.test(line.slice(indent))) cur.split = false;
          else {
            const last = cur.entries.at(-1);
            if (last) last.end = pos;
            cur.entries.push({ start: pos, end: text.length, line0 });
          }
        } else if (cur.entries.length === 0) cur.split = false;
      }
    }
    pos = end;
  }
  if (cur) cur.end = text.length;
  for (const s of sections) {
    const last = s.entries.at(-1);
    if (last) last.end = s.end;
  }
  return sections;
}

/**
 * Parse `text` in pieces, reusing the pieces of `cache` (piece text → Piece, as the last
 * parse's `pieces` left it). Undefined: parse the whole text instead.
 */
export function parsePieces(text: string, cache: ReadonlyMap<string, Piece>): PiecewiseParse | undefined {
  const spans = cut(text);
  if (!spans || spans.length === 0) return undefined;
  const used = new Map<string, Piece>();
  const get = (span: Span): PlacedPiece | undefined => {
    const t = text.slice(span.start, span.end);
    let piece = cache.get(t);
    if (!piece) {
      piece = parsePiece(t);
      if (!piece) return undefined;
    }
    used.set(t, piece);
    return { piece, line0: span.line0 };
  };
  const sections = new Map<string, PieceSection>();
  const data: Record<string, unknown> = {};
  for (const s of spans) {
    const split = s.header && s.split && s.entries.length > 0;
    const head = get(split ? { start: s.start, end: s.entries[0]!.start, line0: s.line0 } : s);
    if (!head || sections.has(head.piece.key)) return undefined;
    if (!split) {
      sections.set(head.piece.key, { head });
      data[head.piece.key] = head.piece.value;
      continue;
    }
    if (head.piece.value !== null) return undefined;
    const entries = new Map<string, PlacedPiece>();
    const value: Record<string, unknown> = {};
    for (const e of s.entries) {
      const p = get(e);
      if (!p || entries.has(p.piece.key)) return undefined;
      entries.set(p.piece.key, p);
      value[p.piece.key] = p.piece.value;
    }
    sections.set(head.piece.key, { head, entries });
    data[head.piece.key] = value;
  }
  return { sections, data, pieces: used };
}

function parsePiece(text: string): Piece | undefined {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  if (doc.errors.length || doc.warnings.length) return undefined;
  const root = doc.contents;
  if (!isMap(root) || root.items.length !== 1 || mayRepeatKey(root.items[0]!.value)) return undefined;
  const js = doc.toJS() as Record<string, unknown>;
  const keys = Object.keys(js);
  if (keys.length !== 1 || keys[0] === '__proto__') return undefined;
  return { doc, lineCounter, key: keys[0]!, value: freezeData(js[keys[0]!]) };
}

/**
 * Whether some mapping under `node` has two scalar keys with the same value: yaml's
 * DUPLICATE_KEY test (other keys only clash with themselves). A Set also takes NaN for
 * NaN, which yaml does not: that only costs a second parse.
 */
export function mayRepeatKey(node: unknown): boolean {
  if (isMap(node)) {
    const seen = new Set<unknown>();
    for (const pair of node.items) {
      if (isScalar(pair.key)) {
        if (seen.has(pair.key.value)) return true;
        seen.add(pair.key.value);
      }
      if (mayRepeatKey(pair.key) || mayRepeatKey(pair.value)) return true;
    }
    return false;
  }
  if (isSeq(node)) return node.items.some(mayRepeatKey);
  if (isPair(node)) return mayRepeatKey(node.key) || mayRepeatKey(node.value);
  return false;
}
