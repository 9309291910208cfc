/**
 * Per-instance files shared across namespaces: the state directory and the lock.
 * Both are scoped by instance name so two instances never interfere.
 *
 *   $TETHER_STATE_DIR (default /var/lib/tether)/<instance>/last-apply.json, containers/ (state/record.ts)
 *   $TETHER_RUN_DIR   (default /run/tether)/<instance>/lock
 */
import { linkSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KernelError } from '../model/errors.js';

export const stateDir = (instance: string) =>
  join(process.env.TETHER_STATE_DIR ?? '/var/lib/tether', instance);
export const runDir = (instance: string) => join(process.env.TETHER_RUN_DIR ?? '/run/tether', instance);

export function readJson<T>(file: string): T | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch {
    return undefined;
  }
}

/** Write atomically (temp file + rename), creating the directory. */
export function writeText(file: string, text: string): void {
  mkdirSync(join(file, '..'), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/**
 * Files DIR/NAME.json kept in step with an index that names each part (the record's
 * container files, the resolver's parts): writes `write` (name → text), then deletes the
 * parts named in `remove`, or, with `{ allBut }` (the last index is unknown), every part
 * the directory holds whose name `allBut` lacks.
 */
export function syncPartFiles(
  dir: string,
  write: Readonly<Record<string, string>>,
  remove: readonly string[] | { readonly allBut: Readonly<Record<string, unknown>> },
): void {
  mkdirSync(dir, { recursive: true });
  const gone =
    'allBut' in remove
      ? readdirSync(dir).flatMap((f) =>
          f.endsWith('.json') && !Object.hasOwn(remove.allBut, f.slice(0, -5)) ? [f.slice(0, -5)] : [],
        )
      : remove;
  for (const [name, text] of Object.entries(write)) writeText(join(dir, `${name}.json`), text);
  for (const name of gone) rmSync(join(dir, `${name}.json`), { force: true });
}

export function writeJson(file: string, value: unknown): void {
  writeText(file, `${JSON.stringify(value, null, 2)}\n`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Take the instance lock: a file holding our pid, made atomically with its content (written
 * to a file of our own, then hard-linked into place: the link fails if the lock exists), so
 * another process never reads a lock that exists but names no one. A lock left by a dead
 * process is taken over; a live holder is waited for up to `waitMs`.
 */
export async function withLock<T>(instance: string, fn: () => Promise<T>, waitMs = 30_000): Promise<T> {
  const dir = runDir(instance);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'lock');
  const mine = `${file}.${process.pid}`;
  writeFileSync(mine, String(process.pid));
  const deadline = Date.now() + waitMs;
  try {
    for (;;) {
      try {
        linkSync(mine, file);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        let holder = 0;
        try {
          holder = Number(readFileSync(file, 'utf8').trim());
        } catch {
          continue; // released meanwhile
        }
        if (!holder || !alive(holder)) {
          rmSync(file, { force: true });
          continue;
        }
        if (Date.now() > deadline) {
          throw new KernelError(
            'lock',
            `instance '${instance}' is locked by pid ${holder} (${file})`,
            'busy',
          );
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    rmSync(mine, { force: true });
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}
