/**
 * The daemon's reload (loadSpecCached with a pieces cache, which redoes only the container
 * entries an edit touched: src/spec/incremental.ts) against a load from scratch, through
 * thousands of random edits of a two-file manifest: containers added at the end, inserted
 * in the middle, changed, removed and moved between files; networks and the daemon section
 * changed; a file switched to YAML that is parsed whole; and errors made and fixed
 * (duplicate host ports, addresses and MACs, unknown networks, values the schema or the
 * canonical phase refuses, names defined twice). Every load must give the same spec
 * (keys in the same order) or the same problems.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SpecError } from '../../src/model/errors.js';
import type { Spec } from '../../src/model/spec.js';
import { loadSpecCached, loadSpecFromStrings } from '../../src/spec/load.js';
import type { Piece } from '../../src/spec/pieces.js';
import type { ReadResult } from '../../src/spec/read.js';

/** mulberry32: a small seeded generator, so that a failure can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Ctr {
  name: string;
  nets: string[];
  mode?: 'host';
  ports: string[];
  /** A static address on n1 (172.30.0.0/24). */
  ip?: string;
  mac?: string;
  /** An endpoint driver option tether does not know: a warning. */
  opt?: boolean;
  dns?: string;
  /** Written over several lines. */
  block?: boolean;
  /** A value the schema refuses. */
  badSchema?: boolean;
  /** network_mode next to networks: refused by the consistency phase. */
  modeClash?: boolean;
}

interface World {
  dns?: string;
  /** n2 carries an unknown driver option (a warning); n3 exists. */
  n2opt: boolean;
  n3: boolean;
  files: [Ctr[], Ctr[]];
  /** b.yaml holds an anchor, so it is parsed whole. */
  whole: boolean;
  /** b.yaml names its section services. */
  services: boolean;
  /** a.yaml lists its containers first, the daemon and networks after them (as Compose files do). */
  containersFirst: boolean;
}

function renderCtr(c: Ctr): string[] {
  const ports = c.ports.length ? `ports: [${c.ports.map((p) => JSON.stringify(p)).join(', ')}]` : '';
  const extras = [
    ports,
    c.mode ? 'network_mode: host' : '',
    c.modeClash ? 'network_mode: bridge' : '',
    c.dns ? `dns: ${c.dns}` : '',
    c.badSchema ? 'hostname: [1]' : '',
  ].filter(Boolean);
  const attachment = (n: string) => {
    const parts = [
      n === 'n1' && c.ip ? `ipv4_address: ${c.ip}` : '',
      n === c.nets[0] && c.mac ? `mac_address: "${c.mac}"` : '',
      n === c.nets[0] && c.opt ? 'driver_opts: { foo: "1" }' : '',
    ].filter(Boolean);
    return `${n}: { ${parts.join(', ')} }`;
  };
  const detailed = c.ip || c.mac || c.opt;
  const nets =
    c.mode && !c.modeClash
      ? ''
      : detailed
        ? `{ ${c.nets.map(attachment).join(', ')} }`
        : `[${c.nets.join(', ')}]`;
  const fields = [...(nets ? [`networks: ${nets}`] : []), ...extras];
  if (!c.block) return [`  ${c.name}: { ${fields.join(', ')} }`];
  return [`  ${c.name}:`, ...fields.map((f) => `    ${f}`)];
}

function render(w: World): { path: string; text: string }[] {
  const shared = [];
  if (w.dns) shared.push('daemon:', `  dns: [${w.dns}]`);
  shared.push(
    'networks:',
    '  n0: {}',
    '  n1: { ipam: { config: [{ subnet: 172.30.0.0/24 }] } }',
    `  n2: {${w.n2opt ? ' driver_opts: { foo: "1" } ' : ''}}`,
  );
  if (w.n3) shared.push('  n3: { internal: true }');
  const containers = ['containers:', ...w.files[0].flatMap(renderCtr)];
  const a = w.containersFirst ? [...containers, ...shared] : [...shared, ...containers];
  const b = [];
  if (w.whole) b.push('x-common: &common { internal: true }');
  if (w.files[1].length) b.push(w.services ? 'services:' : 'containers:', ...w.files[1].flatMap(renderCtr));
  return [
    { path: '/m/a.yaml', text: `${a.join('\n')}\n` },
    { path: '/m/b.yaml', text: `${b.join('\n')}\n` },
  ];
}

