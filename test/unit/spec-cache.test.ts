import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadSpecCached, loadSpecFromStrings } from '../../src/spec/load.js';
import type { ReadResult } from '../../src/spec/read.js';

const sha = (t: string) => createHash('sha256').update(t).digest('hex');
const file = (path: string, text: string) => ({ path, text, sha256: sha(text) });

describe('loadSpecCached', () => {
  it('parses only files it has not seen, and loads what loadSpecFromStrings loads', () => {
    const a = file('/m/a.yaml', 'networks:\n  web: {}\n');
    const b1 = file('/m/b.yaml', 'containers:\n  c1: { networks: [web] }\n');
    const b2 = file('/m/b.yaml', 'containers:\n  c1: { networks: [web] }\n  c2: { networks: [web] }\n');
    const cache = new Map<string, ReadResult>();

    const first = loadSpecCached([a, b1], cache);
    expect(first).toEqual(loadSpecFromStrings([a, b1]));
    const aParsed = cache.get(`${a.path}@${a.sha256}`);
    expect(aParsed).toBeDefined();

    const second = loadSpecCached([a, b2], cache);
    expect(second).toEqual(loadSpecFromStrings([a, b2]));
    expect(Object.keys(second.containers)).toEqual(['c1', 'c2']);
    // a.yaml was not parsed again; b.yaml's old version left the cache.
    expect(cache.get(`${a.path}@${a.sha256}`)).toBe(aParsed);
    expect([...cache.keys()].sort()).toEqual([`${a.path}@${a.sha256}`, `${b2.path}@${b2.sha256}`]);
  });

  it('reports a broken file with its position, and recovers when it is fixed', () => {
    const cache = new Map<string, ReadResult>();
    const a = file('/m/a.yaml', 'networks:\n  web: {}\n');
    const bad = file('/m/b.yaml', 'containers:\n  c1: { networks: [web\n');
    expect(() => loadSpecCached([a, bad], cache)).toThrow(/\/m\/b\.yaml:\d+:\d+/);
    const good = file('/m/b.yaml', 'containers:\n  c1: { networks: [web] }\n');
    expect(Object.keys(loadSpecCached([a, good], cache).containers)).toEqual(['c1']);
  });
});
