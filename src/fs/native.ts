/**
 * Typed wrapper around the statsfs_fuse native addon (native/, see native/statsfs.h), a libfuse3
 * low-level binding. The addon serves read, readdir(plus), flush, release, statfs and the
 * refused namespace operations in C on its own session thread; lookup, getattr, setattr,
 * opendir, open and write are handed to the JS handler given to {@link mountSession}, except open and
 * getattr of the stored values registered with {@link FuseSession.serveStored}, which C answers too.
 *
 * Handler contract:
 * - each method returns its result, or a positive errno number (e.g. `os.constants.errno.ENOENT`),
 *   or a Promise of either;
 * - if a method throws, its promise rejects or its result is malformed, the request is answered
 *   EIO and `handler.onError(op, err)` is called; nothing a handler does leaves a request unanswered;
 * - the mounting process must never touch its own mount synchronously (readFileSync, execSync of
 *   `cat` ...): the handler that would answer runs on the thread that is blocked.
 *
 * Every code, flag and layout shared with the binding comes from the binding itself (its `contract`
 * export, defined in native/contract.h), checked against native-contract.ts when it is loaded.
 *
 * Longer than the ~450 lines files here keep to: a third is the documented handler contract (the types
 * above FuseSession), and the session's request handling is kept as short methods rather than one
 * closure; both belong to the one native handle this module wraps.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statfsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  checkContract, GAUGE_NAMES, OP_NAMES, type Contract, type EventArgs, type EventName, type GaugeName, type OpName,
} from './native-contract.js';

/** Request kinds counted by {@link FuseSession.stats}, in the addon's order. */
export { OP_NAMES, type GaugeName, type OpName };

/** A positive errno number, e.g. `os.constants.errno.ENOENT`. */
export type Errno = number;
export type MaybePromise<T> = T | Promise<T>;

export interface Attr {
  ino: number;
  /** Full st_mode, including the file type bits (S_IFDIR, S_IFREG). */
  mode: number;
  nlink: number;
  /** May be 0 for regular files: reads are served from the per-open snapshot (direct_io). */
  size: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  /** Defaults to mtimeMs. */
  ctimeMs?: number;
  /** Defaults to mtimeMs. */
  atimeMs?: number;
}

export interface EntryResult {
  attr: Attr;
  /** Seconds the kernel may cache the name -> inode mapping (0 and fractions allowed). */
  entryTimeout: number;
  /** Seconds the kernel may cache the attributes. */
  attrTimeout: number;
}

/** What a setattr asks to change; only the present fields were requested. */
export interface SetAttrRequest {
  /** truncate / ftruncate / open(O_TRUNC) */
  size?: number;
  mode?: number;
  uid?: number;
  gid?: number;
  /** atime was set (to a given time or now) */
  atime?: boolean;
  mtime?: boolean;
}

/**
 * A directory listing, returned by opendir and kept in C until the directory is closed.
 * Column arrays (one element per entry) rather than one object per entry, so that 100,000
 * entries cross into C in a handful of calls. "." and ".." are added by the addon.
 */
export interface DirListing {
  /** Entry names, or all names joined with '\0' (cheapest for big directories). */
  names: readonly string[] | string;
  /** Inode numbers, same length as names. */
  inos: Float64Array;
  /** Full st_mode per entry (S_IFDIR | 0o555, S_IFREG | 0o644 ...). */
  modes: Uint32Array;
  /** st_size per entry; 0 when absent. */
  sizes?: Float64Array;
  /** mtime per entry in ms; 0 (1970) when absent. */
  mtimesMs?: Float64Array;
  /** Owner of every entry; default 0. */
  uid?: number;
  gid?: number;
  /** Inode reported for ".."; default 1. */
  parent?: number;
  /** readdirplus caching of each entry (seconds): `ls -l` costs no lookups within these. */
  entryTimeout: number;
  attrTimeout: number;
  /**
   * Whether the kernel may keep the listing in its page cache, so that the readdirs of later opendirs
   * cost no request: 'fresh' drops what it kept and caches this listing; 'keep' serves what it kept
   * (say it only when this is the very listing the previous opendir of this directory returned: what
   * it kept is then a part of it). Default 'none': every readdir is answered from this listing.
   */
  cache?: 'none' | 'fresh' | 'keep';
}

