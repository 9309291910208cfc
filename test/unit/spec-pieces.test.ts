/**
 * Manifests parsed in pieces (src/spec/pieces.ts) must give exactly what one whole-document
 * parse gives: the same value, and the same file:line:col for every path in it.
 */
import { describe, expect, it } from 'vitest';
import { LineCounter, parseDocument } from 'yaml';
import { type Piece, parsePieces } from '../../src/spec/pieces.js';
import { type ParsedFile, parseManifests, Sources } from '../../src/spec/read.js';

const SPLIT = {
  flow: `networks:
  n0: {}
containers:
  c0: { networks: [n0], ports: ["20000:80"] }
  c1: { networks: [n0], ports: ["20001:80"] }
`,
  block: `# leading comment

networks:   # the networks
  front:
    ipam:
      config:
        - subnet: 172.18.0.0/16
          gateway: 172.18.0.1
  "back-end":
    internal: true
containers:
  web:
    networks: [front, back-end]
    ports:
      - "8080:80"
      - target: 443
        published: 8443
# a comment at column 0 between entries
  db:
    networks:
      back-end:
        aliases: [database]
        ipv4_address: 172.19.0.9
    hostname: db.local
  'quoted': { network_mode: none }
  empty:

  multi:
    hostname: >
      folded
      text
    extra_hosts:
      - "a.example:192.0.2.1"
daemon: { icc: false, dns: [192.0.2.53] }
`,
  numbersAsKeys: `containers:
  1.0: {}
  0x10: {}
  true: {}
  plain: {}
`,
  multilineValue: `containers:
  web:
    hostname: a
      b
`,
  inlineWithContinuation: `daemon:
  { icc: false,
    dns: [192.0.2.1] }
containers:
  a: {}
`,
};

const WHOLE_ONLY = {
  anchors: 'x: &a {}\ncontainers:\n  c: *a\n',
  tabs: 'containers:\n\tc: {}\n',
  docStart: '---\ncontainers:\n  c: {}\n',
  topSequence: 'containers:\n- c\n',
  lessIndented: 'containers:\n    a: {}\n  b: {}\n',
  duplicateEntry: 'containers:\n  a: {}\n  a: {}\n',
  duplicateSection: 'containers:\n  a: {}\ncontainers:\n  b: {}\n',
  brokenEntry: 'containers:\n  a: { networks: [x\n  b: {}\n',
  repeatedKeyInside: 'containers:\n  a: { hostname: x, hostname: y }\n',
  onlyComments: '# nothing\n',
};

function whole(path: string, text: string): ParsedFile {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, merge: true });
  return { path, text, sha256: '', whole: { doc, lineCounter }, data: doc.toJS() ?? null };
}

/** Every path to a value inside `v`. */
function paths(v: unknown, at: (string | number)[] = []): (string | number)[][] {
  const out = [at];
  if (Array.isArray(v)) v.forEach((x, i) => out.push(...paths(x, [...at, i])));
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) out.push(...paths(x, [...at, k]));
  return out;
}

describe('parsing in pieces', () => {
  for (const [name, text] of Object.entries(SPLIT)) {
    it(`splits "${name}" and gives the whole parse's value and places`, () => {
      const r = parseManifests([{ path: 'm.yaml', text }], new Map());
      expect(r.problems).toEqual([]);
      const f = r.files[0]!;
      expect(f.pieces).toBeDefined();
      const w = whole('m.yaml', text);
      expect(f.data).toEqual(w.data);
      const sp = new Sources([f]);
      const sw = new Sources([w]);
      for (const p of [...paths(w.data), ['containers', 'missing'], ['containers', 'web', 'nope', 3]])
        for (const key of [false, true])
          expect([p, key, sp.ref({ file: 'm.yaml', path: p }, { key })]).toEqual([
            p,
            key,
            sw.ref({ file: 'm.yaml', path: p }, { key }),
          ]);
    });
  }

  for (const [name, text] of Object.entries(WHOLE_ONLY)) {
    it(`parses "${name}" as one document`, () => {
      expect(parsePieces(text, new Map())).toBeUndefined();
      const r = parseManifests([{ path: 'm.yaml', text }], new Map());
      expect(r.files[0]!.whole).toBeDefined();
    });
  }

  it('reparses only the entries whose text changed; the others keep their value objects', () => {
    const one = parsePieces(SPLIT.block, new Map())!;
    const edited = SPLIT.block.replace('hostname: db.local', 'hostname: db2.local');
    const two = parsePieces(edited, one.pieces)!;
    const c1 = one.data.containers as Record<string, unknown>;
    const c2 = two.data.containers as Record<string, unknown>;
    expect(c2.web).toBe(c1.web);
    expect(c2.multi).toBe(c1.multi);
    expect(c2.db).not.toBe(c1.db);
    expect((c2.db as { hostname: string }).hostname).toBe('db2.local');
    expect(Object.isFrozen(c2.web)).toBe(true);
    // The next cache holds exactly this text's pieces.
    expect([...two.pieces.keys()].join('')).toBe(edited);
  });

  it('reports an error of a split manifest at its place in the file', () => {
    const text = `${SPLIT.flow}  c2: { networks: [n0], ports: ["20002:80"\n`;
    const r = parseManifests([{ path: 'm.yaml', text }], new Map());
    expect(r.problems.length).toBeGreaterThan(0);
    expect(r.problems[0]!.src?.line).toBeGreaterThanOrEqual(6);
  });
});
