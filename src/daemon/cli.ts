/** The daemon's commands, registered on the CLI's program: `run` and `sync`. */
import { type Command, Option } from 'commander';
import { runDaemon } from './daemon.js';
import { parseDuration } from './duration.js';

export interface CliContext {
  /** The validated --instance of a command. */
  instance(cmd: Command): string;
  /** Root, iproute2, nftables: throws UsageError naming what is missing. */
  requirements(): Promise<void>;
}

export function addDaemonCommands(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .summary('the daemon: watch the manifests, repair drift, until SIGTERM')
    .description(
      'the daemon: converge, then watch the manifests and the kernel and repair drift, until SIGTERM\n' +
        '(the networks stay in place when it stops; SIGHUP reloads; `tether status` asks it)',
    )
    .addOption(
      new Option(
        '-f, --file <path>',
        'a manifest file, or a directory of *.yaml/*.yml (sorted, merged)',
      ).makeOptionMandatory(),
    )
    .option(
      '--resync <duration>',
      'interval of full reconciles that read everything afresh (between them, kernel notifications drive repairs)',
      '30s',
    )
    .option('--prune-all', 'allow a manifest change that deletes most of what tether owns')
    .action(async (o: { file: string; resync: string; pruneAll?: boolean }, cmd: Command) => {
      const instance = ctx.instance(cmd);
      const resyncMs = parseDuration(o.resync, '--resync');
      await ctx.requirements();
      await runDaemon({ instance, file: o.file, resyncMs, pruneAll: !!o.pruneAll });
    });
  program
    .command('sync')
    .summary('GitOps: converge to the manifests of a git repository')
    .description(
      'GitOps: converge to the manifests of a git repository, fetched every interval (and on SIGHUP);\n' +
        'a commit that fails to load or apply, or would delete most of what exists, is not applied',
    )
    .addOption(new Option('--repo <url>', 'a URL git understands, or a local path').makeOptionMandatory())
    .option('--ref <ref>', "branch, tag or commit (default: the remote's HEAD)")
    .option('--path <dir>', 'manifest file or directory inside the repository', '.')
    .option('--interval <duration>', 'fetch and full reconcile interval', '30s')
    .option('--prune-all', 'allow a commit that deletes most of what tether owns')
    .action(
      async (
        o: { repo: string; ref?: string; path: string; interval: string; pruneAll?: boolean },
        cmd: Command,
      ) => {
        const instance = ctx.instance(cmd);
        const resyncMs = parseDuration(o.interval, '--interval');
        await ctx.requirements();
        await runDaemon({
          instance,
          git: { repo: o.repo, ref: o.ref, path: o.path },
          resyncMs,
          pruneAll: !!o.pruneAll,
        });
      },
    );
}
