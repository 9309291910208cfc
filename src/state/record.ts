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
  containerRecord,
  membersByNetwork,
  type NetworkView,
  networkViews,
  type WorldView,
} from '../cli/views.js';
import type { ApplyOutcome, Engine } from '../engine.js';
import { patchedKeys, patchRecord } from '../model/intern.js';
import { jsonFile } from '../model/json.js';
import type { Resolved, ResolvedContainer, ResolvedNetwork } from '../model/resolved.js';
import type { Spec } from '../model/spec.js';
import type { KernelState, NamespaceState } from '../model/state.js';
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
export interface RecordFile extends Omit<LastApply, 'view'> {
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

/**
 * Per container name: what its record was last made from (compared by identity), and the
 * record's file text and hash. The daemon records after every edit: at 1000 containers an
 * unchanged container costs these few comparisons, and no record or text is made again.
 */
interface Made {
  readonly c: ResolvedContainer;
  readonly ns: NamespaceState | undefined;
  readonly nets: readonly ResolvedNetwork[];
  readonly file: { readonly text: string; readonly hash: string };
}
const made = new Map<string, Made>();

function containerText(r: Resolved, c: ResolvedContainer, ns: NamespaceState | undefined): Made['file'] {
  const m = made.get(c.name);
  if (m && m.c === c && m.ns === ns && m.nets.length === c.endpoints.length) {
    let same = true;
    for (let i = 0; same && i < m.nets.length; i++) same = m.nets[i] === r.networks[c.endpoints[i]!.network];
    if (same) return m.file;
  }
  const nets = c.endpoints.map((e) => r.networks[e.network]!);
  const rec = containerRecord(c, nets, ns);
  const file = jsonFile(rec, () => rec);
  made.set(c.name, { c, ns, nets, file });
  return file;
}

/**
 * Record an apply: each container's file (MACs from the observation made after it) and
 * last-apply.json. Returns what was written to last-apply.json, which the daemon passes to
 * the next call as `previous`.
 */
export async function recordApply(
  engine: Engine,
  spec: Spec,
  outcome: ApplyOutcome,
  source: { path: string; commit?: string },
  durationMs: number,
  /** The record written last, when the caller kept it (the daemon): saves reading it back. */
  previous?: RecordFile,
): Promise<RecordFile> {
  const instance = engine.instance;
  const after = outcome.after;
  const resolved = after.resolved!;
  const namespaces = after.observation.state.namespaces;
  const now = new Date().toISOString();
  const before = previous ?? readJson<RecordFile>(lastApplyFile(instance));
  // The file keeps the networks without their members (each container file has its entries).
  const networks = networkViews(resolved, [], now);
  // A network keeps the creation time of the apply that first made it.
  const created = new Map((before?.networks ?? []).map((n) => [n.Id, n.Created]));
  for (const n of networks) n.Created = created.get(n.Id) ?? n.Created;

  const changed: Record<string, string> = {};
  const had = before?.index ?? {};
  let index: Readonly<Record<string, string>>;
  let gone: string[] | undefined;
  const edited = previous && editedSince(previous, resolved, namespaces);
  if (edited) {
    // The daemon after an edit: only the containers patched since its last record.
    const changes = new Map<string, string | undefined>();
    gone = [];
    for (const name of edited) {
      const c = resolved.containers[name];
      if (!c) {
        changes.set(name, undefined);
        made.delete(name);
        if (Object.hasOwn(had, name)) gone.push(name);
        continue;
      }
      const { text, hash } = containerText(resolved, c, namespaces[name]);
      changes.set(name, hash);
      if (had[name] !== hash) changed[name] = text;
    }
    index = patchRecord(had, changes);
  } else {
    const all: Record<string, string> = {};
    for (const c of Object.values(resolved.containers)) {
      const { text, hash } = containerText(resolved, c, namespaces[c.name]);
      all[c.name] = hash;
      if (had[c.name] !== hash) changed[c.name] = text;
    }
    index = all;
    if (made.size > 2 * Object.keys(index).length + 64)
      for (const name of [...made.keys()]) if (!Object.hasOwn(index, name)) made.delete(name);
    if (before) gone = Object.keys(had).filter((name) => !Object.hasOwn(index, name));
  }
  // The files of containers no longer in the index go: those the last record named, or
  // (no last record) whatever else the directory holds.
  syncPartFiles(containersDir(instance), changed, gone ?? { allBut: index });
  const file: RecordFile = {
    time: now,
    source: { ...source, files: [...spec.files] },
    actions: outcome.plan.actions.length,
    writes: outcome.writes,
    durationMs,
    converged: outcome.residual.actions.length === 0,
    index,
    networks,
  };
  writeText(lastApplyFile(instance), `${JSON.stringify(file)}\n`);
  recordedFrom.set(file, { containers: resolved.containers, namespaces, networks: resolved.networks });
  return file;
}

/** What each record the daemon keeps was made from. */
const recordedFrom = new WeakMap<
  RecordFile,
  { readonly containers: object; readonly namespaces: object; readonly networks: object }
>();

/**
 * The containers whose record may differ from `previous`'s: those patched since in the
 * resolved world or in the observed namespaces (intern.ts patchRecord); undefined when
 * that is not known (or the networks changed), and every container is looked at.
 */
export function editedSince(
  previous: RecordFile,
  resolved: Resolved,
  namespaces: KernelState['namespaces'],
): Iterable<string> | undefined {
  const from = recordedFrom.get(previous);
  if (!from || from.networks !== resolved.networks) return undefined;
  const containers = patchedKeys(from.containers, resolved.containers, 4);
  const observed = containers && patchedKeys(from.namespaces, namespaces, 4);
  return observed && new Set([...containers!, ...observed]);
}
