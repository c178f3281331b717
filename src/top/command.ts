/**
 * `statsfs top [path]`: a live view of the tree over the mount. On a terminal it takes the alternate screen
 * and refreshes every `-d` seconds; without one (or with --once) it prints one refresh as text and exits.
 * Its options are parsed here, so the CLI only registers it.
 */
import { Command, InvalidArgumentError } from 'commander';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { isAbsolute, join, relative } from 'node:path';
import { parentPath, TopModel } from './model.js';
import { KEYS, layout, renderFrame, renderPlain, type FrameInfo } from './render.js';
import { Terminal } from './terminal.js';
import { handleKey, initialView, keepInView, selectedIndex, visibleRows, type Action, type ViewState } from './view.js';

export interface TopOptions {
  mount: string;
  /** The source to show, from the mount's root. */
  path: string;
  intervalSeconds: number;
  once: boolean;
}

function seconds(text: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0.1) throw new InvalidArgumentError('expected a number of seconds, 0.1 or more');
  return n;
}

/** The path from the mount's root: given from the root, or as an absolute path inside the mount. */
export function sourcePath(mount: string, path: string | undefined): string {
  let p = path ?? '';
  if (isAbsolute(p)) {
    const rel = relative(mount, p);
    if (rel.startsWith('..') || isAbsolute(rel)) throw new Error(`${p} is not inside the mount ${mount}: give a path from the mount's root, or --mount <dir>`);
    p = rel;
  }
  const parts = p.split('/').filter((part) => part !== '' && part !== '.');
  if (parts.includes('..')) throw new Error(`"${path}": give a path from the mount's root without ".."`);
  return parts.join('/');
}

/** One line that says what went wrong with reading the mount and what to do. */
export function explain(err: unknown, mount: string, path: string): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') {
    if (path !== '' && existsSync(join(mount, '.snapshot.bin'))) return `no source "${path}" under ${mount}: 'ls ${mount}' shows what there is`;
    return `${mount} is not a statsfs mount: start one with 'statsfs mount ${mount}', or give --mount <dir>`;
  }
  if (code === 'ENOTCONN') return `the mount at ${mount} has lost its daemon: start it again with 'statsfs mount ${mount}'`;
  // a daemon that limits snapshot renderings per user refuses one beyond the budget
  if (code === 'EMFILE') return `the daemon refused a snapshot of ${join(mount, path)} for now (EMFILE: other snapshots of this user are being rendered): try again in a moment`;
  if (code === 'EACCES') return `no permission to read ${join(mount, path)}: the daemon may serve only the user who mounted it (--no-allow-other)`;
  return (err as Error).message ?? String(err);
}

/** Registers `top` on the program (the CLI passes its default mountpoint). */
export function registerTopCommand(program: Command, defaultMount: string): void {
  program
    .command('top')
    .description('a live view of the tree: counters as rates, sparklines, keys to move, filter, sort and clear')
    .argument('[path]', "the source to show, from the mount's root (default: the root)")
    .option('--mount <dir>', 'the statsfs mount to read', defaultMount)
    .option('-d, --delay <seconds>', 'seconds between refreshes', seconds, 1)
    .option('--once', 'print one refresh as text and exit: two captures -d apart, so counters have a rate (also what happens without a terminal)')
    .addHelpText('after', `\nKeys:\n${KEYS.map(([keys, what]) => `  ${keys.padEnd(18)} ${what}`).join('\n')}`)
    .action(async (path: string | undefined, flags: { mount: string; delay: number; once?: boolean }) => {
      process.exitCode = await runTop({ mount: flags.mount, path: sourcePath(flags.mount, path), intervalSeconds: flags.delay, once: flags.once === true });
    });
}

/** Runs the view; resolves with the exit status. */
export async function runTop(options: TopOptions): Promise<number> {
  const model = new TopModel(options.mount, options.path);
  try {
    await model.refresh();
  } catch (err) {
    throw new Error(explain(err, options.mount, options.path));
  }
  if (options.once || !process.stdout.isTTY || !process.stdin.isTTY) return printOnce(model, options);
  return live(model, options);
}

async function printOnce(model: TopModel, options: TopOptions): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, options.intervalSeconds * 1000));
  await model.refresh();
  process.stdout.write(renderPlain(model.allRows()).join('\n') + '\n');
  return 0;
}

/** The full-screen view until q, Ctrl-C or a signal; a crash restores the terminal before it is reported. */
function live(model: TopModel, options: TopOptions): Promise<number> {
  return new Promise<number>((resolve) => new LiveView(model, options, resolve).start());
}

