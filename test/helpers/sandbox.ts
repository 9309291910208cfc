/**
 * Sandboxes for kernel tests (SPEC §4). Each sandbox is a fresh "host" namespace where
 * tether runs (entered with `nsenter --net`, never `ip netns exec`: KERNEL-NOTES), an
 * optional "uplink" namespace that plays the internet, an optional LAN neighbour
 * (`addNeighbour`), and a private tether instance (its own namespaces, state directory,
 * lock and nft table). Servers started with `serve`/`sctpListen` are killed by pid at
 * teardown. Teardown runs even when a test fails, and also on process exit.
 *
 * Conventions: containers use tether's default pools (172.17/16, 172.18/16, …);
 * "outside" hosts use documentation ranges only: the uplink is 203.0.113.1/24 with the
 * sandbox host at 203.0.113.2, IPv6 2001:db8:1::1/64 and ::2; the LAN neighbour is
 * 198.51.100.2/24 and 2001:db8:2::2/64, the host .1 and ::1 there.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
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
/** The LAN neighbour (addNeighbour): the host is .1 / ::1 on `lan0`, the neighbour .2 / ::2. */
export const LAN_HOST_V4 = '198.51.100.1';
export const LAN_PEER_V4 = '198.51.100.2';
export const LAN_HOST_V6 = '2001:db8:2::1';
export const LAN_PEER_V6 = '2001:db8:2::2';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

