/**
 * The thin filesystem adapter: translates inode-based FUSE requests into model calls. It holds no
 * statistics of its own; it only maps inode numbers to sources and values and renders text.
 *
 * Inode numbers are handed out on first lookup and never reused, so a stale number can only ever resolve
 * to "gone" (ENOENT), never to another node. A mapping is dropped when the kernel forgets the inode.
 *
 * Over 450 lines: StatsFsAdapter is one FuseHandler whose operations share its inode table; the rendering
 * lives in model/ and export/, so what is left here is the mapping, which a split would spread across files.
 */
import { constants } from 'node:os';
import {
  captureSnapshotSliced,
  HISTOGRAM_FILES,
  histogramFileName,
  histogramFileOf,
  histogramFileText,
  StatsError,
  Writes,
  type HistogramFile,
  type SnapshotContent,
  type SnapshotRenderer,
  type SnapshotStream,
  type Source,
  type TreeObserver,
  type ValueDef,
  type ValueGroup,
} from '../model/index.js';
import type { Attr, DirListing, EntryResult, FuseHandler, SetAttrRequest } from './native.js';

const E = constants.errno;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const O_ACCMODE = 3;
const O_WRONLY = 1;
export const ROOT_INO = 1;

/** Kernel-side caches to drop when the tree changes (the native session queues these safely). */
export interface Invalidator {
  invalidateEntry(parentIno: number, name: string): void;
  /** Resolves once what was queued has reached the kernel; null when nothing is outstanding. */
  invalidationsSent?(): Promise<void> | null;
  /** Whether requests of the mount wait for the event loop (see TreeObserver.readersWaiting). */
  requestsWaiting?(): boolean;
}

/**
 * Answers open and getattr of plain stored values without calling the adapter: the native session does,
 * on its own thread, from the shared value arena. The adapter registers a value once it has opened it and
 * drops every registration whenever a change could make an inode mean something else.
 */
export interface StoredValueServer {
  /** Opens of `ino` read the arena word at `slot`; its getattr answers `attr`. False: not registered. */
  serveStored(ino: number, slot: number, signed: boolean, attr: Attr): boolean;
  dropStored(): void;
}

/** The binding's per-user budget for what open files hold (see SessionOptions.snapshotBudget, fs/native.ts). */
export interface SnapshotBudget {
  /** Whether `bytes` more would take `uid` over its budget; true is counted as a refusal. */
  budgetSpent(uid: number, bytes: number): boolean;
}

export interface AdapterOptions {
  /** Seconds the kernel may cache names and attributes; removals are invalidated at once regardless. */
  cacheSeconds?: number;
  uid?: number;
  gid?: number;
  /** Called with every error a getter or handler threw: the request answers EIO and serving goes on. */
  onError?: (op: string, err: unknown) => void;
  /**
   * Hidden files present in every directory (not listed by ls): opening one captures the directory's
   * subtree at one instant and renders it with the given function, e.g. '.snapshot' -> text lines.
   */
  snapshots?: Readonly<Record<string, SnapshotRenderer>>;
}

const isStream = (out: unknown): out is SnapshotStream & { filled?: Promise<void> } => typeof out === 'object' && out !== null && 'size' in out;

/** The stream, with a promise of the end of its fill (which the binding calls exactly once). */
function trackFill(stream: SnapshotStream): SnapshotStream & { filled: Promise<void> } {
  let ended!: () => void;
  const filled = new Promise<void>((resolve) => (ended = resolve));
  return { size: stream.size, fill: (put) => stream.fill(put).finally(ended), filled };
}

/** Bytes of a snapshot file's contents. */
function contentBytes(out: SnapshotContent): number {
  if (typeof out === 'string') return Buffer.byteLength(out);
  if (Buffer.isBuffer(out)) return out.length;
  return 'size' in out ? out.size : out.reduce((n, b) => n + b.length, 0);
}

/**
 * A node an inode number stands for: a source (directory), one value of one of its groups (file; a
 * histogram value is a directory), one file of a histogram value, or one of a directory's hidden
 * snapshot files.
 */
