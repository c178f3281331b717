/**
 * The daemon's state directory: what the daemon owns (kept producer sources, StatsD metrics, baselines of
 * cleared kernel counters) as a checkpoint file plus a journal of what changed since (journal.ts), so that a
 * restart finds it again.
 *
 * Each part of the daemon that owns state registers a StatePart; the keeper restores it from the checkpoint
 * loaded at the start, replays the journal over it, fdatasyncs the journal every second, and writes a new
 * checkpoint when a part's generation moved: every 10 s, when the journal passes 16 MiB, and at a clean stop
 * (SIGTERM, SIGINT), after the services have stopped. The
 * document is built synchronously on the event loop (one consistent moment: no request is applied halfway;
 * a large state stretches the interval, see BUILD_SPACING), then written off the loop: a temporary file,
 * fsync, rename over the old one, fsync of the directory; each checkpoint starts a new journal file, and the
 * older ones go once it is durable. Parts append journal records (append()) before what they record is
 * acknowledged, so a kill -9 loses nothing acknowledged; a power loss, at most the last second.
 *
 * A checkpoint that fails its checks (cut short, checksum, not JSON) is moved aside as
 * `statsfs.state.corrupt-<time>` with one log line and the daemon starts empty; one written by a newer format
 * is refused (the daemon does not start), never overwritten. A directory another live daemon uses is refused
 * too (LOCK_FILE).
 */
import { mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Log } from '../log.js';
import { ValueGroup, Writes, type Source } from '../model/index.js';
import { decodeState, encodeState } from './codec.js';
import { dropJournalsBefore, JournalFile, journalFiles, journalRecord, readJournal } from './journal.js';

export const STATE_FILE = 'statsfs.state';
/** Names the daemon using the directory: two daemons appending to one journal would corrupt each other's state. */
export const LOCK_FILE = 'statsfs.lock';
/** How often the journal is fdatasynced: the most a power loss or an OS crash can lose (a kill -9: nothing). */
export const STATE_INTERVAL_MS = 1000;
/** A checkpoint when something changed this long after the last one, or sooner when the journal passes JOURNAL_MAX_BYTES. */
export const CHECKPOINT_EVERY_MS = 10_000;
/** Journal bytes that start a checkpoint (and a new journal): what a start replays stays bounded. */
export const JOURNAL_MAX_BYTES = 16 << 20;
/**
 * A checkpoint is built on the event loop (one consistent moment), so a large state stretches the interval:
 * the next one waits at least this many times as long as the last one took to build, so checkpoints take at
 * most 2% of the daemon's time (100,000 StatsD metrics, about 200 ms to build: one every 10 s).
 */
export const BUILD_SPACING = 50;

/** One owner of state: what to write, how to put it back, and a counter that moves when it changed. */
export interface StatePart {
  /** What to keep, as JSON-able data (64-bit words as decimal strings). */
  save(): unknown;
  /** Puts back what save() returned in an earlier run; what no longer fits is skipped and counted. */
  restore(data: unknown): void;
  /** Moves whenever what save() returns may have changed (a count of changes). */
  generation(): number;
  /** Applies a journal record the part appended (after restore(), in order). */
  replay?(data: unknown): void;
  /** A journal record that replaces everything the part holds (journaled after a clear through the mount). */
  everything?(): unknown;
}

/** The keeper's own statistics (statsfs/state/). */
export interface StateStats {
  checkpoints: number;
  /** Bytes of the last checkpoint written. */
  checkpointBytes: number;
  /** How long building the last checkpoint held the event loop (ms). */
  buildMs: number;
  /** The checkpoint interval now: CHECKPOINT_EVERY_MS, or BUILD_SPACING times the last build when longer (ms). */
  intervalMs: number;
  fsyncs: number;
  /** The last durable point: what was applied before this time is fsynced, in the journal or a checkpoint (ms since the epoch; 0: none yet). */
  lastDurableMs: number;
  /** Checkpoints that could not be written (disk full, permissions): logged, retried at the next interval. */
  writeFailures: number;
  /** State files that failed their checks and were moved aside. */
  corruptMovedAside: number;
  /** Parts of a loaded state that could not be restored (logged). */
  loadFailures: number;
  /** Journal records appended, and their bytes. */
  journalRecords: number;
  journalBytes: number;
  /** Journal records replayed at the start, and torn tails found (a record cut short: a power loss). */
  journalReplayed: number;
  journalTorn: number;
  /** Records that could not be appended (logged once; what they held waits for the next checkpoint). */
  journalFailures: number;
}

