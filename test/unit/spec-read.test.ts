/**
 * Phase 1 (read): -f file|dir resolution, YAML parsing with positions, hashes.
 * Conventions: container subnets 172.18.0.0/16-like; outside addresses only from
 * 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatProblem, SpecError } from '../../src/model/errors.js';
import { loadSpec } from '../../src/spec/load.js';
import { parseManifests, readManifests, resolveManifestPaths, Sources } from '../../src/spec/read.js';
import { errorsOf, load, yaml } from './spec-helpers.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tether-spec-read-'));
  await mkdir(join(dir, 'set'));
  await mkdir(join(dir, 'set', 'sub'));
  await writeFile(join(dir, 'set', '20-web.yml'), 'containers:\n  web:\n    networks: [front]\n');
  await writeFile(join(dir, 'set', '10-nets.yaml'), 'networks:\n  front: {}\n');
  await writeFile(join(dir, 'set', '00-empty.yaml'), '');
  await writeFile(join(dir, 'set', 'notes.txt'), 'not a manifest: [');
  await writeFile(join(dir, 'set', 'sub', '05-ignored.yaml'), 'networks:\n  nested: {}\n');
  await writeFile(join(dir, 'elsewhere.yaml'), 'containers:\n  linked: {}\n');
  await symlink(join(dir, 'elsewhere.yaml'), join(dir, 'set', '30-link.yaml'));
  await mkdir(join(dir, 'dup'));
  await writeFile(join(dir, 'dup', 'a.yaml'), 'networks:\n  front: {}\n');
  await writeFile(join(dir, 'dup', 'b.yaml'), '# the same network again\nnetworks:\n  front: {}\n');
  await mkdir(join(dir, 'empty'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('resolving -f PATH', () => {
  it('takes a file as is', async () => {
    expect(await resolveManifestPaths(join(dir, 'elsewhere.yaml'))).toEqual([join(dir, 'elsewhere.yaml')]);
  });

  it('takes the *.yaml and *.yml files directly in a directory, sorted by name', async () => {
    expect(await resolveManifestPaths(join(dir, 'set'))).toEqual(
      ['00-empty.yaml', '10-nets.yaml', '20-web.yml', '30-link.yaml'].map((n) => join(dir, 'set', n)),
    );
  });

  it('merges the files of a directory; empty files contribute nothing', async () => {
    const spec = await loadSpec(join(dir, 'set'));
    expect(Object.keys(spec.networks)).toEqual(['bridge', 'front']);
    expect(Object.keys(spec.containers)).toEqual(['web', 'linked']);
    expect(spec.files.map((f) => f.path)).toEqual(
      ['00-empty.yaml', '10-nets.yaml', '20-web.yml', '30-link.yaml'].map((n) => join(dir, 'set', n)),
    );
    expect(spec.files[1].sha256).toBe(createHash('sha256').update('networks:\n  front: {}\n').digest('hex'));
    expect(spec.files[0].sha256).toBe(createHash('sha256').update('').digest('hex'));
  });

  it('loads an empty directory as the predefined networks only', async () => {
    const spec = await loadSpec(join(dir, 'empty'));
    expect(Object.keys(spec.networks)).toEqual(['bridge']);
    expect(spec.containers).toEqual({});
    expect(spec.files).toEqual([]);
  });

  it('reports a missing path', async () => {
    const missing = join(dir, 'nope');
    const r = await readManifests(missing);
    expect(r.problems.map((p) => p.message)).toEqual([`manifest path ${missing} does not exist`]);
    await expect(loadSpec(missing)).rejects.toThrow(SpecError);
    await expect(loadSpec(missing)).rejects.toThrow(`manifest path ${missing} does not exist`);
  });

  it('names both files when two define the same network', async () => {
    const err = await loadSpec(join(dir, 'dup')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SpecError);
    const problems = (err as SpecError).problems;
    expect(problems.map(formatProblem)).toEqual([
      `${join(dir, 'dup', 'b.yaml')}:3:3: network 'front' is already defined in ${join(dir, 'dup', 'a.yaml')}; names must be unique across manifest files (see also ${join(dir, 'dup', 'a.yaml')}:2:3)`,
    ]);
  });
});

describe('parsing', () => {
  it('reports YAML syntax errors with file:line:col and stops there', () => {
    const text = yaml`
      networks:
        front: {}
      containers:
        web:
          networks: [front
    `;
    expect(errorsOf([{ path: 'bad.yaml', text }])).toEqual([
      expect.stringMatching(/^bad\.yaml:6:1: YAML syntax error: .*\]/),
    ]);
  });

  it('reports duplicate keys at the second key', () => {
    const text = yaml`
      networks:
        front: {}
        front: {}
    `;
    expect(errorsOf([{ path: 'd.yaml', text }])).toEqual([
      'd.yaml:3:3: YAML syntax error: this key appears twice in the same mapping',
    ]);
  });

  it('rejects a second YAML document in one file', () => {
    const text = 'networks: {}\n---\ncontainers: {}\n';
    expect(errorsOf([{ path: 'two.yaml', text }])).toEqual([
      'two.yaml:2:1: YAML syntax error: a manifest file holds one YAML document, and a second one starts here',
    ]);
  });

  it('collects syntax errors of every file before stopping', () => {
    const errs = errorsOf([
      { path: 'a.yaml', text: 'networks: [\n' },
      { path: 'b.yaml', text: 'x: 1\nx: 2\n' },
    ]);
    expect(errs).toHaveLength(2);
    expect(errs[0]).toMatch(/^a\.yaml:/);
    expect(errs[1]).toMatch(/^b\.yaml:2:1:/);
  });

  it('accepts empty and comment-only files', () => {
    const spec = load([
      { path: 'a.yaml', text: '' },
      { path: 'b.yaml', text: '# nothing here yet\n' },
    ]);
    expect(Object.keys(spec.networks)).toEqual(['bridge']);
    expect(spec.files.map((f) => f.path)).toEqual(['a.yaml', 'b.yaml']);
  });

  it('resolves anchors, aliases and merge keys', () => {
    const spec = load(yaml`
      x-common: &common
        networks: [front]
        dns: [192.0.2.53]
      networks:
        front: {}
      containers:
        a:
          <<: *common
        b:
          <<: *common
          hostname: bee
    `);
    expect(spec.containers.a.dns).toEqual(['192.0.2.53']);
    expect(spec.containers.b.networks.map((n) => n.network)).toEqual(['front']);
    expect(spec.containers.b.hostname).toBe('bee');
  });

  it('keeps unresolved YAML tags as a warning, not an error', () => {
    const spec = load('containers:\n  a:\n    hostname: !custom box\n');
    expect(spec.warnings).toEqual([
      {
        code: 'TETHER_W0100',
        message: 'YAML: Unresolved tag: !custom',
        src: { file: 'm.yaml', line: 3, col: 15 },
      },
    ]);
  });
});

describe('Sources: JSON path → file:line:col', () => {
  const text = yaml`
    networks:
      front:
        ipam:
          config:
            - subnet: 172.18.0.0/16
    containers:
      web:
        networks: [front]
      empty:
  `;
  const r = parseManifests([{ path: 'p.yaml', text }]);
  const s = new Sources(r.files);

  it('points at values, or at keys when asked', () => {
    expect(s.ref({ file: 'p.yaml', path: ['networks', 'front', 'ipam', 'config', 0, 'subnet'] })).toEqual({
      file: 'p.yaml',
      line: 5,
      col: 19,
    });
    expect(
      s.ref({ file: 'p.yaml', path: ['networks', 'front', 'ipam', 'config', 0, 'subnet'] }, { key: true }),
    ).toEqual({
      file: 'p.yaml',
      line: 5,
      col: 11,
    });
    expect(s.ref({ file: 'p.yaml', path: ['containers', 'web', 'networks', 0] })).toEqual({
      file: 'p.yaml',
      line: 8,
      col: 16,
    });
  });

  it('points at the key of an empty value, and at the deepest node for a missing path', () => {
    expect(s.ref({ file: 'p.yaml', path: ['containers', 'empty'] })).toEqual({
      file: 'p.yaml',
      line: 9,
      col: 3,
    });
    expect(s.ref({ file: 'p.yaml', path: ['containers', 'web', 'ports', 3] })).toEqual({
      file: 'p.yaml',
      line: 7,
      col: 3,
    });
  });
});
