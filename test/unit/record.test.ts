/**
 * The record of the last apply: one file per container, written only when its text
 * changes, files of removed containers deleted, and read back as the view buildViews makes.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildViews } from '../../src/cli/views.js';
import { desiredState } from '../../src/diff/desired.js';
import type { ApplyOutcome, Engine } from '../../src/engine.js';
import { EMPTY_STATE, type KernelState } from '../../src/model/state.js';
import { resolve } from '../../src/spec/ipam.js';
import { loadSpecCached, loadSpecFromStrings } from '../../src/spec/load.js';
import type { Piece } from '../../src/spec/pieces.js';
import type { ReadResult } from '../../src/spec/read.js';
import { clearLastApply, editedSince, readLastApply, recordApply } from '../../src/state/record.js';

const host = {
  reserved4: [],
  reserved6: [],
  ulaSeed: 'rec',
  ephemeralPorts: [49153, 65535] as [number, number],
};
const instance = 'rectest';
let dir = '';
let saved: string | undefined;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tether-record-'));
  saved = process.env.TETHER_STATE_DIR;
  process.env.TETHER_STATE_DIR = dir;
});
afterAll(() => {
  if (saved === undefined) delete process.env.TETHER_STATE_DIR;
  else process.env.TETHER_STATE_DIR = saved;
  rmSync(dir, { recursive: true, force: true });
});

function world(
  containers: string,
  actual: KernelState,
  load = (text: string) => loadSpecFromStrings([{ path: 'm.yaml', text }]),
) {
  const spec = load(`networks:\n  front: {}\n  back: {}\ncontainers:\n${containers}`);
  const resolved = resolve(spec, instance, actual, host);
  const state = desiredState(resolved, '');
  const outcome = {
    plan: { actions: [] },
    residual: { actions: [] },
    writes: 1,
    after: { resolved, observation: { state } },
  } as unknown as ApplyOutcome;
  return { spec, resolved, state, outcome };
}

const engine = { instance } as Engine;
const files = () => readdirSync(join(dir, instance, 'containers')).sort();
const inode = (name: string) => statSync(join(dir, instance, 'containers', `${name}.json`)).ino;

describe('recordApply / readLastApply', () => {
  it('keeps one file per container, rewrites only changed ones, reads back the whole view', async () => {
    const a = world(
      '  web: { networks: [front], ports: ["8080:80"] }\n  db: { networks: [back] }\n  both: { networks: [front, back] }\n  h: { network_mode: host }\n',
      EMPTY_STATE,
    );
    const first = await recordApply(engine, a.spec, a.outcome, { path: '/m' }, 5);
    expect(files()).toEqual(['both.json', 'db.json', 'h.json', 'web.json']);
    const read1 = readLastApply(instance)!;
    const fresh1 = buildViews(a.resolved, a.state, 'x');
    expect(read1.view.containers).toEqual(fresh1.containers);
    expect(read1.view.networks.map((n) => [n.Name, Object.keys(n.Containers).length])).toEqual([
      ['bridge', 0],
      ['front', 2],
      ['back', 2],
      ['host', 1],
      ['none', 0],
    ]);
    expect(read1.view.networks.map((n) => n.Containers)).toEqual(fresh1.networks.map((n) => n.Containers));
    const created = read1.view.networks[1]!.Created;
    const dbIno = inode('db');
    const webIno = inode('web');

    // Daemon path (previous record in memory): web's port changes, h goes, new comes.
    const b = world(
      '  web: { networks: [front], ports: ["9090:80"] }\n  db: { networks: [back] }\n  both: { networks: [front, back] }\n  new: { networks: [front] }\n',
      a.state,
    );
    const second = await recordApply(engine, b.spec, b.outcome, { path: '/m' }, 5, first);
    expect(files()).toEqual(['both.json', 'db.json', 'new.json', 'web.json']);
    expect(inode('db')).toBe(dbIno); // unchanged: not rewritten
    expect(inode('web')).not.toBe(webIno);
    const read2 = readLastApply(instance)!;
    expect(read2.view.containers).toEqual(buildViews(b.resolved, b.state, 'x').containers);
    expect(read2.view.containers.find((c) => c.Name === '/web')!.NetworkSettings.Ports['80/tcp']).toEqual([
      { HostIp: '0.0.0.0', HostPort: '9090' },
      { HostIp: '::', HostPort: '9090' },
    ]);
    expect(Object.keys(read2.view.networks[1]!.Containers)).toHaveLength(3);
    expect(read2.view.networks[1]!.Created).toBe(created); // a network keeps its creation time
    expect(second.index).toEqual(read2.index);
    expect(second.networks).toEqual(read2.view.networks.map((n) => ({ ...n, Containers: {} })));

    // One-shot path (no record in memory): the index on disk decides what is rewritten.
    const c = world('  db: { networks: [back] }\n', b.state);
    await recordApply(engine, c.spec, c.outcome, { path: '/m' }, 5);
    expect(files()).toEqual(['db.json']);
    expect(inode('db')).toBe(dbIno);
    expect(readLastApply(instance)!.view.containers.map((x) => x.Name)).toEqual(['/db']);

    clearLastApply(instance);
    expect(readLastApply(instance)).toBeUndefined();
  });
});

describe('recordApply after edits (the daemon path)', () => {
  it('writes what a record made afresh writes, through 200 random edits', async () => {
    let seed = 5;
    const rnd = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed / 0x80000000;
    };
    const names = new Map<string, string>();
    const fresh = { instance: 'rectest-fresh' } as Engine;
    const read = (inst: string) => {
      const base = join(dir, inst, 'containers');
      return Object.fromEntries(readdirSync(base).map((f) => [f, readFileSync(join(base, f), 'utf8')]));
    };
    let actual: KernelState = EMPTY_STATE;
    let previous: Awaited<ReturnType<typeof recordApply>> | undefined;
    // Loaded as the daemon loads (unchanged entries keep their objects, so the later
    // stages patch their results and the record takes the containers they patched).
    const parsed = new Map<string, ReadResult>();
    const pieces = new Map<string, ReadonlyMap<string, Piece>>();
    const reload = (text: string) =>
      loadSpecCached([{ path: 'm.yaml', text, sha256: String(text.length) + text }], parsed, pieces);
    let patched = 0;
    for (let step = 0; step < 200; step++) {
      const k = Math.floor(rnd() * 12);
      const name = `c${k}`;
      const r = rnd();
      if (r < 0.4) names.delete(name);
      else
        names.set(
          name,
          `{ networks: [${r < 0.7 ? 'front' : 'front, back'}], ports: ["${8000 + Math.floor(rnd() * 4) * 100 + k}:80"] }`,
        );
      const text = [...names].map(([n, v]) => `  ${n}: ${v}\n`).join('');
      const w = world(text, actual, reload);
      if (previous && editedSince(previous, w.resolved, w.state.namespaces)) patched++;
      previous = await recordApply(engine, w.spec, w.outcome, { path: '/m' }, 5, previous);
      const full = await recordApply(fresh, w.spec, w.outcome, { path: '/m' }, 5);
      expect({ ...previous.index }).toEqual({ ...full.index });
      expect(Object.keys(previous.index).sort()).toEqual(Object.keys(full.index).sort());
      expect(read(instance)).toEqual(read(fresh.instance));
      actual = w.state;
    }
    expect(patched).toBeGreaterThan(100);
  });
});
