/**
 * The control loop (STYLE P13): reconciles run one at a time; triggers that arrive
 * during a run coalesce into ONE trailing run; the reconcile itself is a plain async
 * function that never throws, so the outer stream never errors.
 *
 * Desired state: each run loads the manifests (or the fetched commit). A state that
 * fails to load, or is refused (mass deletion, SPEC §3) or fails to apply, is reported
 * (log + status) and the last good one stays in force: that run reconciles the last good
 * state instead, so drift is still repaired and nothing is torn down because of a typo,
 * an empty directory or a bad commit.
 */
import { castDraft } from 'immer';
import { from, Observable, type ObservableInput, type OperatorFunction, Subscription } from 'rxjs';
import type { Plan } from '../diff/plan.js';
import { describe } from '../diff/render.js';
import { formatProblem, SpecError, UsageError } from '../model/errors.js';
import type { Spec } from '../model/spec.js';
import { DaemonCode, type EventSink } from './events.js';
import type { ReconcileResult, SourceStatus, StatusStore } from './state.js';
import type { Trigger, TriggerKind } from './triggers.js';

/**
 * Runs `run(batch)` for the values of the source, one run at a time. The first value
 * starts a run at once; values arriving while it runs are collected and, when it ends,
 * start exactly one trailing run with all of them. An error of a run goes to `onError`
 * and the loop goes on; the result stream only errors if the source does.
 */
export function coalesceRuns<T, R>(
  run: (batch: readonly T[]) => ObservableInput<R>,
  onError?: (e: unknown) => void,
): OperatorFunction<T, R> {
  return (source) =>
    new Observable<R>((subscriber) => {
      let pending: T[] = [];
      let running = false;
      let sourceDone = false;
      let inner: Subscription | undefined;
      const start = (): void => {
        if (running) return;
        if (!pending.length) {
          if (sourceDone) subscriber.complete();
          return;
        }
        const batch = pending;
        pending = [];
        running = true;
        const sub = new Subscription();
        inner = sub;
        const finish = () => {
          if (inner === sub) inner = undefined;
          running = false;
          start();
        };
        let runs: Observable<R>;
        try {
          runs = from(run(batch));
        } catch (e) {
          onError?.(e);
          runs = from([] as R[]);
        }
        sub.add(
          runs.subscribe({
            next: (r) => subscriber.next(r),
            error: (e) => {
              onError?.(e);
              finish();
            },
            complete: finish,
          }),
        );
      };
      const src = source.subscribe({
        next: (t) => {
          pending.push(t);
          start();
        },
        error: (e) => subscriber.error(e),
        complete: () => {
          sourceDone = true;
          if (!running) start();
        },
      });
      return () => {
        src.unsubscribe();
        inner?.unsubscribe();
      };
    });
}

/** A source's failure to load, with the manifest problems ("file:line:col: …") when known. */
export class LoadError extends Error {
  constructor(
    message: string,
    readonly problems?: readonly string[],
  ) {
    super(message);
    this.name = 'LoadError';
  }
}

/** A desired state, loaded: the spec and its identity. */
export interface LoadedState {
  readonly spec: Spec;
  /** Identity: the files' paths and hashes, or the commit. A new key is a new generation. */
  readonly key: string;
  readonly source: SourceStatus;
}

/** Where desired states come from: the manifest files (`run`) or a git repository (`sync`). */
export interface ManifestSource {
  /**
   * Load the desired state now. `reasons` are the kinds of the triggers of this run (a
   * git source fetches only on start, resync and SIGHUP). Throws when it cannot load.
   */
  load(reasons: ReadonlySet<TriggerKind>): Promise<LoadedState>;
  /** The state was applied: it is the last good one now. */
  accepted?(s: LoadedState): Promise<void> | void;
  /** The state was refused or failed to apply; the last good one stays in force. */
  rejected?(s: LoadedState, error: Error): Promise<void> | void;
  /** On a fresh start with nothing in memory: the last good state kept on disk, if any. */
  fallback?(): Promise<LoadedState | undefined>;
}

