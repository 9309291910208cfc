/** The manifest files of `tether run -f PATH` as a source of desired states. */

import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { sha256hex } from '../model/names.js';
import type { ManifestFile, Spec } from '../model/spec.js';
import { loadSpec, loadSpecCached } from '../spec/load.js';
import type { Piece } from '../spec/pieces.js';
import { type ReadResult, resolveManifestPaths } from '../spec/read.js';
import type { LoadedState, ManifestSource } from './loop.js';

/** Identity of a set of manifest files: their paths and content hashes. */
export function filesKey(files: readonly Pick<ManifestFile, 'path' | 'sha256'>[]): string {
  return files.length ? files.map((f) => `${f.path}@${f.sha256}`).join('\n') : '(no manifest files)';
}

export class FileSource implements ManifestSource {
  readonly path: string;
  constructor(path: string) {
    this.path = resolve(path);
  }

  private last: LoadedState | undefined;
  /** Parsed files by path and content: a save re-parses only the file that changed. */
  private readonly parsed = new Map<string, ReadResult>();
  /** Each file's YAML pieces by text (spec/pieces.ts): an edit re-parses the entries it touched. */
  private readonly pieces = new Map<string, Map<string, Piece>>();

  /**
   * The manifests as they are now. Unchanged files (same paths, same contents) give the
   * state loaded last time without parsing them again; anything unreadable goes through
   * the loader, which reports it.
   */
  async load(): Promise<LoadedState> {
    let texts: { path: string; text: string }[];
    try {
      const paths = await resolveManifestPaths(this.path);
      texts = await Promise.all(paths.map(async (p) => ({ path: p, text: await readFile(p, 'utf8') })));
    } catch {
      return this.loaded(await loadSpec(this.path));
    }
    const files = texts.map((t) => ({ ...t, sha256: sha256hex(t.text) }));
    const key = filesKey(files);
    if (this.last?.key === key) return this.last;
    return this.loaded(loadSpecCached(files, this.parsed, this.pieces));
  }

  private loaded(spec: Spec): LoadedState {
    this.last = {
      spec,
      key: filesKey(spec.files),
      source: { kind: 'files', path: this.path, files: spec.files },
    };
    return this.last;
  }
}
