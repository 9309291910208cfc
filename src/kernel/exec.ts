/** Run a program without a shell; capture output; classify failures. */
import { spawn } from 'node:child_process';
import { KernelError } from '../model/errors.js';

export interface ExecResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export function run(
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
