/**
 * The resolver as a supervised long-lived process of its own (`tether dns-serve`), so
 * names resolve after a one-shot `tether apply` as well as under the daemon. It runs in
 * the namespace tether runs in (the host), listening on the gateway addresses.
 *
 *   runDir/dns.json    the configuration's index (written by apply, re-read on SIGHUP)
 *   runDir/dns/NAME.json  a container's names and proxies (a part; the index holds its hash)
 *   runDir/dns.pid     the resolver's pid
 *   runDir/dns.loaded  "PROTOCOL sha256" of the configuration it has loaded (the reload handshake)
 *   stateDir/dns.log   its log
 *
 * apply writes the parts that changed, then the index; it starts the resolver or sends
 * SIGHUP, then waits until dns.loaded shows the new hash (woken by inotify), so a query
 * right after apply already sees the new names. Only a pid tether recorded, whose
 * command line is tether's dns-serve of this instance, is ever signalled.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, watch } from 'node:fs';
import { join } from 'node:path';
import { KernelError } from '../model/errors.js';
import { sha256hex, shortHash } from '../model/names.js';
import { runDir, stateDir, syncPartFiles, writeText } from '../state/store.js';
import type { ResolverIndex } from './config.js';
import type { ProxySpec } from './proxy.js';
import type { DnsEndpoint } from './records.js';

const files = (instance: string) => ({
  config: join(runDir(instance), 'dns.json'),
  parts: join(runDir(instance), 'dns'),
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
  const config = readConfig(f.config);
  const pid = resolverPid(instance);
  if (config === undefined && !pid) return undefined;
  const running = !!pid && read(f.loaded)?.trim() === loadedMark(configHash(config ?? ''));
  return { config: config ?? '', running };
}

/**
 * The configuration's text, read again only when the file is another one or changed (its
 * inode, size or modification time): every observation looks at it, and at 1000
 * containers it is tens of kB that are replaced (renamed over) only when it changes.
 */
let lastConfig: { path: string; stamp: string; text: string } | undefined;
function readConfig(path: string): string | undefined {
  const st = statSync(path, { bigint: true, throwIfNoEntry: false });
  if (!st) return undefined;
  const stamp = `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  if (lastConfig?.path === path && lastConfig.stamp === stamp) return lastConfig.text;
  const text = read(path);
  lastConfig = text === undefined ? undefined : { path, stamp, text };
  return text;
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

/**
 * The version of the daemon-resolver files (dns.json and its parts). A resolver started by
 * another tether version that reads them otherwise (the proxies were in the index before
 * version 2) is replaced, not reloaded.
 */
export const RESOLVER_PROTOCOL = 2;

/** What dns.loaded holds once the resolver has loaded the configuration of sha256 `hash`. */
export const loadedMark = (hash: string) => `${RESOLVER_PROTOCOL} ${hash}`;

/** Polls `cond` at 1, 2, 4, 8, then every 10 ms (for what no event reports: a process's end). */
async function pollFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (let pause = 1; !cond(); pause = Math.min(pause * 2, 10)) {
    if (Date.now() > deadline)
      throw new KernelError('dns resolver', `${what} (see dns.log in the state directory)`);
    await new Promise((r) => setTimeout(r, pause));
  }
}

/**
 * Waits until `cond` holds, checking it whenever something in `dir` changes (inotify) and
 * once a second besides; fails after `ms`.
 */
async function waitFor(dir: string, cond: () => boolean, ms: number, what: string): Promise<void> {
  if (cond()) return;
  await new Promise<void>((resolve, reject) => {
    const check = () => {
      if (cond()) finish();
      else if (Date.now() > deadline)
        finish(new KernelError('dns resolver', `${what} (see dns.log in the state directory)`));
    };
    const finish = (e?: Error) => {
      watcher.close();
      clearInterval(timer);
      if (e) reject(e);
      else resolve();
    };
    const deadline = Date.now() + ms;
    const watcher = watch(dir, check);
    watcher.on('error', () => {});
    const timer = setInterval(check, 1000);
    check(); // what happened before the watch began
  });
}

/** A part's file. Container names are plain (letters, digits, _ . -): safe as file names. */
const partFile = (instance: string, name: string) => join(files(instance).parts, `${name}.json`);

/**
 * Write the parts given and the index, delete the parts named, then reload the running
 * resolver or start one; wait until it has loaded the index.
 */
export async function reloadResolver(
  instance: string,
  config: string,
  parts: Readonly<Record<string, string>> = {},
  /** Part files to delete; "others": all but those in `parts` (which then holds every part). */
  removeParts: readonly string[] | 'others' = [],
): Promise<void> {
  const f = files(instance);
  mkdirSync(stateDir(instance), { recursive: true });
  let pid = resolverPid(instance);
  // One that marked its last load otherwise speaks another protocol: it is stopped first.
  const mark = read(f.loaded);
  if (pid && mark !== undefined && !mark.startsWith(loadedMark(''))) {
    await stopProcess(pid, instance);
    pid = undefined;
  }
  // A resolver that is not serving this index gets every part (diff.ts): any other part file
  // is left over from before, and goes.
  syncPartFiles(f.parts, parts, removeParts === 'others' ? { allBut: parts } : removeParts);
  writeText(f.config, config);
  const want = loadedMark(configHash(config));
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
    runDir(instance),
    () => read(f.loaded)?.trim() === want,
    5000,
    'the resolver did not load its configuration in 5 s',
  );
}

/** A container's part as the resolver loaded it (dns/NAME.json), with its hash. */
export interface LoadedPart {
  readonly hash: string;
  readonly endpoints: readonly DnsEndpoint[];
  readonly proxies: readonly ProxySpec[];
}

/**
 * Read the configuration: the index and its parts. A part whose hash is the one `known`
 * holds is that object, not read again. Throws when a part is missing or its text does
 * not match its hash.
 */
export function loadResolverConfig(
  instance: string,
  known: ReadonlyMap<string, LoadedPart> = new Map(),
): { index: ResolverIndex; hash: string; parts: Map<string, LoadedPart> } {
  const text = readFileSync(files(instance).config, 'utf8');
  const index = JSON.parse(text) as ResolverIndex;
  const parts = new Map<string, LoadedPart>();
  for (const [name, hash] of Object.entries(index.parts ?? {})) {
    const had = known.get(name);
    if (had?.hash === hash) {
      parts.set(name, had);
      continue;
    }
    const partText = readFileSync(partFile(instance, name), 'utf8');
    if (shortHash(partText) !== hash)
      throw new Error(`dns part ${name}: its file does not match the index (hash ${hash})`);
    const part = JSON.parse(partText) as Partial<LoadedPart>;
    parts.set(name, { hash, endpoints: part.endpoints ?? [], proxies: part.proxies ?? [] });
  }
  return { index, hash: sha256hex(text), parts };
}

/** SIGTERM to this instance's resolver `pid`; waits until it is gone. */
async function stopProcess(pid: number, instance: string): Promise<void> {
  process.kill(pid, 'SIGTERM');
  await pollFor(
    () => !existsSync(`/proc/${pid}`) || resolverPid(instance) === undefined,
    5000,
    'the resolver did not stop in 5 s',
  );
}

export async function stopResolver(instance: string): Promise<void> {
  const f = files(instance);
  const pid = resolverPid(instance);
  if (pid) await stopProcess(pid, instance);
  for (const p of [f.config, f.pid, f.loaded]) rmSync(p, { force: true });
  rmSync(f.parts, { recursive: true, force: true });
}