/**
 * Result of write: `undefined` accepts all bytes, `{ written }` accepts a prefix,
 * a number is an errno (as for every other handler).
 */
export type WriteResult = void | undefined | Errno | { written: number };

export interface FuseHandler {
  lookup(parent: number, name: string): MaybePromise<EntryResult | Errno>;
  /** Replied with SessionOptions.attrTimeout. */
  getattr(ino: number): MaybePromise<Attr | Errno>;
  /** Replied with SessionOptions.attrTimeout. Missing: EPERM. */
  setattr?(ino: number, set: SetAttrRequest): MaybePromise<Attr | Errno>;
  opendir(ino: number): MaybePromise<DirListing | Errno>;
  /**
   * The per-open snapshot that every read of this handle is served from (in C). Files are
   * opened with direct_io and without keep_cache. For write-only opens an empty value is fine.
   */
  open(ino: number, flags: number, uid: number): MaybePromise<OpenContent | Errno>;
  /**
   * Missing: EPERM. `accepted`: bytes earlier writes on this same open file were answered with (so a
   * handler can tell a continuation of an accepted write from a write on a fresh open).
   */
  write?(ino: number, data: Buffer, offset: number, accepted: number): MaybePromise<WriteResult>;
  /**
   * The kernel dropped `nlookup` references to `ino`. Every successful lookup reply and every
   * readdirplus entry other than "." and ".." counts as one reference. The binding also corrects, when
   * an open directory is released, the one reference opendir is expected to count per listed entry:
   * `nlookup` 1 for an entry the kernel was not handed (it listed from its cache), negative for one it
   * was handed more than once.
   */
  forget?(ino: number, nlookup: number): void;
  /** A handler threw, rejected or returned something malformed (the request got EIO). */
  onError?(op: string, err: unknown): void;
  /** The kernel ended the session (fusermount -u, umount, connection abort); resources are freed. */
  onUnmounted?(): void;
}

/** How the binding mounts one session (the tree's mount, fs/mount.ts, takes MountOptions and passes these on). */
export interface SessionOptions {
  /** allow_other; default true when running as root. */
  allowOther?: boolean;
  /** libfuse auto_unmount (makes libfuse run fusermount3 even as root); default false. */
  autoUnmount?: boolean;
  /** default_permissions: the kernel checks modes against the attributes; default true. */
  defaultPermissions?: boolean;
  /** attr_timeout (seconds) for getattr/setattr replies; default 1. */
  attrTimeout?: number;
  /** Default "statsfs" (fsname and subtype in /proc/mounts). */
  fsname?: string;
  /** Extra raw -o options, passed verbatim. */
  extraOptions?: readonly string[];
  /** Receives libfuse's debug log (every request) when given. */
  debug?: ((line: string) => void) | false;
  /**
   * Bytes of snapshots (the per-open contents of files) one user may hold at once, by the uid of the
   * opening process: the whole length of each, from when it is allocated until its file is released.
   * An open beyond it answers EMFILE. Default DEFAULT_SNAPSHOT_BUDGET; 0 for no limit.
   */
  snapshotBudget?: number;
}

/** 256 MiB: about eight .snapshot.json of the whole tree at 200,000 values. */
export const DEFAULT_SNAPSHOT_BUDGET = 256 << 20;

export interface SessionStats {
  /** Requests received, by kind. */
  requests: Record<OpName, bigint>;
  /** Error replies sent, by kind. */
  errors: Record<OpName, bigint>;
  bytesRead: bigint;
  openFiles: bigint;
  openDirs: bigint;
  /** Requests queued to or being handled by JS right now. */
  inFlight: bigint;
  /** Bytes held by open files' snapshots and by snapshots being filled (see SessionOptions.snapshotBudget). */
  snapshotBytes: bigint;
  /** Opens refused with EMFILE because the caller had spent its snapshot budget. */
  overBudget: bigint;
}

/** A mount error: `code` is an errno name (ENOENT, ENOTDIR, EACCES, EPERM, EBUSY, ENOTCONN, EINVAL ...)
 * or "ENOFUSE" when /dev/fuse or fusermount3 is unusable. */
