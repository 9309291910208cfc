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

  it('finds a host port published twice as edits come and go (the claims are kept between loads)', () => {
    const cache = new Map<string, ReadResult>();
    const pieces = new Map();
    const nets = file('/m/a.yaml', 'networks:\n  web: {}\n');
    const ctrs = (lines: string[]) =>
      file('/m/b.yaml', `containers:\n${lines.map((l) => `  ${l}\n`).join('')}`);
    const c1 = 'c1: { networks: [web], ports: ["8080:80"] }';
    const c2 = 'c2: { networks: [web], ports: ["8081:80"] }';
    const c2clash = 'c2: { networks: [web], ports: ["8080:80"] }';
    const c3clash = 'c3: { networks: [web], ports: ["8081:81"] }';
    const load = (lines: string[]) => () => loadSpecCached([nets, ctrs(lines)], cache, pieces);
    expect(load([c1, c2])).not.toThrow();
    expect(load([c1, c2clash])).toThrow(/8080\/tcp.*clashes with .*8080\/tcp/);
    expect(load([c1, c2])).not.toThrow();
    expect(load([c1, c2, c3clash])).toThrow(/container 'c3' publishes .*8081/);
    expect(load([c1, c3clash])).not.toThrow();
    expect(load([c3clash, c2])).toThrow(/container 'c2' publishes .*8081/);
    expect(load([c2clash])).not.toThrow();
  });
});
