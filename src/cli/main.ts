/**
 * tether's command line. Exit codes: 0 success, 1 runtime failure, 2 bad input or usage.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve as resolvePath } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { addDaemonCommands } from '../daemon/cli.js';
import { queryDaemon } from '../daemon/server.js';
import { renderDaemonStatus } from '../daemon/status.js';
import { renderJson, renderText } from '../diff/render.js';
import { serveDns } from '../dns/serve.js';
import { applyPlan, type Engine, makePlan, openEngine } from '../engine.js';
import { run } from '../kernel/exec.js';
import { nftVersion } from '../kernel/nft.js';
import { formatProblem, KernelError, SpecError, UsageError } from '../model/errors.js';
import { INSTANCE_RE, netnsName } from '../model/names.js';
import type { Spec } from '../model/spec.js';
import { loadSpec } from '../spec/load.js';
import { clearLastApply, type LastApply, readLastApply, recordApply } from '../state/record.js';
import { withLock } from '../state/store.js';
import { buildViews, lookUp, type WorldView } from './views.js';

const VERSION = '0.1.0';

interface Globals {
  instance: string;
}

function out(s: string) {
  process.stdout.write(s);
}

function warn(s: string) {
  process.stderr.write(`${s}\n`);
}

async function requirements(): Promise<void> {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root (tether changes network interfaces and nftables)');
  const ip = await run('ip', ['-V']).catch(() => undefined);
  if (ip?.code !== 0) missing.push('iproute2 (the `ip` command): apt-get install iproute2');
  const ns = await run('nsenter', ['--version']).catch(() => undefined);
  if (ns?.code !== 0) missing.push('nsenter (util-linux)');
  const v = await nftVersion();
  if (!v) missing.push('nftables 1.0.6 or newer (the `nft` command): apt-get install nftables');
  else {
    const [a, b, c] = v.split('.').map(Number);
    if (a! < 1 || (a === 1 && b === 0 && c! < 6)) missing.push(`nftables 1.0.6 or newer (found ${v})`);
  }
  if (missing.length) throw new UsageError(`tether cannot run here; missing:\n  - ${missing.join('\n  - ')}`);
}

function globals(cmd: Command): Globals {
  const o = cmd.optsWithGlobals() as { instance: string };
  if (!INSTANCE_RE.test(o.instance)) {
    throw new UsageError(
      `invalid --instance '${o.instance}': use 1-14 characters of a-z, 0-9, '_' and '-', starting with a letter`,
    );
  }
  return { instance: o.instance };
}

async function withEngine<T>(g: Globals, fn: (e: Engine) => Promise<T>): Promise<T> {
  await requirements();
  const engine = openEngine(g.instance);
  try {
    return await fn(engine);
  } finally {
    engine.close();
  }
}

function printWarnings(spec: Spec) {
  for (const w of spec.warnings)
    warn(`warning: ${w.src ? `${w.src.file}:${w.src.line}:${w.src.col}: ` : ''}${w.message}`);
}

async function cmdPlan(file: string, opts: { json?: boolean }, g: Globals) {
  const spec = await loadSpec(file);
  printWarnings(spec);
  await withEngine(g, async (e) => {
    const { plan } = await makePlan(e, spec);
    out(opts.json ? renderJson(plan) : renderText(plan));
  });
}

async function cmdApply(file: string, opts: { json?: boolean; pruneAll?: boolean }, g: Globals) {
  const spec = await loadSpec(file);
  printWarnings(spec);
  await withEngine(g, (e) =>
    withLock(g.instance, async () => {
      const t0 = performance.now();
      const r = await applyPlan(e, spec, { pruneAll: opts.pruneAll });
      const durationMs = Math.round(performance.now() - t0);
      const converged = r.residual.actions.length === 0;
      await recordApply(e, spec, r, { path: resolvePath(file) }, durationMs);
      if (opts.json)
        out(
          `${JSON.stringify({ actions: r.plan.actions, writes: r.writes, durationMs, timings: r.timings, maxRssKb: process.resourceUsage().maxRSS, converged, residual: r.residual.actions }, null, 2)}\n`,
        );
      else {
        out(r.plan.actions.length ? renderText(r.plan) : 'No changes. The kernel matches the manifests.\n');
        if (r.plan.actions.length)
          out(`Applied ${r.plan.actions.length} actions (${r.writes} kernel writes) in ${durationMs} ms.\n`);
      }
      if (!converged) {
        warn(
          `not converged: ${r.residual.actions.length} actions remain after apply:\n${renderText(r.residual)}`,
        );
        process.exitCode = 1;
      }
    }),
  );
}

async function cmdDestroy(opts: { json?: boolean }, g: Globals) {
  await withEngine(g, (e) =>
    withLock(g.instance, async () => {
      const r = await applyPlan(e, undefined);
      clearLastApply(g.instance);
      if (opts.json) out(renderJson(r.plan));
      else out(r.plan.actions.length ? `${renderText(r.plan)}Destroyed.\n` : 'Nothing to destroy.\n');
      if (r.residual.actions.length) {
        warn(`destroy left ${r.residual.actions.length} objects:\n${renderText(r.residual)}`);
        process.exitCode = 1;
      }
    }),
  );
}

function lastApply(g: Globals): LastApply | undefined {
  return readLastApply(g.instance);
}

/** The world view: fresh from `-f` manifests and the kernel, else the last apply's record. */
async function worldView(g: Globals, file?: string): Promise<WorldView> {
  if (file) {
    const spec = await loadSpec(file);
    return withEngine(g, async (e) => {
      const r = await makePlan(e, spec);
      return buildViews(r.resolved!, r.observation.state, new Date().toISOString());
    });
  }
  const last = lastApply(g);
  if (!last)
    throw new UsageError(
      `instance '${g.instance}' has applied nothing yet; run \`tether apply -f PATH\` or pass -f`,
    );
  return last.view;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return `${rows
    .map((r) =>
      r
        .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3)))
        .join('')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

async function cmdNetworkLs(opts: { file?: string }, g: Globals) {
  const v = await worldView(g, opts.file);
  out(
    table([
      ['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE'],
      ...v.networks.map((n) => [n.Id.slice(0, 12), n.Name, n.Driver, n.Scope]),
    ]),
  );
}

async function cmdNetworkInspect(names: string[], opts: { file?: string }, g: Globals) {
  const v = await worldView(g, opts.file);
  printInspect(
    'network',
    names,
    names.map((n) =>
      lookUp(
        v.networks,
        n,
        (x) => x.Name,
        (x) => x.Id,
      ),
    ),
  );
}

/** Docker's inspect output: the objects found as JSON, an error line per name not found. */
function printInspect(kind: string, names: readonly string[], found: readonly unknown[]): void {
  out(`${JSON.stringify(found.filter(Boolean), null, 4)}\n`);
  const missing = names.filter((_, i) => !found[i]);
  if (missing.length) {
    for (const m of missing) warn(`Error: No such ${kind}: ${m}`);
    process.exitCode = 1;
  }
}

async function cmdContainerLs(opts: { file?: string }, g: Globals) {
  const v = await worldView(g, opts.file);
  const rows = [['NAME', 'NETWORKS', 'IP ADDRESSES', 'PORTS', 'NAMESPACE']];
  for (const c of v.containers) {
    const nets = Object.keys(c.NetworkSettings.Networks);
    const ips = Object.values(c.NetworkSettings.Networks).flatMap((e) =>
      [e.IPAddress, e.GlobalIPv6Address].filter(Boolean),
    );
    const ports = Object.entries(c.NetworkSettings.Ports).flatMap(([k, bs]) =>
      bs ? bs.map((b) => `${b.HostIp.includes(':') ? `[${b.HostIp}]` : b.HostIp}:${b.HostPort}->${k}`) : [k],
    );
    rows.push([
      c.Name.slice(1),
      nets.join(','),
      ips.join(',') || '-',
      ports.join(', ') || '-',
      c.NetworkSettings.SandboxKey || '(host)',
    ]);
  }
  out(table(rows));
}

async function cmdContainerInspect(names: string[], opts: { file?: string }, g: Globals) {
  const v = await worldView(g, opts.file);
  printInspect(
    'container',
    names,
    names.map((n) =>
      lookUp(
        v.containers,
        n.replace(/^\//, ''),
        (x) => x.Name.slice(1),
        (x) => x.Id,
      ),
    ),
  );
}

async function cmdStatus(opts: { json?: boolean }, g: Globals) {
  const daemon = await queryDaemon(g.instance);
  if (daemon) {
    out(opts.json ? `${JSON.stringify(daemon, null, 2)}\n` : renderDaemonStatus(daemon));
    return;
  }
  const last = lastApply(g);
  let drift: number | undefined;
  let error: string | undefined;
  if (last && existsSync(last.source.path)) {
    try {
      const spec = await loadSpec(last.source.path);
      drift = await withEngine(g, async (e) => (await makePlan(e, spec)).plan.actions.length);
    } catch (e) {
      error = (e as Error).message;
    }
  }
  const status = {
    instance: g.instance,
    daemon: null as null | string,
    converged: drift === 0,
    pendingActions: drift ?? null,
    lastApply: last
      ? {
          time: last.time,
          source: last.source,
          actions: last.actions,
          writes: last.writes,
          durationMs: last.durationMs,
          converged: last.converged,
        }
      : null,
    error: error ?? null,
  };
  if (opts.json) {
    out(`${JSON.stringify(status, null, 2)}\n`);
    return;
  }
  out(`instance:   ${g.instance}\ndaemon:     not running (reporting from the kernel)\n`);
  if (!last) {
    out('state:      nothing applied yet\n');
    return;
  }
  out(`last apply: ${last.time} from ${last.source.path} (${last.actions} actions, ${last.durationMs} ms)\n`);
  if (error) out(`error:      ${error}\n`);
  else
    out(
      `state:      ${drift === 0 ? 'converged' : `${drift} actions pending (drift or changed manifests)`}\n`,
    );
}

async function cmdExec(container: string, argv: string[], g: Globals) {
  if (!argv.length) throw new UsageError('tether exec CONTAINER -- CMD...: no command given');
  const view = lastApply(g)?.view;
  const c = view?.containers.find((x) => x.Name === `/${container}`);
  const named = netnsName(g.instance, container);
  let cmd: string[];
  if (c && c.HostConfig.NetworkMode === 'host') cmd = argv;
  else if (existsSync(`/run/netns/${named}`)) cmd = ['ip', 'netns', 'exec', named, ...argv];
  else if (c?.NetworkSettings.SandboxKey)
    cmd = ['nsenter', `--net=${c.NetworkSettings.SandboxKey}`, '--', ...argv];
  else throw new UsageError(`no such container: ${container} (instance '${g.instance}')`);
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: 'inherit' });
  const code: number = await new Promise((res) => {
    child.on('exit', (c2, sig) => res(c2 ?? (sig ? 128 + 15 : 1)));
    child.on('error', () => res(127));
  });
  process.exitCode = code;
}

export function buildProgram(): Command {
  const program = new Command('tether')
    .description(
      "A declarative network reconciler: Docker's bridge networking (bridges, veths, addresses, routes, " +
        'NAT, isolation, published ports, DNS) from Compose-style YAML, made real in the network namespace tether runs in.',
    )
    .version(VERSION)
    .addOption(
      new Option('--instance <name>', 'instance name: scopes namespaces, state, lock and nft table')
        .default('tether')
        .env('TETHER_INSTANCE'),
    )
    .showHelpAfterError()
    .exitOverride();
  const fileOpt = () =>
    new Option(
      '-f, --file <path>',
      'a manifest file, or a directory of *.yaml/*.yml (sorted, merged)',
    ).makeOptionMandatory();

  program
    .command('plan')
    .description('show the changes apply would make, and nothing else')
    .addOption(fileOpt())
    .option('--json', 'print {"actions": [...]}')
    .action((o, cmd) => cmdPlan(o.file, o, globals(cmd)));
  program
    .command('apply')
    .description('converge once; exit 0 only when converged')
    .addOption(fileOpt())
    .option('--json', 'print the applied actions as JSON')
    .option('--prune-all', 'allow a plan that deletes most of what tether owns')
    .action((o, cmd) => cmdApply(o.file, o, globals(cmd)));
  program
    .command('destroy')
    .description('remove everything this instance owns, and nothing else')
    .option('--json', 'print the removed objects as JSON')
    .action((o, cmd) => cmdDestroy(o, globals(cmd)));
  program
    .command('status')
    .description('converged or not, what was last applied, drift, errors')
    .option('--json', 'machine-readable')
    .action((o, cmd) => cmdStatus(o, globals(cmd)));
  addDaemonCommands(program, { instance: (cmd) => globals(cmd).instance, requirements });
  program
    .command('exec')
    .description("run a command in a container's namespace (with its resolv.conf and hosts)")
    .argument('<container>')
    .argument('<cmd...>', 'the command, after --')
    .action((c, argv, _o, cmd) => cmdExec(c, argv, globals(cmd)));
  program
    .command('dns-serve', { hidden: true })
    .description('the embedded DNS resolver process (started by apply)')
    .action((_o, cmd) => serveDns(globals(cmd).instance).then(() => new Promise<never>(() => {})));
  const network = program.command('network').description('Docker-shaped network listing and inspection');
  network
    .command('ls')
    .description('list networks (bridge, host and none are predefined)')
    .option('-f, --file <path>', 'resolve from these manifests instead of the last apply')
    .action((o, cmd) => cmdNetworkLs(o, globals(cmd)));
  network
    .command('inspect')
    .description('Docker-shaped JSON of networks')
    .argument('<name...>')
    .option('-f, --file <path>', 'resolve from these manifests instead of the last apply')
    .action((names, o, cmd) => cmdNetworkInspect(names, o, globals(cmd)));
  const container = program
    .command('container')
    .description('Docker-shaped container listing and inspection');
  container
    .command('ls')
    .description('list containers with networks, addresses and published ports')
    .option('-f, --file <path>', 'resolve from these manifests instead of the last apply')
    .action((o, cmd) => cmdContainerLs(o, globals(cmd)));
  container
    .command('inspect')
    .description('Docker-shaped JSON of containers')
    .argument('<name...>')
    .option('-f, --file <path>', 'resolve from these manifests instead of the last apply')
    .action((names, o, cmd) => cmdContainerInspect(names, o, globals(cmd)));
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0)
        return 0;
      return 2;
    }
    if (e instanceof SpecError) {
      warn(
        `error: the manifests are invalid; nothing was changed:\n${e.problems.map((p) => `  ${formatProblem(p)}`).join('\n')}`,
      );
      return 2;
    }
    if (e instanceof UsageError) {
      warn(`error: ${e.message}`);
      return 2;
    }
    if (e instanceof KernelError) {
      warn(`error: ${e.message}`);
      return 1;
    }
    warn(`error: ${(e as Error).stack ?? e}`);
    return 1;
  }
}
