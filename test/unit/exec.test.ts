/**
 * The spawner (kernel/exec.ts): programs run through it behave as run directly — output,
 * input, exit codes, failures to start, pids — and programs are started directly again
 * once it is stopped or gone.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { run, startSpawner, stopSpawner } from '../../src/kernel/exec.js';

describe('run through the spawner', () => {
  afterEach(() => stopSpawner());

  it('returns what the program printed and its exit code, as a direct run does', async () => {
    const direct = await run('sh', ['-c', 'echo out; echo err >&2; exit 3']);
    startSpawner();
    const spawned = await run('sh', ['-c', 'echo out; echo err >&2; exit 3']);
    expect(spawned).toEqual(direct);
    expect(spawned).toEqual({ code: 3, stdout: 'out\n', stderr: 'err\n' });
  });

  it('hands the input to the program and reports its pid before it ends', async () => {
    startSpawner();
    const pids: number[] = [];
    const r = await run('sh', ['-c', 'cat; echo "pid $$"'], 'line one\nline two\n', (pid) => pids.push(pid));
    expect(pids).toHaveLength(1);
    expect(r.stdout).toBe(`line one\nline two\npid ${pids[0]}\n`);
  });

  it('keeps concurrent runs apart and carries large outputs whole', async () => {
    startSpawner();
    const rs = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        run('sh', ['-c', `head -c ${100_000 * (i + 1)} /dev/zero | tr '\\0' ${i}`]),
      ),
    );
    rs.forEach((r, i) => {
      expect(r.code).toBe(0);
      expect(r.stdout.length).toBe(100_000 * (i + 1));
      expect(new Set(r.stdout)).toEqual(new Set([String(i)]));
    });
  });

  it('rejects a program that cannot start, and keeps serving', async () => {
    startSpawner();
    await expect(run('/nonexistent/program', ['x'])).rejects.toThrow(/nonexistent/);
    expect((await run('echo', ['still here'])).stdout).toBe('still here\n');
  });

  it('fails the runs in flight when the spawner dies, then starts programs directly', async () => {
    startSpawner();
    // The spawner is the program's parent: kill it from inside.
    await expect(run('sh', ['-c', 'kill $PPID; sleep 1'])).rejects.toThrow(/spawner exited/);
    expect((await run('echo', ['after'])).stdout).toBe('after\n');
  });

  it('starts programs directly once the spawner is stopped', async () => {
    startSpawner();
    stopSpawner();
    expect((await run('echo', ['direct'])).stdout).toBe('direct\n');
  });
});