function sh(cmd: string, args: string[], input?: string): RunResult {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8', timeout: 300_000, maxBuffer: 1 << 28 });
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

/**
 * A fresh directory on tmpfs for TETHER_RUN_DIR, as /run is on a systemd host (the bench
 * and the soak use it: the resolver's index and parts there are rewritten on every edit);
 * undefined when /dev/shm is not tmpfs.
 */
export function tmpfsRunDir(): string | undefined {
  try {
    if (statfsSync('/dev/shm').type === TMPFS_MAGIC) return mkdtempSync('/dev/shm/tether-run-');
  } catch {
    /* no /dev/shm */
  }
  return undefined;
}
const TMPFS_MAGIC = 0x01021994;

export class Sandbox {
  readonly id = randomBytes(3).toString('hex');
  readonly instance = `t${this.id}`;
  readonly host = `tt${this.id}-host`;
  readonly uplink = `tt${this.id}-up`;
  readonly neighbour = `tt${this.id}-lan`;
  readonly dir = mkdtempSync(join(tmpdir(), `tether-${this.id}-`));
  readonly manifests = join(this.dir, 'manifests');
  hasUplink = false;
  hasNeighbour = false;
  /** Processes started in the sandbox's namespaces (servers), killed at teardown by pid. */
  readonly procs = new Set<ChildProcess>();

  /** TETHER_RUN_DIR of this sandbox's tether (its own directory unless `create` was given one). */
  runDir = join(this.dir, 'run');

  /**
   * `runDir`: a directory of the sandbox's own to use as TETHER_RUN_DIR instead of one
   * under `dir` (the bench puts it on tmpfs, as /run is on a systemd host); removed at
   * teardown.
   */
  static create(opts: { uplink?: boolean; runDir?: string } = {}): Sandbox {
    requireKernel();
    const s = new Sandbox();
    live.add(s);
    mkdirSync(s.manifests);
    if (opts.runDir) {
      mkdirSync(opts.runDir, { recursive: true });
      s.runDir = opts.runDir;
    }
    must('ip', ['netns', 'add', s.host]);
    must('ip', ['-n', s.host, 'link', 'set', 'lo', 'up']);
    if (opts.uplink ?? true) s.addUplink();
    return s;
  }

  /**
   * A namespace `peer` joined to the sandbox host by a veth (`hostIf` on the host, `eth0`
   * in the peer), with the given addresses (v4/24 and v6/64) on each side.
   */
  private joinPeer(
    peer: string,
    hostIf: string,
    host: [string, string],
    far: [string, string],
    hostRoutes: string[] = [],
  ) {
    must('ip', ['netns', 'add', peer]);
    must('ip', ['-n', peer, 'link', 'set', 'lo', 'up']);
    must('ip', [
      '-n',
      this.host,
      'link',
      'add',
      hostIf,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      peer,
    ]);
    const side = (dev: string, [v4, v6]: [string, string], extra: string[]) =>
      [
        `addr add ${v4}/24 dev ${dev}`,
        `addr add ${v6}/64 dev ${dev} nodad`,
        `link set ${dev} up`,
        ...extra,
      ].join('\n');
    must('ip', ['-n', this.host, '-batch', '-'], side(hostIf, host, hostRoutes));
    must('ip', ['-n', peer, '-batch', '-'], side('eth0', far, []));
  }

  private addUplink() {
    this.hasUplink = true; // first: teardown removes it even if the set-up fails half-way
    this.joinPeer(
      this.uplink,
      'uplink0',
      [HOST_V4, HOST_V6],
      [UPLINK_V4, UPLINK_V6],
      [`route add default via ${UPLINK_V4}`, `route add default via ${UPLINK_V6}`],
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

  /**
   * The command line that runs bin/tether inside the sandbox host namespace, as this
   * sandbox's instance with its own state and run directories (for spawning it yourself).
   */
  tetherArgv(args: readonly string[], env: Readonly<Record<string, string>> = {}): [string, ...string[]] {
    return [
      'nsenter',
      `--net=/run/netns/${this.host}`,
      'env',
      `TETHER_STATE_DIR=${join(this.dir, 'state')}`,
      `TETHER_RUN_DIR=${this.runDir}`,
      ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
      TETHER,
      '--instance',
      this.instance,
      ...args,
    ];
  }

  /** Run bin/tether inside the sandbox host namespace, as this sandbox's instance. */
  tether(...args: string[]): RunResult {
    const [cmd, ...rest] = this.tetherArgv(args);
    return sh(cmd, rest);
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

  /**
   * A LAN neighbour: namespace `neighbour` joined to the host by a veth (`lan0` on the host,
   * 198.51.100.1/24 and 2001:db8:2::1/64; the neighbour 198.51.100.2 and 2001:db8:2::2).
   * It has no default route: a test that wants it to reach container subnets (or forge
   * loopback destinations) adds routes via the host itself (`routeVia`, `routeLoopbackViaHost`).
   */
  addNeighbour(): void {
    if (this.hasNeighbour) return;
    this.hasNeighbour = true;
    this.joinPeer(this.neighbour, 'lan0', [LAN_HOST_V4, LAN_HOST_V6], [LAN_PEER_V4, LAN_PEER_V6]);
  }

  /** `ip -n NS ARGS...` in one of this sandbox's namespaces; throws on failure. */
  ip(ns: string, ...args: string[]): string {
    return must('ip', ['-n', ns, ...args]);
  }

  /** Route `cidr` in namespace `ns` (the uplink or the neighbour) via the sandbox host. */
  routeVia(ns: string, cidr: string): void {
    const v6 = cidr.includes(':');
    const via = ns === this.neighbour ? (v6 ? LAN_HOST_V6 : LAN_HOST_V4) : v6 ? HOST_V6 : HOST_V4;
    must('ip', ['-n', ns, 'route', 'replace', cidr, 'via', via]);
  }

  /**
   * Make the neighbour send packets for 127.0.0.1 to the host's MAC, as an attacker on the
   * LAN would (moby#45610). `ip route add 127.0.0.1/32 via …` alone does nothing: the local
   * table (rule 0) answers 127.0.0.1 first, and the output path refuses a loopback
   * destination on a non-loopback device. So: route_localnet=1 on the neighbour's eth0,
   * the local-table rule moved from priority 0 to 100, and a rule at priority 10 sending
   * "to 127.0.0.1" to table 100, whose only route is via the host.
   */
  routeLoopbackViaHost(): void {
    must('ip', ['netns', 'exec', this.neighbour, 'sysctl', '-qw', 'net.ipv4.conf.eth0.route_localnet=1']);
    must(
      'ip',
      ['-n', this.neighbour, '-batch', '-'],
      [
        `route add 127.0.0.1/32 via ${LAN_HOST_V4} dev eth0 table 100`,
        'rule add pref 10 to 127.0.0.1/32 lookup 100',
        'rule add pref 100 lookup local',
        'rule del pref 0',
      ].join('\n'),
    );
  }

  /**
   * A long-lived echo server in namespace `ns`, killed at teardown: every TCP connection
   * and UDP datagram to the given ports (any address, IPv4 and IPv6) is answered with
   * "<label> <client address> <local port>". Resolves once every port listens.
   */
  serve(ns: string, label: string, ports: { tcp?: number[]; udp?: number[] }): Promise<void> {
    const arg = JSON.stringify({ label, tcp: ports.tcp ?? [], udp: ports.udp ?? [] });
    return this.started(ns, ['node', '-e', SERVER_JS, arg]);
  }

  /**
   * Runs the probes concurrently from namespace `ns` (one process), each bounded by
   * `timeoutMs`: TCP connect + read the server's line, a UDP datagram + its answer, or
   * one ping. `ok` means an answer came back.
   */
  async probe(ns: string, probes: readonly Probe[], timeoutMs = 1000): Promise<ProbeResult[]> {
    if (!probes.length) return [];
    const out = await run('ip', [
      'netns',
      'exec',
      ns,
      'node',
      '-e',
      PROBE_JS,
      JSON.stringify({ probes, timeoutMs }),
    ]);
    if (out.code !== 0) throw new Error(`probe from ${ns} failed (${out.code}): ${out.stderr}`);
    return JSON.parse(out.stdout) as ProbeResult[];
  }

  /**
   * Raw SCTP: this kernel may have no SCTP sockets (socket(…, IPPROTO_SCTP) gives
   * EPROTONOSUPPORT), but conntrack and NAT handle SCTP without them. A raw IP socket for
   * protocol 132 in `ns` records every SCTP packet that arrives (source, destination port).
   * Needs python3 (Debian's base system has it).
   */
  async sctpListen(ns: string): Promise<SctpListener> {
    if (sh('which', ['python3']).code !== 0)
      throw new Error('the SCTP test needs python3 for raw sockets (apt-get install python3)');
    const seen: SctpSeen[] = [];
    const waiters: { pred: (p: SctpSeen) => boolean; done: (p: SctpSeen) => void }[] = [];
    await this.started(ns, ['python3', '-c', SCTP_LISTEN_PY], (line) => {
      if (!line.startsWith('{')) return;
      const pkt = JSON.parse(line) as SctpSeen;
      seen.push(pkt);
      for (const w of [...waiters]) {
        if (!w.pred(pkt)) continue;
        waiters.splice(waiters.indexOf(w), 1);
        w.done(pkt);
      }
    });
    return {
      seen: () => [...seen],
      next: (pred, timeoutMs = 2000) =>
        new Promise<SctpSeen | undefined>((resolve) => {
          const hit = seen.find(pred);
          if (hit) return resolve(hit);
          const w = {
            pred,
            done: (p: SctpSeen) => {
              clearTimeout(t);
              resolve(p);
            },
          };
          const t = setTimeout(() => {
            waiters.splice(waiters.indexOf(w), 1);
            resolve(undefined);
          }, timeoutMs);
          waiters.push(w);
        }),
    };
  }

  /**
   * Resolves once no IPv6 address in these namespaces is tentative (duplicate address
   * detection done), woken by `ip monitor address` events. Until the bridges' link-local
   * addresses finish DAD (about a second after apply), the host cannot resolve container
   * neighbours for forwarded IPv6 traffic.
   */
  settleIpv6(namespaces: readonly string[], timeoutMs = 5000): Promise<void> {
    const tentative = (ns: string) =>
      sh('ip', ['-n', ns, '-6', 'addr', 'show', 'tentative']).stdout.trim() !== '';
    return Promise.all(
      namespaces.map(
        (ns) =>
          new Promise<void>((resolve, reject) => {
            const mon = spawn('ip', ['-n', ns, 'monitor', 'address'], {
              stdio: ['ignore', 'pipe', 'ignore'],
            });
            const finish = (err?: Error) => {
              clearTimeout(t);
              mon.kill('SIGKILL');
              err ? reject(err) : resolve();
            };
            const t = setTimeout(
              () => finish(new Error(`IPv6 addresses in ${ns} still tentative after ${timeoutMs} ms`)),
              timeoutMs,
            );
            mon.stdout.on('data', () => !tentative(ns) && finish());
            mon.on('spawn', () => !tentative(ns) && finish());
          }),
      ),
    ).then(() => undefined);
  }

  /** Sends one SCTP INIT (valid CRC32c, vtag 0) from `ns` to addr:port through a raw socket. */
  sctpSend(ns: string, addr: string, port: number, sport = 40000): void {
    const r = sh('ip', [
      'netns',
      'exec',
      ns,
      'python3',
      '-c',
      SCTP_SEND_PY,
      addr,
      String(port),
      String(sport),
    ]);
    if (r.code !== 0) throw new Error(`raw SCTP send from ${ns} failed: ${r.stderr}`);
  }

  /** Starts a tracked process in `ns`; resolves when it prints "ready", rejects if it exits first. */
  private started(ns: string, cmd: string[], onLine?: (line: string) => void): Promise<void> {
    const p = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.add(p);
    let err = '';
    let buf = '';
    p.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    return new Promise<void>((resolve, reject) => {
      p.stdout!.on('data', (b: Buffer) => {
        buf += b.toString();
        let i = buf.indexOf('\n');
        while (i >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (line === 'ready') resolve();
          else onLine?.(line);
          i = buf.indexOf('\n');
        }
      });
      p.on('exit', (code) => {
        this.procs.delete(p);
        reject(new Error(`${cmd[0]} in ${ns} exited ${code} before it was ready: ${err}`));
      });
    });
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
    // Servers and listeners the tests started here first (by pid; each is its own `ip netns
    // exec` child): a process still inside a container namespace keeps it, and its veth, alive.
    for (const p of this.procs) if (p.exitCode === null && p.pid) process.kill(p.pid, 'SIGKILL');
    this.procs.clear();
    // tether's own clean-up first (exercises destroy), then anything left, by name.
    const [cmd, ...rest] = this.tetherArgv(['destroy']);
    sh(cmd, rest);
    for (const n of this.instanceNetns()) sh('ip', ['netns', 'del', n]);
    // The resolver this instance started, if destroy could not stop it (by its recorded pid).
    const pidFile = join(this.runDir, this.instance, 'dns.pid');
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
    if (this.hasNeighbour) sh('ip', ['netns', 'del', this.neighbour]);
    sh('ip', ['netns', 'del', this.host]);
    rmSync(this.runDir, { recursive: true, force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }

  async teardown(): Promise<void> {
    this.teardownSync();
  }
}

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

export interface Probe {
  readonly proto: 'tcp' | 'udp' | 'icmp';
  readonly addr: string;
  readonly port?: number;
  /** Source address to bind (TCP/UDP). */
  readonly from?: string;
}

export interface ProbeResult extends Probe {
  /** An answer came back (the server's line, or an echo reply). */
  readonly ok: boolean;
  /** The server's line: "<label> <client address> <local port>". */
  readonly reply: string;
  /** Why not: "timeout", "ECONNREFUSED", … */
  readonly error?: string;
}

export interface SctpListener {
  /** Every SCTP packet seen so far. */
  seen(): SctpSeen[];
  /** The first packet (already seen or arriving) that satisfies `pred`; undefined after the timeout. */
  next(pred: (p: SctpSeen) => boolean, timeoutMs?: number): Promise<SctpSeen | undefined>;
}

export interface SctpSeen {
  readonly family: 4 | 6;
  readonly src: string;
  readonly dst?: string;
  readonly sport: number;
  readonly dport: number;
}

/** spawn, collect, resolve on exit (never rejects). */
function run(cmd: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    p.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    p.on('error', (e) => resolve({ code: 1, stdout, stderr: String(e) }));
    p.on('exit', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

const SERVER_JS = `
const net = require('net'), dgram = require('dgram');
const { label, tcp, udp } = JSON.parse(process.argv[1]);
const clean = (a) => a.replace(/^::ffff:/, '');
let pending = tcp.length + udp.length;
const up = () => { if (--pending === 0) console.log('ready'); };
for (const port of tcp) {
  net.createServer((c) => { c.on('error', () => {}); c.end(label + ' ' + clean(c.remoteAddress) + ' ' + port + '\\n'); })
    .listen({ port, host: '::' }, up);
}
for (const port of udp) {
  const s = dgram.createSocket({ type: 'udp6' });
  s.on('message', (m, r) => s.send(label + ' ' + clean(r.address) + ' ' + port + '\\n', r.port, r.address));
  s.bind(port, '::', up);
}
if (pending === 0) console.log('ready');
`;

const PROBE_JS = `
const net = require('net'), dgram = require('dgram'), { spawn } = require('child_process');
const { probes, timeoutMs } = JSON.parse(process.argv[1]);
function tcp(p) {
  return new Promise((done) => {
    let reply = '';
    const s = net.connect({ host: p.addr, port: p.port, localAddress: p.from });
    const t = setTimeout(() => { s.destroy(); done({ ok: false, reply, error: 'timeout' }); }, timeoutMs);
    s.on('data', (b) => (reply += b));
    s.on('error', (e) => { clearTimeout(t); done({ ok: false, reply, error: e.code || String(e) }); });
    s.on('end', () => { clearTimeout(t); s.destroy(); done({ ok: reply !== '', reply: reply.trim(), error: reply ? undefined : 'empty' }); });
  });
}
function udp(p) {
  return new Promise((done) => {
    const s = dgram.createSocket(p.addr.includes(':') ? 'udp6' : 'udp4');
    const t = setTimeout(() => { s.close(); done({ ok: false, reply: '', error: 'timeout' }); }, timeoutMs);
    s.on('message', (m) => { clearTimeout(t); s.close(); done({ ok: true, reply: String(m).trim() }); });
    s.on('error', (e) => { clearTimeout(t); s.close(); done({ ok: false, reply: '', error: e.code || String(e) }); });
    s.bind({ address: p.from }, () => s.connect(p.port, p.addr, () => s.send('probe')));
  });
}
function icmp(p) {
  return new Promise((done) => {
    const c = spawn('ping', ['-c', '1', '-q', '-W', String(Math.max(1, Math.ceil(timeoutMs / 1000))), p.addr], { stdio: 'ignore' });
    c.on('exit', (code) => done({ ok: code === 0, reply: '', error: code === 0 ? undefined : 'no reply' }));
  });
}
Promise.all(probes.map((p) => ({ tcp, udp, icmp })[p.proto](p).then((r) => ({ ...p, ...r }))))
  .then((r) => process.stdout.write(JSON.stringify(r)));
`;

const SCTP_LISTEN_PY = `
import json, select, socket, struct, sys
s4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, 132)
s6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, 132)
print('ready', flush=True)
while True:
    for s in select.select([s4, s6], [], [])[0]:
        data, addr = s.recvfrom(65535)
        if s is s4:
            hl = (data[0] & 15) * 4
            src, dst, sctp = socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20]), data[hl:]
            fam = 4
        else:
            src, dst, sctp, fam = addr[0], None, data, 6
        sport, dport = struct.unpack('!HH', sctp[:4])
        print(json.dumps({'family': fam, 'src': src, 'dst': dst, 'sport': sport, 'dport': dport}), flush=True)
`;

const SCTP_SEND_PY = `
import os, socket, struct, sys
addr, port, sport = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
table = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = table[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF
tag = struct.unpack('!I', os.urandom(4))[0] | 1
init = struct.pack('!BBHIIHHI', 1, 0, 20, tag, 65535, 1, 1, tag)
pkt = struct.pack('!HHII', sport, port, 0, 0) + init
pkt = pkt[:8] + struct.pack('<I', crc32c(pkt)) + pkt[12:]
fam = socket.AF_INET6 if ':' in addr else socket.AF_INET
socket.socket(fam, socket.SOCK_RAW, 132).sendto(pkt, (addr, 0))
`;
