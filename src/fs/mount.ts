/**
 * Mounting a tree: joins the adapter to a native FUSE session. This is the library entry point a Node
 * program uses to serve its own tree in-process, and what the daemon uses.
 */
import type { FuseCounterReader } from '../daemon/self-stats.js';
import { renderBinaryAsync } from '../export/binary.js';
import { gatherChunks } from '../export/common.js';
import { renderJsonChunks } from '../export/json.js';
import { renderTextChunks } from '../export/text.js';
import { arena, type Source } from '../model/index.js';
import { StatsFsAdapter, type SnapshotRenderer } from './adapter.js';
import { lazyUnmount, mount as mountSession, OP_NAMES, type FuseSession } from './native.js';

export { lazyUnmount };

export interface MountOptions {
  /** Seconds the kernel may cache names and attributes (default 1); removals are invalidated at once. */
  cacheSeconds?: number;
  /** Let every user read the tree, as /sys does (default: true when running as root). */
  allowOther?: boolean;
  /** Called with every error a getter or handler threw; the request was answered EIO. */
  onError?: (op: string, err: unknown) => void;
  /** Hidden snapshot files in every directory, by name (default: SNAPSHOT_FILES). */
  snapshots?: Readonly<Record<string, SnapshotRenderer>>;
  /** Bytes of open files' contents one user may hold (default 256 MiB, 0: no limit); beyond, open is EMFILE. */
  snapshotBudget?: number;
}

/**
 * In every directory, hidden from ls: the subtree captured at one instant when the file is opened, as
 * "path value" lines, as self-describing JSON, or in the binary layout of docs/snapshot-formats.md.
 */
export const SNAPSHOT_FILES: Readonly<Record<string, SnapshotRenderer>> = Object.freeze({
  // chunks, not joined: the binding copies them in pieces, so even 200 MB of JSON holds the loop briefly
  '.snapshot': (snapshot) => gatherChunks(renderTextChunks(snapshot)),
  '.snapshot.json': (snapshot) => gatherChunks(renderJsonChunks(snapshot)),
  '.snapshot.bin': renderBinaryAsync,
});

export interface MountedStatsFs {
  readonly mountpoint: string;
  readonly session: FuseSession;
  readonly adapter: StatsFsAdapter;
  /** Live counters of the session, for the daemon's own statistics. */
  readonly counters: FuseCounterReader;
  unmount(): Promise<void>;
}

/**
 * Mounts `root` at `mountpoint` and serves it from this process until unmount(). Never read the mount
 * synchronously from this same process: the thread that would answer is the one waiting.
 */
export async function mount(root: Source, mountpoint: string, options: MountOptions = {}): Promise<MountedStatsFs> {
  const adapter = new StatsFsAdapter(root, { cacheSeconds: options.cacheSeconds, onError: options.onError, snapshots: options.snapshots ?? SNAPSHOT_FILES });
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