export interface FuseError extends Error {
  code: string;
}

type NativeHandle = object & { readonly __brand?: 'statsfs_fuse' };
/** What the binding calls for each event: (event, id, arguments...), six arguments at most. */
type Dispatch = (ev: number, id: number, a?: unknown, b?: unknown, c?: unknown, d?: unknown, e?: unknown, f?: unknown) => void;
/** The handler of each event, typed from its arguments in native-contract.ts. */
type EventHandlers = { [K in EventName]: Handler<EventArgs[K]> };
type Handler<A> = A extends unknown[] ? (id: number, ...args: A) => void : never;
/** An event handler as the dispatch function calls it. */
type Decoded = (id: number, a?: unknown, b?: unknown, c?: unknown, d?: unknown, e?: unknown, f?: unknown) => void;
/**
 * A file's contents written piece by piece into the binding's memory for the open file: `size` bytes,
 * which fill() hands to `put` (each piece only during the call; false: the request is gone, stop). So a
 * large file needs no copy of its own in JS. fill() is called exactly once, with a put that refuses
 * everything when the file could not be allocated.
 */
export interface FilledContent {
  readonly size: number;
  fill(put: (at: number, bytes: Buffer) => boolean): Promise<void>;
}
export type OpenContent = Buffer | Uint8Array | string | readonly Buffer[] | FilledContent;

/** Snapshots at least this large are copied into the binding in pieces of this size, a turn of the loop apart. */
const FILL_STEP = 8 << 20;

interface NativeAddon {
  /** Codes, flags and layouts (native/contract.h); see checkContract. */
  contract: unknown;
  mount(mountpoint: string, options: string, dispatch: Dispatch, flags: number): NativeHandle;
  unmount(h: NativeHandle): void;
  replyErr(h: NativeHandle, id: number, errno: number): boolean;
  replyEntry(h: NativeHandle, id: number, attr: Float64Array, entryTimeout: number, attrTimeout: number): boolean;
  replyAttr(h: NativeHandle, id: number, attr: Float64Array, attrTimeout: number): boolean;
  /** null: the snapshot allocSnapshot made for this request. */
  replyOpen(h: NativeHandle, id: number, snapshot: Buffer | null): boolean;
  /** False: the request was answered (EMFILE over the caller's budget, ENOMEM) or is gone. */
  allocSnapshot(h: NativeHandle, id: number, length: number): boolean;
  /** False: the request is gone (unmounted). */
  fillSnapshot(h: NativeHandle, id: number, offset: number, chunk: Buffer): boolean;
  setSnapshotBudget(h: NativeHandle, bytes: number): void;
  budgetSpent(h: NativeHandle, uid: number, bytes: number): boolean;
  replyOpendir(
    h: NativeHandle, id: number, names: string, inos: Float64Array, modes: Uint32Array,
    sizes: Float64Array | null, mtimesMs: Float64Array | null, meta: Float64Array,
  ): boolean;
  replyWrite(h: NativeHandle, id: number, written: number): boolean;
  invalidateEntry(h: NativeHandle, parent: number, name: string): boolean;
  invalidateInode(h: NativeHandle, ino: number): boolean;
  markSent(h: NativeHandle, mark: number): boolean;
  stats(h: NativeHandle): BigUint64Array;
  shareArena(h: NativeHandle, words: Uint32Array): void;
  serveStored(h: NativeHandle, ino: number, slot: number, signed: boolean, attr: Float64Array, attrTimeout: number): boolean;
  dropStored(h: NativeHandle): void;
  /** Whether events wait in the queue for the JavaScript thread. */
  waiting(h: NativeHandle): boolean;
  setRef(h: NativeHandle, ref: boolean): void;
  umountDetach(path: string): void;
}

const { EIO, EPERM } = constants.errno;

/** The loaded addon with its checked contract. */
interface Binding {
  readonly native: NativeAddon;
  readonly contract: Contract;
  /** Lays an Attr out as the binding reads it (one scratch array, reused). */
  readonly packAttr: (a: Attr) => Float64Array;
}

let binding: Binding | undefined;