class Edits {
  private next = 0;
  constructor(
    private readonly r: () => number,
    readonly w: World,
  ) {}

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.r() * xs.length)]!;
  }

  chance(p: number): boolean {
    return this.r() < p;
  }

  all(): Ctr[] {
    return [...this.w.files[0], ...this.w.files[1]];
  }

  /** A fresh container, mostly valid; sometimes it clashes or refers to what does not exist. */
  container(): Ctr {
    const n = this.next++;
    // A name that is a number sorts first in an object: the reload must keep that order.
    const name = this.chance(0.05) ? String(100 + n) : `c${n}`;
    const c: Ctr = { name, nets: [this.pick(['n0', 'n1', 'n2'])], ports: [] };
    this.vary(c);
    return c;
  }

  /** Change some of a container's settings (the valid ones mostly). */
  vary(c: Ctr): void {
    const others = this.all().filter((o) => o !== c);
    const roll = this.r();
    c.badSchema = false;
    c.modeClash = false;
    if (roll < 0.3) c.ports = this.chance(0.5) ? [`${20000 + Math.floor(this.r() * 5000)}:80`] : [];
    else if (roll < 0.4)
      c.ports = [`${8000 + Math.floor(this.r() * 3)}:80`]; // clashes often
    else if (roll < 0.45 && others.length)
      c.ports = [...this.pick(others).ports]; // a clash when it has ports
    else if (roll < 0.55) c.nets = this.chance(0.5) ? ['n0', 'n1'] : [this.pick(['n0', 'n1', 'n2', 'n3'])];
    else if (roll < 0.6)
      c.nets = ['nx']; // an unknown network
    else if (roll < 0.68) {
      c.nets = c.nets.includes('n1') ? c.nets : [...c.nets, 'n1'];
      c.ip = this.chance(0.8) ? `172.30.0.${10 + Math.floor(this.r() * 200)}` : '172.30.0.77';
      if (this.chance(0.1)) c.ip = '10.9.9.9'; // outside the subnet
    } else if (roll < 0.72)
      c.mac = this.chance(0.5)
        ? `02:42:ac:11:00:${(Math.floor(this.r() * 200) + 16).toString(16)}`
        : '02:42:ac:11:00:99';
    else if (roll < 0.76) c.opt = !c.opt;
    else if (roll < 0.8)
      c.mode = c.mode ? undefined : 'host'; // with ports: a warning
    else if (roll < 0.84) c.dns = this.chance(0.5) ? '[192.0.2.1]' : undefined;
    else if (roll < 0.88)
      c.block = !c.block; // more lines: the entries below move
    else if (roll < 0.9) c.badSchema = true;
    else if (roll < 0.92) c.modeClash = true;
    else if (roll < 0.94)
      c.ports = ['1.2.3:80:80']; // not an address: refused when canonicalised
    else {
      c.ip = undefined;
      c.mac = undefined;
    }
  }

  /** Undo every error: the next edits start from a manifest that loads. */
  repair(): void {
    const names = new Set<string>();
    for (const f of this.w.files) {
      for (let i = 0; i < f.length; i++) {
        if (names.has(f[i]!.name)) f.splice(i--, 1);
        else names.add(f[i]!.name);
      }
    }
    const taken = new Set<string>();
    const fresh = (v: string | undefined) => {
      if (v === undefined || taken.has(v)) return false;
      taken.add(v);
      return true;
    };
    for (const c of this.all()) {
      if (c.nets.includes('nx')) c.nets = ['n0'];
      c.badSchema = false;
      c.modeClash = false;
      c.ports = c.ports.map((p) => (!p.startsWith('1.2.3') && fresh(p) ? p : `${30000 + this.next++}:80`));
      if (c.ip && (c.ip.startsWith('10.') || !fresh(c.ip))) c.ip = undefined;
      if (c.mac && !fresh(c.mac)) c.mac = undefined;
    }
  }

  step(): void {
    const w = this.w;
    if (this.chance(0.3)) this.repair();
    const count = w.files[0].length + w.files[1].length;
    const roll = this.r();
    const f = w.files[this.chance(0.7) ? 0 : 1];
    if (roll < 0.25 && count < 40) f.push(this.container());
    else if (roll < 0.33 && count < 40) f.splice(Math.floor(this.r() * (f.length + 1)), 0, this.container());
    else if (roll < 0.53 && count > 20 && f.length) f.splice(Math.floor(this.r() * f.length), 1);
    else if (roll < 0.85 && f.length) this.vary(this.pick(f));
    else if (roll < 0.88) w.n2opt = !w.n2opt;
    else if (roll < 0.9) w.n3 = !w.n3;
    else if (roll < 0.92) w.dns = w.dns ? undefined : '192.0.2.53';
    else if (roll < 0.94) w.whole = !w.whole;
    else if (roll < 0.95) w.services = !w.services;
    else if (roll < 0.96) w.containersFirst = !w.containersFirst;
    else if (roll < 0.97) {
      // One new name in both files at once (with nothing else that clashes).
      const c: Ctr = { name: `c${this.next++}`, nets: ['n0'], ports: [] };
      w.files[0].push(c);
      w.files[1].push({ ...c });
    } else if (roll < 0.98 && f.length) {
      // Moved to the other file (or, now and then, defined in both).
      const c = f[Math.floor(this.r() * f.length)]!;
      const other = w.files[f === w.files[0] ? 1 : 0];
      if (this.chance(0.8)) f.splice(f.indexOf(c), 1);
      other.push(this.chance(0.8) ? c : { ...c });
    } else if (f.length > 1) {
      // Two entries swap places.
      const i = Math.floor(this.r() * (f.length - 1));
      [f[i], f[i + 1]] = [f[i + 1]!, f[i]!];
    }
  }
}

