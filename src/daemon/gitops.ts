/**
 * GitOps (`tether sync`): a git repository as a source of desired states, fetched with
 * the real `git` client into `stateDir(instance)/repo` — cloned once, then on start,
 * every interval and on SIGHUP: `git fetch origin REF` and `git checkout --detach` of
 * the fetched commit. The manifests are read from `<checkout>/<path>`.
 *
 * The working tree always ends at the last good commit: a commit whose manifests fail to
 * load, or that the loop refuses (mass deletion) or fails to apply, is reported, the
 * checkout goes back to the last good commit, and the commit is not tried again until
 * another one is fetched or SIGHUP. The last good commit is kept in
 * `stateDir/sync.json`, so a restarted daemon starts from it even when the newest commit
 * is broken or the remote is unreachable.
 */
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { formatProblem, SpecError, UsageError } from '../model/errors.js';
import { loadSpec } from '../spec/load.js';
import { readJson, stateDir, writeJson } from '../state/store.js';
import { DaemonCode, type EventSink } from './events.js';
import { errText, LoadError, type LoadedState, type ManifestSource } from './loop.js';
import type { StatusStore } from './state.js';
import type { TriggerKind } from './triggers.js';

export interface GitOptions {
  readonly instance: string;
  /** A URL git understands, or a local path (made absolute). */
  readonly repo: string;
  /** Branch, tag or commit; default: the remote's HEAD. */
  readonly ref?: string;
  /** Manifest file or directory inside the repository; default the top. */
  readonly path: string;
  /** Milliseconds a git command may take. */
  readonly timeoutMs?: number;
}

interface SyncRecord {
  repo: string;
  ref: string | null;
  path: string;
  commit: string;
}

const SHORT = (c: string) => c.slice(0, 12);

/** Run git without a shell, never prompting; rejects with git's own words. */
function git(args: readonly string[], timeoutMs: number, cwd?: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const p = spawn('git', args, {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, GIT_TERMINAL_PROMPT: '0', LC_ALL: 'C' },
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (b: Buffer) => (out += b.toString()));
    p.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`git: ${e.message} (is git installed?)`));
    });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise(out.trim());
      else
        reject(
          new Error(
            `git ${args.filter((a) => !a.startsWith('-c')).join(' ')} ${signal ? `timed out after ${timeoutMs} ms` : `exited ${code}`}: ${err.trim()}`,
          ),
        );
    });
  });
}

export class GitSource implements ManifestSource {
  readonly dir: string;
  readonly repo: string;
  readonly manifestPath: string;
  private readonly recordFile: string;
  private readonly timeoutMs: number;
  /** The commit checked out now. */
  private head: string | undefined;
  /** The last commit the loop applied. */
  private good: string | undefined;
  /** A commit refused or broken: skipped until another one is fetched, or SIGHUP. */
  private bad: string | undefined;
  private lastFetched: string | undefined;
  /** The problem reported for `bad`, re-asserted when the loop accepts a state. */
  private badProblem: { message: string; commit: string; problems?: string[] } | undefined;

  constructor(
    private readonly opts: GitOptions,
    private readonly store: StatusStore,
    private readonly sink: EventSink,
  ) {
    this.dir = join(stateDir(opts.instance), 'repo');
    this.recordFile = join(stateDir(opts.instance), 'sync.json');
    this.repo = existsSync(opts.repo) ? resolve(opts.repo) : opts.repo;
    this.manifestPath = resolve(this.dir, opts.path);
    const rel = relative(this.dir, this.manifestPath);
    if (rel.startsWith('..') || isAbsolute(rel))
      throw new UsageError(`--path ${opts.path} leads outside the repository`);
    this.timeoutMs = opts.timeoutMs ?? 120_000;
    const rec = readJson<SyncRecord>(this.recordFile);
    if (rec && rec.repo === this.repo && rec.path === opts.path) this.good = rec.commit;
  }

  private git(...args: string[]): Promise<string> {
    return git(['-C', this.dir, ...args], this.timeoutMs);
  }

  /** Clone once (no checkout), then fetch the ref; returns the fetched commit. */
  private async fetch(): Promise<string> {
    if (!existsSync(join(this.dir, '.git'))) {
      // A clone interrupted before it made .git leaves a directory git will not clone into.
      rmSync(this.dir, { recursive: true, force: true });
      await git(['clone', '--quiet', '--no-checkout', '--', this.repo, this.dir], this.timeoutMs);
    } else {
      await this.git('remote', 'set-url', 'origin', this.repo);
    }
    const ref = this.opts.ref ?? 'HEAD';
    try {
      await this.git('fetch', '--quiet', '--no-tags', '--force', 'origin', ref);
      return await this.git('rev-parse', '--verify', 'FETCH_HEAD^{commit}');
    } catch (e) {
      // A commit id the server will not hand out by name: fetch everything, then resolve it.
      if (!/^[0-9a-f]{7,40}$/i.test(ref)) throw e;
      await this.git('fetch', '--quiet', '--no-tags', '--force', 'origin');
      return await this.git('rev-parse', '--verify', `${ref}^{commit}`);
    }
  }

