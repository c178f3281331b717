/**
 * The command line: a thin layer over the daemon and the library. Every command has --help; failures the
 * user can fix print one line that says what to do.
 */
import { Command, InvalidArgumentError } from 'commander';
import { join } from 'node:path';
import { addFilter, collectorOptions, COLLECTORS, filtersFrom, findCollector, type Collector } from './collectors/index.js';
import { runDaemon, UserError } from './daemon/daemon.js';
import { createLogger, type Logger } from './daemon/logger.js';
import { hostPort, startServices, type ServiceFlags } from './daemon/services.js';
import { defaultSocketPath } from './producers/protocol.js';
import { SHELL_COMMANDS, shellCommand } from './producers/shell.js';
import type { Source } from './model/index.js';

/** Root gets a system path; others a private one, so `statsfs mount` works for anyone with no argument. */
export function defaultMountpoint(): string {
  if (process.getuid?.() === 0) return '/run/statsfs';
  return join(process.env.XDG_RUNTIME_DIR || '/tmp', `statsfs-${process.getuid?.() ?? 'user'}`);
}

/** A commander parser for a non-negative number of `unit`. */
function nonNegative(unit: string): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (text.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`expected a number of ${unit} (0 or more)`);
    return n;
  };
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function collectorList(text: string): Collector[] {
  return text
    .split(',')
    .filter((name) => name.trim() !== '')
    .map((name) => {
      const collector = findCollector(name.trim());
      if (!collector) throw new InvalidArgumentError(`unknown collector "${name}" (known: ${COLLECTORS.map((c) => c.name).join(', ')})`);
      return collector;
    });
}

interface MountFlags extends ServiceFlags {
  cacheSeconds: number;
  allowOther: boolean;
  logLevel: string;
  collectors: Collector[] | false;
  hostRoot: string;
  freshnessMs: number;
  collectorInclude?: string[];
  collectorExclude?: string[];
}

/** Adds the enabled host collectors under the root; one that cannot start is logged and left out. */
function addCollectors(root: Source, flags: MountFlags, log: Logger): void {
  if (flags.collectors === false) return;
  const options = collectorOptions({
    procRoot: join(flags.hostRoot, 'proc'),
    sysRoot: join(flags.hostRoot, 'sys'),
    freshnessMs: flags.freshnessMs,
    filters: filtersFrom(flags.collectorInclude ?? [], flags.collectorExclude ?? []),
    rootFs: flags.hostRoot,
  });
  for (const collector of flags.collectors) {
    try {
      root.addSubordinate(collector.create(options));
    } catch (err) {
      log.error({ err, collector: collector.name }, 'collector left out: it could not start');
    }
  }
}

/** A repeatable <kind>=<regex> (collectors/filters.ts), checked as it is parsed. */
const filterArg = (which: 'include' | 'exclude') => (text: string, list: string[] | undefined) => {
  try {
    addFilter({}, which, text);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return [...(list ?? []), text];
};

export function buildProgram(): Command {
  const program = new Command('statsfs')
    .description('Statistics as a filesystem: directories are sources, files are values, reads aggregate.')
    .showHelpAfterError()
    .exitOverride();
  program
    .command('mount')
    .description('mount the statistics tree and serve it in the foreground until SIGINT or SIGTERM')
    .argument('[mountpoint]', `where to mount (default: ${defaultMountpoint()}, created if missing)`)
    .option('--cache-seconds <s>', 'how long the kernel may cache names and attributes', nonNegative('seconds'), 1)
    .option('--no-allow-other', 'serve only the user who mounted (default: every user, as /sys does)')
    .option('--collectors <list>', `host collectors to show, comma-separated (default: ${COLLECTORS.map((c) => c.name).join(',')})`, collectorList, [...COLLECTORS])
    .option('--no-collectors', 'show no host statistics, only the daemon\'s own')
    .option('--collector-include <kind=regex>', 'show only these devices, interfaces, mountpoints, fstypes or cgroups (repeatable)', filterArg('include'))
    .option('--collector-exclude <kind=regex>', "leave these out (default: node_exporter's, e.g. devices=^(ram|loop|fd)\\d+$ and partitions)", filterArg('exclude'))
    .option('--host-root <dir>', 'read the kernel\'s files under <dir>/proc and <dir>/sys (a fixture tree, or a host mounted in a container)', '/')
    .option('--freshness-ms <ms>', 'one read of a kernel file serves every value read within this many milliseconds', nonNegative('milliseconds'), 100)
    .option('--socket <path>', `the producer socket (default: ${defaultSocketPath()})`, defaultSocketPath())
    .option('--no-socket', 'accept no producers over the Unix socket')
    .option('--socket-group <group>', 'let this group publish too (socket mode 0660 instead of 0600)')
    .option('--keep-on-disconnect', 'keep what a producer created after it disconnects (default: removed with it)')
    .option('--statsd <host:port>', 'listen for the StatsD line protocol on UDP (e.g. 127.0.0.1:8125)', hostPort)
    .option('--statsd-socket <path>', 'also accept StatsD lines on a Unix stream socket, newline-terminated')
    .option('--http <host:port>', 'serve /metrics for Prometheus (text or OpenMetrics by Accept) on this address', hostPort)
    .option('--log-level <level>', `one of ${LEVELS.join(', ')}`, 'info')
    .action(async (mountpoint: string | undefined, flags: MountFlags) => {
      if (!LEVELS.includes(flags.logLevel)) throw new UserError(`--log-level must be one of ${LEVELS.join(', ')}`);
      const log = createLogger(flags.logLevel);
      process.exitCode = await runDaemon({
        mountpoint: mountpoint ?? defaultMountpoint(),
        createMountpoint: mountpoint === undefined,
        cacheSeconds: flags.cacheSeconds,
        allowOther: flags.allowOther,
        log,
        populate: (root) => addCollectors(root, flags, log),
        services: (root) => startServices(root, flags, log),
      });
    });
  for (const info of SHELL_COMMANDS) {
    program
      .command(info.name)
      .description(info.description)
      .usage(`${info.args} [options]`)
      .option('--socket <path>', 'the daemon\'s producer socket', defaultSocketPath())
      .allowUnknownOption()
      .allowExcessArguments()
      .addHelpText('after', `\nOptions of ${info.name}:\n${info.options.map((o) => `  ${o.flags.padEnd(22)} ${o.description}`).join('\n')}`)
      .action(async (flags: { socket: string }, command: Command) => {
        process.exitCode = await shellCommand([info.name, ...command.args], flags.socket);
      });
  }
  return program;
}

/** Runs the CLI; returns the exit status. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) return e.exitCode ?? 1; // commander printed it
    process.stderr.write(`statsfs: ${err instanceof UserError ? err.message : (e.message ?? String(err))}\n`);
    return 1;
  }
}