/** Each container's file, text and daemon dns defaults ("whole" first when its file is parsed whole). */
function entryTexts(w: World): Map<string, string> {
  const out = new Map<string, string>();
  w.files.forEach((f, i) => {
    const file =
      i === 0
        ? `a${w.containersFirst ? ' first' : ''}`
        : `${w.whole ? 'whole ' : ''}b${w.services ? ' services' : ''}`;
    for (const c of f) out.set(c.name, `${file} ${w.dns}\n${renderCtr(c).join('\n')}`);
  });
  return out;
}

const sha = (t: string) => createHash('sha256').update(t).digest('hex');

type Outcome = { spec: Spec; problems?: undefined } | { spec?: undefined; problems: SpecError['problems'] };

function outcome(load: () => Spec): Outcome {
  try {
    return { spec: load() };
  } catch (err) {
    if (!(err instanceof SpecError)) throw err;
    return { problems: err.problems };
  }
}

/** The daemon's way of loading: one read cache and one pieces cache across all loads. */
function daemonLoader() {
  const parsed = new Map<string, ReadResult>();
  const pieces = new Map<string, Map<string, Piece>>();
  return (files: { path: string; text: string }[]) =>
    loadSpecCached(
      files.map((f) => ({ ...f, sha256: sha(f.text) })),
      parsed,
      pieces,
    );
}

/** The same spec (keys in the same order: JSON keeps it) or the same problems. */
function expectSame(inc: Outcome, fresh: Outcome, what: () => string): void {
  if (JSON.stringify(inc) === JSON.stringify(fresh)) {
    expect(inc.spec === undefined || Object.isFrozen(inc.spec.containers)).toBe(true);
    return;
  }
  const message = what();
  if (fresh.problems) expect(inc.problems, message).toEqual(fresh.problems);
  expect(inc.spec, message).toEqual(fresh.spec);
  expect(Object.keys(inc.spec!.containers), message).toEqual(Object.keys(fresh.spec!.containers));
  expect.unreachable(`${message}\n(only the JSON differs)`);
}

