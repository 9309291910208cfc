/**
 * One reconcile, the same path for `plan`, `apply`, `destroy` and the daemon:
 * load → observe → resolve (IPAM) → desired → diff → safety checks → [apply → verify].
 */

import { apply } from './apply/apply.js';
import { desiredState } from './diff/desired.js';
import { diff } from './diff/diff.js';
import type { Action, Plan } from './diff/plan.js';
import { startSpawner, stopSpawner } from './kernel/exec.js';
import { HostNetlink } from './kernel/netlink.js';
import { KernelError, UsageError } from './model/errors.js';
import { nftTableName } from './model/names.js';
import type { Resolved } from './model/resolved.js';
import type { Spec } from './model/spec.js';
import { EMPTY_STATE, type KernelState } from './model/state.js';
import { LiveObserver } from './observe/live.js';
import { type Observation, observe } from './observe/observe.js';
import { resolve } from './spec/ipam.js';

export interface PlanResult {
  readonly plan: Plan;
  /** Milliseconds of the plan's steps: observe, resolve (IPAM), desired, diff. */
  readonly steps?: Readonly<Record<string, number>>;
  readonly observation: Observation;
  readonly resolved?: Resolved;
  readonly desired: KernelState;
}

export interface Engine {
  readonly instance: string;
  readonly nl: HostNetlink;
  /** The daemon's in-memory observation (observe/live.ts); one-shot commands read afresh. */
  readonly live?: LiveObserver;
  close(): void;
}

export function openEngine(instance: string, opts: { live?: boolean } = {}): Engine {
  const nl = new HostNetlink();
  const live = opts.live ? new LiveObserver(nl, instance) : undefined;
  // The daemon grows to hundreds of MiB at scale: it starts ip and nft through a small spawner.
  if (opts.live) startSpawner();
  return {
    instance,
    nl,
    live,
    close: () => {
      live?.close();
      nl.close();
      if (opts.live) stopSpawner();
    },
  };
}

/** Per spec (the daemon observes twice or more per spec, 1000 containers each). */
const attachedBySpec = new WeakMap<Spec, Readonly<Record<string, string>>>();
const NO_SPEC: Readonly<Record<string, string>> = Object.freeze({});

function attachedOf(spec: Spec | undefined): Readonly<Record<string, string>> {
  if (!spec) return NO_SPEC;
  let out = attachedBySpec.get(spec);
  if (!out) {
    const found: Record<string, string> = {};
    for (const c of Object.values(spec.containers)) if (c.netns && c.mode !== 'host') found[c.name] = c.netns;
    attachedBySpec.set(spec, (out = found));
  }
  return out;
}

/** What this instance owns now: the daemon's in-memory observation, or a fresh one. */
function observeFor(engine: Engine, spec: Spec | undefined): Promise<Observation> {
  const scope = { instance: engine.instance, attached: attachedOf(spec) };
  return engine.live ? engine.live.observe(scope) : observe(engine.nl, scope);
}

/**
 * The daemon's last plan with the spec it was made for. A plan is a function of the spec
 * and the observation, and the live observer hands back the same observation object while
 * nothing has changed: same spec, same observation, same plan.
 */
const lastPlans = new WeakMap<Engine, { spec: Spec | undefined; result: PlanResult }>();

/** Observe and plan. `spec` undefined means "nothing desired" (destroy). */
export async function makePlan(engine: Engine, spec: Spec | undefined): Promise<PlanResult> {
  const t0 = performance.now();
  const observation = await observeFor(engine, spec);
  const live = engine.live;
  const last = live && lastPlans.get(engine);
  if (last && last.spec === spec && last.result.observation === observation) {
    live.stats.plansReused++;
    return last.result;
  }
  const result = planFrom(engine, spec, observation, ms(t0, performance.now()));
  if (live) lastPlans.set(engine, { spec, result });
  return result;
}

function planFrom(
  engine: Engine,
  spec: Spec | undefined,
  observation: Observation,
  observeMs: number,
): PlanResult {
  const t0 = performance.now();
  const resolved = spec ? resolve(spec, engine.instance, observation.state, observation.host) : undefined;
  const t1 = performance.now();
  const desired = resolved ? desiredState(resolved, observation.resolvConf) : EMPTY_STATE;
  const t2 = performance.now();
  const plan = diff(desired, observation.state, nftTableName(engine.instance));
  checkClashes(plan, observation, nftTableName(engine.instance));
  const steps = {
    observe: observeMs,
    resolve: ms(t0, t1),
    desired: ms(t1, t2),
    diff: ms(t2, performance.now()),
  };
  return { plan, observation, resolved, desired, steps };
}

/** A name tether wants that a foreign object already holds is an error, never a takeover. */
export function checkClashes(plan: Plan, obs: Observation, table: string): void {
  const problems: string[] = [];
  const host = new Set(obs.foreign.hostLinks);
  for (const a of plan.actions) {
    if ((a.op === 'bridge.create' || a.op === 'veth.create') && host.has(a.name)) {
      problems.push(
        `interface ${a.name} already exists on the host and is not tether's (wanted for ${a.op === 'bridge.create' ? `network ${a.network}` : `container ${a.container}`})`,
      );
    }
    if (a.op === 'veth.create' && obs.foreign.nsLinks[a.container]?.includes(a.peer)) {
      problems.push(
        `interface ${a.peer} already exists in the namespace of container ${a.container} and is not tether's`,
      );
    }
    if (a.op === 'netns.create' && obs.foreign.netns.includes(a.name)) {
      problems.push(
        `namespace ${a.name} already exists and is not tether's (wanted for container ${a.container})`,
      );
    }
  }
  if (obs.state.nft.skeleton?.startsWith('skeleton-none')) {
    problems.push(
      `nftables table inet ${table} exists and was not made by tether (it has no skeleton marker chain)`,
    );
  }
  if (problems.length) throw new KernelError('name clash', problems.join('\n'), 'exists');
}