interface Node {
  ino: number;
  source: Source;
  /** For value files: the group and definition the name resolved to when it was looked up. */
  group: ValueGroup | null;
  def: ValueDef | null;
  /** For snapshot files: the file name, a key of options.snapshots. */
  snapshot: string | null;
  /** For the files of a histogram value (def is the histogram): which one. */
  part: HistogramFile | null;
  /** For snapshot files: bytes of the last rendering, what the next one is expected to take. */
  renderedBytes?: number;
  nlookup: number;
}

/**
 * A directory's listing, with its children counted as looked up at each opendir. `handedParent`: the
 * parent inode it was last returned with (null: not yet returned), so that an unchanged listing lets the
 * kernel serve `ls` from what it cached; `freshAt`: when the kernel last took it whole (Date.now()).
 */
interface KeptListing {
  listing: DirListing;
  children: Node[];
  handedParent: number | null;
  freshAt: number;
}

/** Directories with at least this many entries keep their listing (small ones are cheap to build). */
const KEPT_LISTING_MIN = 256;

/** A source's directory. */
const isSourceDir = (node: Node) => node.def === null && node.snapshot === null;
/** A histogram value's directory. */
const isHistogramDir = (node: Node) => node.def !== null && node.def.histogram && node.part === null;
const isDir = (node: Node) => isSourceDir(node) || isHistogramDir(node);

/** Which name of a histogram's directory (a key of valueInos): names cannot contain '/'. */
const partKey = (def: ValueDef, part: HistogramFile) => `${def.name}/${part}`;

/** Permission bits of a value file: a histogram's `count` clears it; its other files are read-only. */
function fileMode(def: ValueDef, part: HistogramFile | null): number {
  return part === null || part === 'count' ? def.mode : def.mode & 0o444;
}

type Result<T> = T | number;

export class StatsFsAdapter implements TreeObserver, FuseHandler {
  private readonly nodes = new Map<number, Node>();
  private readonly sourceInos = new WeakMap<Source, number>();
  private readonly valueInos = new WeakMap<ValueGroup, Map<string, number>>();
  private readonly snapshotInos = new WeakMap<Source, Map<string, number>>();
  private nextIno = ROOT_INO + 1;
  private readonly timeout: number;
  private readonly uid: number;
  private readonly gid: number;
  private readonly bornMs = Date.now();
  private readonly writes: Writes;
  invalidator: Invalidator | null = null;
  storedServer: StoredValueServer | null = null;
  snapshotBudget: SnapshotBudget | null = null;
  /**
   * Snapshot renderings run one at a time per user, each only if the user's budget can take it: a
   * user opening many at once holds one rendering in JS, not one per open.
   */
  private readonly renderQueues = new Map<number, Promise<unknown>>();
  /** Registrations with storedServer since it last dropped them all. */
  private storedCount = 0;
  /**
   * Listings of large directories, kept until an entry comes, goes or is forgotten: `ls` of 10,000
   * sources then costs the kernel's work, not 10,000 map lookups and a join in JS per opendir.
   */
  private readonly listings = new WeakMap<Source, KeptListing>();

  constructor(
    readonly root: Source,
    private readonly options: AdapterOptions = {},
  ) {
    this.timeout = options.cacheSeconds ?? 1;
    this.uid = options.uid ?? process.getuid?.() ?? 0;
    this.gid = options.gid ?? process.getgid?.() ?? 0;
    this.nodes.set(ROOT_INO, { ino: ROOT_INO, source: root, group: null, def: null, snapshot: null, part: null, nlookup: 1 });
    this.sourceInos.set(root, ROOT_INO);
    root.observe(this);
    this.writes = Writes.of(root);
  }

  /** TreeObserver: the kernel has dropped the names the changes so far made stale (null: nothing pending). */
  settled(): Promise<void> | null {
    return this.invalidator?.invalidationsSent?.() ?? null;
  }