describe('reloading after an edit', () => {
  it.each([1, 2, 3])(
    'gives what a load from scratch gives, through random edits (seed %i)',
    (seed) => {
      const r = rng(seed);
      const edits = new Edits(r, {
        n2opt: false,
        n3: false,
        files: [[], []],
        whole: false,
        services: false,
        containersFirst: seed % 2 === 1,
      });
      while (edits.all().length < 30) edits.w.files[edits.chance(0.7) ? 0 : 1].push(edits.container());
      const load = daemonLoader();
      let kinds = { ok: 0, failed: 0, warned: 0 };
      let previous: { spec: Spec; entries: Map<string, string> } | undefined;
      for (let i = 0; i < 700; i++) {
        edits.step();
        const files = render(edits.w);
        const fresh = outcome(() => loadSpecFromStrings(files));
        const inc = outcome(() => load(files));
        expectSame(
          inc,
          fresh,
          () => `seed ${seed}, edit ${i}:\n${files.map((f) => `${f.path}\n${f.text}`).join('\n')}`,
        );
        if (inc.spec) {
          // An entry parsed in pieces whose text and line did not change since the load before
          // keeps its spec object.
          const entries = entryTexts(edits.w);
          for (const [name, ct] of Object.entries(inc.spec.containers)) {
            const before = previous?.spec.containers[name];
            const same =
              entries.get(name) === previous?.entries.get(name) && before?.src?.line === ct.src?.line;
            if (same && !entries.get(name)?.startsWith('whole')) {
              expect(ct, `seed ${seed}, edit ${i}: ${name} kept`).toBe(before);
            }
          }
          previous = { spec: inc.spec, entries };
        } else previous = undefined;
        kinds = {
          ok: kinds.ok + (inc.spec ? 1 : 0),
          failed: kinds.failed + (inc.problems ? 1 : 0),
          warned: kinds.warned + (inc.spec?.warnings.length ? 1 : 0),
        };
      }
      // The run went through both outcomes, and warnings.
      expect(kinds.ok).toBeGreaterThan(100);
      expect(kinds.failed).toBeGreaterThan(50);
      expect(kinds.warned).toBeGreaterThan(50);
    },
    60_000,
  );

  it('finds a name that one save adds to two files', () => {
    const load = daemonLoader();
    const a = (more: string) => ({
      path: '/m/a.yaml',
      text: `networks:\n  n0: {}\ncontainers:\n  x: {}\n${more}`,
    });
    const b = (more: string) => ({ path: '/m/b.yaml', text: `containers:\n  y: {}\n${more}` });
    for (const files of [
      [a(''), b('')],
      [a('  dup: {}\n'), b('  dup: {}\n')],
      [a(''), b('')],
      [a('  dup: { networks: [n0] }\n'), b('  dup: {}\n')],
    ]) {
      expectSame(
        outcome(() => load(files)),
        outcome(() => loadSpecFromStrings(files)),
        () => files.map((f) => f.text).join('---\n'),
      );
    }
  });

  it('counts the containers on a network as they come and go past 1000 and 1023', () => {
    const text = (n: number) =>
      `networks:\n  big: {}\ncontainers:\n${Array.from({ length: n }, (_, i) => `  c${i}: { networks: [big] }\n`).join('')}`;
    const load = daemonLoader();
    for (const n of [998, 999, 1000, 1001, 1023, 1024, 1023, 1000, 999, 1000]) {
      const files = [{ path: '/m/a.yaml', text: text(n) }];
      expectSame(
        outcome(() => load(files)),
        outcome(() => loadSpecFromStrings(files)),
        () => `${n} containers`,
      );
    }
  }, 60_000);
});
