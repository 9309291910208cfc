/** sysctls of the namespace this process runs in (/proc/sys/net follows the caller's netns). */
import { readFileSync, writeFileSync } from 'node:fs';
import { KernelError } from '../model/errors.js';

const path = (key: string) => `/proc/sys/${key.replace(/\./g, '/')}`;

export function readSysctl(key: string): string | undefined {
  try {
    return readFileSync(path(key), 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function writeSysctl(key: string, value: string): void {
  try {
    writeFileSync(path(key), value);
  } catch (e) {
    throw new KernelError(`set ${key}=${value}`, (e as Error).message);
  }
}

/** Best effort: a key that does not exist (a kernel without IPv6, say) is left alone. */
export function writeSysctlIfPresent(key: string, value: string): void {
  if (readSysctl(key) !== undefined) writeSysctl(key, value);
}
