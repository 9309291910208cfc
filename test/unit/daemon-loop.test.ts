/**
 * The daemon's loop without a kernel: trigger coalescing and debouncing as rxjs marble
 * tests (virtual time), the rtnetlink ownership filter, and the reconciler's "last good
 * state" rules with a fake source and a fake apply.
 *
 * Marble time: one frame per character, `10ms` advances ten frames.
 */
import { map, merge, Observable, throwError, timer } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import { describe, expect, it } from 'vitest';
import { parseDuration } from '../../src/daemon/duration.js';
import { RecordingSink } from '../../src/daemon/events.js';
import {
  coalesceRuns,
  type LoadedState,
  type ManifestSource,
  type Outcome,
  Reconciler,
} from '../../src/daemon/loop.js';
import { initialStatus, StatusStore } from '../../src/daemon/state.js';
import {
  auditBatch,
  debounceBatch,
  KernelFilter,
  mergeBatch,
  type Trigger,
  type TriggerKind,
} from '../../src/daemon/triggers.js';
import type { Action, Plan } from '../../src/diff/plan.js';
import { SpecError, UsageError } from '../../src/model/errors.js';
import type { Spec } from '../../src/model/spec.js';

const scheduler = () => new TestScheduler((actual, expected) => expect(actual).toEqual(expected));

/** A run that takes `frames` of virtual time and then emits its batch joined. */
const slowRun = (frames: number, seen: string[][]) => (batch: readonly string[]) => {
  seen.push([...batch]);
  return timer(frames).pipe(map(() => batch.join('')));
};

describe('coalesceRuns (marbles)', () => {
  it('a burst during a run gives exactly one trailing run', () => {
    const seen: string[][] = [];
    scheduler().run(({ hot, expectObservable }) => {
      // a starts run 1 at 0 (until 10); b, c, d arrive during it; e arrives during run 2.
      const triggers = hot('a-bcd 10ms e');
      expectObservable(triggers.pipe(coalesceRuns(slowRun(10, seen)))).toBe('10ms x 9ms y 9ms z', {
        x: 'a',
        y: 'bcd',
        z: 'e',
      });
    });
    expect(seen).toEqual([['a'], ['b', 'c', 'd'], ['e']]);
  });

  it('fifty triggers during one run still make one trailing run', () => {
    const seen: string[][] = [];
    scheduler().run(({ hot, expectObservable }) => {
      const burst = 'b'.repeat(50);
      const triggers = hot(`a${burst}`);
      // run 1: [a] 0→100; every b (frames 1..50) arrives during it → run 2 100→200.
      expectObservable(triggers.pipe(coalesceRuns(slowRun(100, seen)))).toBe('100ms x 99ms y', {
        x: 'a',
        y: burst,
      });
    });
    expect(seen).toHaveLength(2);
    expect(seen[1]).toHaveLength(50);
  });

  it('triggers while idle each start a run at once; runs never overlap', () => {
    const seen: string[][] = [];
    let active = 0;
    let maxActive = 0;
    scheduler().run(({ hot, expectObservable }) => {
      const run = (batch: readonly string[]) => {
        seen.push([...batch]);
        return new Observable<string>((sub) => {
          maxActive = Math.max(maxActive, ++active);
          const t = timer(5).subscribe(() => {
            active--;
            sub.next(batch.join(''));
            sub.complete();
          });
          return () => t.unsubscribe();
        });
      };
      const triggers = hot('a 9ms b 9ms c');
      expectObservable(triggers.pipe(coalesceRuns(run))).toBe('5ms x 9ms y 9ms z', {
        x: 'a',
        y: 'b',
        z: 'c',
      });
    });
    expect(seen).toEqual([['a'], ['b'], ['c']]);
    expect(maxActive).toBe(1);
  });

  it('a failing run is reported and the loop goes on (the outer stream never errors)', () => {
    const errors: unknown[] = [];
    scheduler().run(({ hot, expectObservable }) => {
      const run = (batch: readonly string[]) =>
        batch.includes('x') ? throwError(() => new Error('boom')) : timer(2).pipe(map(() => batch.join('')));
      const triggers = hot('x 4ms a');
      expectObservable(triggers.pipe(coalesceRuns(run, (e) => errors.push(e)))).toBe('7ms a');
    });
    expect(errors).toHaveLength(1);
  });

  it('a run that throws synchronously is reported too', () => {
    const errors: unknown[] = [];
    scheduler().run(({ hot, expectObservable }) => {
      const run = (batch: readonly string[]): Observable<string> => {
        if (batch.includes('x')) throw new Error('sync boom');
        return timer(1).pipe(map(() => batch.join('')));
      };
      expectObservable(hot('x-a').pipe(coalesceRuns(run, (e) => errors.push(e)))).toBe('---a');
    });
    expect(errors).toHaveLength(1);
  });

  it('completes after the trailing run when the triggers complete', () => {
    const seen: string[][] = [];
    scheduler().run(({ cold, expectObservable }) => {
      expectObservable(cold('ab|').pipe(coalesceRuns(slowRun(3, seen)))).toBe('3ms x 2ms (y|)', {
        x: 'a',
        y: 'b',
      });
    });
    expect(seen).toEqual([['a'], ['b']]);
  });
});