  /** TreeObserver: requests of the mount wait for the event loop. */
  readersWaiting(): boolean {
    return this.invalidator?.requestsWaiting?.() ?? false;
  }

  // ---- requests ----

  lookup(parent: number, name: string): Result<EntryResult> {
    const dir = this.live(parent);
    if (typeof dir === 'number') return dir;
    if (!isDir(dir)) return E.ENOTDIR;
    const node = isHistogramDir(dir) ? this.partNode(dir, name) : this.child(dir.source, name);
    if (node === null) return E.ENOENT;
    node.nlookup++;
    return { attr: this.attrOf(node), entryTimeout: this.timeout, attrTimeout: this.timeout };
  }

  forget(ino: number, nlookup: number): void {
    const node = this.nodes.get(ino);
    if (!node || ino === ROOT_INO) return;
    node.nlookup -= nlookup;
    if (node.nlookup > 0) return;
    this.nodes.delete(ino);
    // a kept listing must not hand the kernel this inode again
    const dir = isSourceDir(node) ? node.source.parent : node.source;
    if (dir !== null) this.listings.delete(dir);
    if (node.snapshot !== null) this.snapshotInos.get(node.source)?.delete(node.snapshot);
    else if (node.def === null) this.sourceInos.delete(node.source);
    else this.valueInos.get(node.group!)?.delete(node.part === null ? node.def.name : partKey(node.def, node.part));
  }

  getattr(ino: number): Result<Attr> {
    const node = this.live(ino);
    return typeof node === 'number' ? node : this.attrOf(node);
  }

  /**
   * Only truncation to zero means something (it clears); ownership and modes belong to the daemon, and
   * time updates (touch) are accepted and ignored.
   */
  setattr(ino: number, set: SetAttrRequest): Result<Attr> | Promise<Result<Attr>> {
    const node = this.live(ino);
    if (typeof node === 'number') return node;
    if (set.mode !== undefined || set.uid !== undefined || set.gid !== undefined) return E.EPERM;
    if (set.size !== undefined) {
      if (isDir(node)) return E.EISDIR;
      if (set.size !== 0) return E.EINVAL;
      return then(this.clear(node), (err) => (err !== 0 ? err : this.attrOf(node)));
    }
    return this.attrOf(node);
  }

  opendir(ino: number): Result<DirListing> {
    const node = this.live(ino);
    if (typeof node === 'number') return node;
    if (!isDir(node)) return E.ENOTDIR;
    if (isHistogramDir(node)) return this.histogramListing(node);
    const dir = node.source;
    dir.refresh();
    const built = this.listings.get(dir) ?? this.buildListing(dir);
    // Every listed entry counts as looked up: readdirplus hands the kernel its attributes. The binding
    // gives back, at release, what the kernel did not take (a listing served from its cache takes none).
    for (const child of built.children) child.nlookup++;
    // the parent's inode is looked up each time: it may have been forgotten and handed out anew
    const parent = dir.parent ? (this.sourceInos.get(dir.parent) ?? ROOT_INO) : ROOT_INO;
    // A kept listing is dropped whenever an entry comes, goes or is forgotten: while it is the same object,
    // what the kernel cached from it is still exact. Its names only, though: the entries' own timeouts run
    // from the readdirplus that handed them, and past them `ls -l` would cost one lookup per name. So the
    // kernel takes the listing anew (readdirplus renews them all) once half of that time has gone.
    const now = Date.now();
    const keep = built.handedParent === parent && now - built.freshAt < (this.timeout * 1000) / 2;
    const cache = !this.listings.has(dir) ? 'none' : keep ? 'keep' : 'fresh';
    if (cache === 'fresh') built.freshAt = now;
    built.handedParent = parent;
    return { ...built.listing, parent, cache };
  }

