/**
 * The record of the last apply, kept in the instance's state directory: what was
 * applied from where, how it went, and the Docker-shaped view that `network`/`container`
 * `ls`/`inspect` print without re-reading the manifests.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { WorldView } from '../cli/views.js';
import { buildViews } from '../cli/views.js';
import type { ApplyOutcome, Engine } from '../engine.js';
import type { Spec } from '../model/spec.js';
import { readJson, stateDir, writeText } from './store.js';

export interface LastApply {
  time: string;
  source: { path: string; files: { path: string; sha256: string }[]; commit?: string };
  actions: number;
  writes: number;
  durationMs: number;
  converged: boolean;
  view: WorldView;
}

export const lastApplyFile = (instance: string) => join(stateDir(instance), 'last-apply.json');

export function readLastApply(instance: string): LastApply | undefined {
  return readJson<LastApply>(lastApplyFile(instance));
}

export function clearLastApply(instance: string): void {
  rmSync(lastApplyFile(instance), { force: true });
}

/** Record an apply; the view is built from a fresh observation (MACs the kernel chose). */
export async function recordApply(
  engine: Engine,
  spec: Spec,
  outcome: ApplyOutcome,
  source: { path: string; commit?: string },
  durationMs: number,
  /** The record written last, when the caller kept it (the daemon): saves reading it back. */
  previous?: LastApply,
): Promise<LastApply> {
  const after = outcome.after;
  const now = new Date().toISOString();
  // A network keeps the creation time of the apply that first made it.
  const before = new Map(
    (previous ?? readLastApply(engine.instance))?.view.networks.map((n) => [n.Id, n.Created]) ?? [],
  );
  const record: LastApply = {
    time: now,
    source: { ...source, files: [...spec.files] },
    actions: outcome.plan.actions.length,
    writes: outcome.writes,
    durationMs,
    converged: outcome.residual.actions.length === 0,
    view: buildViews(after.resolved!, after.observation.state, now),
  };
  for (const n of record.view.networks) n.Created = before.get(n.Id) ?? n.Created;
  // Compact: at 1000 containers the indented form doubled the cost of every recorded apply.
  writeText(lastApplyFile(engine.instance), `${JSON.stringify(record)}\n`);
  return record;
}