describe('trigger batching (marbles)', () => {
  it('debounces manifest events: a save in several steps is one trigger', () => {
    scheduler().run(({ hot, expectObservable }) => {
      // An editor's rename-and-replace save: rename to backup, write, (atomic) change,
      // 20 ms apart; then, much later, another save.
      const events = hot('a 19ms b 19ms c 299ms d', {
        a: 'a.yaml removed',
        b: 'a.yaml added',
        c: 'a.yaml changed',
        d: 'b.yaml added',
      });
      // c at 40 → quiet until 140; d at 340 → 440.
      expectObservable(events.pipe(debounceBatch(100))).toBe('140ms x 299ms y', {
        x: ['a.yaml removed', 'a.yaml added', 'a.yaml changed'],
        y: ['b.yaml added'],
      });
    });
  });

  it('settles kernel bursts with bounded latency (audit, not debounce)', () => {
    scheduler().run(({ hot, expectObservable }) => {
      // A steady stream every 5 frames would starve a debounce of 20; audit emits 20
      // frames after the first event of a window: a (0) … e (20) at 20, f (25) at 45.
      const events = hot('a 4ms b 4ms c 4ms d 4ms e 4ms f');
      expectObservable(events.pipe(auditBatch(20))).toBe('20ms x 24ms y', {
        x: ['a', 'b', 'c', 'd', 'e'],
        y: ['f'],
      });
    });
  });

  it('merges a batch into one trigger with the distinct details', () => {
    scheduler().run(({ cold, expectObservable }) => {
      const batches = cold<Trigger[]>('x|', {
        x: [
          { kind: 'kernel', detail: 'link br-1 deleted' },
          { kind: 'kernel', detail: 'link br-1 deleted' },
          { kind: 'kernel', detail: 'address 172.18.0.1/16 removed from br-1' },
        ],
      });
      expectObservable(batches.pipe(mergeBatch('kernel'))).toBe('x|', {
        x: { kind: 'kernel', detail: 'link br-1 deleted; address 172.18.0.1/16 removed from br-1' },
      });
    });
  });

  it('file saves during a reconcile coalesce with the other triggers into one trailing run', () => {
    const seen: string[][] = [];
    scheduler().run(({ hot, expectObservable }) => {
      const start = hot('s');
      const files = hot('5ms a 9ms b').pipe(
        debounceBatch(10),
        map((b) => b.join('+')),
      );
      const kernel = hot('30ms k');
      const triggers = merge(start, files, kernel);
      // s: run 0→50. a+b debounced to 25 and k at 30 both land during it → one run 50→100.
      expectObservable(triggers.pipe(coalesceRuns(slowRun(50, seen)))).toBe('50ms x 49ms y', {
        x: 's',
        y: 'a+bk',
      });
    });
    expect(seen).toEqual([['s'], ['a+b', 'k']]);
  });
});

