/**
 * The command line: a thin layer over the daemon and the library. Every command has --help; failures the
 * user can fix print one line that says what to do.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { addFilter, collectorOptions, COLLECTORS, filtersFrom, findCollector, type Collector } from './collectors/index.js';
import { runDaemon, UserError } from './daemon/daemon.js';
import { createLogger, type Logger } from './daemon/logger.js';
import { hostPort, startServices, type ServiceFlags } from './daemon/services.js';
import { defaultSocketPath } from './protocol/protocol.js';
import { seeHelp, SHELL_COMMANDS, shellCommand, shellHelp, UsageError } from './client/shell.js';
import { StateKeeper } from './state/keeper.js';
import { registerTopCommand } from './top/command.js';
import type { Source } from './model/index.js';

/** Root gets a system path; others a private one, so `statsfs mount` works for anyone with no argument. */
export function defaultMountpoint(): string {
  if (process.getuid?.() === 0) return '/run/statsfs';
  return join(process.env.XDG_RUNTIME_DIR || '/tmp', `statsfs-${process.getuid?.() ?? 'user'}`);
}

/** Where the daemon keeps its state: root's under /var/lib, a user's under $XDG_STATE_HOME (~/.local/state). */
export function defaultStateDir(): string {
  if (process.getuid?.() === 0) return '/var/lib/statsfs';
  return join(process.env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'statsfs');
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

function logLevel(text: string): string {
  if (!LEVELS.includes(text)) throw new InvalidArgumentError(`expected one of ${LEVELS.join(', ')}`);
  return text;
}

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

/** A repeatable <kind>=<regex> (collectors/filters.ts), checked as it is parsed. */
const filterArg = (which: 'include' | 'exclude') => (text: string, list: unknown): string[] => {
  try {
    addFilter({}, which, text);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  return [...((list as string[] | undefined) ?? []), text];
};

/**
 * One option of `statsfs mount`: this table drives the parser, `--help` and the README's Command line
 * section (a test checks that the README shows exactly `statsfs --help`). `help` says the default in words;
 * `value` is the default itself, `parse` checks and converts the argument.
 */
interface MountOption {
  flags: string;
  help: string;
  /** Converts and checks an argument; a repeatable option gets what it returned for the ones before. */
  parse?: (text: string, previous: unknown) => unknown;
  value?: () => unknown;
}

export const MOUNT_OPTIONS: readonly MountOption[] = [
  { flags: '--cache-seconds <s>', help: 'how long the kernel may cache names and attributes (default 1)', parse: nonNegative('seconds'), value: () => 1 },
  {
    flags: '--allow-other',
    help: 'serve every user, as /sys does (default when root or /etc/fuse.conf has user_allow_other)',
  },
  { flags: '--no-allow-other', help: 'serve only the user who mounted (the default otherwise, with a warning)' },
  {
    flags: '--collectors <list>',
    help: `host collectors to show, comma-separated (default ${COLLECTORS.map((c) => c.name).join(',')})`,
    parse: collectorList,
    value: () => [...COLLECTORS],
  },
  { flags: '--no-collectors', help: "show no host statistics, only the daemon's own" },
  {
    flags: '--collector-include <kind=regex>',
    help: 'show only these devices, interfaces, mountpoints, fstypes or cgroups (repeatable)',
    parse: filterArg('include'),
  },
  {
    flags: '--collector-exclude <kind=regex>',
    help: "leave these out too (repeatable; node_exporter's defaults apply: loop, ram devices, partitions, pseudo fs)",
    parse: filterArg('exclude'),
  },
  { flags: '--host-root <dir>', help: "read the kernel's files under <dir>/proc and <dir>/sys (default /)", value: () => '/' },
  {
    flags: '--freshness-ms <ms>',
    help: 'one read of a kernel file serves every value read within this window (default 100)',
    parse: nonNegative('milliseconds'),
    value: () => 100,
  },
  {
    flags: '--socket <path>',
    help: 'the producer socket (default /run/statsfs.sock, non-root: $XDG_RUNTIME_DIR/statsfs-$UID.sock)',
    value: () => defaultSocketPath(),
  },
  { flags: '--no-socket', help: 'accept no producers over the Unix socket' },
  { flags: '--socket-group <group>', help: 'let this group publish too (socket mode 0660 instead of 0600)' },
  {
    flags: '--state-dir <dir>',
    help: 'keep kept values, StatsD metrics and clears across restarts here (default /var/lib/statsfs, non-root: $XDG_STATE_HOME/statsfs)',
    value: () => defaultStateDir(),
  },
  { flags: '--no-state', help: 'keep nothing across restarts: run in memory only' },
  { flags: '--keep-on-disconnect', help: 'keep what a producer created after it disconnects (default: removed with it)' },
  { flags: '--statsd <host:port>', help: 'accept the StatsD line protocol on UDP (e.g. 127.0.0.1:8125)', parse: hostPort },
  { flags: '--statsd-socket <path>', help: 'accept StatsD lines on a Unix stream socket too (mode 0600), newline-terminated' },
  {
    flags: '--statsd-rcvbuf <bytes>',
    help: "the StatsD UDP socket's receive buffer, as the kernel counts it (default 8388608, 8 MiB; at most twice net.core.rmem_max; 0: the kernel's default)",
    parse: nonNegative('bytes'),
  },
  { flags: '--statsd-expire <s>', help: 'remove a StatsD metric not updated for <s> seconds (default 0: never)', parse: nonNegative('seconds') },
  { flags: '--http <host:port>', help: 'serve /metrics for Prometheus (text or OpenMetrics) on this address', parse: hostPort },
  { flags: '--http-max-scrapes <n>', help: 'scrapes of /metrics served at once; beyond, 503 (default 4)', parse: nonNegative('scrapes'), value: () => 4 },
  {
    flags: '--snapshot-budget <bytes>',
    help: 'bytes of open snapshots one user may hold; beyond, open is EMFILE (default 268435456, 256 MiB; 0: none)',
    parse: nonNegative('bytes'),
    value: () => 256 << 20,
  },
  { flags: '--log-level <level>', help: `${LEVELS.join(', ')} (default info)`, parse: logLevel, value: () => 'info' },
];

/** Column where option descriptions start, in every help text. */
const PAD = 28;

const MOUNT_HELP_HEAD = [
  'statsfs mount [mountpoint] [options]',
  '  mount the statistics tree and serve it in the foreground until SIGINT or SIGTERM; the default mountpoint',
  '  is /run/statsfs for root, else $XDG_RUNTIME_DIR/statsfs-$UID (or /tmp/statsfs-$UID), created if missing',
];

/** One option of a help text; flags too long for the column put the description on the next line. */
function optionLine(flags: string, help: string): string {
  return flags.length < PAD - 2 ? `  ${flags.padEnd(PAD - 2)} ${help}` : `  ${flags}\n${' '.repeat(PAD + 1)}${help}`;
}

export function mountHelp(): string {
  return `${[...MOUNT_HELP_HEAD, ...MOUNT_OPTIONS.map((o) => optionLine(o.flags, o.help))].join('\n')}\n`;
}

/** A command registered elsewhere (top), from its commander definition; defaults are in its own --help. */
function commandSummary(command: Command): string {
  const args = command.registeredArguments.map((a) => (a.required ? `<${a.name()}>` : `[${a.name()}]`)).join(' ');
  const lines = [`statsfs ${command.name()} ${args ? `${args} ` : ''}[options]`, `  ${command.description()}`];
  for (const o of command.options) lines.push(optionLine(o.flags, o.description));
  return `${lines.join('\n')}\n`;
}

/** `statsfs --help`: every command and option; the README's Command line section is this text. */
export function programHelp(program: Command): string {
  return [
    'statsfs <command> [options]: statistics as a filesystem (directories are sources, files are values)',
    "  statsfs --version, statsfs --help, statsfs <command> --help; exit status 0 done, 1 failed, 2 usage error",
    '',
    mountHelp(),
    ...SHELL_COMMANDS.map((info) => shellHelp(info, PAD)),
    commandSummary(topCommand(program)),
  ].join('\n');
}

/** The version in package.json (one directory up from src/, two from dist/src/). */
function packageVersion(): string {
  for (const up of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'statsfs' && pkg.version) return pkg.version;
    } catch {
      // not at this level
    }
  }
  return 'unknown';
}