/** What the loop needs of an apply (engine.applyPlan's outcome has it). */
export interface Outcome {
  readonly plan: Plan;
  readonly writes: number;
  readonly residual: Plan;
  readonly timings?: Readonly<Record<string, number>>;
}

export interface ReconcilerDeps<O extends Outcome> {
  readonly source: ManifestSource;
  readonly store: StatusStore;
  readonly sink: EventSink;
  readonly pruneAll: boolean;
  /**
   * Observe, plan, apply, verify — under the instance lock. Throws UsageError on mass
   * deletion. `full`: observe everything afresh (start, resync, SIGHUP) rather than
   * trust the daemon's in-memory observation.
   */
  apply(spec: Spec, opts: { pruneAll: boolean; full: boolean }): Promise<O>;
  /** Persist the last apply (network ls/inspect); failures are logged, not fatal. */
  record?(s: LoadedState, outcome: O, durationMs: number): Promise<void>;
  /** After every reconcile; `firstConverge` once, on the first converged run. */
  onReconciled?(firstConverge: boolean, reasons: ReadonlySet<TriggerKind>): void;
  now?(): Date;
}

export interface RunReport {
  readonly result: ReconcileResult;
  readonly actions: number;
  readonly writes: number;
  readonly durationMs: number;
  readonly generation: number;
}

const MAX_CHANGES = 100;

/** One line: a SpecError's first problem (and how many more), else the message. */
export function errText(e: unknown): string {
  if (e instanceof SpecError && e.problems.length) {
    const more = e.problems.length - 1;
    return `the manifests are invalid: ${formatProblem(e.problems[0]!)}${more ? ` (and ${more} more)` : ''}`;
  }
  return e instanceof Error ? e.message : String(e);
}

/** One reconcile per call, never throwing; remembers the last good desired state. */
export class Reconciler<O extends Outcome> {
  private lastGood: LoadedState | undefined;
  /** A key whose apply was refused (mass deletion): not retried until it changes or SIGHUP. */
  private refusedKey: string | undefined;
  private inFlight: Promise<RunReport> | undefined;
  /** Milliseconds of the run's own steps (loading the manifests, recording the apply). */
  private laps: Record<string, number> = {};
  private lastLoadError: string | undefined;

  constructor(private readonly deps: ReconcilerDeps<O>) {}

  /** Resolves when the reconcile in progress (if any) has ended. */
  async idle(): Promise<void> {
    await this.inFlight?.catch(() => undefined);
  }

  run(batch: readonly Trigger[]): Promise<RunReport> {
    const p = this.runNow(batch).catch((e): RunReport => {
      // runNow handles its own failures; this is the last line of defence.
      this.deps.sink.emit({
        level: 'error',
        code: DaemonCode.reconcileFailed,
        message: `reconcile crashed: ${errText(e)}`,
      });
      return {
        result: 'failed',
        actions: 0,
        writes: 0,
        durationMs: 0,
        generation: this.deps.store.get().generation,
      };
    });
    this.inFlight = p;
    return p;
  }

