/**
 * The daemon's state as `tether status` shows it, managed with immer: every change is
 * a `produce` of a new deeply frozen document (STYLE P15), so the status server can
 * hand out the current value at any moment without copying or locking.
 */
import { castDraft, type Draft, produce } from 'immer';
import type { ManifestFile } from '../model/spec.js';

/** Where the desired state in force came from. */
export interface SourceStatus {
  readonly kind: 'files' | 'git';
  /** The manifest path the spec was loaded from (for git: inside the checkout). */
  readonly path: string;
  /** The manifest files and their sha256, as loaded. */
  readonly files: readonly ManifestFile[];
  /** GitOps: the repository, the ref followed and the commit applied. */
  readonly repo?: string;
  readonly ref?: string;
  readonly commit?: string;
}

export type ReconcileResult = 'converged' | 'not-converged' | 'failed' | 'no-manifests';

export interface ReconcileStatus {
  /** When the reconcile ended (ISO 8601). */
  readonly time: string;
  /** What caused it: trigger kinds with details ("file: a.yaml changed"). */
  readonly trigger: readonly string[];
  readonly result: ReconcileResult;
  /** The generation it converged to (or tried to). */
  readonly generation: number;
  readonly actions: number;
  readonly writes: number;
  readonly durationMs: number;
  /** The actions, one line each (+ create, ~ change, - delete); the first 100. */
  readonly changes: readonly string[];
  readonly error: string | null;
}

export type ProblemKind = 'load' | 'rejected' | 'reconcile' | 'fetch';

/** A problem that is current: cleared when it no longer holds (manifests fixed, apply ok). */
export interface Problem {
  readonly kind: ProblemKind;
  readonly time: string;
  readonly message: string;
  /** GitOps: the commit concerned. */
  readonly commit?: string;
  /** Manifest problems, "file:line:col: sentence" each. */
  readonly problems?: readonly string[];
}

export interface DaemonStatus {
  readonly instance: string;
  readonly daemon: {
    readonly pid: number;
    readonly mode: 'run' | 'sync';
    readonly startedAt: string;
    /** The manifest path (run) or repository (sync) the daemon follows. */
    readonly follows: string;
    readonly resyncMs: number;
    readonly pruneAll: boolean;
    /** The first converge happened (READY=1 was sent). */
    readonly ready: boolean;
  };
  /** The kernel matched the desired state in force after the last reconcile. */
  readonly converged: boolean;
  /** Increments each time a new desired state (other file hashes, another commit) is applied. */
  readonly generation: number;
  /** The desired state in force (the last good one). */
  readonly source: SourceStatus | null;
  readonly lastReconcile: ReconcileStatus | null;
  readonly reconciles: number;
  /** Reconciles that changed the kernel without a new desired state: repairs of drift. */
  readonly driftRepaired: {
    readonly reconciles: number;
    readonly actions: number;
    readonly last: string | null;
  };
  /** GitOps: the last fetched commit. */
  readonly fetched: { readonly commit: string; readonly time: string } | null;
  /** Current problems, oldest first. */
  readonly errors: readonly Problem[];
}

export function initialStatus(init: {
  instance: string;
  mode: 'run' | 'sync';
  follows: string;
  resyncMs: number;
  pruneAll: boolean;
  pid?: number;
  now?: Date;
}): DaemonStatus {
  return produce(
    {
      instance: init.instance,
      daemon: {
        pid: init.pid ?? process.pid,
        mode: init.mode,
        startedAt: (init.now ?? new Date()).toISOString(),
        follows: init.follows,
        resyncMs: init.resyncMs,
        pruneAll: init.pruneAll,
        ready: false,
      },
      converged: false,
      generation: 0,
      source: null,
      lastReconcile: null,
      reconciles: 0,
      driftRepaired: { reconciles: 0, actions: 0, last: null },
      fetched: null,
      errors: [],
    } as DaemonStatus,
    () => {},
  );
}

/** Holds the current status; every update is an immer recipe. */
export class StatusStore {
  private current: DaemonStatus;
  constructor(init: DaemonStatus) {
    this.current = init;
  }

  get(): DaemonStatus {
    return this.current;
  }

  update(recipe: (d: Draft<DaemonStatus>) => void): DaemonStatus {
    this.current = produce(this.current, recipe);
    return this.current;
  }

  /** Set (replace) or clear the current problem of a kind. */
  problem(kind: ProblemKind, p: Omit<Problem, 'kind' | 'time'> | null, now = new Date()): void {
    this.update((d) => {
      const rest = d.errors.filter((e) => e.kind !== kind);
      d.errors = p ? [...rest, castDraft({ kind, time: now.toISOString(), ...p })] : rest;
    });
  }
}

/** The one-line summary for systemd's STATUS= and the text status. */
export function summary(s: DaemonStatus): string {
  const r = s.lastReconcile;
  const state = !r
    ? 'starting'
    : s.converged
      ? `converged (generation ${s.generation})`
      : r.result === 'no-manifests'
        ? 'waiting for valid manifests'
        : 'not converged';
  const errs = s.errors.length
    ? `; ${s.errors.length} error${s.errors.length > 1 ? 's' : ''}: ${s.errors[0]!.message.split('\n')[0]}`
    : '';
  return `${state}${errs}`;
}
