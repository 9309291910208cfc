/**
 * The record of the last apply, kept in the instance's state directory: what was
 * applied from where, how it went, and the Docker-shaped view that `network`/`container`
 * `ls`/`inspect` print without re-reading the manifests.
 *
 *   <state dir>/last-apply.json         the apply, the networks' views, the container index
 *   <state dir>/containers/NAME.json    one container's view and its network memberships
 *
 * A container's file is written only when its text changes (the index holds a hash of each
 * file), so recording an edit at 1000 containers writes the files of the containers
 * it changed, not a document about all of them.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  type ContainerRecord,
  containerRecords,
  membersByNetwork,
  type NetworkView,
  networkViews,
  type WorldView,
} from '../cli/views.js';
import type { ApplyOutcome, Engine } from '../engine.js';
import { jsonFile } from '../model/json.js';
import type { Spec } from '../model/spec.js';
import { readJson, stateDir, syncPartFiles, writeText } from './store.js';

export interface LastApply {
  time: string;
  source: { path: string; files: { path: string; sha256: string }[]; commit?: string };
  actions: number;
  writes: number;
  durationMs: number;
  converged: boolean;
  view: WorldView;
  /** Container name → the first 16 hex digits of its file's SHA-256, in the resolved world's order. */
  index: Record<string, string>;
}

/** last-apply.json: the networks' views without their members (each container file has them). */
interface RecordFile extends Omit<LastApply, 'view'> {
  networks: NetworkView[];
}

export const lastApplyFile = (instance: string) => join(stateDir(instance), 'last-apply.json');
const containersDir = (instance: string) => join(stateDir(instance), 'containers');
const containerFile = (instance: string, name: string) => join(containersDir(instance), `${name}.json`);

export function readLastApply(instance: string): LastApply | undefined {
  const f = readJson<RecordFile>(lastApplyFile(instance));
  if (!f?.index || !f.networks) return undefined;
  const recs: ContainerRecord[] = [];
  for (const name of Object.keys(f.index)) {
    const rec = readJson<ContainerRecord>(containerFile(instance, name));
    if (rec) recs.push(rec);
  }
  const { networks, ...rest } = f;
  const members = membersByNetwork(recs);
  return {
    ...rest,
    view: {
      instance,
      networks: networks.map((n) => ({ ...n, Containers: members.get(n.Name) ?? {} })),
      containers: recs.map((x) => x.view),
    },
  };
}

export function clearLastApply(instance: string): void {
  rmSync(lastApplyFile(instance), { force: true });
  rmSync(containersDir(instance), { recursive: true, force: true });
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
  const instance = engine.instance;
  const after = outcome.after;
  const now = new Date().toISOString();
  const before = previous ?? readJson<RecordFile>(lastApplyFile(instance));
  const recs = containerRecords(after.resolved!, after.observation.state);
  const networks = networkViews(after.resolved!, recs, now);
  // A network keeps the creation time of the apply that first made it.
  const created = new Map(
    (before && 'networks' in before ? before.networks : (before?.view.networks ?? [])).map((n) => [
      n.Id,
      n.Created,
    ]),
  );
  for (const n of networks) n.Created = created.get(n.Id) ?? n.Created;

  const index: Record<string, string> = {};
  const changed: Record<string, string> = {};
  const had = before?.index ?? {};
  for (const rec of recs) {
    const name = rec.view.Name.slice(1);
    const { text, hash: sha } = jsonFile(rec, () => rec);
    index[name] = sha;
    if (had[name] !== sha) changed[name] = text;
  }
  // The files of containers no longer in the index go: those the last record named, or
  // (no last record) whatever else the directory holds.
  syncPartFiles(
    containersDir(instance),
    changed,
    before ? Object.keys(had).filter((name) => !Object.hasOwn(index, name)) : { allBut: index },
  );
  const file: RecordFile = {
    time: now,
    source: { ...source, files: [...spec.files] },
    actions: outcome.plan.actions.length,
    writes: outcome.writes,
    durationMs,
    converged: outcome.residual.actions.length === 0,
    index,
    networks: networks.map((n) => ({ ...n, Containers: {} })),
  };
  writeText(lastApplyFile(instance), `${JSON.stringify(file)}\n`);
  const { networks: _, ...rest } = file;
  return { ...rest, view: { instance, networks, containers: recs.map((x) => x.view) } };
}
