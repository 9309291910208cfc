/**
 * `tether run` and `tether sync` as real daemon processes inside sandbox namespaces:
 * started with `nsenter --net`, awaited on their log lines (JSON on stderr, an event,
 * never a sleep), asked over their status socket, stopped by pid. The kernel is checked
 * with `ip -j`, `nft -j` and ping inside the sandbox only.
 *
 * Conventions: container subnets from tether's pools (172.18/16 …); no uplink.
 */
import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SystemdNotifier } from '../../src/daemon/systemd.js';
import { ROOT, Sandbox, TETHER } from '../helpers/sandbox.js';

interface LogEvent {
  time: string;
  level: string;
  code: string;
  msg: string;
  [k: string]: any;
}

/** A daemon process in the sandbox host namespace; its stderr parsed as JSON lines. */
class Daemon {
  readonly proc: ChildProcess;
  readonly events: LogEvent[] = [];
  readonly exited: Promise<{ code: number | null; signal: string | null }>;
  private waiters: { pred: (e: LogEvent) => boolean; resolve: (e: LogEvent) => void }[] = [];
  private stderr = '';

  constructor(
    readonly s: Sandbox,
    args: string[],
    env: Record<string, string> = {},
    /** A command the daemon runs under (say `prlimit --nofile=N --`). */
    wrap: string[] = [],
  ) {
    const [cmd, ...argv] = [...wrap, ...s.tetherArgv(args, env)] as [string, ...string[]];
    this.proc = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'] });
    let buf = '';
    this.proc.stderr!.on('data', (b: Buffer) => {
      buf += b.toString();
      this.stderr += b.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.startsWith('{')) continue;
        const e = JSON.parse(line) as LogEvent;
        this.events.push(e);
        const done = this.waiters.filter((w) => w.pred(e));
        this.waiters = this.waiters.filter((w) => !done.includes(w));
        for (const w of done) w.resolve(e);
      }
    });
    this.exited = new Promise((res) => this.proc.on('exit', (code, signal) => res({ code, signal })));
  }

  /** The first event (from index `from` on) that matches; fails at the deadline or if the daemon exits. */
  waitFor(pred: (e: LogEvent) => boolean, what: string, from = 0, timeoutMs = 15_000): Promise<LogEvent> {
    const seen = this.events.slice(from).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no ${what} within ${timeoutMs} ms; log:\n${this.stderr}`)),
        timeoutMs,
      );
      const w = {
        pred,
        resolve: (e: LogEvent) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      this.waiters.push(w);
      void this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`daemon exited (${code ?? signal}) before ${what}; log:\n${this.stderr}`));
      });
    });
  }

  ready(): Promise<LogEvent> {
    return this.waitFor((e) => e.code === 'TETHER_I0502', 'ready');
  }

  /** The next reconcile (after index `from`) matching `pred`. */
  reconciled(
    from: number,
    pred: (e: LogEvent) => boolean = () => true,
    what = 'reconcile',
  ): Promise<LogEvent> {
    return this.waitFor((e) => e.code === 'TETHER_I0501' && pred(e), what, from);
  }

  /**
   * Resolves once the daemon is idle: every apply that wrote to the kernel is followed by
   * one run triggered by the notifications of its own writes (which changes nothing), so
   * the last reconcile logged has 0 writes.
   */
  async settled(): Promise<void> {
    const runs = this.events.filter((e) => e.code === 'TETHER_I0501');
    const lastWrite = this.events.lastIndexOf(runs.filter((e) => e.writes > 0).at(-1)!);
    if (lastWrite >= 0) await this.reconciled(lastWrite + 1, (e) => e.writes === 0, 'the follow-up run');
  }

  mark(): number {
    return this.events.length;
  }

  signal(sig: NodeJS.Signals): void {
    this.proc.kill(sig);
  }

  /** Ends the process by its pid if it still runs. */
  async kill(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }

  /** One JSON status document from the daemon's socket. */
  status(): Promise<any> {
    const path = join(this.s.runDir, this.s.instance, 'daemon.sock');
    return new Promise((resolve, reject) => {
      const c = createConnection(path);
      let text = '';
      c.setEncoding('utf8');
      c.on('data', (d: string) => (text += d));
      c.on('end', () => resolve(JSON.parse(text)));
      c.on('error', reject);
    });
  }
}

/** Pids whose parent is `pid`. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // pid (comm) state ppid ...: comm may hold spaces, so split after its closing paren.
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(name));
    } catch {
      /* gone meanwhile */
    }
  }
  return out;
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
  } catch {
    return '';
  }
}

/** Polls `cond` (what it waits for reports no event: another process's end). */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

function hostLinks(s: Sandbox): any[] {
  return s.ipJson(s.host, '-d', 'link', 'show');
}

function bridgeOf(s: Sandbox, network: string): string {
  const b = hostLinks(s).find((l) => l.ifalias === `tether:${s.instance}:net:${network}`);
  if (!b) throw new Error(`no bridge for network ${network}`);
  return b.ifname;
}

function containerAddr(s: Sandbox, c: string): string | undefined {
  const l = s.ipJson(s.ns(c), 'addr', 'show', 'dev', 'eth0')[0];
  return l?.addr_info?.find((a: any) => a.family === 'inet')?.local;
}

const NET = 'networks:\n  web: {}\n';
const C1 = 'containers:\n  c1: { networks: [web] }\n';

describe('tether run', () => {
  let s: Sandbox | undefined;
  const daemons: Daemon[] = [];
  const start = (args: string[], env?: Record<string, string>, wrap?: string[]) => {
    const d = new Daemon(s!, args, env, wrap);
    daemons.push(d);
    return d;
  };
  const procs: LineProcess[] = [];
  const stops: (() => void)[] = [];
  afterEach(async () => {
    for (const p of procs.splice(0)) p.stop();
    for (const stop of stops.splice(0)) stop();
    for (const d of daemons.splice(0)) await d.kill();
    await s?.teardown();
    s = undefined;
  });

  it('converges, then follows a new manifest file; status comes from the daemon', async () => {
    s = Sandbox.create({ uplink: false });
    const a = `${NET}${C1}`;
    s.write('a.yaml', a);
    const d = start(['run', '-f', s.manifests]);
    await d.ready();
    expect(containerAddr(s, 'c1')).toBe('172.18.0.2');
    let st = await d.status();
    expect(st).toMatchObject({
      instance: s.instance,
      daemon: { pid: d.proc.pid, mode: 'run', ready: true },
      converged: true,
      generation: 1,
      errors: [],
    });
    expect(st.source.files).toEqual([{ path: join(s.manifests, 'a.yaml'), sha256: sha256(a) }]);

    // Save a second file: the new container's namespace appears.
    const m = d.mark();
    const t0 = performance.now();
    s.write('b.yaml', 'containers:\n  c2: { networks: [web] }\n');
    const r = await d.reconciled(m, (e) => e.generation === 2 && e.converged, 'generation 2');
    const saveToConverged = Math.round(performance.now() - t0);
    console.log(`save → converged: ${saveToConverged} ms (reconcile ${r.durationMs} ms, ${r.writes} writes)`);
    // (A write can reach the watcher as "added" and then "changed": one trigger either way.)
    expect(r.trigger).toHaveLength(1);
    expect(r.trigger[0]).toMatch(/^file: b\.yaml added/);
    expect(s.instanceNetns().sort()).toEqual([s.ns('c1'), s.ns('c2')]);
    expect(containerAddr(s, 'c2')).toBe('172.18.0.3');
    // Only c2's objects: netns, veth, address, route, its two files, the resolver reload.
    expect(r.changes.filter((c: string) => c.includes('c2') || c.includes('resolver process'))).toEqual(
      r.changes,
    );

    // `tether status` (the CLI) asks the daemon; `container ls` was recorded by the daemon.
    st = JSON.parse(s.tetherOk('status', '--json'));
    expect(st).toMatchObject({ daemon: { pid: d.proc.pid }, converged: true, generation: 2 });
    expect(st.lastReconcile).toMatchObject({ result: 'converged', generation: 2 });
    expect(s.tetherOk('status')).toMatch(/daemon: +running \(pid \d+, tether run/);
    expect(s.tetherOk('container', 'ls')).toMatch(/c2 +web +172\.18\.0\.3/);
  });

  it('repairs a bridge, a veth and an nft element deleted by hand', async () => {
    s = Sandbox.create({ uplink: false });
    s.write('a.yaml', `${NET}${C1}`);
    const d = start(['run', '-f', s.manifests]);
    await d.ready();
    await d.settled();
    const br = bridgeOf(s, 'web');

    let m = d.mark();
    let t0 = performance.now();
    execFileSync('ip', ['-n', s.host, 'link', 'del', br]);
    const r = await d.reconciled(m, (e) => e.actions > 0, 'bridge repair');
    const bridgeRepair = Math.round(performance.now() - t0);
    console.log(`bridge deleted → restored: ${bridgeRepair} ms (reconcile ${r.durationMs} ms)`);
    // Repaired on the kernel's notifications (the ports losing their master, the address
    // going, the bridge deleted: whichever arrived first), not by the 30 s resync.
    expect(r.trigger.join()).toMatch(new RegExp(`^kernel: .*${br}`));
    expect(r.converged).toBe(true);
    const links = hostLinks(s);
    const veth = links.find((l) => l.ifalias === `tether:${s!.instance}:ep:c1:web`);
    expect(links.some((l) => l.ifname === br)).toBe(true);
    expect(veth.master).toBe(br);
    expect(s.ping(s.ns('c1'), '172.18.0.1')).toBe(true);

    // The veth's host end: the pair goes, the container loses eth0; both come back.
    m = d.mark();
    t0 = performance.now();
    await d.settled();
    execFileSync('ip', ['-n', s.host, 'link', 'del', veth.ifname]);
    await d.reconciled(m, (e) => e.actions > 0 && e.converged, 'veth repair');
    console.log(`veth deleted → restored: ${Math.round(performance.now() - t0)} ms`);
    expect(containerAddr(s, 'c1')).toBe('172.18.0.2');

    let st = await d.status();
    expect(st.driftRepaired.reconciles).toBe(2);
    expect(st.generation).toBe(1);

    // An nft element: the nftables listener hears another process change tether's table.
    const elems = () =>
      (s!.nftTable() ?? []).filter((o) => o.set?.name === 'bridges').flatMap((o) => o.set.elem ?? []);
    expect(elems()).toContain(br);
    await d.settled();
    m = d.mark();
    t0 = performance.now();
    execFileSync('ip', [
      'netns',
      'exec',
      s.host,
      'nft',
      'delete',
      'element',
      'inet',
      s.instance,
      'bridges',
      `{ ${br} }`,
    ]);
    await d.reconciled(m, (e) => e.actions > 0, 'nft repair');
    console.log(`nft element deleted → restored: ${Math.round(performance.now() - t0)} ms`);
    expect(elems()).toContain(br);
    // The nftables listener reported it (the repair itself may have run first, on a late
    // notification of the veth repair: the change had marked the sets stale either way; and
    // the report may share its trigger with late notifications from inside the container).
    const heard = new RegExp(`nftables table ${s.instance} changed by nft`);
    await d.reconciled(m, (e) => heard.test(e.trigger.join()), 'the nft trigger');
    st = await d.status();
    expect(st.driftRepaired.reconciles).toBe(3);
  });

  it('repairs drift inside containers and a deleted namespace on notifications; a no-op reads nothing afresh', async () => {
    s = Sandbox.create({ uplink: false });
    const text = `${NET}${C1}  c2: { networks: [web] }\n`;
    s.write('a.yaml', text);
    const d = start(['run', '-f', s.manifests]);
    await d.ready();
    await d.settled();

    // A save that changes nothing: no dump of the host, no namespace read again, no nft
    // list; and once nothing at all has changed since the last plan (the kernel may still
    // be finishing IPv6 autoconfiguration of the new links), the plan is reused.
    const before = (await d.status()).observer;
    let m = d.mark();
    let after = before;
    for (let k = 0; k < 3 && after.plansReused === before.plansReused; k++) {
      m = d.mark();
      s.write('a.yaml', text);
      const noop = await d.reconciled(m, (e) => e.trigger[0]?.startsWith('file'), 'no-op');
      expect(noop).toMatchObject({ actions: 0, writes: 0, converged: true });
      after = (await d.status()).observer;
    }
    expect(after).toMatchObject({
      fullHost: before.fullHost,
      fullNft: before.fullNft,
      nsReads: before.nsReads,
    });
    expect(after.plansReused).toBeGreaterThan(before.plansReused);

    // An address removed inside c1: c1's listener reports it; only c1 is read again.
    m = d.mark();
    execFileSync('ip', ['-n', s.ns('c1'), 'addr', 'del', '172.18.0.2/16', 'dev', 'eth0']);
    const r1 = await d.reconciled(m, (e) => e.actions > 0, 'address repair');
    expect(r1.trigger.join()).toMatch(new RegExp(`^kernel: ${s.ns('c1')}: address 172.18.0.2/16 removed`));
    expect(r1.converged).toBe(true);
    expect(containerAddr(s, 'c1')).toBe('172.18.0.2');
    expect((await d.status()).observer.fullHost).toBe(before.fullHost);

    // c2's default route.
    await d.settled();
    m = d.mark();
    execFileSync('ip', ['-n', s.ns('c2'), 'route', 'del', 'default']);
    await d.reconciled(m, (e) => e.actions > 0 && e.converged, 'route repair');
    expect(s.ipJson(s.ns('c2'), 'route', 'show', 'default')).toHaveLength(1);

    // c2's whole namespace, deleted by hand: made again, with the same address.
    await d.settled();
    m = d.mark();
    execFileSync('ip', ['netns', 'del', s.ns('c2')]);
    const r3 = await d.reconciled(m, (e) => e.actions > 0 && e.converged, 'namespace repair');
    expect(r3.trigger.join()).toMatch(new RegExp(`namespace ${s.ns('c2')} removed`));
    expect(containerAddr(s, 'c2')).toBe('172.18.0.3');
    expect(s.ping(s.ns('c2'), '172.18.0.2')).toBe(true);
  });

  it('after a container comes and goes, an unchanged kernel is neither observed nor planned again', async () => {
    const sb = Sandbox.create({ uplink: false });
    s = sb;
    const text = `${NET}${C1}`;
    s.write('a.yaml', text);
    const d = start(['run', '-f', s.manifests]);
    await d.ready();
    // Saves a.yaml unchanged until a reconcile reuses the last plan (the kernel may still
    // be finishing IPv6 autoconfiguration of new links): no namespace is read again.
    const noopReused = async () => {
      await d.settled();
      const before = (await d.status()).observer;
      let after = before;
      for (let k = 0; k < 3 && after.plansReused === before.plansReused; k++) {
        const m = d.mark();
        sb.write('a.yaml', text);
        const r = await d.reconciled(m, (e) => e.trigger[0]?.startsWith('file'), 'no-op');
        expect(r).toMatchObject({ actions: 0, writes: 0, converged: true });
        after = (await d.status()).observer;
      }
      expect(after.plansReused).toBeGreaterThan(before.plansReused);
      expect(after.nsReads).toBe(before.nsReads);
    };
    await noopReused();
    let m = d.mark();
    s.write('b.yaml', 'containers:\n  c2: { networks: [web] }\n');
    await d.reconciled(m, (e) => e.actions > 0 && e.converged, 'c2 added');
    await noopReused();
    // Its namespace goes with it: nothing of it is left waiting to be read again.
    m = d.mark();
    rmSync(join(s.manifests, 'b.yaml'));
    await d.reconciled(m, (e) => e.actions > 0 && e.converged, 'c2 removed');
    expect(s.instanceNetns()).toEqual([s.ns('c1')]);
    await noopReused();
    expect((await d.status()).observer.observationsReused).toBeGreaterThan(0);
  });

  it('a full resync finds the kernel as the daemon remembered it, after changes and repairs', async () => {
    s = Sandbox.create({ uplink: false });
    s.write('a.yaml', `${NET}${C1}  c2: { networks: [web] }\n`);
    const d = start(['run', '-f', s.manifests, '--resync', '1s']);
    await d.ready();
    await d.settled();
    // Changes the daemon hears of and repairs, one made through it (a new container).
    let m = d.mark();
    execFileSync('ip', ['-n', s.ns('c1'), 'addr', 'del', '172.18.0.2/16', 'dev', 'eth0']);
    await d.reconciled(m, (e) => e.actions > 0 && e.converged, 'address repair');
    m = d.mark();
    s.write('b.yaml', 'containers:\n  c3: { networks: [web] }\n');
    await d.reconciled(m, (e) => e.generation === 2 && e.converged, 'generation 2');
    // Two full reads later, memory and kernel have agreed each time.
    m = d.mark();
    await d.reconciled(m, (e) => e.trigger.includes('resync'), 'a resync');
    await d.reconciled(d.mark(), (e) => e.trigger.includes('resync'), 'another resync');
    const st = await d.status();
    expect(st.observer.fullHost).toBeGreaterThanOrEqual(3);
    expect(st.observer.mismatches).toBe(0);
    expect(d.events.filter((e) => e.code === 'TETHER_W0516')).toEqual([]);
  });

  it('past its open-file limit, reads the namespaces it cannot listen in afresh, and stays correct', async () => {
    s = Sandbox.create({ uplink: false });
    const text = `${NET}${C1}  c2: { networks: [web] }\n  c3: { networks: [web] }\n`;
    s.write('a.yaml', text);
    // 512 descriptors are kept for everything else: room for one namespace listener.
    const d = start(['run', '-f', s.manifests], {}, ['prlimit', '--nofile=513', '--']);
    await d.ready();
    await d.settled();
    const before = (await d.status()).observer;
    expect(before.unwatched).toBe(2);
    const m = d.mark();
    s.write('a.yaml', text);
    await d.reconciled(m, (e) => e.trigger[0]?.startsWith('file'), 'no-op');
    const after = (await d.status()).observer;
    expect(after.nsReads - before.nsReads).toBe(2);
    // Drift in an unlistened namespace is still repaired, at the next reconcile.
    const unheard = ['c1', 'c2', 'c3'].map((c) => s!.ns(c));
    for (const n of unheard) execFileSync('ip', ['-n', n, 'link', 'set', 'eth0', 'down']);
    const m2 = d.mark();
    s.write('a.yaml', text);
    const r = await d.reconciled(m2, (e) => e.actions > 0 && e.converged, 'repair');
    expect(r.trigger.join()).not.toMatch(/sighup|resync/);
    expect(r.actions).toBe(6); // per container: eth0 up, its default route (gone with the link) back
    for (const c of ['c1', 'c2', 'c3'])
      expect(s.ipJson(s.ns(c), 'link', 'show', 'eth0')[0].flags).toContain('UP');
  });

  it('keeps the last good state on broken YAML or a mass deletion, and reports it', async () => {
    s = Sandbox.create({ uplink: false });
    const good = `${NET}${C1}  c2: { networks: [web] }\n`;
    s.write('a.yaml', good);
    const d = start(['run', '-f', s.manifests]);
    await d.ready();
    await d.settled();
    const before = JSON.stringify([hostLinks(s).map((l) => l.ifname), s.instanceNetns(), s.nftTable()]);

    let m = d.mark();
    s.write('a.yaml', `${NET}containers:\n  c1: { networks: [web\n`);
    const w = await d.waitFor((e) => e.code === 'TETHER_W0510', 'load failure', m);
    expect(w.msg).toMatch(/generation 1 stays in force/);
    // The run after the failed load still reconciles generation 1.
    await d.reconciled(d.events.indexOf(w));
    let st = await d.status();
    expect(st).toMatchObject({ converged: true, generation: 1 });
    expect(st.errors).toHaveLength(1);
    expect(st.errors[0].kind).toBe('load');
    expect(st.errors[0].problems.join('\n')).toMatch(/a\.yaml:\d+:\d+: YAML/);
    expect(s.tetherOk('status')).toMatch(/error: +\[load\]/);

    // Emptied by mistake: the guard refuses deleting the bridge and both namespaces.
    m = d.mark();
    s.write('a.yaml', '# emptied by mistake\n');
    const refusal = await d.waitFor((e) => e.code === 'TETHER_W0511', 'refusal', m);
    // 2 namespaces + their 2 veths + the bridge
    expect(refusal.msg).toMatch(
      /refused the new desired state; generation 1 stays in force: refusing to delete 5 of the 5 objects/,
    );
    await d.reconciled(d.events.indexOf(refusal));
    st = await d.status();
    expect(st.errors.map((e: any) => e.kind)).toEqual(['rejected']);
    expect(JSON.stringify([hostLinks(s).map((l) => l.ifname), s.instanceNetns(), s.nftTable()])).toBe(before);

    // Fixed: a new generation, and the errors are gone.
    m = d.mark();
    s.write('a.yaml', good);
    s.write('b.yaml', 'containers:\n  c9: { networks: [web] }\n');
    await d.reconciled(m, (e) => e.generation === 2, 'generation 2');
    st = await d.status();
    expect(st.errors).toEqual([]);
    expect(s.instanceNetns().sort()).toEqual([s.ns('c1'), s.ns('c2'), s.ns('c9')]);
  });

  it('SIGTERM stops promptly and leaves the networks; a restart adopts them with 0 writes; sd_notify', async () => {
    s = Sandbox.create({ uplink: false });
    s.write('a.yaml', `${NET}${C1}  c2: {}\n`);
    // A stand-in for systemd's notification socket: prints each datagram with its sender pid.
    const notifySock = join(s.dir, 'notify.sock');
    const recv = notifyReceiver(notifySock);
    stops.push(recv.stop);
    await recv.ready;
    const d1 = start(['run', '-f', s.manifests], { NOTIFY_SOCKET: notifySock });
    await d1.ready();
    await d1.settled();
    const ready = await recv.next((m) => m.text.includes('READY=1'));
    expect(ready.pid).toBe(d1.proc.pid); // attributed to the main process (NotifyAccess=main)
    expect(ready.text).toMatch(/STATUS=converged \(generation 1\)/);

    let m = d1.mark();
    d1.signal('SIGHUP');
    await d1.reconciled(m, (e) => e.trigger.includes('sighup: SIGHUP'));
    await recv.next((x) => x.text.includes('RELOADING=1'));
    await recv.next((x) => x.text.includes('READY=1'), 1);

    const kernelBefore = JSON.stringify([
      hostLinks(s).map((l) => [l.ifname, l.ifindex]),
      s.instanceNetns(),
      s.nftTable(),
    ]);
    const t0 = performance.now();
    d1.signal('SIGTERM');
    const exit = await d1.exited;
    const stopMs = Math.round(performance.now() - t0);
    console.log(`SIGTERM → exited: ${stopMs} ms`);
    expect(exit.code).toBe(0);
    expect(stopMs).toBeLessThan(2000);
    await recv.next((x) => x.text.includes('STOPPING=1'));
    // Same links (same ifindexes), namespaces and nft table: nothing was torn down.
    expect(
      JSON.stringify([hostLinks(s).map((l) => [l.ifname, l.ifindex]), s.instanceNetns(), s.nftTable()]),
    ).toBe(kernelBefore);
    expect(existsSync(join(s.dir, 'run', s.instance, 'daemon.sock'))).toBe(false);
    expect(s.tetherOk('status')).toMatch(/daemon: +not running/);
    expect(s.ping(s.ns('c1'), '172.18.0.1')).toBe(true);

    const d2 = start(['run', '-f', s.manifests]);
    m = d2.mark();
    const first = await d2.reconciled(m);
    expect(first).toMatchObject({ actions: 0, writes: 0, converged: true, trigger: ['start'] });
    await d2.ready();
    expect(
      JSON.stringify([hostLinks(s).map((l) => [l.ifname, l.ifindex]), s.instanceNetns(), s.nftTable()]),
    ).toBe(kernelBefore);
  });

  it('runs ip and nft through a spawner of its own, which ends with it, also when it is killed', async () => {
    s = Sandbox.create({ uplink: false });
    s.write('a.yaml', `${NET}${C1}`);
    for (const [i, sig] of (['SIGTERM', 'SIGKILL'] as const).entries()) {
      const d = start(['run', '-f', s.manifests]);
      await d.ready();
      await d.settled();
      const spawner = childrenOf(d.proc.pid!).find((pid) => cmdline(pid) === 'tether-spawner');
      expect(spawner, `the daemon's children: ${childrenOf(d.proc.pid!).map(cmdline)}`).toBeDefined();
      // A container added: namespaces and nft are written through the spawner.
      const m = d.mark();
      s.write('a.yaml', `${NET}${C1}  c${i + 2}: { networks: [web] }\n`);
      const r = await d.reconciled(m, (e) => e.writes > 0);
      expect(r.converged).toBe(true);
      expect(s.ping(s.ns(`c${i + 2}`), '172.18.0.1')).toBe(true);
      d.signal(sig);
      await d.exited;
      await until(() => !existsSync(`/proc/${spawner}`), `spawner ${spawner} to end after ${sig}`);
    }
  });

  it('connects and disconnects a container on the fly while its TCP connection stays up', async () => {
    s = Sandbox.create({ uplink: false });
    const manifest = (cliNets: string) =>
      `networks:\n  front: {}\n  back: {}\ncontainers:\n  srv: { networks: [front] }\n  cli: { networks: [${cliNets}] }\n`;
    s.write('a.yaml', manifest('front'));
    const d = start(['run', '-f', s.manifests]);
    await d.ready();
    await d.settled();
    const srvAddr = containerAddr(s, 'srv')!;
    const cliLinks = () =>
      s!.ipJson(s!.ns('cli'), 'link', 'show').map((l: any) => `${l.ifname}#${l.ifindex}`);
    const eth0 = cliLinks().find((l: string) => l.startsWith('eth0#'));

    // A line echo server in srv, a client in cli holding one connection to it.
    const server = lineProcess(s.ns('srv'), ECHO_SERVER, []);
    procs.push(server);
    await server.line((l) => l === 'ready');
    const client = lineProcess(s.ns('cli'), HOLD_CLIENT, [srvAddr]);
    procs.push(client);
    await client.line((l) => l === 'connected');
    client.send('one');
    await client.line((l) => l === 'echo one');

    // Connect: two more networks (one the default bridge) — two new interfaces, nothing else of cli's.
    let m = d.mark();
    s.write('a.yaml', manifest('front, back, bridge'));
    let r = await d.reconciled(m, (e) => e.generation === 2, 'generation 2');
    expect(r.converged).toBe(true);
    expect(r.changes.filter((c: string) => /^[+-] namespace/.test(c))).toEqual([]);
    expect(
      cliLinks()
        .map((l: string) => l.split('#')[0])
        .sort(),
    ).toEqual(['eth0', 'eth1', 'eth2', 'lo']);
    expect(cliLinks()).toContain(eth0); // the same eth0 (same ifindex)
    client.send('two');
    await client.line((l) => l === 'echo two');

    // Disconnect both again: only those interfaces go; the connection on front stays.
    m = d.mark();
    s.write('a.yaml', manifest('front'));
    r = await d.reconciled(m, (e) => e.generation === 3, 'generation 3');
    expect(r.converged).toBe(true);
    expect(
      cliLinks()
        .map((l: string) => l.split('#')[0])
        .sort(),
    ).toEqual(['eth0', 'lo']);
    expect(cliLinks()).toContain(eth0);
    client.send('three');
    await client.line((l) => l === 'echo three');
    expect(client.proc.exitCode).toBeNull();
  });

  it('refuses to start a second daemon of the same instance', async () => {
    s = Sandbox.create({ uplink: false });
    s.write('a.yaml', NET);
    const d1 = start(['run', '-f', s.manifests]);
    await d1.ready();
    const d2 = start(['run', '-f', s.manifests]);
    const exit = await d2.exited;
    expect(exit.code).toBe(1);
    expect(d2.events.length).toBe(0);
    expect((await d1.status()).daemon.pid).toBe(d1.proc.pid);
  });
});

