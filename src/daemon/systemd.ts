/**
 * sd_notify(3) for Type=notify units: READY=1 (only after the first converge), STATUS=,
 * RELOADING=1 (SIGHUP), STOPPING=1 and WATCHDOG=1 when WATCHDOG_USEC is set.
 *
 * The protocol is one datagram on the AF_UNIX/SOCK_DGRAM socket named by $NOTIFY_SOCKET
 * ("@name" = abstract), and systemd attributes it to the unit by the sender's
 * SCM_CREDENTIALS pid. Node has no unix datagram sockets, so a helper process sends it:
 *
 *  1. `systemd-notify --no-block VAR=VALUE…` (Debian package `systemd`, present wherever
 *     systemd runs services). Debian 12's (systemd 252) sends with its *parent's* pid in
 *     the credentials (as root it may state another pid), so with this process as the
 *     parent the message counts as the main process's: the default NotifyAccess=main
 *     works, and nothing depends on the helper still being alive when systemd reads it.
 *     Checked with a receiver that prints SCM_CREDENTIALS (test/kernel/daemon.test.ts).
 *  2. Else `python3`, sending the datagram with SCM_CREDENTIALS naming our pid (root may;
 *     unprivileged, its own pid is sent and the unit needs NotifyAccess=all).
 *  3. Else nothing is sent and one warning is logged.
 *
 * Messages are sent in order (a queue), so RELOADING=1 always precedes its READY=1.
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

export type NotifySender = 'systemd-notify' | 'python3' | 'none';

const PY_SEND = `
import os, socket, struct, sys
a = os.environ['NOTIFY_SOCKET']
if a.startswith('@'): a = '\\0' + a[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
m = sys.argv[1].encode()
cred = struct.pack('iII', int(sys.argv[2]), os.getuid(), os.getgid())
try:
    s.sendmsg([m], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, cred)], 0, a)
except PermissionError:
    s.sendto(m, a)
`;

function onPath(cmd: string, env: NodeJS.ProcessEnv): boolean {
  for (const dir of (env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(delimiter)) {
    try {
      accessSync(join(dir, cmd), constants.X_OK);
      return true;
    } catch {
      /* not here */
    }
  }
  return false;
}

/** The helper this machine has, in the order of preference above. */
export function chooseSender(env: NodeJS.ProcessEnv = process.env): NotifySender {
  if (onPath('systemd-notify', env)) return 'systemd-notify';
  if (onPath('python3', env)) return 'python3';
  return 'none';
}

export class SystemdNotifier {
  /** False when not started by systemd with Type=notify ($NOTIFY_SOCKET unset). */
  readonly enabled: boolean;
  readonly sender: NotifySender;
  private queue: Promise<void> = Promise.resolve();
  private watchdog: NodeJS.Timeout | undefined;
  private warned = false;

  constructor(
    private readonly env: NodeJS.ProcessEnv = process.env,
    private readonly onError: (message: string) => void = () => {},
    sender?: NotifySender,
  ) {
    this.enabled = !!env.NOTIFY_SOCKET;
    this.sender = this.enabled ? (sender ?? chooseSender(env)) : 'none';
  }

  /** Send `fields` (e.g. {READY: '1', STATUS: '…'}) as one message, after earlier ones. */
  notify(fields: Record<string, string>): Promise<void> {
    if (!this.enabled) return Promise.resolve();
    const lines = Object.entries(fields).map(([k, v]) => `${k}=${v.replace(/\n/g, ' ')}`);
    this.queue = this.queue.then(() => this.send(lines)).catch((e: Error) => this.onError(e.message));
    return this.queue;
  }

  ready(status: string): Promise<void> {
    return this.notify({ READY: '1', STATUS: status });
  }

  status(status: string): Promise<void> {
    return this.notify({ STATUS: status });
  }

  reloading(): Promise<void> {
    return this.notify({ RELOADING: '1', STATUS: 'reloading' });
  }

  stopping(): Promise<void> {
    this.stopWatchdog();
    return this.notify({ STOPPING: '1', STATUS: 'stopping; the networks stay in place' });
  }

  /**
   * WATCHDOG=1 every half of WATCHDOG_USEC (systemd's advice), when it is set for this
   * process (WATCHDOG_PID absent or ours). The timer runs on the event loop, so a wedged
   * loop stops the pings and systemd restarts the service. Returns the interval in ms.
   */
  startWatchdog(): number | undefined {
    const usec = Number(this.env.WATCHDOG_USEC);
    const pid = this.env.WATCHDOG_PID ? Number(this.env.WATCHDOG_PID) : process.pid;
    if (!this.enabled || !(usec > 0) || pid !== process.pid) return undefined;
    const every = Math.max(1, Math.floor(usec / 2000));
    this.watchdog = setInterval(() => void this.notify({ WATCHDOG: '1' }), every);
    this.watchdog.unref();
    return every;
  }

  stopWatchdog(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = undefined;
  }

  /** Resolves when every queued message has been handed to the helper. */
  flush(): Promise<void> {
    return this.queue;
  }

  private send(lines: string[]): Promise<void> {
    if (this.sender === 'none') {
      if (!this.warned)
        this.onError('cannot notify systemd: neither systemd-notify nor python3 is installed');
      this.warned = true;
      return Promise.resolve();
    }
    const [cmd, args] =
      this.sender === 'systemd-notify'
        ? ['systemd-notify', ['--no-block', ...lines]]
        : ['python3', ['-c', PY_SEND, lines.join('\n'), String(process.pid)]];
    return new Promise((resolve, reject) => {
      const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: this.env });
      let err = '';
      p.stderr!.on('data', (b: Buffer) => (err += b.toString()));
      p.on('error', (e) => reject(new Error(`${cmd}: ${e.message}`)));
      p.on('close', (code) =>
        code === 0 ? resolve() : reject(new Error(`${cmd} ${lines.join(' ')} exited ${code}: ${err.trim()}`)),
      );
    });
  }
}