/** The state of one full-screen session: what is shown, the refresh chain, and how it ends. */
class LiveView {
  private readonly terminal = new Terminal(process.stdout, process.stdin);
  private readonly delayMs: number;
  private view: ViewState = initialView();
  private error: string | null = null;
  private timer: NodeJS.Timeout | undefined;
  private chain = Promise.resolve();
  private ended = false;
  /** Keys that came while another source was loading: they are meant for its rows, so they wait for them. */
  private typeahead: string[] | null = null;

  constructor(
    private readonly model: TopModel,
    private readonly options: TopOptions,
    private readonly resolve: (status: number) => void,
  ) {
    this.delayMs = options.intervalSeconds * 1000;
  }

  start(): void {
    process.on('SIGTERM', this.onSignal).on('SIGINT', this.onSignal).on('SIGHUP', this.onSignal);
    process.on('uncaughtException', this.onCrash).on('unhandledRejection', this.onCrash).on('exit', this.onExit);
    this.terminal.enter(this.onKeys, this.draw);
    this.draw();
    this.timer = setTimeout(this.cycle, this.delayMs);
  }

  private info(): FrameInfo {
    const { model, options } = this;
    return { mount: options.mount, path: model.path, intervalSeconds: options.intervalSeconds, takenAt: model.takenAt, values: model.valueCount, error: this.error };
  }

  private readonly draw = (): void => {
    const rows = visibleRows(this.model.rows(), this.view);
    const index = selectedIndex(rows, this.view);
    this.view = { ...this.view, scroll: keepInView(this.view.scroll, index, rows.length, layout(this.terminal.size).table) };
    this.terminal.draw(renderFrame(this.view, rows, index, this.info(), this.terminal.size));
  };

  private async refresh(): Promise<void> {
    const model = this.model;
    try {
      await model.refresh();
      this.error = null;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && model.path !== '') {
        // the shown source went away (its producer left): show what is left above it
        const gone = model.path;
        model.show(parentPath(gone));
        this.view = { ...this.view, message: `${gone} is gone: showing its parent` };
        return this.refresh();
      }
      this.error = explain(err, this.options.mount, model.path);
    }
  }

  /**
   * Refreshes now and schedules the next refresh one interval after this one started; paused, it only
   * reads a source just opened, once.
   */
  private readonly cycle = (): void => {
    this.chain = this.chain.then(async () => {
      if (this.ended) return;
      const started = Date.now();
      if (!this.view.paused || !this.model.loaded) await this.refresh();
      if (this.ended) return;
      this.draw();
      clearTimeout(this.timer);
      if (!this.view.paused) this.timer = setTimeout(this.cycle, Math.max(0, this.delayMs - (Date.now() - started)));
    });
  };

  private async clear(path: string): Promise<void> {
    try {
      await writeFile(join(this.options.mount, path), '0\n');
      this.view = { ...this.view, message: `cleared ${path}` };
    } catch (err) {
      this.view = { ...this.view, message: `${path} was not cleared: ${(err as Error).message}` };
    }
    this.cycle();
  }

  private end(status: number): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.terminal.restore();
    process.off('SIGTERM', this.onSignal).off('SIGINT', this.onSignal).off('SIGHUP', this.onSignal);
    process.off('uncaughtException', this.onCrash).off('unhandledRejection', this.onCrash).off('exit', this.onExit);
    this.resolve(status);
  }

  private readonly onSignal = (signal: NodeJS.Signals): void => this.end(128 + constants.signals[signal]);

  private readonly onCrash = (err: unknown): void => {
    this.terminal.restore();
    process.stderr.write(`statsfs top: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  };

  private readonly onExit = (): void => this.terminal.restore();

  private act(action: Action): void {
    switch (action.type) {
      case 'quit':
        return this.end(0);
      case 'show':
        this.model.show(action.path);
        this.typeahead = [];
        this.cycle();
        this.chain = this.chain.then(() => {
          const keys = this.typeahead ?? [];
          this.typeahead = null;
          if (keys.length > 0) this.onKeys(keys);
        });
        return;
      case 'clear':
        void this.clear(action.path);
        return;
      case 'pause':
        if (!action.paused) this.cycle();
        else clearTimeout(this.timer);
        return;
      case 'none':
        return;
    }
  }

  private readonly onKeys = (keys: string[]): void => {
    for (const key of keys) {
      if (this.ended) return;
      if (this.typeahead !== null) {
        if (key === 'q' || key === 'ctrl-c') return this.end(0);
        this.typeahead.push(key);
        continue;
      }
      const rows = visibleRows(this.model.rows(), this.view);
      const next = handleKey(this.view, key, { path: this.model.path, rows, page: layout(this.terminal.size).table });
      this.view = next.view;
      this.act(next.action);
    }
    if (!this.ended) this.draw();
  };
}
