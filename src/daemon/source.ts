/** The manifest files of `tether run -f PATH` as a source of desired states. */
import { resolve } from 'node:path';
import type { ManifestFile } from '../model/spec.js';
import { loadSpec } from '../spec/load.js';
import type { LoadedState, ManifestSource } from './loop.js';

/** Identity of a set of manifest files: their paths and content hashes. */
export function filesKey(files: readonly ManifestFile[]): string {
  return files.length ? files.map((f) => `${f.path}@${f.sha256}`).join('\n') : '(no manifest files)';
}

export class FileSource implements ManifestSource {
  readonly path: string;
  constructor(path: string) {
    this.path = resolve(path);
  }

  async load(): Promise<LoadedState> {
    const spec = await loadSpec(this.path);
    return {
      spec,
      key: filesKey(spec.files),
      source: { kind: 'files', path: this.path, files: spec.files },
    };
  }
}