describe('tether sync (GitOps)', () => {
  let s: Sandbox | undefined;
  let d: Daemon | undefined;
  afterEach(async () => {
    await d?.kill();
    d = undefined;
    await s?.teardown();
    s = undefined;
  });

  it('applies a good commit, keeps it over a broken one and over a mass-deleting one', async () => {
    s = Sandbox.create({ uplink: false });
    const bare = join(s.dir, 'remote.git');
    const work = join(s.dir, 'work');
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', work, '-c', 'user.name=t', '-c', 'user.email=t@example.invalid', ...args], {
        encoding: 'utf8',
      }).trim();
    execFileSync('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
    execFileSync('git', ['clone', '--quiet', bare, work], { stdio: 'ignore' });
    mkdirSync(join(work, 'net'));
    const commit = (text: string, msg: string) => {
      writeFileSync(join(work, 'net', 'a.yaml'), text);
      git('add', '-A');
      git('commit', '--quiet', '-m', msg);
      git('push', '--quiet', 'origin', 'HEAD:main');
      return git('rev-parse', 'HEAD');
    };
    const good = commit(`${NET}containers:\n  c1: { networks: [web] }\n  c2: { networks: [web] }\n`, 'two');

    d = new Daemon(s, ['sync', '--repo', bare, '--ref', 'main', '--path', 'net', '--interval', '30s']);
    await d.ready();
    await d.settled();
    let st = await d.status();
    expect(st).toMatchObject({ converged: true, generation: 1, source: { kind: 'git', commit: good } });
    expect(s.instanceNetns().sort()).toEqual([s.ns('c1'), s.ns('c2')]);
    expect(readFileSync(join(s.dir, 'state', s.instance, 'repo', 'net', 'a.yaml'), 'utf8')).toMatch(/c2/);

    // A broken commit: reported, the checkout and the kernel stay at the good one.
    const broken = commit(`${NET}containers:\n  c1: { networks: [web\n`, 'broken');
    let m = d.mark();
    d.signal('SIGHUP'); // fetch now (the interval is 30 s)
    const w = await d.waitFor((e) => e.code === 'TETHER_W0510', 'broken commit', m);
    expect(w.commit).toBe(broken);
    await d.reconciled(d.events.indexOf(w));
    st = await d.status();
    expect(st.source.commit).toBe(good);
    expect(st.fetched.commit).toBe(broken);
    expect(st.errors).toMatchObject([{ kind: 'rejected', commit: broken }]);
    expect(readFileSync(join(s.dir, 'state', s.instance, 'repo', 'net', 'a.yaml'), 'utf8')).toMatch(/c2/);
    expect(s.instanceNetns()).toHaveLength(2);

    // A commit that deletes everything: refused by the guard, the good commit stays.
    const empty = commit('# nothing here any more\n', 'delete all');
    m = d.mark();
    d.signal('SIGHUP');
    const r = await d.waitFor((e) => e.code === 'TETHER_W0511', 'refusal', m);
    expect(r).toMatchObject({ commit: empty, refused: true });
    await d.reconciled(d.events.indexOf(r));
    st = await d.status();
    expect(st.source.commit).toBe(good);
    expect(st.errors).toMatchObject([{ kind: 'rejected', commit: empty }]);
    expect(s.instanceNetns()).toHaveLength(2);

    // A good commit again: applied, generation 2, the errors are gone.
    const next = commit(
      `${NET}containers:\n  c1: { networks: [web] }\n  c2: { networks: [web] }\n  c3: {}\n`,
      'three',
    );
    m = d.mark();
    d.signal('SIGHUP');
    await d.reconciled(m, (e) => e.generation === 2, 'generation 2');
    st = await d.status();
    expect(st).toMatchObject({ generation: 2, converged: true, errors: [], source: { commit: next } });
    expect(s.instanceNetns()).toHaveLength(3);
    expect(JSON.parse(s.tetherOk('status', '--json')).source.commit).toBe(next);
  });
});

