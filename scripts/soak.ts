/**
 * `npm run bench -- --soak [N] [CYCLES]`: the daemon's memory under repeated reconciles.
 * Starts `tether run` in a sandbox with N containers (default 1000, one published port
 * each), waits for it to converge, then drives CYCLES reconciles (default 1000): in turn
 * a SIGHUP (full resync), a container added, a save that changes nothing, the container
 * removed; each awaited on the daemon's "reconciled" log line. Samples its resident memory
 * (VmRSS), its JS heap (from the status socket) and its open file descriptors (a
 * namespace listener that leaked would show there). Prints the samples and the growth
 * from the first tenth to the last tenth of the run.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { onLines } from '../test/helpers/process.js';
import { Sandbox, tmpfsRunDir } from '../test/helpers/sandbox.js';

export async function soak(n: number, cycles: number): Promise<void> {
  const s = Sandbox.create({ uplink: false, runDir: tmpfsRunDir() });
  try {
    const lines = ['networks:', '  n: {}', 'containers:'];
    for (let i = 0; i < n; i++)
      lines.push(`  c${i}: { networks: [n${n > 1000 ? String(i % 2) : ''}], ports: ["${20000 + i}:80"] }`);
    if (n > 1000) lines.splice(1, 1, '  n0: {}', '  n1: {}');
    const base = `${lines.join('\n')}\n`;
    const plusOne = `${base}  extra: { networks: [n${n > 1000 ? '0' : ''}], ports: ["19999:80"] }\n`;
    s.write('m.yaml', base);
    const [cmd, ...argv] = s.tetherArgv(['run', '-f', s.manifests, '--resync', '1h']);
    const proc = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let waiting: ((line: string) => void) | undefined;
    let ready!: () => void;
    const isReady = new Promise<void>((r) => (ready = r));
    onLines(proc.stderr!, (line) => {
      if (line.includes('TETHER_I0502')) ready();
      if (line.includes('TETHER_I0501')) waiting?.(line);
    });
    const sock = join(s.runDir, s.instance, 'daemon.sock');
    const status = () =>
      new Promise<any>((resolve) => {
        let out = '';
        const c = connect(sock);
        c.on('data', (b) => (out += b.toString()));
        c.on('end', () => resolve(JSON.parse(out)));
        c.on('error', () => resolve(undefined));
      });
    const mem = async () => {
      const m = (await status())?.memory ?? {};
      const mib = (x: number | undefined) => (x ?? Number.NaN) / 2 ** 20;
      return {
        heapMiB: mib(m.heapUsedBytes),
        heapTotalMiB: mib(m.heapTotalBytes),
        externalMiB: mib(m.externalBytes),
      };
    };
    const rss = () =>
      Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
    const t0 = performance.now();
    await isReady;
    process.stdout.write(
      `daemon converged ${n} containers in ${((performance.now() - t0) / 1000).toFixed(1)} s; RSS ${rss().toFixed(0)} MiB\n`,
    );
    const samples: {
      cycle: number;
      rssMiB: number;
      heapMiB: number;
      heapTotalMiB: number;
      externalMiB: number;
      fds: number;
    }[] = [];
    const every = Math.max(1, Math.floor(cycles / Math.max(20, cycles / 50)));
    const c0 = performance.now();
    // Four kinds of cycle in turn: a full resync (SIGHUP), a container added (a namespace,
    // its listener, a veth, nft elements), a save that changes nothing, the container
    // removed again. Each waits for its own reconcile's log line.
    const kinds = ['sighup', 'add', 'noop', 'remove'] as const;
    const fds = () => readdirSync(`/proc/${proc.pid}/fd`).length;
    for (let c = 1; c <= cycles; c++) {
      const kind = kinds[c % 4]!;
      const done = new Promise<void>(
        (r) => (waiting = (l) => l.includes(kind === 'sighup' ? '"sighup' : '"file') && r()),
      );
      if (kind === 'sighup') proc.kill('SIGHUP');
      else s.write('m.yaml', kind === 'add' ? plusOne : base);
      await done;
      if (c % every === 0 || c === 1) samples.push({ cycle: c, rssMiB: rss(), ...(await mem()), fds: fds() });
    }
    const perCycle = (performance.now() - c0) / cycles;
    for (const x of samples) {
      process.stdout.write(
        `cycle ${String(x.cycle).padStart(5)}  RSS ${x.rssMiB.toFixed(1)} MiB  JS heap ${x.heapMiB.toFixed(1)} used of ${x.heapTotalMiB.toFixed(1)} MiB  external ${x.externalMiB.toFixed(1)} MiB  open fds ${x.fds}\n`,
      );
    }
    // After warm-up (the first sample is taken right after the first converge): the range,
    // and the least-squares slope of RSS over cycles, per 1000 cycles; then the slope within
    // each window of 1000 cycles (halves of a shorter run), which tells growth that goes on
    // from growth that stops.
    const warm = samples.filter((x) => x.cycle > 1);
    const slope = (xs: typeof warm) => {
      const mx = xs.reduce((a, x) => a + x.cycle, 0) / xs.length;
      const my = xs.reduce((a, x) => a + x.rssMiB, 0) / xs.length;
      const k =
        xs.reduce((a, x) => a + (x.cycle - mx) * (x.rssMiB - my), 0) /
        xs.reduce((a, x) => a + (x.cycle - mx) ** 2, 0);
      return `${k * 1000 >= 0 ? '+' : ''}${(k * 1000).toFixed(1)}`;
    };
    const range = (f: (x: (typeof warm)[number]) => number) =>
      `${Math.min(...warm.map(f)).toFixed(0)}–${Math.max(...warm.map(f)).toFixed(0)}`;
    const span = cycles >= 2000 ? 1000 : Math.ceil(cycles / 2);
    const windows: string[] = [];
    for (let from = 0; from < cycles; from += span) {
      const xs = warm.filter((x) => x.cycle > from && x.cycle <= from + span);
      if (xs.length >= 3) windows.push(`cycles ${from + 1}–${from + span}: ${slope(xs)}`);
    }
    process.stdout.write(
      `${cycles} reconciles of ${n} containers, ${perCycle.toFixed(0)} ms each; after warm-up RSS ${range((x) => x.rssMiB)} MiB (slope ${slope(warm)} MiB per 1000 cycles; within windows: ${windows.join(', ')}), JS heap used ${range((x) => x.heapMiB)} MiB of ${range((x) => x.heapTotalMiB)} MiB, external ${range((x) => x.externalMiB)} MiB, open fds ${range((x) => x.fds)}\n`,
    );
    // What the in-memory observation did: full reads, namespaces read again, plans reused,
    // and differences a full read found between memory and the kernel (should be 0).
    process.stdout.write(`observer: ${JSON.stringify((await status())?.observer)}\n`);
    proc.kill('SIGTERM');
    await new Promise((r) => proc.on('exit', r));
  } finally {
    s.teardownSync();
  }
}