  /** A histogram value's directory: its files, each counted as looked up (see opendir). */
  private histogramListing(node: Node): DirListing {
    const parts = HISTOGRAM_FILES.map((part) => this.valueNode(node.source, node.group!, node.def!, part));
    for (const child of parts) child.nlookup++;
    return {
      names: HISTOGRAM_FILES.map((file) => histogramFileName(file, node.def!.suffix)).join('\0'),
      inos: Float64Array.from(parts, (child) => child.ino),
      modes: Uint32Array.from(parts, (child) => S_IFREG | fileMode(node.def!, child.part)),
      mtimesMs: new Float64Array(parts.length).fill(this.bornMs),
      uid: this.uid,
      gid: this.gid,
      entryTimeout: this.timeout,
      attrTimeout: this.timeout,
      parent: this.sourceInos.get(node.source) ?? ROOT_INO,
    };
  }

  /**
   * The entries of a directory the caller has just refreshed; kept while nothing in it changes when it is
   * large (see listings).
   */
  private buildListing(dir: Source): KeptListing {
    const subs = dir.subordinates.filter((sub) => !sub.hidden);
    const values = dir.visibleValues();
    const n = subs.length + values.length;
    const names = new Array<string>(n);
    const inos = new Float64Array(n);
    const modes = new Uint32Array(n);
    const children = new Array<Node>(n);
    let i = 0;
    for (const sub of subs) {
      const child = (children[i] = this.sourceNode(sub));
      names[i] = sub.name;
      inos[i] = child.ino;
      modes[i++] = S_IFDIR | 0o755;
    }
    for (const { group, def } of values) {
      const child = (children[i] = this.valueNode(dir, group, def));
      names[i] = def.name;
      inos[i] = child.ino;
      modes[i++] = def.histogram ? S_IFDIR | 0o755 : S_IFREG | def.mode;
    }
    const built = {
      listing: {
        names: names.join('\0'),
        inos,
        modes,
        mtimesMs: new Float64Array(n).fill(this.bornMs),
        uid: this.uid,
        gid: this.gid,
        entryTimeout: this.timeout,
        attrTimeout: this.timeout,
      },
      children,
      handedParent: null,
      freshAt: 0,
    };
    if (n >= KEPT_LISTING_MIN) this.listings.set(dir, built);
    return built;
  }

  /** The per-open snapshot: the value is computed once, here, and every read of this open file sees it. */
  open(ino: number, flags: number, uid = 0): Result<string> | Promise<Result<SnapshotContent>> {
    const node = this.live(ino);
    if (typeof node === 'number') return node;
    if (isDir(node)) return E.EISDIR;
    const access = flags & O_ACCMODE;
    if (node.snapshot !== null) return access !== 0 ? E.EACCES : this.queueSnapshot(node, uid);
    const def = node.def!;
    if (access !== 0 && (fileMode(def, node.part) & 0o222) === 0) return E.EACCES;
    if (access === O_WRONLY) return '';
    try {
      if (node.part !== null) return histogramFileText(node.group!.histogram(def.index), node.part) + '\n';
      const text = node.group!.render(def.index);
      if (access === 0) this.serveStored(node);
      return text;
    } catch (err) {
      return this.failed('open', err);
    }
  }

  /**
   * "0" or "0\n" at offset 0 clears; on an open file that has already cleared, whitespace is accepted and
   * changes nothing (`write("0")` then `write("\n")`); anything else is EINVAL and changes nothing.
   */
  write(ino: number, data: Buffer, offset: number, accepted = 0): number | undefined | Promise<number | undefined> {
    const node = this.live(ino);
    if (typeof node === 'number') return node;
    if (isDir(node)) return E.EISDIR;
    if (node.snapshot !== null) return E.EACCES;
    const text = data.toString('latin1');
    // only a clear is ever accepted first, so accepted bytes on this open file mean it has cleared
    if (accepted > 0 && /^[ \t\r\n]+$/.test(text)) return undefined;
    if (offset !== 0 || (text !== '0' && text !== '0\n')) return E.EINVAL;
    return then(this.clear(node), (err) => (err !== 0 ? err : undefined));
  }

  /** The binding calls this when a handler threw: the request was answered EIO. */
  onError(op: string, err: unknown): void {
    this.options.onError?.(op, err);
  }

  // ---- tree changes (TreeObserver) ----