/** A state file this version must not load nor overwrite (written by a newer statsfs). */
export class StateRefused extends Error {
  override readonly name = 'StateRefused';
}

export class StateKeeper {
  readonly stats: StateStats = { checkpoints: 0, checkpointBytes: 0, buildMs: 0, intervalMs: CHECKPOINT_EVERY_MS, fsyncs: 0, lastDurableMs: 0, writeFailures: 0, corruptMovedAside: 0, loadFailures: 0, journalRecords: 0, journalBytes: 0, journalReplayed: 0, journalTorn: 0, journalFailures: 0 };
  private readonly parts = new Map<string, StatePart>();
  private loaded: Record<string, unknown> = {};
  private timer: NodeJS.Timeout | null = null;
  private writing: Promise<void> | null = null;
  /** The sum of the parts' generations at the last checkpoint begun (-1: none yet). */
  private savedGeneration = -1;
  private closed = false;
  /** When the interval allows the next checkpoint (see BUILD_SPACING), and when the last one was built. */
  private notBefore = 0;
  private lastCheckpointAt = 0;
  /** Journal records found at the start, by part, to replay after its restore. */
  private replays = new Map<string, unknown[]>();
  /** The journal being appended to (a new one at each checkpoint). */
  private journal: JournalFile | null = null;
  /** What this keeper wrote in LOCK_FILE (null: it holds no lock). */
  private lockText: string | null = null;

  constructor(
    private readonly root: Source,
    readonly dir: string,
    private readonly log: Log,
    private readonly intervalMs = STATE_INTERVAL_MS,
  ) {}

  get file(): string {
    return join(this.dir, STATE_FILE);
  }

  /**
   * Creates the directory (0700: metric names can say much) and loads the state file if there is one.
   * Throws StateRefused for a newer format, and an Error when the directory cannot be made.
   */
  open(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.lock();
    try {
      this.load();
    } catch (err) {
      this.unlock();
      throw err;
    }
  }

  /** Loads the checkpoint and finds the journal records to replay over it. */
  private load(): void {
    try {
      unlinkSync(`${this.file}.tmp`); // a checkpoint a crash interrupted: the previous one is still whole
    } catch {
      // none
    }
    const from = this.loadCheckpoint();
    // what changed after that checkpoint; a corrupt checkpoint's journals describe changes to an unknown base
    const files = journalFiles(this.dir);
    if (from >= 0) {
      for (const f of files.filter((j) => j.epoch >= from)) {
        const { records, torn } = readJournal(f.path);
        for (const [part, data] of records) {
          const list = this.replays.get(part);
          if (list === undefined) this.replays.set(part, [data]);
          else list.push(data);
        }
        this.stats.journalReplayed += records.length;
        if (torn > 0) {
          this.stats.journalTorn++;
          this.log.warn({ file: f.path, records: records.length }, 'state journal ends with a torn record (cut short): replayed up to it');
        }
      }
      if (files.length > 0) this.log.info({ records: this.stats.journalReplayed, files: files.length }, 'state journal loaded');
    }
    // appended records go to a file after every existing one (never after a torn tail)
    this.journal = new JournalFile(this.dir, Math.max(from, ...files.map((f) => f.epoch + 1), 0));
    if (from < 0) dropJournalsBefore(this.dir, this.journal.epoch);
  }