  private async checkout(commit: string): Promise<void> {
    if (this.head === commit) return;
    await this.git('-c', 'advice.detachedHead=false', 'checkout', '--quiet', '--force', '--detach', commit);
    await this.git('clean', '-q', '-ffdx');
    this.head = commit;
  }

  private async currentHead(): Promise<string | undefined> {
    if (this.head) return this.head;
    if (!existsSync(join(this.dir, '.git'))) return undefined;
    this.head = await this.git('rev-parse', '--verify', '--quiet', 'HEAD^{commit}').catch(() => undefined);
    return this.head;
  }

  private state(commit: string, spec: LoadedState['spec']): LoadedState {
    return {
      spec,
      key: commit,
      source: {
        kind: 'git',
        path: this.manifestPath,
        files: spec.files,
        repo: this.repo,
        ref: this.opts.ref ?? 'HEAD',
        commit,
      },
    };
  }

  async load(reasons: ReadonlySet<TriggerKind>): Promise<LoadedState> {
    if (reasons.has('sighup')) {
      this.bad = undefined;
      this.badProblem = undefined;
    }
    let commit: string | undefined;
    const wantFetch =
      reasons.has('start') ||
      reasons.has('resync') ||
      reasons.has('sighup') ||
      !existsSync(join(this.dir, '.git'));
    if (wantFetch) {
      try {
        commit = await this.fetch();
        this.store.problem('fetch', null);
        this.store.update((d) => {
          d.fetched = { commit: commit!, time: new Date().toISOString() };
        });
        if (commit !== this.lastFetched)
          this.sink.emit({
            level: 'info',
            code: DaemonCode.fetched,
            message: `fetched ${this.opts.ref ?? 'HEAD'} of ${this.repo}: commit ${SHORT(commit)}`,
            data: { repo: this.repo, ref: this.opts.ref ?? 'HEAD', commit },
          });
        this.lastFetched = commit;
      } catch (e) {
        const message = (e as Error).message;
        this.store.problem('fetch', { message });
        this.sink.emit({
          level: 'warn',
          code: DaemonCode.fetchFailed,
          message: `fetching ${this.repo} failed; using the checkout in place: ${message}`,
          data: { repo: this.repo, error: message },
        });
      }
    }
    commit ??= this.lastFetched ?? (await this.currentHead());
    if (!commit) throw new LoadError(`nothing has been fetched from ${this.repo} yet`);
    if (commit === this.bad) {
      if (!this.good) throw new LoadError(`commit ${SHORT(commit)} was rejected and there is no good commit`);
      commit = this.good;
    }
    await this.checkout(commit);
    try {
      return this.state(commit, await loadSpec(this.manifestPath));
    } catch (e) {
      const problems = e instanceof SpecError ? e.problems.map(formatProblem) : undefined;
      const message = `commit ${SHORT(commit)} does not load: ${errText(e)}`;
      if (!this.good || this.good === commit) throw new LoadError(message, problems);
      // Keep the last good commit in force (and in the working tree).
      this.bad = commit;
      this.badProblem = { message, commit, problems };
      this.store.problem('rejected', this.badProblem);
      this.sink.emit({
        level: 'warn',
        code: DaemonCode.loadFailed,
        message: `${message}; commit ${SHORT(this.good)} stays in force`,
        data: { commit, problems },
      });
      await this.checkout(this.good);
      return this.state(this.good, await loadSpec(this.manifestPath));
    }
  }

  accepted(s: LoadedState): void {
    this.good = s.key;
    const rec: SyncRecord = {
      repo: this.repo,
      ref: this.opts.ref ?? null,
      path: this.opts.path,
      commit: s.key,
    };
    writeJson(this.recordFile, rec);
    // The loop clears "rejected" when it accepts a state; a newer broken commit still is.
    if (this.bad && this.bad !== s.key && this.badProblem) this.store.problem('rejected', this.badProblem);
  }

  async rejected(s: LoadedState): Promise<void> {
    this.bad = s.key;
    this.badProblem = undefined;
    if (this.good && this.good !== s.key) await this.checkout(this.good);
  }

  /** After a restart: the last good commit recorded in sync.json, when still in the clone. */
  async fallback(): Promise<LoadedState | undefined> {
    if (!this.good || !existsSync(join(this.dir, '.git'))) return undefined;
    await this.checkout(this.good);
    return this.state(this.good, await loadSpec(this.manifestPath));
  }
}