  subordinateAdded(parent: Source, sub: Source): void {
    // a negative dentry for this name may be cached
    this.invalidate(parent, sub.name);
    this.listings.delete(parent);
  }

  subordinateRemoved(parent: Source, sub: Source): void {
    this.invalidate(parent, sub.name);
    this.listings.delete(parent);
    this.dropStored();
  }

  /**
   * Only the names of the group that came or went can change meaning (a name resolves to the newest
   * visible group that has it), so only they are invalidated: adding one value to a source of thousands
   * stays O(1). Revoking keeps every name's meaning; contents are computed per open anyway.
   */
  valuesChanged(source: Source, group: ValueGroup | null, change: 'added' | 'removed' | 'revoked'): void {
    // removals come before the slots are released; a visible group added beside others may shadow them
    if (change !== 'added' || (group !== null && !group.hidden && source.valueGroups.length > 1)) this.dropStored();
    this.listings.delete(source);
    const ino = this.sourceInos.get(source);
    if (ino === undefined || this.invalidator === null || group === null || change === 'revoked') return;
    if (change === 'added' && group.hidden) return;
    for (const def of group.schema.defs) this.invalidator.invalidateEntry(ino, def.name);
  }

  // ---- internals ----

  /**
   * Lets storedServer answer the next opens of this value itself, when its text is the arena word as is
   * and nothing but tree changes (which drop the registration) can change what the inode means: no
   * refresher above it, since only a refresh would notice that a mirrored source went away.
   */
  private serveStored(node: Node): void {
    if (this.storedServer === null) return;
    const slot = node.group!.storedSlot(node.def!);
    if (slot < 0) return;
    for (let s: Source | null = node.source; s !== null; s = s.parent) if (s.refreshes) return;
    if (this.storedServer.serveStored(node.ino, slot, node.def!.type.signed, this.attrOf(node))) this.storedCount++;
  }

  private dropStored(): void {
    if (this.storedCount === 0) return;
    this.storedCount = 0;
    this.storedServer!.dropStored();
  }

  private invalidate(parent: Source, name: string): void {
    const ino = this.sourceInos.get(parent);
    if (ino !== undefined) this.invalidator?.invalidateEntry(ino, name);
  }

  /** Renders after the user's earlier renderings, if its budget can take what this file took last time. */
  private queueSnapshot(node: Node, uid: number): Promise<Result<SnapshotContent>> {
    const rendered = (this.renderQueues.get(uid) ?? Promise.resolve()).then(() =>
      this.snapshotBudget?.budgetSpent(uid, node.renderedBytes ?? 0) ? E.EMFILE : this.renderSnapshot(node),
    );
    // a stream is still rendering while it fills the open file: the next rendering waits for that too
    const done = rendered.then((out) => (isStream(out) ? out.filled : undefined)).then(() => undefined, () => undefined);
    this.renderQueues.set(uid, done);
    void done.then(() => {
      if (this.renderQueues.get(uid) === done) this.renderQueues.delete(uid);
    });
    return rendered;
  }

  /** Captures now (atomically, in slices behind the write barrier when large), renders in slices. */
  private async renderSnapshot(node: Node): Promise<Result<SnapshotContent>> {
    try {
      const out = await this.options.snapshots![node.snapshot!](await captureSnapshotSliced(node.source));
      node.renderedBytes = contentBytes(out);
      return isStream(out) ? trackFill(out) : out;
    } catch (err) {
      return this.failed('open', err);
    }
  }

  /** Checks now; clears once no snapshot capture is under way (see Writes). */
  private clear(node: Node): number | Promise<number> {
    if (node.snapshot !== null) return E.EACCES;
    const def = node.def!;
    if ((fileMode(def, node.part) & 0o222) === 0 || !def.clearable) return E.EACCES;
    return this.writes.apply(() => this.clearNow(node, def));
  }

  private clearNow(node: Node, def: ValueDef): number {
    try {
      node.group!.clear(def.index);
      return 0;
    } catch (err) {
      return this.failed('clear', err);
    }
  }

