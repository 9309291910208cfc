/**
 * rtnetlink adapter for the namespace this process runs in (the "host"), over the npm
 * `netlink` package. Dumps check NLM_F_DUMP_INTR and retry a bounded number of times,
 * then fail: observe never plans from a partial view. Writes pass CREATE|EXCL
 * explicitly (the package adds no flags).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import * as nl from 'netlink';
import { KernelError } from '../model/errors.js';
import { parseAddr, parseLink, parseRoute, type RtMessage, rtattr } from './rtparse.js';

const { rt, ifla, Flags, FlagsGet, FlagsNew } = nl;

/**
 * The package calls these from its native poll callback; a JS exception escaping them
 * terminates the process ("terminate called after throwing an instance of
 * 'Napi::Error'"). Catch it there, report it on stderr with its stack, and carry on: the
 * request it belonged to times out or the next reconcile observes afresh.
 */
for (const method of ['_receive', '_error'] as const) {
  const proto = nl.RawNetlinkSocket.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  const original = proto[method]!;
  proto[method] = function (this: unknown, ...args: unknown[]) {
    try {
      return original.apply(this, args);
    } catch (e) {
      process.stderr.write(`tether: netlink ${method} handler failed: ${(e as Error)?.stack ?? e}\n`);
      return undefined;
    }
  };
}
type RtSocket = ReturnType<typeof nl.createRtNetlink>;
/** A netlink message as the package hands it over: its type, flags and payload. */
interface RawMessage extends RtMessage {
  readonly flags: number;
}

export interface NlLink {
  index: number;
  name: string;
  kind?: string;
  alias?: string;
  master?: number;
  mtu?: number;
  mac?: string;
  up: boolean;
}

export interface NlAddr {
  index: number;
  family: 4 | 6;
  cidr: string;
  /** RT_SCOPE: 0 universe, 253 link, 254 host */
  scope: number;
}

export interface NlRoute {
  family: 4 | 6;
  dst?: string;
  dstLen: number;
  oif?: number;
  gateway?: string;
  /** Kernel enum names as the package reports them: 'LINK', 'UNIVERSE', 'HOST'. */
  scope: string;
  protocol: string;
  table: number;
  type: string;
  /** RTA_PRIORITY (part of a route's identity: two routes may differ only in it). */
  metric?: number;
}

const AF_INET = 2;
const AF_INET6 = 10;
const DUMP_PATIENCE_MS = 5000;

function ipBuffer(ip: string): Buffer {
  if (!ip.includes(':')) return Buffer.from(ip.split('.').map(Number));
  const [h, t] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const head = h ? h.split(':') : [];
  const tail = t ? t.split(':') : [];
  const fill = t === undefined ? [] : new Array(8 - head.length - tail.length).fill('0');
  const all = [...head, ...fill, ...tail];
  const b = Buffer.alloc(16);
  all.forEach((p, i) => b.writeUInt16BE(Number.parseInt(p || '0', 16), i * 2));
  return b;
}

/** The package's formatters return a StreamData (list of buffers) typed loosely. */
function streamBuffer(x: unknown): Buffer {
  if (Buffer.isBuffer(x)) return x;
  if (Array.isArray(x)) return Buffer.concat(x as Uint8Array[]);
  if (typeof x === 'function') {
    const s = new nl.AttrStream();
    s.emit(x as (out: InstanceType<typeof nl.AttrStream>) => unknown);
    return Buffer.concat(s.bufs);
  }
  return Buffer.from(x as Uint8Array);
}

function macBuffer(mac: string): Buffer {
  return Buffer.from(mac.split(':').map((x) => Number.parseInt(x, 16)));
}

