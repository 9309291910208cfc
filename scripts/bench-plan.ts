/**
 * `npx tsx scripts/bench-plan.ts [N…]`: the pure half of a reconcile at N containers (one
 * network, one published port each), no kernel: load the manifest text, IPAM against a
 * converged state, build the desired state, diff it against itself (a no-op plan).
 * Median of 15 runs after 5 warm-ups, in ms.
 */
import { desiredState } from '../src/diff/desired.js';
import { diff } from '../src/diff/diff.js';
import { EMPTY_STATE } from '../src/model/state.js';
import { resolve } from '../src/spec/ipam.js';
import { loadSpecFromStrings } from '../src/spec/load.js';

const host = {
  reserved4: [],
  reserved6: [],
  ulaSeed: 'bench',
  ephemeralPorts: [49153, 65535] as [number, number],
};

function manifest(n: number): string {
  const lines = ['networks:', '  n0: {}', 'containers:'];
  for (let i = 0; i < n; i++) lines.push(`  c${i}: { networks: [n0], ports: ["${20000 + i}:80"] }`);
  return `${lines.join('\n')}\n`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const sizes = process.argv.slice(2).map(Number).filter(Boolean);
console.log('N\tload\tresolve\tdesired\tdiff\ttotal');
for (const n of sizes.length ? sizes : [10, 100, 1000]) {
  const text = manifest(n);
  const spec0 = loadSpecFromStrings([{ path: 'm.yaml', text }]);
  const actual = desiredState(resolve(spec0, 'bench', EMPTY_STATE, host));
  const t: Record<string, number[]> = { load: [], resolve: [], desired: [], diff: [] };
  for (let k = 0; k < 20; k++) {
    const a = performance.now();
    const spec = loadSpecFromStrings([{ path: 'm.yaml', text }]);
    const b = performance.now();
    const r = resolve(spec, 'bench', actual, host);
    const c = performance.now();
    const d = desiredState(r);
    const e = performance.now();
    const p = diff(d, actual, 'bench');
    const f = performance.now();
    if (p.actions.length) throw new Error(`not a no-op: ${p.actions.length} actions`);
    if (k < 5) continue;
    t.load!.push(b - a);
    t.resolve!.push(c - b);
    t.desired!.push(e - c);
    t.diff!.push(f - e);
  }
  const m = Object.fromEntries(Object.entries(t).map(([k, v]) => [k, median(v)]));
  const total = Object.values(m).reduce((x, y) => x + y, 0);
  console.log(
    [n, m.load, m.resolve, m.desired, m.diff, total]
      .map((x) => (typeof x === 'number' && x % 1 ? x.toFixed(1) : x))
      .join('\t'),
  );
}