describe('KernelFilter', () => {
  const own = (n: string) => `tether:inst:net:${n}`;

  it('reports owned links only, and each change once', () => {
    const f = new KernelFilter('inst');
    f.seed([
      { index: 5, name: 'br-a', alias: own('a'), up: true },
      { index: 6, name: 'eth0', up: true },
      { index: 7, name: 'br-other', alias: 'tether:other:net:a', up: true },
    ]);
    expect(f.ownedCount()).toBe(1);
    expect(f.link('new', { index: 6, name: 'eth0', up: false })).toBeUndefined();
    expect(f.link('del', { index: 7, name: 'br-other', alias: 'tether:other:net:a' })).toBeUndefined();
    // The same facts again (a carrier change, bridge port state): nothing.
    expect(f.link('new', { index: 5, name: 'br-a', alias: own('a'), up: true })).toBeUndefined();
    expect(f.link('new', { index: 5, name: 'br-a', alias: own('a'), up: false })).toBe('link br-a changed');
    expect(f.link('del', { index: 5, name: 'br-a', alias: own('a') })).toBe('link br-a deleted');
    expect(f.ownedCount()).toBe(0);
  });

  it('follows links by index: an alias removed by hand, addresses of owned links', () => {
    const f = new KernelFilter('inst');
    expect(f.link('new', { index: 9, name: 'veth1', alias: 'tether:inst:ep:c:n', up: true })).toBe(
      'link veth1 appeared',
    );
    expect(f.addr('del', 9, '172.18.0.1/16', 0)).toBe('address 172.18.0.1/16 removed from veth1');
    expect(f.addr('new', 9, 'fe80::1/64', 253)).toBeUndefined(); // kernel-made link-local
    expect(f.addr('new', 3, '10.0.0.1/8', 0)).toBeUndefined(); // not ours
    expect(f.link('new', { index: 9, name: 'veth1', up: true })).toBe('link veth1 lost its tether alias');
    expect(f.link('new', { index: 9, name: 'veth1', up: true })).toBeUndefined();
  });
});

describe('parseDuration', () => {
  it('reads the usual forms', () => {
    expect(parseDuration('30s', '--resync')).toBe(30_000);
    expect(parseDuration('500ms', '--resync')).toBe(500);
    expect(parseDuration('2m', '--resync')).toBe(120_000);
    expect(parseDuration('1m30s', '--resync')).toBe(90_000);
    expect(parseDuration('15', '--resync')).toBe(15_000);
  });
  it('refuses anything else with a usage error naming the option', () => {
    expect(() => parseDuration('soon', '--interval')).toThrow(/invalid --interval 'soon'/);
    expect(() => parseDuration('0s', '--interval')).toThrow(UsageError);
  });
});

// --- The reconciler with a fake source and a fake apply -----------------------------

const spec = (name: string) => ({ name, warnings: [], files: [] }) as unknown as Spec;
const state = (key: string): LoadedState => ({
  spec: spec(key),
  key,
  source: { kind: 'files', path: '/m', files: [{ path: `/m/${key}.yaml`, sha256: key }] },
});
const plan = (n: number): Plan => ({
  actions: Array.from({ length: n }, () => ({ op: 'file.delete', path: '/x' }) as Action),
});
const outcome = (actions: number): Outcome => ({ plan: plan(actions), writes: actions, residual: plan(0) });

