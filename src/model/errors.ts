import type { SourceRef } from './spec.js';

/** One problem in the manifests: where, and a plain sentence. Conflicts name a second place. */
export interface SpecProblem {
  readonly message: string;
  readonly src?: SourceRef;
  /** The other place of a conflict (duplicate definition, overlapping subnet, …). */
  readonly other?: SourceRef;
  /** JSON path inside the document, e.g. `networks.alpine-net.ipam.config[0].subnet`. */
  readonly path?: string;
}

export function formatRef(r: SourceRef): string {
  return `${r.file}:${r.line}:${r.col}`;
}

export function formatProblem(p: SpecProblem): string {
  const where = p.src ? `${formatRef(p.src)}: ` : '';
  const other = p.other ? ` (see also ${formatRef(p.other)})` : '';
  return `${where}${p.message}${other}`;
}

/** Bad input: exit code 2, kernel untouched. */
export class SpecError extends Error {
  readonly problems: readonly SpecProblem[];
  constructor(problems: readonly SpecProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'SpecError';
    this.problems = problems;
  }
}

export type KernelErrorKind = 'not-found' | 'exists' | 'permission' | 'busy' | 'other';

/** A kernel operation failed: exit code 1. Carries the operation and the tool's words. */
export class KernelError extends Error {
  readonly kind: KernelErrorKind;
  readonly op: string;
  readonly detail: string;
  constructor(op: string, detail: string, kind?: KernelErrorKind) {
    super(`${op}: ${detail.trim()}`);
    this.name = 'KernelError';
    this.op = op;
    this.detail = detail;
    this.kind = kind ?? classify(detail);
  }
}

export function classify(text: string): KernelErrorKind {
  if (/EEXIST|File exists|already exists/i.test(text)) return 'exists';
  if (/ENOENT|ENODEV|No such|Cannot find|does not exist/i.test(text)) return 'not-found';
  if (/EPERM|EACCES|Operation not permitted|Permission denied/i.test(text)) return 'permission';
  if (/EBUSY|busy/i.test(text)) return 'busy';
  return 'other';
}

/** Usage or environment problem that is not the manifests' fault but the caller's: exit 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
