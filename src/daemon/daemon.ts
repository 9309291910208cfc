/**
 * The daemon process: `tether run -f PATH` (manifest files) and `tether sync --repo …`
 * (GitOps) share it. It wires the triggers into the loop, serves the status socket,
 * talks to systemd, and stops on SIGTERM/SIGINT leaving every network in place.
 *
 *   triggers$ = start ⊕ files (debounced) ⊕ kernel events (settled) ⊕ resync timer ⊕ SIGHUP
 *   triggers$ → coalesceRuns(reconcile)        one run at a time, one trailing run
 */
import { catchError, EMPTY, merge, type Observable, of, tap } from 'rxjs';
import { applyPlan, openEngine } from '../engine.js';
import { type RecordFile, recordApply } from '../state/record.js';
import { withLock } from '../state/store.js';
import { formatDuration } from './duration.js';
import { DaemonCode, type EventSink, streamSink } from './events.js';
import { GitSource } from './gitops.js';
import { coalesceRuns, type ManifestSource, Reconciler } from './loop.js';
import { serveStatus } from './server.js';
import { FileSource } from './source.js';
import { initialStatus, StatusStore, summary } from './state.js';
import { SystemdNotifier } from './systemd.js';
import {
  observerTriggers,
  resyncTriggers,
  sighupTriggers,
  type Trigger,
  type Watch,
  watchKernel,
  watchManifests,
} from './triggers.js';

export interface DaemonOptions {
  readonly instance: string;
  /** `run`: the manifest path. */
  readonly file?: string;
  /** `sync`: the repository. */
  readonly git?: { readonly repo: string; readonly ref?: string; readonly path: string };
  /** Full reconcile (and for sync: fetch) interval. */
  readonly resyncMs: number;
  readonly pruneAll: boolean;
  /** Quiet time after the last manifest file event before reconciling. */
  readonly debounceMs?: number;
  /** Time to collect a burst of kernel notifications into one trigger. */
  readonly kernelSettleMs?: number;
  readonly sink?: EventSink;
  /** Resolves when the daemon should stop; default: SIGTERM or SIGINT. */
  readonly stop?: Promise<string>;
}

/** How long a stop waits for the reconcile in progress before leaving anyway. */
const STOP_GRACE_MS = 10_000;

function signalled(): { promise: Promise<string>; dispose(): void } {
  let dispose = () => {};
  const promise = new Promise<string>((resolve) => {
    const on = (sig: string) => () => resolve(sig);
    const term = on('SIGTERM');
    const int = on('SIGINT');
    process.once('SIGTERM', term);
    process.once('SIGINT', int);
    dispose = () => {
      process.off('SIGTERM', term);
      process.off('SIGINT', int);
    };
  });
  return { promise, dispose };
}

