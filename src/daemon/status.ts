/** `tether status` when a daemon answers: its status document as text. */
import { formatDuration } from './duration.js';
import type { DaemonStatus } from './state.js';

const short = (sha: string) => sha.slice(0, 12);

export function renderDaemonStatus(s: DaemonStatus): string {
  const lines: string[] = [];
  const row = (k: string, v: string) => lines.push(`${`${k}:`.padEnd(16)}${v}`);
  const d = s.daemon;
  row('instance', s.instance);
  row(
    'daemon',
    `running (pid ${d.pid}, tether ${d.mode}, since ${d.startedAt}, resync every ${formatDuration(d.resyncMs)}${d.pruneAll ? ', --prune-all' : ''})`,
  );
  row('follows', d.follows);
  const r = s.lastReconcile;
  row(
    'state',
    !r
      ? 'starting (no reconcile yet)'
      : s.converged
        ? `converged (generation ${s.generation})`
        : r.result === 'no-manifests'
          ? 'not converged: no valid manifests loaded yet'
          : `NOT converged (generation ${s.generation}, last reconcile ${r.result})`,
  );
  if (s.source) {
    if (s.source.kind === 'git')
      row('source', `commit ${s.source.commit} of ${s.source.repo} (ref ${s.source.ref}), ${s.source.path}`);
    else row('source', s.source.path);
    for (const f of s.source.files) lines.push(`${''.padEnd(16)}  ${f.path}  sha256:${short(f.sha256)}`);
  } else row('source', 'none applied yet');
  if (s.fetched) row('fetched', `commit ${s.fetched.commit} at ${s.fetched.time}`);
  if (r) {
    row(
      'last reconcile',
      `${r.time}: ${r.actions} actions (${r.writes} writes) in ${r.durationMs} ms [${r.trigger.join(', ')}]`,
    );
    for (const c of r.changes) lines.push(`${''.padEnd(16)}  ${c}`);
  }
  row('reconciles', String(s.reconciles));
  row(
    'drift repaired',
    s.driftRepaired.reconciles
      ? `${s.driftRepaired.reconciles} times (${s.driftRepaired.actions} actions), last at ${s.driftRepaired.last}`
      : 'none',
  );
  if (!s.errors.length) row('errors', 'none');
  for (const e of s.errors) {
    row('error', `[${e.kind}] ${e.message} (since ${e.time})`);
    for (const p of e.problems ?? []) lines.push(`${''.padEnd(16)}  ${p}`);
  }
  return `${lines.join('\n')}\n`;
}
