/**
 * The nft transaction of published ports: size (commands, elements, bytes) and time, for a
 * manifest with P published ports (cold apply of the nft part: table replace + skeleton +
 * every element) and for adding one more port to it (an incremental transaction).
 *
 * The transactions come from the pure path (load → resolve → desiredState → diff →
 * nftTransaction, as `apply` builds them) and run through the same adapter apply uses
 * (src/kernel/nft.ts `nftRun`: `nft -j`, the JSON as one argument below 100 kB, else a
 * temp file) inside a throwaway network namespace: the script re-executes itself under
 * `unshare -n`, so nothing touches this machine's own tables. Root required.
 *
 *   npx tsx scripts/bench-nft.ts            P = 200, 10 runs each
 *   npx tsx scripts/bench-nft.ts 200 1000   other sizes
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { nftTransaction } from '../src/apply/apply.js';
import { desiredState } from '../src/diff/desired.js';
import { diff } from '../src/diff/diff.js';
import type { Action } from '../src/diff/plan.js';
import { type NftCommand, nftRun } from '../src/kernel/nft.js';
import { EMPTY_STATE, type KernelState } from '../src/model/state.js';
import { type HostFacts, resolve } from '../src/spec/ipam.js';
import { loadSpecFromStrings } from '../src/spec/load.js';

const RUNS = 10;
const PER_CONTAINER = 10;
const HOST: HostFacts = {
  reserved4: [],
  reserved6: [],
  ulaSeed: 'bench-nft',
  ephemeralPorts: [32768, 60999],
};
const TABLE = 'benchnft';

if (!process.env.BENCH_NFT_INSIDE) {
  // Re-run inside a private network namespace that vanishes with the process.
  const r = spawnSync(
    'unshare',
    ['-n', process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { stdio: 'inherit', env: { ...process.env, BENCH_NFT_INSIDE: '1' } },
  );
  process.exit(r.status ?? 1);
}

/** P published ports: P/10 containers with 10 ports each, on one network. */
function manifest(ports: number, dual: boolean, extra = false): string {
  const lines = [
    'networks:',
    '  web:',
    `    enable_ipv6: ${dual}`,
    `    ipam: { config: [{ subnet: 172.20.0.0/16 }${dual ? ', { subnet: "fd00:20::/64" }' : ''}] }`,
    'containers:',
  ];
  for (let c = 0; c * PER_CONTAINER < ports; c++) {
    const list: string[] = [];
    for (let i = 0; i < PER_CONTAINER && c * PER_CONTAINER + i < ports; i++)
      list.push(`"${10000 + c * PER_CONTAINER + i}:${80 + i}"`);
    if (extra && c === 0) list.push('"20000:8080"');
    lines.push(`  c${c}: { networks: [web], ports: [${list.join(', ')}] }`);
  }
  return `${lines.join('\n')}\n`;
}

function desired(yaml: string, actual: KernelState = EMPTY_STATE): KernelState {
  const spec = loadSpecFromStrings([{ path: 'bench.yaml', text: yaml }]);
  return desiredState(resolve(spec, TABLE, actual, HOST));
}

const nftActions = (a: readonly Action[]) => a.filter((x) => x.op.startsWith('nft.'));
const elements = (tx: NftCommand[]) =>
  tx.reduce(
    (n, c) =>
      n + (((Object.values(c)[0] as { element?: { elem: unknown[] } }).element?.elem.length ?? 0) as number),
    0,
  );

async function time(fn: () => Promise<void>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface Row {
  case: string;
  ops: number;
  commands: number;
  elements: number;
  bytes: number;
  ms: number;
  min: number;
}

async function bench(ports: number, dual: boolean): Promise<Row[]> {
  const t0 = process.hrtime.bigint();
  const base = desired(manifest(ports, dual));
  const coldActs = nftActions(diff(base, EMPTY_STATE, TABLE).actions);
  const cold = nftTransaction(coldActs);
  const plus = desired(manifest(ports, dual, true), base);
  const addActs = nftActions(diff(plus, base, TABLE).actions);
  const add = nftTransaction(addActs);
  const pureMs = Number(process.hrtime.bigint() - t0) / 1e6;

  const coldTimes: number[] = [];
  const addTimes: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    coldTimes.push(await time(() => nftRun(cold)));
    addTimes.push(await time(() => nftRun(add)));
  }
  // Converged: the pure path plans nothing, so no transaction runs at all.
  const again = nftActions(diff(desired(manifest(ports, dual, true), plus), plus, TABLE).actions);
  if (again.length) throw new Error(`not converged: ${again.length} nft actions`);
  await nftRun([
    { delete: { table: { family: 'inet', name: TABLE } } },
    { delete: { table: { family: 'bridge', name: TABLE } } },
  ]);

  const fam = dual ? 'IPv4+IPv6' : 'IPv4';
  const size = (tx: NftCommand[]) => Buffer.byteLength(JSON.stringify({ nftables: tx }));
  console.error(`  (${ports} ports ${fam}: pure path for both plans ${pureMs.toFixed(0)} ms)`);
  return [
    {
      case: `${ports} ports, ${fam}: cold apply`,
      ops: coldActs.length,
      commands: cold.length,
      elements: elements(cold),
      bytes: size(cold),
      ms: median(coldTimes),
      min: Math.min(...coldTimes),
    },
    {
      case: `${ports} ports, ${fam}: + one port`,
      ops: addActs.length,
      commands: add.length,
      elements: elements(add),
      bytes: size(add),
      ms: median(addTimes),
      min: Math.min(...addTimes),
    },
    {
      case: `${ports + 1} ports, ${fam}: converged`,
      ops: 0,
      commands: 0,
      elements: 0,
      bytes: 0,
      ms: 0,
      min: 0,
    },
  ];
}

const sizes = process.argv.slice(2).map(Number).filter(Boolean);
const rows: Row[] = [];
for (const p of sizes.length ? sizes : [200])
  for (const dual of [false, true]) rows.push(...(await bench(p, dual)));

const head = ['case', 'plan ops', 'nft cmds', 'elements', 'bytes', `median ms (${RUNS})`, 'min ms'];
const body = rows.map((r) => [
  r.case,
  String(r.ops),
  String(r.commands),
  String(r.elements),
  String(r.bytes),
  r.ms.toFixed(1),
  r.min.toFixed(1),
]);
const width = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
const line = (cells: string[]) =>
  `| ${cells.map((c, i) => (i === 0 ? c.padEnd(width[i]!) : c.padStart(width[i]!))).join(' | ')} |`;
console.log(line(head));
console.log(
  `|${width.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
);
for (const b of body) console.log(line(b));
const v = spawnSync('nft', ['--version'], { encoding: 'utf8' }).stdout.trim();
console.log(`\n${v}; each time is one \`nft -j\` process (fork, parse, netlink batch, commit).`);