  /**
   * Takes the directory: writes LOCK_FILE with this process's pid and start time, or throws StateRefused when
   * a live daemon holds it. A pid alone could name another process after a kill -9 (pids are reused); the
   * start time (/proc/<pid>/stat) makes the check exact. A lock left by a process that is gone is taken over.
   */
  private lock(): void {
    const path = join(this.dir, LOCK_FILE);
    const mine = `${process.pid} ${processStart(process.pid)}\n`;
    for (let attempt = 0; ; attempt++) {
      try {
        writeFileSync(path, mine, { flag: 'wx', mode: 0o600 });
        this.lockText = mine;
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      }
      const [pid, start] = readFileSync(path, 'latin1').trim().split(' ');
      const holder = Number(pid);
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && start !== undefined && processStart(holder) === start) {
        throw new StateRefused(`state directory ${this.dir} is in use by another statsfs daemon (pid ${holder}): give each daemon its own --state-dir, or use --no-state`);
      }
      this.log.info({ file: path, pid: holder }, 'state: taking over the lock of a daemon that is gone');
      unlinkSync(path);
    }
  }

  private unlock(): void {
    if (this.lockText === null) return;
    const path = join(this.dir, LOCK_FILE);
    try {
      if (readFileSync(path, 'latin1') === this.lockText) unlinkSync(path);
    } catch {
      // gone already
    }
    this.lockText = null;
  }

  /** Loads the checkpoint; returns the journal epoch it starts at (0: none), or -1 when it was corrupt. */
  private loadCheckpoint(): number {
    let buf: Buffer;
    try {
      buf = readFileSync(this.file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw err;
    }
    const decoded = decodeState(buf);
    if (decoded.ok) {
      const parts = decoded.doc.parts;
      this.loaded = typeof parts === 'object' && parts !== null ? (parts as Record<string, unknown>) : {};
      this.log.info({ file: this.file, bytes: buf.length, savedAt: decoded.doc.savedAt }, 'state loaded');
      return typeof decoded.doc.epoch === 'number' ? decoded.doc.epoch : 0;
    }
    if (decoded.problem === 'newer') {
      throw new StateRefused(
        `state file ${this.file} was ${decoded.message}: run that version, or move the file away (or use --no-state, or another --state-dir) to start without it`,
      );
    }
    const aside = `${this.file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    renameSync(this.file, aside);
    this.stats.corruptMovedAside++;
    this.log.error({ file: this.file, movedTo: aside, problem: decoded.message }, 'state file is corrupt: moved aside, starting without it');
    return -1;
  }

  /** Adds a part and restores what the loaded state holds for it (one write of the tree, as a request is). */
  async register(name: string, part: StatePart): Promise<void> {
    this.parts.set(name, part);
    const data = this.loaded[name];
    const records = this.replays.get(name) ?? [];
    this.replays.delete(name);
    if (data === undefined && records.length === 0) return;
    delete this.loaded[name];
    // changes replayed from the journal are in no checkpoint yet: the first one comes at start()
    if (records.length > 0) this.savedGeneration = -1;
    try {
      await Writes.of(this.root).apply(() => {
        if (data !== undefined) part.restore(data);
        for (const r of records) part.replay?.(r);
      });
    } catch (err) {
      this.stats.loadFailures++;
      this.log.error({ part: name, err }, 'state: could not restore this part (what was restored before the error stays)');
    }
  }

  /**
   * Appends a journal record for `part` (before the change it records is acknowledged): one write(2), so it
   * survives a kill -9 of the daemon. A failure is logged once and counted; the next checkpoint holds it.
   */
  append(part: string, data: unknown): void {
    if (this.journal === null || this.closed) return;
    try {
      const record = journalRecord(part, data);
      this.journal.append(record);
      this.stats.journalRecords++;
      this.stats.journalBytes += record.length;
    } catch (err) {
      if (this.stats.journalFailures++ === 0) this.log.error({ err }, 'state: journal append failed (further failures are counted, not logged)');
    }
  }

  /**
   * A clear through the mount (of a kept value, a StatsD metric, a kernel counter's baseline) is journaled
   * at the end of the current job, so that its write is answered with the journal record written.
   */
  private clearScheduled = false;
  private onClear = (): void => {
    if (this.clearScheduled) return;
    this.clearScheduled = true;
    queueMicrotask(() => {
      this.clearScheduled = false;
      for (const [name, part] of this.parts) if (part.everything !== undefined) this.append(name, part.everything());
    });
  };

  /** Checkpoints every interval from now on (when something changed), and journals clears. */
  start(): void {
    if (this.timer !== null || this.closed) return;
    ValueGroup.onClear = this.onClear;
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  /**
   * Every interval: an fdatasync of the journal (the last durable point
   * moves to when it began); a checkpoint when something changed CHECKPOINT_EVERY_MS after the last one, or
   * once the journal passes JOURNAL_MAX_BYTES.
   */
  private tick(): void {
    const journal = this.journal;
    if (journal !== null) {
      const began = Date.now();
      void journal.sync().then((done) => {
        if (!done) return;
        this.stats.fsyncs++;
        this.stats.lastDurableMs = Math.max(this.stats.lastDurableMs, began); // what was appended before it is on disk
      });
    }
    const now = Date.now();
    if (this.writing !== null || now < this.notBefore || this.generation() === this.savedGeneration) return;
    if (now - this.lastCheckpointAt < CHECKPOINT_EVERY_MS && (journal?.bytes ?? 0) < JOURNAL_MAX_BYTES && this.savedGeneration !== -1) return;
    void this.checkpoint();
  }

  private generation(): number {
    let sum = ValueGroup.clears; // a clear through the mount changes a part without its knowing
    for (const part of this.parts.values()) sum += part.generation();
    return sum;
  }

  /** Writes a checkpoint of every part now (after the one being written, if any); resolves once durable. */
  async checkpoint(): Promise<void> {
    while (this.writing !== null) await this.writing;
    const generation = this.generation();
    const builtAt = Date.now();
    this.lastCheckpointAt = builtAt;
    const doc: Record<string, unknown> = {};
    for (const [name, part] of this.parts) doc[name] = part.save();
    // what changes from now on goes to a new journal file, which this checkpoint names
    let epoch = 0;
    if (this.journal !== null) {
      epoch = this.journal.epoch + 1;
      this.journal.close();
      this.journal = this.closed ? null : new JournalFile(this.dir, epoch);
    }
    // parts of the loaded state that no registered part took (a service not started this time) are kept
    const buf = encodeState({ savedAt: new Date(builtAt).toISOString(), epoch, parts: { ...this.loaded, ...doc } });
    this.stats.buildMs = Date.now() - builtAt;
    this.stats.intervalMs = Math.max(CHECKPOINT_EVERY_MS, BUILD_SPACING * this.stats.buildMs);
    this.notBefore = builtAt + BUILD_SPACING * this.stats.buildMs;
    this.savedGeneration = generation;
    this.writing = this.write(buf, builtAt, epoch).finally(() => (this.writing = null));
    return this.writing;
  }

  private async write(buf: Buffer, builtAt: number, epoch: number): Promise<void> {
    const tmp = `${this.file}.tmp`;
    try {
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(buf);
        await fh.datasync();
        this.stats.fsyncs++;
      } finally {
        await fh.close();
      }
      await rename(tmp, this.file);
      // the rename itself is durable once the directory is
      const dir = await open(this.dir, 'r');
      try {
        await dir.sync();
        this.stats.fsyncs++;
      } finally {
        await dir.close();
      }
      this.stats.checkpoints++;
      this.stats.checkpointBytes = buf.length;
      this.stats.lastDurableMs = builtAt;
      dropJournalsBefore(this.dir, epoch);
    } catch (err) {
      this.stats.writeFailures++;
      this.savedGeneration = -1; // try again at the next interval
      this.log.error({ file: this.file, err }, 'state: checkpoint failed; the previous one stays');
    }
  }

  /** Stops the interval and writes the last checkpoint (call once nothing changes the tree any more). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (ValueGroup.onClear === this.onClear) ValueGroup.onClear = null;
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    try {
      await this.checkpoint(); // and no journal after it: everything is in the checkpoint
    } finally {
      this.unlock();
    }
  }
}

/** A process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat), or null when it is gone. */
function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // the command name (field 2) may hold spaces and parentheses: count fields after its closing one
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}