  private async runNow(batch: readonly Trigger[]): Promise<RunReport> {
    const { deps } = this;
    const { store, sink } = deps;
    const now = () => deps.now?.() ?? new Date();
    const t0 = performance.now();
    this.laps = {};
    const reasons = new Set(batch.map((t) => t.kind));
    const full = reasons.has('start') || reasons.has('resync') || reasons.has('sighup');
    const trigger = batch.map((t) => (t.detail ? `${t.kind}: ${t.detail}` : t.kind));
    if (reasons.has('sighup')) this.refusedKey = undefined;

    // 1. Load the desired state.
    let candidate: LoadedState | undefined;
    try {
      candidate = await deps.source.load(reasons);
      this.laps.load = Math.round((performance.now() - t0) * 10) / 10;
      store.problem('load', null);
      this.lastLoadError = undefined;
    } catch (e) {
      const problems =
        e instanceof SpecError
          ? e.problems.map(formatProblem)
          : e instanceof LoadError
            ? e.problems
            : undefined;
      const repeated = errText(e) === this.lastLoadError;
      this.lastLoadError = errText(e);
      if (!repeated) store.problem('load', { message: errText(e), problems });
      sink.emit({
        // The same failure on every resync is logged once at warn level.
        level: repeated ? 'debug' : 'warn',
        code: DaemonCode.loadFailed,
        message: this.lastGood
          ? `the manifests failed to load; generation ${store.get().generation} stays in force: ${errText(e)}`
          : `the manifests failed to load; nothing is applied until they do: ${errText(e)}`,
        data: { error: errText(e), problems },
      });
    }
    if (candidate && candidate.key === this.refusedKey && candidate.key !== this.lastGood?.key) {
      candidate = undefined; // refused before: the last good state stays, the problem stays reported
    }
    let target = candidate ?? this.lastGood;
    if (!target && deps.source.fallback) target = await deps.source.fallback().catch(() => undefined);
    if (!target) {
      return this.finish(
        t0,
        reasons,
        trigger,
        'no-manifests',
        undefined,
        'no valid manifests have been loaded yet',
      );
    }

    // 2. Apply it; a new state that is refused or fails falls back to the last good one.
    let isNew = target.key !== this.lastGood?.key;
    let outcome: O;
    try {
      outcome = await deps.apply(target.spec, { pruneAll: deps.pruneAll, full });
    } catch (e) {
      if (!isNew) return this.finish(t0, reasons, trigger, 'failed', undefined, errText(e));
      const refused = e instanceof UsageError;
      if (refused) this.refusedKey = target.key;
      await this.hook('rejected', () => deps.source.rejected?.(target!, e as Error));
      const commit = target.source.commit;
      store.problem('rejected', {
        message: `${refused ? 'refused' : 'failed to apply'} ${commit ? `commit ${commit.slice(0, 12)}` : 'the new manifests'}: ${errText(e)}`,
        commit,
      });
      sink.emit({
        level: 'warn',
        code: DaemonCode.rejected,
        message: `${refused ? 'refused' : 'failed to apply'} the new desired state${commit ? ` (commit ${commit.slice(0, 12)})` : ''}; ${this.lastGood ? `generation ${store.get().generation} stays in force` : 'nothing was applied before'}: ${errText(e)}`,
        data: { error: errText(e), commit, refused },
      });
      if (!this.lastGood) return this.finish(t0, reasons, trigger, 'failed', undefined, errText(e));
      target = this.lastGood;
      isNew = false;
      try {
        outcome = await deps.apply(target.spec, { pruneAll: deps.pruneAll, full });
      } catch (e2) {
        return this.finish(t0, reasons, trigger, 'failed', undefined, errText(e2));
      }
    }

    // 3. Success: a new state becomes the last good one.
    if (isNew) {
      this.lastGood = target;
      this.refusedKey = undefined;
      const accepted = target;
      store.update((d) => {
        d.generation += 1;
        d.source = castDraft(accepted.source);
      });
      store.problem('rejected', null);
      await this.hook('accepted', () => deps.source.accepted?.(accepted));
      for (const w of target.spec.warnings)
        sink.emit({
          level: 'warn',
          code: w.code as `TETHER_${string}`,
          message: `${w.src ? `${w.src.file}:${w.src.line}:${w.src.col}: ` : ''}${w.message}`,
        });
    }
    const durationMs = Math.round(performance.now() - t0);
    if (deps.record && (outcome.writes > 0 || isNew)) {
      const r0 = performance.now();
      await deps.record(target, outcome, durationMs).catch((e) =>
        sink.emit({
          level: 'warn',
          code: DaemonCode.reconcileFailed,
          message: `could not record the apply: ${errText(e)}`,
        }),
      );
      this.laps.record = Math.round((performance.now() - r0) * 10) / 10;
    }
    const actions = outcome.plan.actions.length;
    if (!isNew && actions > 0) {
      store.update((d) => {
        d.driftRepaired.reconciles += 1;
        d.driftRepaired.actions += actions;
        d.driftRepaired.last = now().toISOString();
      });
    }
    const converged = outcome.residual.actions.length === 0;
    if (!converged) {
      sink.emit({
        level: 'warn',
        code: DaemonCode.notConverged,
        message: `not converged: ${outcome.residual.actions.length} actions remain after apply`,
        data: { changes: outcome.residual.actions.slice(0, MAX_CHANGES).map(describe) },
      });
    }
    return this.finish(t0, reasons, trigger, converged ? 'converged' : 'not-converged', outcome, null, isNew);
  }

