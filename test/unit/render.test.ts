/**
 * Plan rendering: golden files of `tether plan` text and JSON for the seed walkthrough,
 * built through the pure path (load → resolve → desired → diff) from an empty kernel,
 * and the converged message. Conventions: tether's default pools (172.17/16, 172.18/16).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { desiredState } from '../../src/diff/desired.js';
import { diff } from '../../src/diff/diff.js';
import { renderJson, renderText } from '../../src/diff/render.js';
import { EMPTY_STATE } from '../../src/model/state.js';
import { resolve } from '../../src/spec/ipam.js';
import { loadSpecFromStrings } from '../../src/spec/load.js';

const ROOT = join(import.meta.dirname, '../..');
const HOST_RESOLV = 'nameserver 192.0.2.53\n';

function seedPlan() {
  const path = join(ROOT, 'manifests/10-alpine-net.yaml');
  const spec = loadSpecFromStrings([
    { path: 'manifests/10-alpine-net.yaml', text: readFileSync(path, 'utf8') },
  ]);
  const r = resolve(spec, 'tt', EMPTY_STATE, { reserved4: [], reserved6: [], ulaSeed: 'golden' });
  const desired = desiredState(r, HOST_RESOLV);
  return { plan: diff(desired, EMPTY_STATE, 'tt'), desired };
}

describe('plan rendering', () => {
  it('renders the seed walkthrough from empty (golden text)', async () => {
    await expect(renderText(seedPlan().plan)).toMatchFileSnapshot('../fixtures/plan/seed.plan.txt');
  });

  it('renders the same plan as JSON (golden)', async () => {
    const json = renderJson(seedPlan().plan).replace(/"content": "[^"]*"/g, '"content": "…"');
    await expect(json).toMatchFileSnapshot('../fixtures/plan/seed.plan.json');
  });

  it('says so when converged, and {"actions": []} in JSON', () => {
    const { desired } = seedPlan();
    const p = diff(desired, desired, 'tt');
    expect(renderText(p)).toBe('No changes. The kernel matches the manifests.\n');
    expect(JSON.parse(renderJson(p))).toEqual({ actions: [] });
  });

  it("counts the resolver's networks and userland proxies in words", () => {
    const line = (networks: number, proxies: number) =>
      renderText({
        actions: [
          { op: 'resolver.reload', config: '', parts: {}, removeParts: [], networks, proxies, start: false },
        ],
      }).split('\n')[0];
    expect(line(1, 1)).toBe('~ resolver process: dns for 1 network, 1 userland proxy (reload)');
    expect(line(2, 3)).toBe('~ resolver process: dns for 2 networks, 3 userland proxies (reload)');
    expect(line(0, 2)).toBe('~ resolver process: 2 userland proxies (reload)');
  });
});