describe('contrib/systemd/tether.service', () => {
  it('passes systemd-analyze verify with no warnings', () => {
    const dir = execFileSync('mktemp', ['-d'], { encoding: 'utf8' }).trim();
    try {
      // verify checks that ExecStart='s program exists: point it at this checkout.
      const unit = readFileSync(join(ROOT, 'contrib/systemd/tether.service'), 'utf8');
      expect(unit).toMatch(/^ExecStart=\/usr\/local\/bin\/tether run -f \/etc\/tether$/m);
      expect(unit).toMatch(/^Type=notify$/m);
      expect(unit).toMatch(/^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
      writeFileSync(join(dir, 'tether.service'), unit.replaceAll('/usr/local/bin/tether', TETHER));
      const r = spawnSync('systemd-analyze', ['verify', join(dir, 'tether.service')], { encoding: 'utf8' });
      if (r.error) throw new Error(`systemd-analyze is needed (Debian package systemd): ${r.error.message}`);
      expect({ code: r.status, stderr: r.stderr.trim() }).toEqual({ code: 0, stderr: '' });
    } finally {
      spawnSync('rm', ['-rf', dir]);
    }
  });
});

describe('sd_notify without systemd-notify', () => {
  it('the python3 fallback sends the datagram with our pid in its credentials', async () => {
    const dir = execFileSync('mktemp', ['-d'], { encoding: 'utf8' }).trim();
    let stop = () => {};
    try {
      const path = join(dir, 'n.sock');
      const recv = notifyReceiver(path);
      stop = recv.stop;
      await recv.ready;
      const n = new SystemdNotifier(
        { ...process.env, NOTIFY_SOCKET: path },
        (e) => {
          throw new Error(e);
        },
        'python3',
      );
      await n.ready('converged (generation 1)');
      const got = await recv.next(() => true);
      expect(got).toEqual({ pid: process.pid, text: 'READY=1\nSTATUS=converged (generation 1)' });
    } finally {
      stop();
      spawnSync('rm', ['-rf', dir]);
    }
  });
});

/**
 * A unix datagram receiver with SO_PASSCRED (python3; Node has no unix datagram
 * sockets): each datagram as {pid, text}. Stopped by its pid.
 */
function notifyReceiver(path: string) {
  const py = `
import json, os, socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
s.bind(sys.argv[1])
print('ready', flush=True)
while True:
    m, anc, _, _ = s.recvmsg(4096, socket.CMSG_SPACE(12))
    pid = next((struct.unpack('iII', d[:12])[0] for l, t, d in anc if t == socket.SCM_CREDENTIALS), None)
    print(json.dumps({'pid': pid, 'text': m.decode()}), flush=True)
`;
  const p = spawn('python3', ['-c', py, path], { stdio: ['ignore', 'pipe', 'inherit'] });
  const got: { pid: number; text: string }[] = [];
  const waiters: (() => void)[] = [];
  let buf = '';
  let onReady: () => void;
  const ready = new Promise<void>((r) => (onReady = r));
  p.stdout.on('data', (b: Buffer) => {
    buf += b.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line === 'ready') onReady();
      else got.push(JSON.parse(line));
      for (const w of waiters.splice(0)) w();
    }
  });
  /** The (skip+1)-th message matching `pred`, waiting for it up to 10 s. */
  const next = async (pred: (m: { pid: number; text: string }) => boolean, skip = 0) => {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const found = got.filter(pred)[skip];
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no such notification; got ${JSON.stringify(got)}`);
      await new Promise<void>((r) => {
        waiters.push(r);
        setTimeout(r, deadline - Date.now()).unref();
      });
    }
  };
  const stop = () => {
    if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
  };
  return { ready, next, stop };
}

const ECHO_SERVER = `
require('net').createServer((c) => { c.setEncoding('utf8'); c.on('error', () => {}); c.on('data', (d) => c.write('echo ' + d)); })
  .listen(7000, () => console.log('ready'));`;

const HOLD_CLIENT = `
const c = require('net').connect(7000, process.argv[1], () => console.log('connected'));
c.setEncoding('utf8');
c.on('data', (d) => process.stdout.write(d));
c.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
c.on('close', () => { console.log('closed'); process.exit(1); });
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d) => c.write(d));`;

interface LineProcess {
  readonly proc: ChildProcess;
  line(pred: (l: string) => boolean, timeoutMs?: number): Promise<string>;
  send(text: string): void;
  stop(): void;
}

/** A node script in namespace `ns`, its stdout awaited line by line; stopped by its pid. */
function lineProcess(ns: string, script: string, args: string[]): LineProcess {
  const proc = spawn('ip', ['netns', 'exec', ns, 'node', '-e', script, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  let buf = '';
  proc.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    for (const w of waiters.splice(0)) w();
  });
  proc.on('exit', () => {
    for (const w of waiters.splice(0)) w();
  });
  let from = 0;
  return {
    proc,
    async line(pred, timeoutMs = 5000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const i = lines.slice(from).findIndex(pred);
        if (i >= 0) {
          from += i + 1;
          return lines[from - 1]!;
        }
        if (proc.exitCode !== null || Date.now() > deadline)
          throw new Error(`${ns}: no such line; got ${JSON.stringify(lines)} (exit ${proc.exitCode})`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, deadline - Date.now()).unref();
        });
      }
    },
    send: (text) => proc.stdin!.write(`${text}\n`),
    stop: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
}
