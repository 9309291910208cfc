/**
 * Sandboxes for kernel tests (SPEC §4). Each sandbox is a fresh "host" namespace where
 * tether runs (entered with `nsenter --net`, never `ip netns exec`: KERNEL-NOTES), an
 * optional "uplink" namespace that plays the internet, and a private tether instance
 * (its own namespaces, state directory, lock and nft table). Teardown runs even when a
 * test fails, and also on process exit.
 *
 * Conventions: containers use tether's default pools (172.17/16, 172.18/16, …);
 * "outside" hosts use documentation ranges only: the uplink is 203.0.113.1/24 with the
 * sandbox host at 203.0.113.2, IPv6 2001:db8:1::1/64 and ::2.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const require = createRequire(import.meta.url);
export const ROOT = resolve(import.meta.dirname, '../..');
export const TETHER = join(ROOT, 'bin/tether');

export const UPLINK_V4 = '203.0.113.1';
export const HOST_V4 = '203.0.113.2';
export const UPLINK_V6 = '2001:db8:1::1';
export const HOST_V6 = '2001:db8:1::2';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], input?: string): RunResult {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 120_000 });
  return {
    code: r.status ?? 1,
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? (r.error ? String(r.error) : ''),
  };
}

function must(cmd: string, args: string[], input?: string): string {
  const r = sh(cmd, args, input);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/** Fails (never skips) when the machine cannot run kernel tests. */
export function requireKernel(): void {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root');
  for (const tool of ['ip', 'nft', 'nsenter', 'ping']) if (sh('which', [tool]).code !== 0) missing.push(tool);
  if (missing.length)
    throw new Error(`kernel tests cannot run: missing ${missing.join(', ')} (CI must install them)`);
}

const live = new Set<Sandbox>();
process.on('exit', () => {
  for (const s of live) s.teardownSync();
});

export class Sandbox {
  readonly id = randomBytes(3).toString('hex');
  readonly instance = `t${this.id}`;
  readonly host = `tt${this.id}-host`;
  readonly uplink = `tt${this.id}-up`;
  readonly dir = mkdtempSync(join(tmpdir(), `tether-${this.id}-`));
  readonly manifests = join(this.dir, 'manifests');
  hasUplink = false;

  static create(opts: { uplink?: boolean } = {}): Sandbox {
    requireKernel();
    const s = new Sandbox();
    live.add(s);
    mkdirSync(s.manifests);
    must('ip', ['netns', 'add', s.host]);
    must('ip', ['-n', s.host, 'link', 'set', 'lo', 'up']);
    if (opts.uplink ?? true) s.addUplink();
    return s;
  }

  private addUplink() {
    must('ip', ['netns', 'add', this.uplink]);
    this.hasUplink = true;
    must('ip', ['-n', this.uplink, 'link', 'set', 'lo', 'up']);
    must('ip', [
      '-n',
      this.host,
      'link',
      'add',
      'uplink0',
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      this.uplink,
    ]);
    must(
      'ip',
      ['-n', this.host, '-batch', '-'],
      [
        `addr add ${HOST_V4}/24 dev uplink0`,
        `addr add ${HOST_V6}/64 dev uplink0 nodad`,
        'link set uplink0 up',
        `route add default via ${UPLINK_V4}`,
        `route add default via ${UPLINK_V6}`,
      ].join('\n'),
    );
    must(
      'ip',
      ['-n', this.uplink, '-batch', '-'],
      [
        `addr add ${UPLINK_V4}/24 dev eth0`,
        `addr add ${UPLINK_V6}/64 dev eth0 nodad`,
        'link set eth0 up',
      ].join('\n'),
    );
  }

  /** Write a manifest file into the sandbox's manifest directory. */
  write(name: string, yaml: string): string {
    const p = join(this.manifests, name);
    writeFileSync(p, yaml);
    return p;
  }

  remove(name: string): void {
    rmSync(join(this.manifests, name), { force: true });
  }

  /** Run bin/tether inside the sandbox host namespace, as this sandbox's instance. */
  tether(...args: string[]): RunResult {
    return sh('nsenter', [
      `--net=/run/netns/${this.host}`,
      'env',
      `TETHER_STATE_DIR=${join(this.dir, 'state')}`,
      `TETHER_RUN_DIR=${join(this.dir, 'run')}`,
      TETHER,
      '--instance',
      this.instance,
      ...args,
    ]);
  }