  /** A source's accepted/rejected hook: its failure is logged, the run goes on. */
  private async hook(what: string, fn: () => Promise<void> | void): Promise<void> {
    try {
      await fn();
    } catch (e) {
      this.deps.sink.emit({
        level: 'warn',
        code: DaemonCode.reconcileFailed,
        message: `the source's ${what} step failed: ${errText(e)}`,
      });
    }
  }

  private finish(
    t0: number,
    reasons: ReadonlySet<TriggerKind>,
    trigger: readonly string[],
    result: ReconcileResult,
    outcome: O | undefined,
    error: string | null,
    isNew = false,
  ): RunReport {
    const { store, sink } = this.deps;
    const durationMs = Math.round(performance.now() - t0);
    const actions = outcome?.plan.actions.length ?? 0;
    const writes = outcome?.writes ?? 0;
    const changes = (outcome?.plan.actions ?? []).slice(0, MAX_CHANGES).map(describe);
    const wasReady = store.get().daemon.ready;
    const time = (this.deps.now?.() ?? new Date()).toISOString();
    store.problem('reconcile', error && result === 'failed' ? { message: error } : null);
    const s = store.update((d) => {
      d.reconciles += 1;
      d.converged = result === 'converged';
      d.lastReconcile = castDraft({
        time,
        trigger,
        result,
        generation: d.generation,
        actions,
        writes,
        durationMs,
        changes,
        error,
      });
      if (result === 'converged') d.daemon.ready = true;
    });
    if (result === 'failed') {
      sink.emit({
        level: 'error',
        code: DaemonCode.reconcileFailed,
        message: `reconcile failed after ${durationMs} ms: ${error}`,
        data: { trigger, durationMs, error },
      });
    } else if (result !== 'no-manifests') {
      const what = actions
        ? `${actions} action${actions > 1 ? 's' : ''} (${writes} kernel writes)`
        : 'no changes (0 writes)';
      sink.emit({
        level: 'info',
        code: DaemonCode.reconciled,
        message: `reconciled generation ${s.generation}: ${what} in ${durationMs} ms${result === 'converged' ? '' : ', NOT converged'}${isNew ? ' (new desired state)' : actions ? ' (drift repaired)' : ''} [${trigger.join(', ')}]`,
        data: {
          trigger,
          generation: s.generation,
          actions,
          writes,
          durationMs,
          timings: { ...this.laps, ...outcome?.timings },
          converged: result === 'converged',
          newState: isNew,
          changes,
        },
      });
    }
    const first = result === 'converged' && !wasReady;
    if (first) {
      sink.emit({
        level: 'info',
        code: DaemonCode.ready,
        message: `ready: converged to generation ${s.generation}`,
        data: { generation: s.generation },
      });
    }
    this.deps.onReconciled?.(first, reasons);
    return { result, actions, writes, durationMs, generation: s.generation };
  }
}