/** A random MAC, locally administered and unicast. */
function randomMac(): string {
  const b = randomBytes(6);
  b[0] = (b[0]! & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

/** IFLA_IFNAME: a request that names its link instead of giving an index. */
const ifnameAttr = (name: string) => rtattr(3 /* IFLA_IFNAME */, Buffer.from(`${name}\0`));

function wrap(op: string, e: unknown): KernelError {
  const msg = e instanceof Error ? e.message : String(e);
  return new KernelError(op, msg);
}

export class HostNetlink {
  private readonly sock: RtSocket;
  /** A socket in this process's namespace, or one made elsewhere (see openInNamespace). */
  constructor(sock?: RtSocket) {
    this.sock = sock ?? nl.createRtNetlink();
    // An 'error' event without a listener is thrown from inside the package's native
    // callback, which aborts the process ("Error in native callback"). Requests still
    // fail through their own callbacks; this keeps a socket-level error (say ENOBUFS
    // under a flood of notifications) from taking the process down.
    this.sock.socket.on('error', () => {});
    this.sock.socket.socket.on('error', () => {});
  }

  close(): void {
    this.sock.socket.close();
  }

  private queue: Promise<unknown> = Promise.resolve();

  /**
   * Requests run one at a time on the socket. The package reassembles one multipart reply
   * at a time: a dump interleaved with another dump, or with the ACKs of other requests,
   * is cut short ("Multipart message not terminated properly") and leaves the socket's
   * request table inconsistent. (Pipelining writes measured no gain: the kernel
   * serialises them under the RTNL lock anyway.)
   */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  /** One request, in turn with the others; a failure is a KernelError naming `what`. */
  private async request<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await this.serial(fn);
    } catch (e) {
      throw wrap(what, e);
    }
  }

  private dump(type: number, header: Buffer, what: string): Promise<RawMessage[]> {
    return this.serial(() => this.dumpNow(type, header, what));
  }

  /**
   * A dump that fails rather than returns an inconsistent view. An interrupted dump
   * (NLM_F_DUMP_INTR: the table changed while it was read) is retried, with a short pause,
   * for up to DUMP_PATIENCE_MS: right after 1000 veths are created the kernel keeps adding
   * their IPv6 link-local addresses for a second or two, interrupting address dumps.
   */
  private async dumpNow(type: number, header: Buffer, what: string): Promise<RawMessage[]> {
    const deadline = Date.now() + DUMP_PATIENCE_MS;
    for (let attempt = 1; ; attempt++) {
      const [msgs] = await this.sock.socket.request(type, header, { flags: FlagsGet.DUMP });
      if (!msgs.some((m) => m.flags & Flags.DUMP_INTR)) return msgs;
      if (Date.now() > deadline) {
        throw new KernelError(
          `dump ${what}`,
          `the dump was interrupted ${attempt} times in ${DUMP_PATIENCE_MS} ms (NLM_F_DUMP_INTR): the kernel is still changing; try again`,
        );
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** A dump, each reply of type `reply` decoded by `parse` (others skipped). */
  private async dumpOf<T>(
    request: number,
    headerLen: number,
    what: string,
    reply: number,
    parse: (data: Buffer) => T | undefined,
  ): Promise<T[]> {
    const out: T[] = [];
    for (const m of await this.dump(request, Buffer.alloc(headerLen), what)) {
      const x = m.type === reply ? parse(m.data) : undefined;
      if (x !== undefined) out.push(x);
    }
    return out;
  }

  links(): Promise<NlLink[]> {
    return this.dumpOf(rt.MessageType.GETLINK, 16, 'links', rt.MessageType.NEWLINK, parseLink);
  }

  /** One link by name (RTM_GETLINK with IFLA_IFNAME, no dump); undefined when absent. */
  async linkByName(name: string): Promise<NlLink | undefined> {
    let msgs: RawMessage[];
    try {
      [msgs] = await this.serial(() =>
        this.sock.socket.request(
          rt.MessageType.GETLINK,
          Buffer.concat([Buffer.alloc(16), ifnameAttr(name)]),
          {},
        ),
      );
    } catch (e) {
      if ((e as { errno?: number }).errno === 19 /* ENODEV */ || /ENODEV|No such device/.test(String(e)))
        return undefined;
      throw wrap(`get link ${name}`, e);
    }
    const m = msgs.find((x) => x.type === rt.MessageType.NEWLINK);
    return m ? parseLink(m.data) : undefined;
  }

  addrs(): Promise<NlAddr[]> {
    return this.dumpOf(rt.MessageType.GETADDR, 8, 'addresses', rt.MessageType.NEWADDR, parseAddr);
  }

  /** All routes of both families, in one AF_UNSPEC dump. */
  routes(): Promise<NlRoute[]> {
    return this.dumpOf(rt.MessageType.GETROUTE, 12, 'routes', rt.MessageType.NEWROUTE, parseRoute);
  }

  /**
   * A bridge with a MAC of its own (random, locally administered, unicast, as Docker's). A
   * bridge whose MAC was never set takes the lowest MAC of its ports, so a container that
   * comes or goes could change the gateway's MAC under its neighbours' ARP caches: their
   * packets to the gateway (DNS, the way out) would go astray for seconds.
   */
  async createBridge(name: string, mtu?: number, mac = randomMac()): Promise<void> {
    await this.request(`create bridge ${name}`, () =>
      this.sock.newLink(
        {},
        {
          ifname: name,
          mtu,
          address: macBuffer(mac),
          linkinfo: ifla.formatInfo({ kind: 'bridge' }) as unknown as Buffer,
        },
        { flags: FlagsNew.CREATE | FlagsNew.EXCL },
      ),
    );
  }

  /**
   * A veth pair whose peer is born inside the namespace at `peerNsPath`, already named
   * `peerName` (so a clash with a foreign interface there is an EEXIST, not a takeover).
   */
  async createVeth(
    name: string,
    peerName: string,
    peerNsPath: string,
    opts: { mtu?: number; peerMac?: string; peerAlias?: string },
  ): Promise<void> {
    let fd: number | undefined;
    try {
      fd = openSync(peerNsPath, 'r');
      const peerHdr = Buffer.alloc(16);
      const attrs = ifla.formatLinkAttrs({
        ifname: peerName,
        netNsFd: fd,
        mtu: opts.mtu,
        address: opts.peerMac ? macBuffer(opts.peerMac) : undefined,
      });
      const peer = Buffer.concat([peerHdr, streamBuffer(attrs)]);
      await this.serial(() =>
        this.sock.newLink(
          {},
          {
            ifname: name,
            mtu: opts.mtu,
            linkinfo: ifla.formatInfo({
              kind: 'veth',
              data: ifla.formatVethInfo({ peer }) as unknown as Buffer,
            }) as unknown as Buffer,
          },
          { flags: FlagsNew.CREATE | FlagsNew.EXCL },
        ),
      );
    } catch (e) {
      throw wrap(`create veth ${name} (peer ${peerName} in ${peerNsPath})`, e);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  /** Change attributes of an existing link; only the given fields are sent. */
  async setLink(
    name: string,
    change: { master?: number | null; mtu?: number; mac?: string; alias?: string; up?: boolean },
  ): Promise<void> {
    const data: { flags?: { up?: boolean }; change?: { up?: boolean } } = {};
    if (change.up !== undefined) {
      data.flags = { up: change.up };
      data.change = { up: true };
    }
    await this.request(`set link ${name}`, () =>
      this.sock.setLink(data as never, {
        ifname: name,
        master: change.master === null ? 0 : change.master,
        mtu: change.mtu,
        address: change.mac ? macBuffer(change.mac) : undefined,
        ifalias: change.alias,
      }),
    );
  }

  /**
   * Hairpin mode on a bridge port (`ip link set dev NAME type bridge_slave hairpin on`):
   * RTM_NEWLINK on the existing link with IFLA_LINKINFO { INFO_SLAVE_KIND "bridge",
   * INFO_SLAVE_DATA { IFLA_BRPORT_MODE 1 } }. The link must be enslaved already: the
   * kernel reads slave data with the ops of the link's current master.
   */
  async setHairpin(name: string): Promise<void> {
    const nested = 0x8000; // NLA_F_NESTED
    const hdr = Buffer.alloc(16); // index 0: the link is found by IFLA_IFNAME
    const slaveData = rtattr(5 | nested, rtattr(4 /* IFLA_BRPORT_MODE */, Buffer.from([1])));
    const linkinfo = rtattr(18 | nested, Buffer.concat([rtattr(4, Buffer.from('bridge\0')), slaveData]));
    await this.request(`set hairpin on ${name}`, () =>
      this.sock.socket.request(rt.MessageType.NEWLINK, Buffer.concat([hdr, ifnameAttr(name), linkinfo]), {}),
    );
  }

  /**
   * No IPv6 link-local address on this link when it comes up (`ip link set dev NAME
   * addrgenmode none`): RTM_NEWLINK with IFLA_AF_SPEC { AF_INET6 { IFLA_INET6_ADDR_GEN_MODE
   * IN6_ADDR_GEN_MODE_NONE } }. A separate request before the link goes up: in one request
   * with the up flag the kernel would bring it up first.
   */
  async setNoLinkLocal(name: string): Promise<void> {
    const nested = 0x8000; // NLA_F_NESTED
    const hdr = Buffer.alloc(16); // index 0: the link is found by IFLA_IFNAME
    const inet6 = rtattr(AF_INET6 | nested, rtattr(8 /* IFLA_INET6_ADDR_GEN_MODE */, Buffer.from([1])));
    const spec = rtattr(26 /* IFLA_AF_SPEC */ | nested, inet6);
    await this.request(`set addrgenmode none on ${name}`, () =>
      this.sock.socket.request(rt.MessageType.NEWLINK, Buffer.concat([hdr, ifnameAttr(name), spec]), {}),
    );
  }

  async deleteLink(name: string): Promise<void> {
    await this.request(`delete link ${name}`, () => this.sock.delLink({}, { ifname: name }));
  }

  /** `ip route replace default via VIA dev <oif>` in the main table. */
  async replaceDefaultRoute(via: string, oif: number): Promise<void> {
    const v6 = via.includes(':');
    await this.request(`replace default route via ${via}`, () =>
      this.sock.newRoute(
        {
          family: v6 ? AF_INET6 : AF_INET,
          dstLen: 0,
          table: 254,
          protocol: 'BOOT',
          scope: 'UNIVERSE',
          type: 'UNICAST',
        },
        { gateway: ipBuffer(via), oif },
        { flags: FlagsNew.CREATE | FlagsNew.REPLACE },
      ),
    );
  }

  async delDefaultRoute(via: string, oif: number): Promise<void> {
    const v6 = via.includes(':');
    await this.request(`delete default route via ${via}`, () =>
      this.sock.delRoute(
        { family: v6 ? AF_INET6 : AF_INET, dstLen: 0, table: 254, scope: 'NOWHERE' },
        { gateway: ipBuffer(via), oif },
      ),
    );
  }

  async addAddr(index: number, cidr: string, nodad = true): Promise<void> {
    const [ip, len] = cidr.split('/');
    const v6 = ip!.includes(':');
    await this.request(`add address ${cidr}`, () =>
      this.sock.newAddress(
        { family: v6 ? AF_INET6 : AF_INET, prefixlen: Number(len), index },
        { local: ipBuffer(ip!), address: ipBuffer(ip!), flags: v6 && nodad ? { nodad: true } : undefined },
        { flags: FlagsNew.CREATE | FlagsNew.EXCL },
      ),
    );
  }

  async delAddr(index: number, cidr: string): Promise<void> {
    const [ip, len] = cidr.split('/');
    const v6 = ip!.includes(':');
    await this.request(`delete address ${cidr}`, () =>
      this.sock.delAddress(
        { family: v6 ? AF_INET6 : AF_INET, prefixlen: Number(len), index },
        { local: ipBuffer(ip!), address: ipBuffer(ip!) },
      ),
    );
  }
}

export { ipBuffer };

interface SetnsAddon {
  setns(fd: number): void;
}
let addon: SetnsAddon | null | undefined;

/** The setns addon (native/setns.c, built by scripts/setup.sh), or null when unavailable. */
function setnsAddon(): SetnsAddon | null {
  if (addon === undefined) {
    try {
      const require = createRequire(import.meta.url);
      const candidates = [
        new URL('../../native/build/setns.node', import.meta.url),
        new URL('../native/build/setns.node', import.meta.url),
      ];
      const found = candidates.find((u) => existsSync(u));
      addon = found ? (require(found.pathname) as SetnsAddon) : null;
    } catch {
      addon = null;
    }
  }
  return addon;
}

/**
 * Run `make` with this thread inside the namespace at `path`, then come back: a socket
 * made there stays bound to that namespace. Undefined when the setns addon is not built.
 */
export function createInNamespace<T>(path: string, make: () => T): T | undefined {
  const a = setnsAddon();
  if (!a) return undefined;
  const home = openSync('/proc/thread-self/ns/net', 'r');
  let target: number | undefined;
  try {
    target = openSync(path, 'r');
    a.setns(target);
    try {
      return make();
    } finally {
      a.setns(home);
    }
  } catch (e) {
    throw new KernelError(`open netlink in ${path}`, (e as Error).message, 'not-found');
  } finally {
    closeSync(home);
    if (target !== undefined) closeSync(target);
  }
}

/**
 * An rtnetlink handle inside the namespace at `path` (see createInNamespace). Undefined
 * when the setns addon is not built; callers then fall back to `ip`.
 */
export function openInNamespace(path: string): HostNetlink | undefined {
  return createInNamespace(path, () => new HostNetlink(nl.createRtNetlink()));
}