  /** Like tether(), but throws on a non-zero exit. */
  tetherOk(...args: string[]): string {
    const r = this.tether(...args);
    if (r.code !== 0) throw new Error(`tether ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
    return r.stdout;
  }

  /** The named namespace of a tether container. */
  ns(container: string): string {
    return `${this.instance}-${container}`;
  }

  /** Run a command in a named namespace (container, host or uplink). */
  inNs(ns: string, cmd: string[], input?: string): RunResult {
    return sh('ip', ['netns', 'exec', ns, ...cmd], input);
  }

  ipJson<T = any>(ns: string, ...args: string[]): T {
    return JSON.parse(must('ip', ['-n', ns, '-j', ...args]) || '[]') as T;
  }

  /** One ICMP echo with a short deadline: true when answered. */
  ping(fromNs: string, addr: string): boolean {
    return sh('ip', ['netns', 'exec', fromNs, 'ping', '-c', '1', '-W', '1', '-q', addr]).code === 0;
  }

  /** nft -j list table of this instance in the sandbox host, or null. */
  nftTable(): any[] | null {
    const r = sh('ip', ['netns', 'exec', this.host, 'nft', '-j', 'list', 'table', 'inet', this.instance]);
    if (r.code !== 0) return null;
    return (JSON.parse(r.stdout) as { nftables: any[] }).nftables;
  }

  /** Named namespaces that belong to this sandbox's tether instance. */
  instanceNetns(): string[] {
    return existsSync('/run/netns')
      ? readdirSync('/run/netns').filter((n) => n.startsWith(`${this.instance}-`))
      : [];
  }

  teardownSync(): void {
    if (!live.has(this)) return;
    live.delete(this);
    // tether's own clean-up first (exercises destroy), then anything left, by name.
    sh('nsenter', [
      `--net=/run/netns/${this.host}`,
      'env',
      `TETHER_STATE_DIR=${join(this.dir, 'state')}`,
      `TETHER_RUN_DIR=${join(this.dir, 'run')}`,
      TETHER,
      '--instance',
      this.instance,
      'destroy',
    ]);
    for (const n of this.instanceNetns()) sh('ip', ['netns', 'del', n]);
    // The resolver this instance started, if destroy could not stop it (by its recorded pid).
    const pidFile = join(this.dir, 'run', this.instance, 'dns.pid');
    if (existsSync(pidFile)) {
      const pid = Number(readFileSync(pidFile, 'utf8'));
      const cmd = existsSync(`/proc/${pid}/cmdline`) ? readFileSync(`/proc/${pid}/cmdline`, 'utf8') : '';
      if (pid && cmd.includes('dns-serve') && cmd.includes(this.instance)) process.kill(pid, 'SIGKILL');
    }
    if (existsSync('/etc/netns')) {
      for (const d of readdirSync('/etc/netns'))
        if (d.startsWith(`${this.instance}-`))
          rmSync(join('/etc/netns', d), { recursive: true, force: true });
    }
    if (this.hasUplink) sh('ip', ['netns', 'del', this.uplink]);
    sh('ip', ['netns', 'del', this.host]);
    rmSync(this.dir, { recursive: true, force: true });
  }

  async teardown(): Promise<void> {
    this.teardownSync();
  }
}

export { execFileSync };

/**
 * A one-shot TCP peer in namespace `ns`: resolves `ready` once listening, then `peer`
 * with the source address of the first connection it accepts (it answers it with that
 * address and exits). Bounded by `timeoutMs`.
 */
export function tcpPeer(
  ns: string,
  addr: string,
  port: number,
  timeoutMs = 5000,
): { ready: Promise<void>; peer: Promise<string> } {
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  const script = `const s=require('net').createServer(c=>{console.log('peer '+c.remoteAddress);c.end(c.remoteAddress+'\\n');s.close();});s.listen(${port},'${addr}',()=>console.log('ready'));setTimeout(()=>process.exit(3),${timeoutMs}).unref();`;
  const p = spawn('ip', ['netns', 'exec', ns, 'node', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let buf = '';
  let onReady: () => void;
  let onPeer: (a: string) => void;
  const ready = new Promise<void>((r) => (onReady = r));
  const peer = new Promise<string>((res, rej) => {
    onPeer = res;
    p.on('exit', (code) => rej(new Error(`tcp peer exited ${code} without a connection`)));
  });
  p.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    if (buf.includes('ready')) onReady();
    const m = /peer (\S+)/.exec(buf);
    if (m) onPeer(m[1]!.replace(/^::ffff:/, ''));
  });
  return { ready, peer };
}