/** Objects tether owns now, for the mass-deletion guard. */
function ownedCount(s: KernelState): number {
  return Object.keys(s.bridges).length + Object.keys(s.namespaces).length + Object.keys(s.veths).length;
}

const counted = (a: Action) => a.op === 'bridge.delete' || a.op === 'netns.delete' || a.op === 'veth.delete';

/**
 * SPEC §3: a manifest set that would delete most of what exists is refused unless
 * --prune-all. "Most": more than half of the owned bridges, namespaces and veths, and at
 * least 3 of them.
 */
export function massDeletion(plan: Plan, actual: KernelState): string | undefined {
  if (!plan.actions.some(counted)) return undefined; // (counting what is owned is O(N))
  const total = ownedCount(actual);
  // A deleted namespace takes its veths with it: they count, though the plan names none.
  const dying = new Set(plan.actions.flatMap((a) => (a.op === 'netns.delete' ? [a.container] : [])));
  const vethsWithNs = Object.values(actual.veths).filter((v) => dying.has(v.container)).length;
  const gone = plan.actions.filter(counted).length + vethsWithNs;
  if (gone >= 3 && gone * 2 > total) {
    return `refusing to delete ${gone} of the ${total} objects tether owns (bridges, namespaces, veths); check the manifests, or pass --prune-all if this is intended`;
  }
  return undefined;
}

export interface ApplyOutcome extends PlanResult {
  readonly writes: number;
  /** Plan observed right after applying: empty when converged. */
  readonly residual: Plan;
  /** The observation and plan made right after applying (the verification). */
  readonly after: PlanResult;
  /** Milliseconds: plan (observe + diff), apply and its phases, verify (re-observe + diff). */
  readonly timings: Readonly<Record<string, number>>;
}

const ms = (a: number, b: number) => Math.round((b - a) * 10) / 10;
const prefix = (p: string, o: Readonly<Record<string, number>>) =>
  Object.fromEntries(Object.entries(o).map(([k, v]) => [p + k, v]));

export async function applyPlan(
  engine: Engine,
  spec: Spec | undefined,
  opts: { pruneAll?: boolean } = {},
): Promise<ApplyOutcome> {
  const t0 = performance.now();
  const first = await makePlan(engine, spec);
  if (spec && !opts.pruneAll) {
    const refusal = massDeletion(first.plan, first.observation.state);
    if (refusal) throw new UsageError(refusal);
  }
  const planned = performance.now();
  if (first.plan.actions.length === 0) {
    return {
      ...first,
      writes: 0,
      residual: first.plan,
      after: first,
      timings: { plan: ms(t0, planned), ...prefix('plan.', first.steps ?? {}) },
    };
  }
  let result: Awaited<ReturnType<typeof apply>>;
  try {
    engine.live?.releasing(first.plan);
    // Grouped on first use: only a plan that deletes namespaces asks.
    let vethsByContainer: Map<string, string[]> | undefined;
    const vethsOf = (c: string) => {
      if (!vethsByContainer) {
        vethsByContainer = new Map();
        for (const v of Object.values(first.observation.state.veths)) {
          const list = vethsByContainer.get(v.container);
          if (list) list.push(v.name);
          else vethsByContainer.set(v.container, [v.name]);
        }
      }
      return vethsByContainer.get(c) ?? [];
    };
    result = await apply(first.plan, { instance: engine.instance, nl: engine.nl, vethsOf });
  } catch (e) {
    await engine.live?.applied(first.plan, false);
    throw e;
  }
  const { writes, phases } = result;
  await engine.live?.applied(first.plan, true);
  const applied = performance.now();
  // Verify: observe again and diff against the same desired state (recomputing it would
  // only repeat IPAM, which keeps what exists: the same answer, at O(N) cost).
  const observation = await observeFor(engine, spec);
  const observed = performance.now();
  const again: PlanResult = {
    plan: diff(first.desired, observation.state, nftTableName(engine.instance)),
    observation,
    resolved: first.resolved,
    desired: first.desired,
  };
  // Converged, the verification is this spec's plan for the kernel as it is now: the
  // reconcile that the apply's own notifications trigger next reuses it while nothing else
  // changes. (A residual plan is made again, with its checks, by that reconcile.)
  if (engine.live && again.plan.actions.length === 0) lastPlans.set(engine, { spec, result: again });
  const timings = {
    plan: ms(t0, planned),
    ...prefix('plan.', first.steps ?? {}),
    ...prefix('apply.', phases),
    apply: ms(planned, applied),
    verify: ms(applied, performance.now()),
    'verify.observe': ms(applied, observed),
  };
  return { ...first, writes, residual: again.plan, after: again, timings };
}