export async function runDaemon(o: DaemonOptions): Promise<void> {
  const mode = o.git ? 'sync' : 'run';
  const sink = o.sink ?? streamSink(process.stderr, { debug: !!process.env.TETHER_DEBUG });
  const follows = o.git ? `${o.git.repo}${o.git.ref ? `@${o.git.ref}` : ''}:${o.git.path}` : o.file!;
  const store = new StatusStore(
    initialStatus({ instance: o.instance, mode, follows, resyncMs: o.resyncMs, pruneAll: o.pruneAll }),
  );
  const warn = (code: (typeof DaemonCode)[keyof typeof DaemonCode], message: string) =>
    sink.emit({ level: 'warn', code, message });
  const notifier = new SystemdNotifier(process.env, (m) => warn(DaemonCode.notifyFailed, m));
  const stopSignal = o.stop ? { promise: o.stop, dispose: () => {} } : signalled();

  const engine = openEngine(o.instance, { live: true });
  // The observation's counters ride along: how much each reconcile read afresh.
  const server = await serveStatus(
    o.instance,
    () => store.get(),
    () => ({ observer: { ...engine.live!.stats } }),
  ).catch((e) => {
    engine.close();
    throw e;
  });
  const watches: Watch[] = [];
  try {
    const source: ManifestSource = o.git
      ? new GitSource({ instance: o.instance, ...o.git }, store, sink)
      : new FileSource(o.file!);
    if (!o.git) {
      watches.push(
        await watchManifests(o.file!, {
          debounceMs: o.debounceMs ?? 100,
          onError: (e) => warn(DaemonCode.triggerFailed, `manifest watcher: ${e.message}`),
        }),
      );
    }
    engine.live!.start();
    watches.push(
      await watchKernel(o.instance, {
        settleMs: o.kernelSettleMs ?? 20,
        messages$: engine.live!.hostMessages$,
        lost$: engine.live!.hostLost$,
        seed: () => engine.nl.links(),
        onError: (e) => warn(DaemonCode.triggerFailed, e.message),
      }),
    );
    await Promise.all(watches.map((w) => w.ready));

    engine.live!.onMismatch = (detail) =>
      warn(
        DaemonCode.observationMismatch,
        `a full read found the kernel differing from the daemon's memory (a notification was lost or misread; repaired now): ${detail}`,
      );
    let reloadSent = false;
    let lastRecord: RecordFile | undefined;
    const reconciler = new Reconciler({
      source,
      store,
      sink,
      pruneAll: o.pruneAll,
      apply: (spec, opts) => {
        const t0 = performance.now();
        return withLock(o.instance, async () => {
          const lock = Math.round((performance.now() - t0) * 10) / 10;
          if (opts.full) engine.live?.fullRead();
          const outcome = await applyPlan(engine, spec, opts);
          return { ...outcome, timings: { lock, ...outcome.timings } };
        });
      },
      record: async (s, outcome, ms) => {
        lastRecord = await recordApply(
          engine,
          s.spec,
          outcome,
          { path: s.source.path, commit: s.source.commit },
          ms,
          lastRecord,
        );
      },
      onReconciled: (first, reasons) => {
        const st = summary(store.get());
        // READY=1 only after the first converge; after a reload, READY=1 ends "reloading".
        if (first || (reasons.has('sighup') && reloadSent)) void notifier.ready(st);
        else void notifier.status(st);
        if (reasons.has('sighup')) reloadSent = false;
      },
    });

    const guard =
      (what: string) =>
      (src: Observable<Trigger>): Observable<Trigger> =>
        src.pipe(
          catchError((e: Error) => {
            warn(DaemonCode.triggerFailed, `${what} stopped: ${e.message}`);
            return EMPTY;
          }),
        );
    const hup$ = sighupTriggers().pipe(
      tap(() => {
        // Before the first converge systemd still waits for READY=1: no reload to frame.
        if (store.get().daemon.ready && !reloadSent) {
          reloadSent = true;
          void notifier.reloading();
        }
        sink.emit({ level: 'info', code: DaemonCode.reload, message: 'SIGHUP: reloading' });
      }),
    );
    const triggers$ = merge(
      of<Trigger>({ kind: 'start' }),
      ...watches.map((w, i) =>
        w.events$.pipe(guard(i === 0 && !o.git ? 'manifest watcher' : 'kernel listener')),
      ),
      observerTriggers(engine.live!.changes$, o.kernelSettleMs ?? 20).pipe(guard('observation listener')),
      resyncTriggers(o.resyncMs).pipe(guard('resync timer')),
      hup$.pipe(guard('SIGHUP handler')),
    );

    sink.emit({
      level: 'info',
      code: DaemonCode.started,
      message: `tether ${mode} started (pid ${process.pid}, instance ${o.instance}), following ${follows}, resync every ${formatDuration(o.resyncMs)}`,
      data: {
        mode,
        pid: process.pid,
        instance: o.instance,
        follows,
        resyncMs: o.resyncMs,
        pruneAll: o.pruneAll,
      },
    });
    const watchdogMs = notifier.startWatchdog();
    if (watchdogMs)
      sink.emit({
        level: 'debug',
        code: DaemonCode.started,
        message: `watchdog ping every ${watchdogMs} ms`,
      });

    const sub = triggers$
      .pipe(
        coalesceRuns(
          (batch) => reconciler.run(batch),
          (e) => warn(DaemonCode.reconcileFailed, `reconcile: ${(e as Error).message}`),
        ),
      )
      .subscribe({
        error: (e: Error) => warn(DaemonCode.triggerFailed, `the trigger stream ended: ${e.message}`),
      });

    const sig = await stopSignal.promise;
    const t0 = performance.now();
    sink.emit({
      level: 'info',
      code: DaemonCode.stopping,
      message: `${sig}: stopping; the networks stay in place`,
      data: { signal: sig },
    });
    void notifier.stopping();
    sub.unsubscribe();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      reconciler.idle(),
      new Promise((r) => {
        timer = setTimeout(r, STOP_GRACE_MS);
      }),
    ]);
    clearTimeout(timer);
    sink.emit({
      level: 'debug',
      code: DaemonCode.stopping,
      message: `stopped in ${Math.round(performance.now() - t0)} ms`,
    });
  } finally {
    stopSignal.dispose();
    notifier.stopWatchdog();
    await Promise.all(watches.map((w) => w.close().catch(() => undefined)));
    await server.close();
    engine.close();
    await notifier.flush();
  }
}