  private failed(op: string, err: unknown): number {
    if (err instanceof StatsError) return E[err.code];
    this.options.onError?.(op, err);
    return E.EIO;
  }

  private child(dir: Source, name: string): Node | null {
    if (this.options.snapshots?.[name] !== undefined) return this.snapshotNode(dir, name);
    const sub = dir.subordinate(name);
    if (sub !== undefined) return this.sourceNode(sub);
    const found = dir.findValue(name, true);
    return found ? this.valueNode(dir, found.group, found.def) : null;
  }

  private snapshotNode(source: Source, name: string): Node {
    let byName = this.snapshotInos.get(source);
    const ino = byName?.get(name);
    if (ino !== undefined) return this.nodes.get(ino)!;
    const node: Node = { ino: this.nextIno++, source, group: null, def: null, snapshot: name, part: null, nlookup: 0 };
    this.nodes.set(node.ino, node);
    if (!byName) this.snapshotInos.set(source, (byName = new Map()));
    byName.set(name, node.ino);
    return node;
  }

  private sourceNode(source: Source): Node {
    const ino = this.sourceInos.get(source);
    if (ino !== undefined) return this.nodes.get(ino)!;
    const node: Node = { ino: this.nextIno++, source, group: null, def: null, snapshot: null, part: null, nlookup: 0 };
    this.nodes.set(node.ino, node);
    this.sourceInos.set(source, node.ino);
    return node;
  }

  private valueNode(source: Source, group: ValueGroup, def: ValueDef, part: HistogramFile | null = null): Node {
    const key = part === null ? def.name : partKey(def, part);
    let byName = this.valueInos.get(group);
    const ino = byName?.get(key);
    if (ino !== undefined) return this.nodes.get(ino)!;
    const node: Node = { ino: this.nextIno++, source, group, def, snapshot: null, part, nlookup: 0 };
    this.nodes.set(node.ino, node);
    if (!byName) this.valueInos.set(group, (byName = new Map()));
    byName.set(key, node.ino);
    return node;
  }

  /** The file `name` of the histogram value `dir` stands for; null when it has no such file. */
  private partNode(dir: Node, name: string): Node | null {
    const part = histogramFileOf(name, dir.def!.suffix);
    return part === null ? null : this.valueNode(dir.source, dir.group!, dir.def!, part);
  }

  /** The node, if it is still in the mounted tree and its name still means the same value; else ENOENT. */
  private live(ino: number): Node | number {
    const node = this.nodes.get(ino);
    if (!node || !this.attached(node.source)) return E.ENOENT;
    if (node.def !== null && node.source.findValue(node.def.name, true)?.group !== node.group) return E.ENOENT;
    return node;
  }

  /** Still reachable from the root; sources that mirror the kernel may have gone since (see refresh()). */
  private attached(source: Source): boolean {
    let s = source;
    for (let parent = s.parent; parent !== null; parent = s.parent) {
      if (s.hidden) return false;
      parent.refresh();
      if (s.parent !== parent) return false;
      s = parent;
    }
    return s === this.root;
  }

  private attrOf(node: Node): Attr {
    return {
      ino: node.ino,
      // Directories report nlink 1 ("unknown"), which keeps find(1) from its leaf optimisation.
      mode: isDir(node) ? S_IFDIR | 0o755 : S_IFREG | (node.def === null ? 0o444 : fileMode(node.def, node.part)),
      nlink: 1,
      // Size 0: contents are computed at open and served with direct_io, so no size is ever promised.
      size: 0,
      uid: this.uid,
      gid: this.gid,
      mtimeMs: this.bornMs,
    };
  }

  /** Inode mappings held now (for the daemon's own statistics). */
  get inodeCount(): number {
    return this.nodes.size;
  }
}

/** Applies `f` to a value that may still be on its way, without a promise when it is not. */
function then<T, U>(value: T | Promise<T>, f: (value: T) => U): U | Promise<U> {
  return value instanceof Promise ? value.then(f) : f(value);
}
