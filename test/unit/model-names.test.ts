/* sha256hex is crypto.hash where Node has it, a Hash object otherwise: same digests. */
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { containerId, sha256hex, vethName } from '../../src/model/names.js';

describe('sha256hex', () => {
  it('is the hex SHA-256 of the UTF-8 text', () => {
    expect(sha256hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    for (const s of ['', 'tether/i/ep/web/alpine-net', 'é ü 中文 🙂', 'x'.repeat(10_000)])
      expect(sha256hex(s)).toBe(createHash('sha256').update(s, 'utf8').digest('hex'));
  });

  it('names things as before', () => {
    expect(vethName('tether', 'web', 'alpine-net')).toBe(
      `veth${createHash('sha256').update('tether/tether/ep/web/alpine-net').digest('hex').slice(0, 11)}`,
    );
    expect(containerId('t', 'c')).toBe(createHash('sha256').update('tether/t/container/c').digest('hex'));
  });
});
