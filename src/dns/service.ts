/**
 * The resolver as a supervised long-lived process of its own (`tether dns-serve`), so
 * names resolve after a one-shot `tether apply` as well as under the daemon. It runs in
 * the namespace tether runs in (the host), listening on the gateway addresses.
 *
 *   runDir/dns.json    the configuration (written by apply, re-read on SIGHUP)
 *   runDir/dns.pid     the resolver's pid
 *   runDir/dns.loaded  sha256 of the configuration it has loaded (the reload handshake)
 *   stateDir/dns.log   its log
 *
 * apply starts it or sends SIGHUP, then waits until dns.loaded shows the new hash, so a
 * query right after apply already sees the new names. Only a pid tether recorded, whose
 * command line is tether's dns-serve of this instance, is ever signalled.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { KernelError } from '../model/errors.js';
import { sha256hex } from '../model/names.js';
import { runDir, stateDir, writeText } from '../state/store.js';

const files = (instance: string) => ({
  config: join(runDir(instance), 'dns.json'),
  pid: join(runDir(instance), 'dns.pid'),
  loaded: join(runDir(instance), 'dns.loaded'),
  log: join(stateDir(instance), 'dns.log'),
});

export const dnsFiles = files;

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The pid of this instance's resolver, when one runs. */
export function resolverPid(instance: string): number | undefined {
  const pid = Number(read(files(instance).pid));
  if (!pid) return undefined;
  const cmd = read(`/proc/${pid}/cmdline`)?.split('\0') ?? [];
  if (!cmd.includes('dns-serve') || !cmd.includes(instance)) return undefined;
  return pid;
}

/** What observe sees: the configuration on disk (canonical JSON) and whether it is served. */
export function observeResolver(instance: string): { config: string; running: boolean } | undefined {
  const f = files(instance);
  const config = read(f.config);
  const pid = resolverPid(instance);
  if (config === undefined && !pid) return undefined;
  const running = !!pid && read(f.loaded)?.trim() === configHash(config ?? '');
  return { config: config ?? '', running };
}

/**
 * sha256 of a configuration, the last one remembered: every observation compares the
 * same file (hundreds of kB at 1000 containers) with what the resolver loaded.
 */
let lastHash: { text: string; hash: string } | undefined;
function configHash(text: string): string {
  if (lastHash?.text !== text) lastHash = { text, hash: sha256hex(text) };
  return lastHash.hash;
}

/** Polls `cond` at 1, 2, 4, 8, then every 10 ms (a reload usually takes a few ms). */
async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (let pause = 1; !cond(); pause = Math.min(pause * 2, 10)) {
    if (Date.now() > deadline)
      throw new KernelError('dns resolver', `${what} (see ${'dns.log'} in the state directory)`);
    await new Promise((r) => setTimeout(r, pause));
  }
}

/** Write the configuration, then reload the running resolver or start one; wait until loaded. */
export async function reloadResolver(instance: string, config: string): Promise<void> {
  const f = files(instance);
  mkdirSync(runDir(instance), { recursive: true });
  mkdirSync(stateDir(instance), { recursive: true });
  writeText(f.config, config);
  const want = configHash(config);
  const pid = resolverPid(instance);
  if (pid) {
    process.kill(pid, 'SIGHUP');
  } else {
    // A dead resolver's files must not satisfy the handshake for the new one.
    rmSync(f.loaded, { force: true });
    rmSync(f.pid, { force: true });
    const log = openSync(f.log, 'a');
    const entry = process.argv[1]!;
    const child = spawn(process.execPath, [entry, '--instance', instance, 'dns-serve'], {
      detached: true,
      stdio: ['ignore', log, log],
      env: process.env,
    });
    closeSync(log);
    child.unref();
  }
  await waitFor(
    () => read(f.loaded)?.trim() === want,
    5000,
    'the resolver did not load its configuration in 5 s',
  );
}

export async function stopResolver(instance: string): Promise<void> {
  const f = files(instance);
  const pid = resolverPid(instance);
  if (pid) {
    process.kill(pid, 'SIGTERM');
    await waitFor(
      () => !existsSync(`/proc/${pid}`) || resolverPid(instance) === undefined,
      5000,
      'the resolver did not stop in 5 s',
    );
  }
  for (const p of [f.config, f.pid, f.loaded]) rmSync(p, { force: true });
}
