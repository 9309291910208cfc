/**
 * Per-instance files shared across namespaces: the state directory and the lock.
 * Both are scoped by instance name so two instances never interfere.
 *
 *   $TETHER_STATE_DIR (default /var/lib/tether)/<instance>/last-apply.json
 *   $TETHER_RUN_DIR   (default /run/tether)/<instance>/lock
 */
import {
  closeSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
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
 * Take the instance lock: an O_EXCL file holding our pid. A lock left by a dead
 * process is taken over; a live holder is waited for up to `waitMs`.
 */
export async function withLock<T>(instance: string, fn: () => Promise<T>, waitMs = 30_000): Promise<T> {
  const dir = runDir(instance);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, 'lock');
  const deadline = Date.now() + waitMs;
  for (;;) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, String(process.pid));
      closeSync(fd);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number(readFileSync(file, 'utf8').trim());
      if (!holder || !alive(holder)) {
        rmSync(file, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        throw new KernelError('lock', `instance '${instance}' is locked by pid ${holder} (${file})`, 'busy');
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(file, { force: true });
  }
}