function harness(load: () => LoadedState | Error) {
  const applied: string[] = [];
  const sink = new RecordingSink();
  const store = new StatusStore(
    initialStatus({ instance: 'i', mode: 'run', follows: '/m', resyncMs: 1000, pruneAll: false }),
  );
  let readyCalls = 0;
  let actionsNext = 0;
  const refuse = new Set<string>();
  const source: ManifestSource = {
    load: async () => {
      const r = load();
      if (r instanceof Error) throw r;
      return r;
    },
  };
  const rec = new Reconciler({
    source,
    store,
    sink,
    pruneAll: false,
    apply: async (s) => {
      const name = (s as unknown as { name: string }).name;
      if (refuse.has(name)) throw new UsageError(`refusing to delete 3 of the 4 objects (${name})`);
      applied.push(name);
      const n = actionsNext;
      actionsNext = 0;
      return outcome(n);
    },
    onReconciled: (first) => {
      if (first) readyCalls++;
    },
  });
  const run = (kind: TriggerKind = 'resync') => rec.run([{ kind }]);
  return {
    applied,
    sink,
    store,
    refuse,
    run,
    ready: () => readyCalls,
    willChange: (n: number) => {
      actionsNext = n;
    },
  };
}

describe('Reconciler', () => {
  it('keeps the last good state when the manifests break, and reports the error until fixed', async () => {
    let next: LoadedState | Error = state('g1');
    const h = harness(() => next);
    h.willChange(3);
    expect((await h.run('start')).result).toBe('converged');
    expect(h.store.get().generation).toBe(1);
    next = new SpecError([{ message: 'YAML syntax error', src: { file: '/m/a.yaml', line: 3, col: 1 } }]);
    const r = await h.run('file');
    expect(r.result).toBe('converged'); // g1 still reconciled: drift repair goes on
    expect(h.applied).toEqual(['g1', 'g1']);
    const s = h.store.get();
    expect(s.generation).toBe(1);
    expect(s.errors.map((e) => e.kind)).toEqual(['load']);
    expect(s.errors[0]!.problems).toEqual(['/m/a.yaml:3:1: YAML syntax error']);
    expect(h.sink.events.some((e) => e.code === 'TETHER_W0510')).toBe(true);
    next = state('g2');
    await h.run('file');
    expect(h.store.get().generation).toBe(2);
    expect(h.store.get().errors).toEqual([]);
    expect(h.ready()).toBe(1); // READY once, on the first converge
  });

  it('refuses a mass deletion, keeps the last good state, and retries it only on SIGHUP', async () => {
    let next = state('good');
    const h = harness(() => next);
    await h.run('start');
    next = state('empty');
    h.refuse.add('empty');
    await h.run('file');
    expect(h.applied).toEqual(['good', 'good']);
    expect(h.store.get().errors.map((e) => e.kind)).toEqual(['rejected']);
    expect(h.store.get().errors[0]!.message).toMatch(/^refused the new manifests: refusing to delete/);
    await h.run('resync'); // same files: not tried again
    expect(h.applied).toEqual(['good', 'good', 'good']);
    expect(h.sink.events.filter((e) => e.code === 'TETHER_W0511')).toHaveLength(1);
    await h.run('sighup'); // tried again, refused again
    expect(h.sink.events.filter((e) => e.code === 'TETHER_W0511')).toHaveLength(2);
    h.refuse.clear();
    await h.run('sighup');
    expect(h.applied.at(-1)).toBe('empty');
    expect(h.store.get().generation).toBe(2);
    expect(h.store.get().errors).toEqual([]);
  });

  it('counts changes without a new desired state as drift repairs', async () => {
    const h = harness(() => state('g'));
    h.willChange(5);
    await h.run('start'); // a new state: not drift
    await h.run('resync'); // nothing to do
    h.willChange(4);
    await h.run('kernel'); // a bridge deleted by hand, restored
    expect(h.store.get().driftRepaired).toMatchObject({ reconciles: 1, actions: 4 });
    expect(h.store.get().reconciles).toBe(3);
    expect(h.store.get().lastReconcile).toMatchObject({
      trigger: ['kernel'],
      actions: 4,
      result: 'converged',
    });
  });

  it('without any good state, a broken start applies nothing and is not ready', async () => {
    const h = harness(() => new Error('no such directory'));
    expect((await h.run('start')).result).toBe('no-manifests');
    expect(h.applied).toEqual([]);
    expect(h.store.get().daemon.ready).toBe(false);
    expect(h.ready()).toBe(0);
  });
});
