/**
 * The command line: a thin layer over the daemon and the library. Every command has --help; failures the
 * user can fix print one line that says what to do.
 */
import { Command, InvalidArgumentError } from 'commander';
import { join } from 'node:path';
import { runDaemon, UserError } from './daemon/daemon.js';
import { createLogger } from './daemon/logger.js';

/** Root gets a system path; others a private one, so `statsfs mount` works for anyone with no argument. */
export function defaultMountpoint(): string {
  if (process.getuid?.() === 0) return '/run/statsfs';
  return join(process.env.XDG_RUNTIME_DIR || '/tmp', `statsfs-${process.getuid?.() ?? 'user'}`);
}

function seconds(text: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number of seconds (0 or more)');
  return n;
}

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export function buildProgram(): Command {
  const program = new Command('statsfs')
    .description('Statistics as a filesystem: directories are sources, files are values, reads aggregate.')
    .showHelpAfterError()
    .exitOverride();
  program
    .command('mount')
    .description('mount the statistics tree and serve it in the foreground until SIGINT or SIGTERM')
    .argument('[mountpoint]', `where to mount (default: ${defaultMountpoint()}, created if missing)`)
    .option('--cache-seconds <s>', 'how long the kernel may cache names and attributes', seconds, 1)
    .option('--no-allow-other', 'serve only the user who mounted (default: every user, as /sys does)')
    .option('--log-level <level>', `one of ${LEVELS.join(', ')}`, 'info')
    .action(async (mountpoint: string | undefined, opts: { cacheSeconds: number; allowOther: boolean; logLevel: string }) => {
      if (!LEVELS.includes(opts.logLevel)) throw new UserError(`--log-level must be one of ${LEVELS.join(', ')}`);
      const log = createLogger(opts.logLevel);
      process.exitCode = await runDaemon({
        mountpoint: mountpoint ?? defaultMountpoint(),
        createMountpoint: mountpoint === undefined,
        cacheSeconds: opts.cacheSeconds,
        allowOther: opts.allowOther,
        log,
      });
    });
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