/** Loads build/Release/statsfs_fuse.node, from src/fs (tsx, vitest) or dist/src/fs (compiled). */
function loadBinding(): Binding {
  if (binding) return binding;
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [
    resolve(here, '../../build/Release/statsfs_fuse.node'),
    resolve(here, '../../../build/Release/statsfs_fuse.node'),
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    const err = new Error(
      `statsfs_fuse.node not found (looked in ${candidates.join(', ')}); build it with node-gyp rebuild`,
    ) as FuseError;
    err.code = 'ENOFUSE';
    throw err;
  }
  const native = createRequire(import.meta.url)(found) as NativeAddon;
  const contract = checkContract(native.contract, found);
  binding = { native, contract, packAttr: attrPacker(contract.attr) };
  return binding;
}

function isErrno(v: unknown): v is Errno {
  return typeof v === 'number';
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

class ReplyError extends Error {}

function attrPacker(at: Contract['attr']): (a: Attr) => Float64Array {
  const scratch = new Float64Array(at.length);
  return (a) => {
    if (typeof a !== 'object' || a === null) throw new ReplyError('expected an Attr object or an errno');
    scratch[at.ino] = a.ino;
    scratch[at.mode] = a.mode;
    scratch[at.nlink] = a.nlink;
    scratch[at.size] = a.size;
    scratch[at.uid] = a.uid;
    scratch[at.gid] = a.gid;
    scratch[at.mtimeMs] = a.mtimeMs;
    scratch[at.ctimeMs] = a.ctimeMs ?? a.mtimeMs;
    scratch[at.atimeMs] = a.atimeMs ?? a.mtimeMs;
    return scratch;
  };
}

function setAttrRequest(bit: Contract['setattr'], valid: number, size: number, mode: number, uid: number, gid: number): SetAttrRequest {
  const set: SetAttrRequest = {};
  if (valid & bit.size) set.size = size;
  if (valid & bit.mode) set.mode = mode;
  if (valid & bit.uid) set.uid = uid;
  if (valid & bit.gid) set.gid = gid;
  if (valid & (bit.atime | bit.atimeNow)) set.atime = true;
  if (valid & (bit.mtime | bit.mtimeNow)) set.mtime = true;
  return set;
}

/** The dispatch function: each event goes to its handler by code, through a table (no allocation). */
function dispatchTable(events: Contract['events'], handlers: EventHandlers): Dispatch {
  const unknownEvent: Decoded = () => {
    throw new Error('statsfs_fuse.node dispatched an event code its contract does not list');
  };
  const byCode = Array.from({ length: events.length }, () => unknownEvent);
  for (const name of Object.keys(handlers) as EventName[]) {
    // checkContract compared the arguments this code carries with those the handler is typed from
    byCode[events[name].code] = handlers[name] as unknown as Decoded;
  }
  return (ev, id, a, b, c, d, e, f) => byCode[ev](id, a, b, c, d, e, f);
}

export class FuseSession {
  private readonly native: NativeAddon;
  private readonly contract: Contract;
  private readonly packAttr: (a: Attr) => Float64Array;
  /** The addon's session; kept after unmount so that stats stay readable. */
  private readonly handle: NativeHandle;
  private live = true;
  private readonly attrTimeout: number;
  /** Invalidations were queued since the last mark (see invalidationsSent). */
  private unmarked = false;
  private lastMark = 0;
  /** Resolvers of the marks not yet reached by the notifier, oldest first. */
  private readonly marks: { mark: number; resolve: () => void }[] = [];
  private lastSent: Promise<void> | null = null;

  /** @internal use {@link mountSession} */
  constructor(
    readonly mountpoint: string,
    private readonly handler: FuseHandler,
    options: SessionOptions,
  ) {
    ({ native: this.native, contract: this.contract, packAttr: this.packAttr } = loadBinding());
    this.attrTimeout = options.attrTimeout ?? 1;
    const isRoot = process.getuid?.() === 0;
    const opts = [
      `fsname=${options.fsname ?? 'statsfs'}`,
      `subtype=${options.fsname ?? 'statsfs'}`,
    ];
    if (options.allowOther ?? isRoot) opts.push('allow_other');
    if (options.defaultPermissions ?? true) opts.push('default_permissions');
    if (options.autoUnmount) opts.push('auto_unmount');
    if (options.debug) opts.push('debug');
    opts.push(...(options.extraOptions ?? []));
    const debug = options.debug || undefined;
    const flag = this.contract.mountFlags;
    const flags = (debug ? flag.debug : 0) | (handler.forget ? flag.forget : 0);
    this.handle = this.native.mount(mountpoint, opts.join(','), dispatchTable(this.contract.events, this.eventHandlers(debug)), flags);
    this.native.setSnapshotBudget(this.handle, options.snapshotBudget ?? DEFAULT_SNAPSHOT_BUDGET);
  }

  get mounted(): boolean {
    return this.live;
  }

  /** Drop the kernel's cached name -> inode entry (queued to the notifier thread; never blocks). */
  invalidateEntry(parent: number, name: string): boolean {
    const queued = this.live && this.native.invalidateEntry(this.handle, parent, name);
    if (queued) this.unmarked = true;
    return queued;
  }

  /** Drop the kernel's cached attributes and data of an inode (queued; never blocks). */
  invalidateInode(ino: number): boolean {
    const queued = this.live && this.native.invalidateInode(this.handle, ino);
    if (queued) this.unmarked = true;
    return queued;
  }

  /**
   * Resolves once every invalidation queued so far has been sent to the kernel (or the session has
   * ended); null when none is outstanding. Whoever answers a change that made a cached name stale
   * (a producer's OK) waits for it, so that the kernel never serves the old entry after the answer.
   */
  invalidationsSent(): Promise<void> | null {
    if (!this.live) return null;
    if (this.unmarked) {
      this.unmarked = false;
      const mark = ++this.lastMark;
      const sent = new Promise<void>((resolve) => this.marks.push({ mark, resolve }));
      this.lastSent = sent;
      if (!this.native.markSent(this.handle, mark)) this.settleMarks(mark);
    }
    return this.lastSent;
  }

  /** Marks up to `mark` were reached: the invalidations before them are sent. */
  private settleMarks(mark: number): void {
    while (this.marks.length > 0 && this.marks[0].mark <= mark) this.marks.shift()!.resolve();
    if (this.marks.length === 0) this.lastSent = null;
  }

  /**
   * Whether requests wait for this thread (queued by the session thread, not yet handed to their handler):
   * a writer working in slices checks it between slices and yields the event loop to them.
   */
  requestsWaiting(): boolean {
    return this.live && this.native.waiting(this.handle);
  }

  /**
   * Lets the session thread read stored values itself: `words` is the value arena (see SlotArena in
   * src/model/arena.ts: word 0 a write sequence, then 64-bit slots as lo, hi). Call it again with the
   * new array each time the arena grows, before anything is written to it.
   */
  shareArena(words: Uint32Array): void {
    if (this.live) this.native.shareArena(this.handle, words);
  }

  /**
   * From now on a read-only open of `ino` is answered on the session thread with the word at `slot` of
   * the shared arena, as "%llu\n" or "%lld\n", and a getattr with `attr`, without calling the handler.
   * Holds until {@link dropStored} or until the kernel forgets the inode. False when not registered (no
   * arena shared, slot out of range, unmounted): the handler goes on answering.
   */
  serveStored(ino: number, slot: number, signed: boolean, attr: Attr): boolean {
    return this.live && this.native.serveStored(this.handle, ino, slot, signed, this.packAttr(attr), this.attrTimeout);
  }

  /**
   * Whether `bytes` more would take `uid` over its snapshot budget (0: whether it is spent already); a
   * true answer is counted as a refusal, and the caller answers the open EMFILE.
   */
  budgetSpent(uid: number, bytes: number): boolean {
    return this.live && this.native.budgetSpent(this.handle, uid, bytes);
  }

  /** Drops every registration of serveStored: opens go to the handler again. */
  dropStored(): void {
    if (this.live) this.native.dropStored(this.handle);
  }

  /** The raw counters: requests by kind (OP_NAMES order), errors by kind, bytesRead,
   * openFiles, openDirs, inFlight, snapshotBytes, overBudget. Still readable after unmount. */
  statsRaw(): BigUint64Array {
    return this.native.stats(this.handle);
  }

  stats(): SessionStats {
    const raw = this.statsRaw();
    const at = this.contract.stats;
    const requests = {} as Record<OpName, bigint>;
    const errors = {} as Record<OpName, bigint>;
    OP_NAMES.forEach((name, i) => {
      requests[name] = raw[at.requests + i];
      errors[name] = raw[at.errors + i];
    });
    const stats = { requests, errors } as SessionStats;
    for (const name of GAUGE_NAMES) stats[name] = raw[at[name]];
    return stats;
  }

  /** One gauge of {@link stats}, read now. */
  stat(name: GaugeName): bigint {
    return this.statsRaw()[this.contract.stats[name]];
  }

  /** The requests or the error replies of one kind (its index in OP_NAMES) so far. */
  opStat(counter: 'requests' | 'errors', op: number): bigint {
    return this.statsRaw()[this.contract.stats[counter] + op];
  }

  /** Stop serving, unmount (lazily), join the addon's threads, answer whatever JS still held
   * with EIO and stop keeping the event loop alive. Idempotent. */
  unmount(): Promise<void> {
    if (this.live) {
      this.live = false;
      served.delete(this.mountpoint);
      this.native.unmount(this.handle);
      this.settleMarks(Infinity);
    }
    return Promise.resolve();
  }

  /** Keep the event loop alive while mounted (the default). */
  ref(): this {
    if (this.live) this.native.setRef(this.handle, true);
    return this;
  }

  /** Let the process exit even though mounted (the mount is removed at exit). */
  unref(): this {
    if (this.live) this.native.setRef(this.handle, false);
    return this;
  }

  /** What each event does; dispatchTable routes the binding's calls here by event code. */
  private eventHandlers(debug: ((line: string) => void) | undefined): EventHandlers {
    const handler = this.handler;
    const bits = this.contract.setattr;
    const sendAttr = (id: number) => (a: Attr) => this.native.replyAttr(this.handle, id, this.packAttr(a), this.attrTimeout);
    return {
      lookup: (id, parent, name) => this.run(id, 'lookup', () => handler.lookup(parent, name), (r: EntryResult) => this.sendEntry(id, r)),
      getattr: (id, ino) => this.run(id, 'getattr', () => handler.getattr(ino), sendAttr(id)),
      setattr: (id, ino, valid, size, mode, uid, gid) => this.run(id, 'setattr', () => (handler.setattr
        ? handler.setattr(ino, setAttrRequest(bits, valid, size, mode, uid, gid))
        : EPERM), sendAttr(id)),
      opendir: (id, ino) => this.run(id, 'opendir', () => handler.opendir(ino), (l: DirListing) => this.sendListing(id, ino, l)),
      open: (id, ino, flags, uid) => this.run(id, 'open', () => handler.open(ino, flags, uid), (v: OpenContent) => this.sendOpen(id, v)),
      write: (id, ino, data, offset, accepted) => this.run(id, 'write',
        () => (handler.write ? handler.write(ino, data, offset, accepted) : EPERM),
        (r: void | { written: number }) => this.native.replyWrite(this.handle, id, r === undefined ? data.length : r.written)),
      forget: (_id, pairs) => this.forget(pairs),
      ended: () => this.ended(),
      log: (_id, _level, line) => {
        try {
          debug?.(line);
        } catch {
          // a failing logger must not take the daemon down
        }
      },
      sent: (_id, mark) => this.settleMarks(mark),
    };
  }

  /** Answers EIO (unless `id` is 0: nothing to answer) and tells the handler. */
  private fail(id: number, op: string, err: unknown): void {
    if (id) this.native.replyErr(this.handle, id, EIO);
    try {
      this.handler.onError?.(op, err);
    } catch {
      // an onError that throws must not take the daemon down
    }
  }

  /** Replies with the handler's result; numbers are errnos. */
  private deliver<T>(id: number, op: string, v: T | Errno, send: (v: T) => unknown): void {
    try {
      if (isErrno(v)) {
        if (!(Number.isInteger(v) && v > 0 && v < 4096)) throw new ReplyError(`invalid errno ${v}`);
        this.native.replyErr(this.handle, id, v);
      } else {
        send(v);
      }
    } catch (err) {
      this.fail(id, op, err);
    }
  }

  /** Calls the handler and replies with what it returns or resolves to. */
  private run<T>(id: number, op: string, call: () => MaybePromise<T | Errno>, send: (v: T) => unknown): void {
    let r: MaybePromise<T | Errno>;
    try {
      r = call();
    } catch (err) {
      this.fail(id, op, err);
      return;
    }
    if (isThenable(r)) {
      (r as Promise<T | Errno>).then((v) => this.deliver(id, op, v, send), (err: unknown) => this.fail(id, op, err));
    } else {
      this.deliver(id, op, r, send);
    }
  }

  private sendEntry(id: number, r: EntryResult): void {
    if (typeof r !== 'object' || r === null) throw new ReplyError('expected an EntryResult or an errno');
    this.native.replyEntry(this.handle, id, this.packAttr(r.attr), r.entryTimeout, r.attrTimeout);
  }

  private sendOpen(id: number, v: OpenContent): void {
    if (Array.isArray(v)) return void this.sendLarge(id, v as readonly Buffer[]);
    if (typeof v === 'object' && !(v instanceof Uint8Array) && 'size' in v) return void this.sendFilled(id, v);
    let buf: Buffer;
    if (typeof v === 'string') buf = Buffer.from(v);
    else if (Buffer.isBuffer(v)) buf = v;
    else if (v instanceof Uint8Array) buf = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    else throw new ReplyError('expected a Buffer, a string, an array of Buffers or an errno');
    if (buf.length > FILL_STEP) return void this.sendLarge(id, [buf]);
    this.native.replyOpen(this.handle, id, buf);
  }

  /**
   * A large snapshot goes into the binding's memory a piece at a time, so no copy holds the loop for long.
   * It is allocated whole first, and charged whole to the opener's budget from then on.
   */
  private async sendLarge(id: number, chunks: readonly Buffer[]): Promise<void> {
    const native = this.native;
    try {
      let total = 0;
      for (const chunk of chunks) {
        if (!Buffer.isBuffer(chunk)) throw new ReplyError('expected an array of Buffers');
        total += chunk.length;
      }
      if (!native.allocSnapshot(this.handle, id, total)) return; // answered: over the opener's budget, or no memory
      let at = 0;
      let sinceTurn = 0;
      for (const chunk of chunks) {
        for (let from = 0; from < chunk.length; from += FILL_STEP) {
          const piece = chunk.subarray(from, from + FILL_STEP);
          // false: unmounted meanwhile; the request is gone and its snapshot freed with it
          if (!native.fillSnapshot(this.handle, id, at, piece)) return;
          at += piece.length;
          sinceTurn += piece.length;
          if (sinceTurn >= FILL_STEP) {
            sinceTurn = 0;
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
        }
      }
      native.replyOpen(this.handle, id, null);
    } catch (err) {
      this.fail(id, 'open', err);
    }
  }

  /** Allocates the file in the binding, charged whole to the opener's budget, and has `content` fill it. */
  private async sendFilled(id: number, content: FilledContent): Promise<void> {
    const native = this.native;
    try {
      // answered: over the opener's budget, or no memory; fill is still called (once, as always), to stop at once
      if (!native.allocSnapshot(this.handle, id, content.size)) return await content.fill(() => false);
      let gone = false;
      await content.fill((at, bytes) => {
        if (!Buffer.isBuffer(bytes)) throw new ReplyError('expected a Buffer');
        // false: unmounted meanwhile; the request is gone and its snapshot freed with it
        gone ||= !native.fillSnapshot(this.handle, id, at, bytes);
        return !gone;
      });
      if (!gone) native.replyOpen(this.handle, id, null);
    } catch (err) {
      this.fail(id, 'open', err);
    }
  }

  private forget(pairs: Float64Array): void {
    for (let i = 0; i < pairs.length; i += 2) {
      try {
        this.handler.forget?.(pairs[i], pairs[i + 1]);
      } catch (err) {
        this.fail(0, 'forget', err);
      }
    }
  }

  /** The kernel ended the session. */
  private ended(): void {
    void this.unmount();
    try {
      this.handler.onUnmounted?.();
    } catch (err) {
      this.fail(0, 'onUnmounted', err);
    }
  }

  private sendListing(id: number, ino: number, l: DirListing): void {
    if (typeof l !== 'object' || l === null) throw new ReplyError('expected a DirListing or an errno');
    const names = typeof l.names === 'string' ? l.names : l.names.join('\0');
    const at = this.contract.dirMeta;
    const meta = new Float64Array(at.length);
    meta[at.self] = ino;
    meta[at.parent] = l.parent ?? 1;
    meta[at.uid] = l.uid ?? 0;
    meta[at.gid] = l.gid ?? 0;
    meta[at.entryTimeout] = l.entryTimeout;
    meta[at.attrTimeout] = l.attrTimeout;
    meta[at.cache] = this.contract.dirCache[l.cache ?? 'none'];
    this.native.replyOpendir(this.handle, id, names, l.inos, l.modes, l.sizes ?? null, l.mtimesMs ?? null, meta);
  }
}

/** Mountpoints of the sessions this process serves. */
const served = new Set<string>();

function fuseError(code: string, message: string): FuseError {
  const err = new Error(message) as FuseError;
  err.code = code;
  return err;
}

/** Refuse to stack on a FUSE mount: a live one (EBUSY) or a stale one left by a killed
 * daemon (ENOTCONN). Other mounts (e.g. a bind-mounted volume) may be mounted over. */
function checkMountpoint(target: string): void {
  const fstype = mountEntry(target);
  if (!fstype?.startsWith('fuse')) return;
  // Never probe a mount this process serves: the probe would wait for our own JS thread.
  if (served.has(target)) throw fuseError('EBUSY', `cannot mount on ${target}: already mounted by this process`);
  try {
    statfsSync(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') {
      throw fuseError('ENOTCONN', `mountpoint ${target} is a stale FUSE mount (Transport endpoint is not connected); detach it with lazyUnmount()`);
    }
  }
  throw fuseError('EBUSY', `cannot mount on ${target}: a FUSE filesystem (${fstype}) is already mounted there`);
}

/**
 * Mount a filesystem served by `handler` at `mountpoint`. Synchronous; throws a {@link FuseError}
 * whose message includes libfuse's last log line. The session keeps the event loop alive until
 * unmounted (see {@link FuseSession.unref}).
 */
export function mountSession(mountpoint: string, handler: FuseHandler, options: SessionOptions = {}): FuseSession {
  const target = resolve(mountpoint);
  checkMountpoint(target);
  const session = new FuseSession(target, handler, options);
  served.add(target);
  return session;
}

/**
 * The loaded addon, for what uses it beyond FUSE (the daemon's StatsD receiver, native/statsd_recv.c),
 * which checks its own part of it (src/producers/statsd-native.ts).
 */
export function loadAddon(): unknown {
  return loadBinding().native;
}

/**
 * Detach a mount at `path` (e.g. a stale "Transport endpoint is not connected" mount left by a
 * kill -9): umount2(MNT_DETACH) as root, otherwise `fusermount3 -u -z`. Throws a FuseError.
 */
export function lazyUnmount(path: string): void {
  const target = resolve(path);
  if (process.getuid?.() === 0) {
    loadBinding().native.umountDetach(target);
    return;
  }
  const r = spawnSync('fusermount3', ['-u', '-z', target], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    const err = new Error(
      `fusermount3 -u -z ${target} failed: ${r.error?.message ?? (r.stderr.trim() || `exit status ${r.status}`)}`,
    ) as FuseError;
    err.code = r.error ? 'ENOFUSE' : 'EINVAL';
    throw err;
  }
}

/** The filesystem type of the topmost mount at `path` per /proc/mounts, or undefined. */
function mountEntry(path: string): string | undefined {
  const target = resolve(path);
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
  let fstype: string | undefined;
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const fields = line.split(' ');
    if (fields.length > 2 && unescape(fields[1]) === target) fstype = fields[2];
  }
  return fstype;
}

/** Whether `path` is a mount point according to /proc/mounts. */
export function isMounted(path: string): boolean {
  return mountEntry(path) !== undefined;
}
