/**
 * Background processes inside sandbox namespaces, awaited on an event (a line they
 * print), never on a sleep; stopped by their pid in teardown.
 */
import { type ChildProcess, spawn } from 'node:child_process';

export interface Background {
  readonly proc: ChildProcess;
  /** Resolves when the process printed `readyText`; rejects if it exits first or after `timeoutMs`. */
  readonly ready: Promise<void>;
  /** All stdout so far. */
  output(): string;
  stop(): void;
}

export function startInNs(
  ns: string,
  cmd: readonly string[],
  readyText = 'ready',
  timeoutMs = 10_000,
): Background {
  const proc = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${cmd.join(' ')} not ready in ${timeoutMs} ms: ${err}`)),
      timeoutMs,
    );
    proc.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.includes(readyText)) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${cmd.join(' ')} exited ${code} before ready: ${err}`));
    });
  });
  ready.catch(() => {});
  return {
    proc,
    ready,
    output: () => out,
    stop: () => {
      if (proc.exitCode === null && proc.pid) proc.kill('SIGTERM');
    },
  };
}

/** Calls `fn` with each complete line a stream yields (a daemon's JSON log on stderr). */
export function onLines(stream: NodeJS.ReadableStream, fn: (line: string) => void): void {
  let buf = '';
  stream.on('data', (b: Buffer | string) => {
    buf += b.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      fn(line);
    }
  });
}
