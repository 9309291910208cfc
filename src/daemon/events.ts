/**
 * The daemon's typed events (STYLE P14): the loop, the triggers and the GitOps source
 * never print; they emit `{level, code, message, data}` to an EventSink. The daemon
 * renders them as JSON lines on stderr (journald, pipes) or as readable text on a
 * terminal; tests use a recording sink.
 *
 * Codes are TETHER_<I|W|E>05xx for the daemon (01xx is the manifest loader).
 */

export type Level = 'debug' | 'info' | 'warn' | 'error';

export const DaemonCode = {
  /** The daemon started: mode, source, resync interval. */
  started: 'TETHER_I0500',
  /** A reconcile ran: trigger, actions (rendered), writes, duration, converged. */
  reconciled: 'TETHER_I0501',
  /** The first successful converge: READY=1 was sent. */
  ready: 'TETHER_I0502',
  /** The daemon stops (SIGTERM/SIGINT); the networks stay in place. */
  stopping: 'TETHER_I0503',
  /** GitOps: a new commit was fetched. */
  fetched: 'TETHER_I0504',
  /** SIGHUP: reload requested. */
  reload: 'TETHER_I0505',
  /** The manifests (or the fetched commit) failed to load; the last good state stays in force. */
  loadFailed: 'TETHER_W0510',
  /** A new desired state was refused (mass deletion) or failed to apply; the last good stays. */
  rejected: 'TETHER_W0511',
  /** A reconcile ran but the kernel still differs from the manifests afterwards. */
  notConverged: 'TETHER_W0512',
  /** GitOps: fetching the repository failed; the checkout in place is used. */
  fetchFailed: 'TETHER_W0513',
  /** systemd notification could not be sent. */
  notifyFailed: 'TETHER_W0514',
  /** A trigger source failed (watcher, netlink listener); the others keep running. */
  triggerFailed: 'TETHER_W0515',
  /** A full read found the kernel differing from the daemon's in-memory observation. */
  observationMismatch: 'TETHER_W0516',
  /** A reconcile failed (kernel error, lock busy, …) with no last good state to fall back to. */
  reconcileFailed: 'TETHER_E0520',
} as const;

export type DaemonCodeValue = (typeof DaemonCode)[keyof typeof DaemonCode];

export interface DaemonEvent {
  readonly level: Level;
  /** A DaemonCode, or a loader warning's code (TETHER_W01xx). */
  readonly code: DaemonCodeValue | `TETHER_${string}`;
  readonly message: string;
  readonly data?: Readonly<Record<string, unknown>>;
}

export interface EventSink {
  emit(e: DaemonEvent): void;
}

/** A sink that keeps everything (tests). */
export class RecordingSink implements EventSink {
  readonly events: DaemonEvent[] = [];
  emit(e: DaemonEvent): void {
    this.events.push(e);
  }
}

/** One JSON object per line: time, level, code, msg and the event's data. */
export function jsonLine(e: DaemonEvent, now = new Date()): string {
  return `${JSON.stringify({ time: now.toISOString(), level: e.level, code: e.code, msg: e.message, ...e.data })}\n`;
}

/** Human text: "12:00:01.234 info  reconciled …", then the changed actions indented. */
export function textLine(e: DaemonEvent, now = new Date()): string {
  const t = `${now.toTimeString().slice(0, 8)}.${String(now.getMilliseconds()).padStart(3, '0')}`;
  let s = `${t} ${e.level.padEnd(5)} ${e.message}\n`;
  const changes = e.data?.changes;
  if (Array.isArray(changes)) for (const c of changes) s += `    ${String(c)}\n`;
  const problems = e.data?.problems;
  if (Array.isArray(problems)) for (const p of problems) s += `    ${String(p)}\n`;
  return s;
}

/** Writes events to a stream: JSON lines unless it is a terminal. Debug events only when `debug`. */
export function streamSink(
  stream: NodeJS.WritableStream & { isTTY?: boolean },
  opts: { json?: boolean; debug?: boolean } = {},
): EventSink {
  const json = opts.json ?? !stream.isTTY;
  return {
    emit(e) {
      if (e.level === 'debug' && !opts.debug) return;
      stream.write(json ? jsonLine(e) : textLine(e));
    },
  };
}
