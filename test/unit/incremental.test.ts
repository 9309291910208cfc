/**
 * The daemon's incremental path (manifest pieces, per-entry memos, interning, per-container
 * memos of desired state and diff) gives exactly what a from-scratch computation gives,
 * through a run of edits: inserts that shift lines, changes of shared settings, removals.
 */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { desiredState } from '../../src/diff/desired.js';
import { diff } from '../../src/diff/diff.js';
import { EMPTY_STATE, type KernelState } from '../../src/model/state.js';
import { resolve } from '../../src/spec/ipam.js';
import { loadSpecCached, loadSpecFromStrings } from '../../src/spec/load.js';
import type { Piece } from '../../src/spec/pieces.js';
import type { ReadResult } from '../../src/spec/read.js';

const host = {
  reserved4: [],
  reserved6: [],
  ulaSeed: 'inc',
  ephemeralPorts: [49153, 65535] as [number, number],
};

function manifest(names: string[], opts: { dns?: string; icc?: boolean; opt?: string } = {}): string {
  const lines = [];
  if (opts.dns) lines.push(`daemon: { dns: [${opts.dns}] }`);
  lines.push(
    'networks:',
    `  front: { enable_ipv6: true${opts.icc === false ? ', driver_opts: { com.docker.network.bridge.enable_icc: "false" }' : ''} }`,
    '  back: {}',
  );
  lines.push('containers:');
  for (const n of names) {
    lines.push(`  ${n}:`);
    lines.push(`    networks:`);
    lines.push(
      `      front: { aliases: [${n}-alias]${opts.opt === n ? ', driver_opts: { foo: "1" }' : ''} }`,
    );
    lines.push(`      back: {}`);
    lines.push(`    ports: ["${8000 + names.indexOf(n)}:80", "127.0.0.1::53/udp"]`);
  }
  return `${lines.join('\n')}\n`;
}

describe('incremental loading and planning', () => {
  it('matches a from-scratch load, resolve, desired state and diff after every edit', () => {
    const steps: [string[], Parameters<typeof manifest>[1]][] = [
      [['a', 'b', 'c'], {}],
      [['a', 'new', 'b', 'c'], {}], // inserted in the middle: b and c move down
      [['a', 'new', 'b', 'c'], { dns: '192.0.2.53' }], // a shared setting above everything
      [['a', 'new', 'b', 'c'], { dns: '192.0.2.53', opt: 'b' }], // a warning inside b
      [['a', 'new', 'c'], { dns: '192.0.2.53', opt: 'b' }],
      [['a', 'new', 'c'], { icc: false }],
      [['c', 'a'], { icc: false }],
    ];
    const parsed = new Map<string, ReadResult>();
    const pieces = new Map<string, Map<string, Piece>>();
    let actual: KernelState = EMPTY_STATE;
    const lineOfC: number[] = [];
    let warned = 0;
    for (const [names, opts] of steps) {
      const text = manifest(names, opts);
      const sha256 = createHash('sha256').update(text).digest('hex');
      const inc = loadSpecCached([{ path: '/m/m.yaml', text, sha256 }], parsed, pieces);
      const fresh = loadSpecFromStrings([{ path: '/m/m.yaml', text }]);
      expect(inc).toEqual(fresh);
      lineOfC.push(inc.containers.c?.src?.line ?? 0);
      warned += inc.warnings.length;
      const want = desiredState(resolve(fresh, 'inc', actual, host));
      const got = desiredState(resolve(inc, 'inc', actual, host));
      expect(got).toEqual(want);
      expect(diff(got, actual, 'inc')).toEqual(diff(structuredClone(want), structuredClone(actual), 'inc'));
      actual = got;
      expect(diff(desiredState(resolve(inc, 'inc', actual, host)), actual, 'inc').actions).toEqual([]);
    }
    // The run did move entries and did warn.
    expect(new Set(lineOfC).size).toBeGreaterThan(2);
    expect(warned).toBeGreaterThan(0);
  });
});
