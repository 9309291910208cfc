/**
 * The status socket: a unix stream socket at `runDir(instance)/daemon.sock` that answers
 * every connection with one JSON document (the daemon's status) and closes it. The
 * socket file is the daemon's presence: `tether status` asks it, and a second daemon of
 * the same instance refuses to start while the first answers.
 */
import { chmodSync, existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { KernelError } from '../model/errors.js';
import { runDir } from '../state/store.js';
import type { DaemonStatus } from './state.js';

export const daemonSocket = (instance: string) => join(runDir(instance), 'daemon.sock');

/** Ask the daemon of `instance`; undefined when none runs (no socket, or nobody listening). */
export function queryDaemon(instance: string, timeoutMs = 5000): Promise<DaemonStatus | undefined> {
  return queryPath(daemonSocket(instance), timeoutMs);
}

function queryPath(path: string, timeoutMs: number): Promise<DaemonStatus | undefined> {
  return new Promise((resolve, reject) => {
    if (!existsSync(path)) return resolve(undefined);
    const c = createConnection(path);
    let text = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(
        new KernelError('status', `the daemon at ${path} did not answer within ${timeoutMs} ms`, 'busy'),
      );
    }, timeoutMs);
    c.setEncoding('utf8');
    c.on('data', (s: string) => (text += s));
    c.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(text) as DaemonStatus);
      } catch {
        reject(new KernelError('status', `the daemon at ${path} answered something that is not JSON`));
      }
    });
    c.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') resolve(undefined);
      else if (e.code === 'EACCES')
        reject(
          new KernelError('status', `the daemon's socket ${path} needs root: ${e.message}`, 'permission'),
        );
      else reject(new KernelError('status', e.message));
    });
  });
}

export interface StatusServer {
  readonly path: string;
  close(): Promise<void>;
}

/**
 * Listen on the instance's socket. A socket file left by a dead daemon is replaced; one
 * that answers belongs to a running daemon of this instance: that is an error.
 */
export async function serveStatus(
  instance: string,
  current: () => DaemonStatus,
  extra: () => Record<string, unknown> = () => ({}),
): Promise<StatusServer> {
  const path = daemonSocket(instance);
  mkdirSync(runDir(instance), { recursive: true });
  if (existsSync(path)) {
    const other = await queryPath(path, 2000).catch(() => undefined);
    if (other)
      throw new KernelError(
        'daemon',
        `a daemon of instance '${instance}' already runs (pid ${other.daemon?.pid}, socket ${path})`,
        'busy',
      );
    rmSync(path, { force: true });
  }
  const server: Server = createServer((c) => {
    c.on('error', () => {});
    // The process's memory rides along: operators (and the soak benchmark) watch it.
    const m = process.memoryUsage();
    const memory = {
      rssBytes: m.rss,
      heapTotalBytes: m.heapTotal,
      heapUsedBytes: m.heapUsed,
      externalBytes: m.external,
    };
    c.end(`${JSON.stringify({ ...current(), memory, ...extra() })}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(path, 0o600);
  const ino = statSync(path).ino;
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Remove the file only if it is still ours (not a successor's).
        try {
          if (statSync(path).ino === ino) rmSync(path, { force: true });
        } catch {
          /* already gone */
        }
      }),
  };
}
