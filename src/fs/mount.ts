/**
 * Mounting a tree: joins the adapter to a native FUSE session. The library's mount (src/index.ts) and the
 * daemon call it with the snapshot files of src/export/snapshot-files.ts.
 */
import { arena, type SnapshotRenderer, type Source } from '../model/index.js';
import { StatsFsAdapter } from './adapter.js';
import { lazyUnmount, loadAddon, mountSession, OP_NAMES, type FuseSession } from './native.js';

export { lazyUnmount, loadAddon };

export interface MountOptions {
  /** Seconds the kernel may cache names and attributes (default 1); removals are invalidated at once. */
  cacheSeconds?: number;
  /** Let every user read the tree, as /sys does (default: true when running as root). */
  allowOther?: boolean;
  /** Called with every error a getter or handler threw; the request was answered EIO. */
  onError?: (op: string, err: unknown) => void;
  /** Hidden snapshot files in every directory, by name (default: none; the library's and the daemon's mount give SNAPSHOT_FILES). */
  snapshots?: Readonly<Record<string, SnapshotRenderer>>;
  /** Bytes of open files' contents one user may hold (default 256 MiB, 0: no limit); beyond, open is EMFILE. */
  snapshotBudget?: number;
}

/** What the filesystem session counts; read at the moment a value is read. */
export interface FuseCounterReader {
  readonly ops: readonly string[];
  requests(op: number): bigint;
  errors(op: number): bigint;
  bytesRead(): bigint;
  openFiles(): bigint;
  openDirs(): bigint;
  inFlight(): bigint;
  snapshotBytes(): bigint;
  overBudget(): bigint;
  inodes(): number;
}

export interface MountedStatsFs {
  readonly mountpoint: string;
  readonly session: FuseSession;
  readonly adapter: StatsFsAdapter;
  /** Live counters of the session, for the daemon's own statistics. */
  readonly counters: FuseCounterReader;
  unmount(): Promise<void>;
}

/**
 * Mounts `root` at `mountpoint` and serves it from this process until unmount(), with the snapshot files
 * it is given (options.snapshots: the library's `mount`, src/index.ts, and the daemon pass export/'s).
 * Never read the mount synchronously from this same process: the thread that would answer is the one waiting.
 */
export async function mountTree(root: Source, mountpoint: string, options: MountOptions = {}): Promise<MountedStatsFs> {
  const adapter = new StatsFsAdapter(root, { cacheSeconds: options.cacheSeconds, onError: options.onError, snapshots: options.snapshots ?? {} });
  const session = mountSession(mountpoint, adapter, {
    allowOther: options.allowOther,
    attrTimeout: options.cacheSeconds ?? 1,
    snapshotBudget: options.snapshotBudget,
  });
  adapter.invalidator = session;
  // opens of plain stored values are answered by the session thread, from the arena itself
  session.shareArena(arena.u32);
  const unshare = arena.onGrowth((words) => session.shareArena(words));
  adapter.storedServer = session;
  adapter.snapshotBudget = session;
  const counters: FuseCounterReader = {
    ops: OP_NAMES,
    requests: (op) => session.opStat('requests', op),
    errors: (op) => session.opStat('errors', op),
    bytesRead: () => session.stat('bytesRead'),
    openFiles: () => session.stat('openFiles'),
    openDirs: () => session.stat('openDirs'),
    inFlight: () => session.stat('inFlight'),
    snapshotBytes: () => session.stat('snapshotBytes'),
    overBudget: () => session.stat('overBudget'),
    inodes: () => adapter.inodeCount,
  };
  return {
    mountpoint: session.mountpoint,
    session,
    adapter,
    counters,
    async unmount() {
      await session.unmount();
      unshare();
      root.observe(null);
    },
  };
}
