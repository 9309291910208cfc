/** Run a program without a shell; capture output; classify failures. */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { KernelError } from '../model/errors.js';

export interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a program: through the spawner when one is running (see startSpawner), else directly.
 * `onSpawn` gets the program's pid as soon as it is known.
 */
export function run(
  cmd: string,
  args: readonly string[],
  input?: string,
  onSpawn?: (pid: number) => void,
): Promise<ExecResult> {
  return spawner ? spawner.run(cmd, args, input, onSpawn) : runHere(cmd, args, input, onSpawn);
}

function runHere(
  cmd: string,
  args: readonly string[],
  input?: string,
  onSpawn?: (pid: number) => void,
): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    if (p.pid !== undefined) onSpawn?.(p.pid);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    p.stdout.on('data', (b: Buffer) => out.push(b));
    p.stderr.on('data', (b: Buffer) => err.push(b));
    p.on('error', (e) => reject(new KernelError(`${cmd} ${args.join(' ')}`, e.message)));
    p.on('close', (code) =>
      resolve({
        code: code ?? 1,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      }),
    );
    p.stdin.on('error', () => {});
    p.stdin.end(input ?? '');
  });
}

/**
 * The spawner: a small Node process that runs programs for a big one. Starting a program
 * stalls the starting process's thread in proportion to its memory (fork copies its page
 * tables): ~1 ms at 45 MiB, 3–5 ms at the 200–300 MiB of a daemon at 1000 containers, and
 * the daemon starts ip and nft on every reconcile that changes anything. The spawner stays
 * small, so its stall is short and happens on another core.
 *
 * Protocol, one JSON object per line: requests {id, cmd, args, input}; replies {id, pid}
 * when started, then {id, code, stdout, stderr} or {id, error}. The spawner exits when its
 * stdin closes (the daemon stopped or died).
 */
const SPAWNER = `
process.title = 'tether-spawner';
const { spawn } = require('node:child_process');
const send = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
const lines = require('node:readline').createInterface({ input: process.stdin });
lines.on('close', () => process.exit(0));
lines.on('line', (line) => {
  const { id, cmd, args, input } = JSON.parse(line);
  const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  if (p.pid !== undefined) send({ id, pid: p.pid });
  const out = [];
  const err = [];
  p.stdout.on('data', (b) => out.push(b));
  p.stderr.on('data', (b) => err.push(b));
  p.on('error', (e) => send({ id, error: e.message }));
  p.on('close', (code) =>
    send({ id, code: code ?? 1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() }),
  );
  p.stdin.on('error', () => {});
  p.stdin.end(input ?? '');
});
`;

interface Pending {
  readonly what: string;
  readonly resolve: (r: ExecResult) => void;
  readonly reject: (e: Error) => void;
  readonly onSpawn?: (pid: number) => void;
}

class Spawner {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  constructor(private readonly onExit: () => void) {
    this.child = spawn(process.execPath, ['-e', SPAWNER], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.child.stdout! }).on('line', (line) => this.receive(line));
    this.child.stdin!.on('error', () => {});
    this.child.on('error', () => this.gone('could not start the spawner'));
    this.child.on('exit', (code, signal) => this.gone(`the spawner exited (${signal ?? `code ${code}`})`));
  }

  run(cmd: string, args: readonly string[], input?: string, onSpawn?: (pid: number) => void) {
    return new Promise<ExecResult>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { what: `${cmd} ${args.join(' ')}`, resolve, reject, onSpawn });
      this.child.stdin!.write(`${JSON.stringify({ id, cmd, args, input })}\n`);
    });
  }

  stop(): void {
    this.child.stdin!.end();
  }

  private receive(line: string): void {
    const m = JSON.parse(line) as { id: number; pid?: number; error?: string } & ExecResult;
    const p = this.pending.get(m.id);
    if (!p) return;
    if (m.pid !== undefined) p.onSpawn?.(m.pid);
    else {
      this.pending.delete(m.id);
      if (m.error !== undefined) p.reject(new KernelError(p.what, m.error));
      else p.resolve({ code: m.code, stdout: m.stdout, stderr: m.stderr });
    }
  }

  private gone(why: string): void {
    this.onExit();
    for (const p of this.pending.values()) p.reject(new KernelError(p.what, why));
    this.pending.clear();
  }
}

let spawner: Spawner | undefined;

/** Run programs through a spawner from now on (the daemon; see Spawner). */
export function startSpawner(): void {
  if (spawner) return;
  const s = new Spawner(() => {
    if (spawner === s) spawner = undefined; // later runs start programs directly
  });
  spawner = s;
}

/** Stop the spawner; programs are started directly again. */
export function stopSpawner(): void {
  spawner?.stop();
  spawner = undefined;
}

/** Like run, but a non-zero exit is a KernelError naming `op`. */
export async function mustRun(
  op: string,
  cmd: string,
  args: readonly string[],
  input?: string,
): Promise<string> {
  const r = await run(cmd, args, input);
  if (r.code !== 0) throw new KernelError(op, r.stderr || r.stdout || `exit ${r.code}`);
  return r.stdout;
}

/** Run `fn` over items with at most `limit` in flight. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (t: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
