/**
 * The nft adapter: one `nft -j` invocation per transaction, the JSON passed as one
 * argument, or through a temp file when large (KERNEL-NOTES: `nft -f -` fails from
 * Node because stdin is a socketpair). Reads list only tether's own tables.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KernelError } from '../model/errors.js';
import { run } from './exec.js';

export type NftCommand = Record<string, unknown>;

const ARG_LIMIT = 100_000;

/**
 * Pids of the latest `nft` processes that wrote (at most 64): the daemon's nftables
 * listener tells tether's own transactions from others' by the pid the kernel reports
 * with each new ruleset generation (NFTA_GEN_PROC_PID).
 */
export const nftWriterPids: number[] = [];
const noteWriter = (pid: number) => {
  nftWriterPids.push(pid);
  if (nftWriterPids.length > 64) nftWriterPids.shift();
};

export async function nftRun(commands: readonly NftCommand[], check = false): Promise<void> {
  if (commands.length === 0) return;
  const doc = JSON.stringify({ nftables: commands });
  const flags = check ? ['-c', '-j'] : ['-j'];
  let r: Awaited<ReturnType<typeof run>>;
  if (doc.length < ARG_LIMIT) {
    r = await run('nft', [...flags, doc], undefined, check ? undefined : noteWriter);
  } else {
    const dir = mkdtempSync(join(tmpdir(), 'tether-nft-'));
    try {
      const file = join(dir, 'tx.json');
      writeFileSync(file, doc);
      r = await run('nft', [...flags, '-f', file], undefined, check ? undefined : noteWriter);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (r.code !== 0) throw new KernelError(`nft transaction (${commands.length} commands)`, r.stderr);
}

/** `nft -j list table FAMILY NAME` → its objects, or null when the table does not exist. */
export async function nftListTable(family: string, name: string): Promise<NftCommand[] | null> {
  const r = await run('nft', ['-j', 'list', 'table', family, name]);
  if (r.code !== 0) {
    if (/No such file or directory|does not exist/i.test(r.stderr)) return null;
    throw new KernelError(`nft list table ${family} ${name}`, r.stderr);
  }
  const parsed = JSON.parse(r.stdout) as { nftables: NftCommand[] };
  return parsed.nftables.filter((o) => !('metainfo' in o));
}

export async function nftVersion(): Promise<string | undefined> {
  try {
    const r = await run('nft', ['--version']);
    return /v(\d+\.\d+\.\d+)/.exec(r.stdout)?.[1];
  } catch {
    return undefined;
  }
}