interface MountFlags extends ServiceFlags {
  cacheSeconds: number;
  /** Undefined unless --allow-other or --no-allow-other was given. */
  allowOther?: boolean;
  snapshotBudget: number;
  logLevel: string;
  /** False with --no-state. */
  state: boolean;
  stateDir: string;
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

export function buildProgram(): Command {
  const program: Command = new Command('statsfs')
    .version(`statsfs ${packageVersion()}`, '-V, --version')
    .helpCommand(false)
    .configureOutput({ outputError: () => {} }) // main() prints usage errors as one line
    .configureHelp({ formatHelp: () => programHelp(program) })
    .exitOverride(usageError(''));
  const mount = program
    .command('mount')
    .argument('[mountpoint]')
    .configureHelp({ formatHelp: () => mountHelp() })
    .exitOverride(usageError('mount'))
    .action(async (mountpoint: string | undefined, flags: MountFlags) => {
      const log = createLogger(flags.logLevel);
      process.exitCode = await runDaemon({
        mountpoint: mountpoint ?? defaultMountpoint(),
        createMountpoint: mountpoint === undefined,
        cacheSeconds: flags.cacheSeconds,
        allowOther: flags.allowOther,
        snapshotBudget: flags.snapshotBudget,
        log,
        populate: (root) => addCollectors(root, flags, log),
        services: (root, state) => startServices(root, flags, log, state),
        state: flags.state ? (root) => new StateKeeper(root, flags.stateDir, log.child({ service: 'state' })) : null,
      });
    });
  for (const o of MOUNT_OPTIONS) {
    const option = new Option(o.flags, o.help);
    if (o.parse) option.argParser(o.parse);
    if (o.value) option.default(o.value());
    mount.addOption(option);
  }
  registerTopCommand(program, defaultMountpoint());
  // top keeps commander's own help (with its keys) and reports its usage errors as one line, like the rest
  topCommand(program).configureHelp({}).exitOverride(usageError('top'));
  return program;
}

function topCommand(program: Command): Command {
  return program.commands.find((c) => c.name() === 'top')!;
}

/** Commander's errors (help and --version exit 0) become one-line usage errors of `command`. */
function usageError(command: string): (err: CommanderError) => never {
  return (err) => {
    if (err.exitCode === 0) throw err;
    throw new UsageError(err.message.replace(/^error: /, '').replace(/\.$/, ''), command);
  };
}

/** Runs the CLI; returns the exit status (0 done, 1 failed, 2 usage error). */
export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv.slice(2);
  // set, add and rm parse their own arguments: a negative number is a number there, not an option
  const shell = SHELL_COMMANDS.find((c) => c.name === command);
  if (shell) return shellCommand([shell.name, ...rest], defaultSocketPath(), () => shellHelp(shell, PAD));
  try {
    if (command === undefined) throw new UsageError('give a command: mount, set, add or rm');
    await buildProgram().parseAsync(argv);
    return Number(process.exitCode ?? 0);
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode; // help or version, printed
    if (err instanceof UsageError) {
      process.stderr.write(`statsfs: ${err.message} ${seeHelp(err.command)}\n`);
      return 2;
    }
    const e = err as { message?: string };
    process.stderr.write(`statsfs: ${err instanceof UserError ? err.message : (e.message ?? String(err))}\n`);
    return 1;
  }
}
