/**
 * The daemon: prepares the mountpoint (recovering a stale mount left by a killed daemon), mounts the tree,
 * serves until SIGINT/SIGTERM, then unmounts and exits 0 with no mount left behind.
 */
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { SNAPSHOT_FILES } from '../export/snapshot-files.js';
import { lazyUnmount, mountTree, type MountedStatsFs } from '../fs/mount.js';
import { Source } from '../model/index.js';
import { baselinesPart } from '../state/baselines.js';
import { StateRefused, type StateKeeper } from '../state/keeper.js';
import type { Logger } from './logger.js';
import { createSelfStats, stateSource } from './self-stats.js';

/** A failure the user can fix: printed as one line that says what to do, exit status 1. */
export class UserError extends Error {
  override readonly name = 'UserError';
}

export interface DaemonOptions {
  mountpoint: string;
  /** The default mountpoint is created when missing; one the user names must exist. */
  createMountpoint: boolean;
  cacheSeconds: number;
  /**
   * Serve every user (allow_other). Undefined: yes when root or when /etc/fuse.conf lets users ask for it,
   * otherwise only the mounting user, with a warning.
   */
  allowOther?: boolean;
  /** Bytes of snapshots one user may hold open (see MountOptions.snapshotBudget). */
  snapshotBudget?: number;
  log: Logger;
  /** Adds producers and collectors to the tree before it is mounted. */
  populate?: (root: Source) => void;
  /** Starts the services that feed or export the tree (producer socket, StatsD, HTTP); closed at stop. */
  services?: (root: Source, state: StateKeeper | null) => Promise<Service[]>;
  /**
   * Keeps what the daemon owns across restarts (the state directory), made for the tree's root; null or
   * absent: in memory only.
   */
  state?: ((root: Source) => StateKeeper) | null;
}

export interface Service {
  close(): Promise<void>;
}

export interface RunningDaemon {
  root: Source;
  mounted: MountedStatsFs;
  /** Resolves with the exit status once the daemon has unmounted. */
  done: Promise<number>;
  stop(reason: string): Promise<number>;
}

export async function prepareMountpoint(mountpoint: string, create: boolean, log: Logger): Promise<void> {
  let isDir: boolean;
  try {
    isDir = statSync(mountpoint).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN' || code === 'ECONNABORTED') {
      // A daemon died without unmounting: detach its dead mount and take the place over.
      lazyUnmount(mountpoint);
      log.warn({ mountpoint }, 'recovered a stale mount left by a daemon that did not exit cleanly');
      return prepareMountpoint(mountpoint, create, log);
    }
    if (code === 'ENOENT' && create) {
      mkdirSync(mountpoint, { recursive: true, mode: 0o755 });
      return;
    }
    if (code === 'ENOENT') throw new UserError(`mountpoint ${mountpoint} does not exist: create it with 'mkdir -p ${mountpoint}' or choose another`);
    if (code === 'EACCES' || code === 'EPERM') throw new UserError(`cannot reach mountpoint ${mountpoint} (permission denied): choose a directory you own, or run as root`);
    throw new UserError(`cannot use mountpoint ${mountpoint}: ${(err as Error).message}`);
  }
  if (!isDir) throw new UserError(`mountpoint ${mountpoint} is not a directory: give an empty directory`);
}

/** fusermount3 lets a user who is not root ask for allow_other only when /etc/fuse.conf says user_allow_other. */
export function fuseConfAllowsOther(path = '/etc/fuse.conf'): boolean {
  try {
    return readFileSync(path, 'utf8')
      .split('\n')
      .some((line) => line.trim() === 'user_allow_other');
  } catch {
    return false;
  }
}

const ALLOW_OTHER_HINT = "add the line 'user_allow_other' to /etc/fuse.conf (as root), or run as root";

/**
 * Whether to serve every user. Root always may; another user only with user_allow_other in /etc/fuse.conf:
 * without it, --allow-other is an error that says so, and the default serves only that user ('fallback').
 */
function resolveAllowOther(asked: boolean | undefined): boolean | 'fallback' {
  if (asked === false) return false;
  if (process.getuid?.() === 0 || fuseConfAllowsOther()) return true;
  if (asked === true) throw new UserError(`--allow-other needs 'user_allow_other' in /etc/fuse.conf when not run as root: ${ALLOW_OTHER_HINT}; or leave out --allow-other to serve only yourself`);
  return 'fallback';
}

/** Turns the binding's mount errors into one line that says what to do. */
function mountFailure(err: unknown, mountpoint: string): Error {
  const e = err as { code?: string; message?: string };
  const why = String(e.message ?? err).replace(/\s*\n\s*/g, '; ');
  if (/user_allow_other/.test(why)) return new UserError(`cannot serve every user on ${mountpoint} (${why}): ${ALLOW_OTHER_HINT}; or use --no-allow-other`);
  if (/no write access to mountpoint/.test(why)) {
    return new UserError(`no write permission on mountpoint ${mountpoint} (${why}): a user who is not root can mount only on a directory they can write to: choose one you own (the default, $XDG_RUNTIME_DIR/statsfs-$UID, is), or run as root`);
  }
  if (e.code === 'EACCES' && /\/dev\/fuse/.test(why)) {
    let mode = '';
    try {
      const st = statSync('/dev/fuse');
      mode = `, mode ${(st.mode & 0o777).toString(8).padStart(4, '0')} owner uid ${st.uid}`;
    } catch {
      // described without it
    }
    return new UserError(`cannot open /dev/fuse: permission denied${mode}: run as root, or have root make it usable by every user with 'chmod 0666 /dev/fuse' (its usual mode)`);
  }
  switch (e.code) {
    case 'EBUSY':
      return new UserError(`mountpoint ${mountpoint} is busy (${why}): stop the daemon that serves it or unmount it with 'fusermount3 -u ${mountpoint}', or choose another directory`);
    case 'ENOFUSE':
      return new UserError(`FUSE is not usable (${why}): install it with 'apt-get install fuse3', load it with 'modprobe fuse', or in a container run with --device /dev/fuse --cap-add SYS_ADMIN`);
    case 'EACCES':
    case 'EPERM':
      return new UserError(`not permitted to mount on ${mountpoint} (${why}): run as root, or as the owner of the directory with fusermount3 installed`);
    default:
      return new UserError(`cannot mount on ${mountpoint}: ${why}`);
  }
}

/** How long a stop waits for the services to close before it unmounts all the same. */
const SERVICES_CLOSE_MS = 2000;

/** Mounts and serves; the returned promise settles once the filesystem is up. */
export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const { log } = options;
  const mountpoint = resolve(options.mountpoint);
  await prepareMountpoint(mountpoint, options.createMountpoint, log);
  const allowOther = resolveAllowOther(options.allowOther);
  const root = Source.root();
  options.populate?.(root);
  const mounted = await mountTree(root, mountpoint, {
    cacheSeconds: options.cacheSeconds,
    allowOther: allowOther === true,
    snapshotBudget: options.snapshotBudget,
    snapshots: SNAPSHOT_FILES,
    onError: (op, err) => log.error({ op, err }, 'a request failed inside the daemon and was answered EIO'),
  }).catch((err: unknown) => {
    throw mountFailure(err, mountpoint);
  });
  if (allowOther === 'fallback') {
    log.warn(
      { uid: process.getuid?.() },
      "serving only the user who mounted: serving every user needs 'user_allow_other' in /etc/fuse.conf when not root (add that line as root; --no-allow-other silences this)",
    );
  }
  root.addSubordinate(createSelfStats(mounted.counters));
  let services: Service[] = [];
  // the state is opened once mounted: a daemon that cannot mount reads and writes none
  const state = options.state?.(root) ?? null;
  try {
    try {
      state?.open();
    } catch (err) {
      if (err instanceof StateRefused) throw new UserError(err.message);
      throw new UserError(`cannot use the state directory ${state?.dir}: ${(err as Error).message}: choose another with --state-dir, or run in memory with --no-state`);
    }
    if (state !== null) {
      root.subordinate('statsfs')?.addSubordinate(stateSource(state.stats));
      await state.register('baselines', baselinesPart(root));
    }
    services = (await options.services?.(root, state)) ?? [];
    state?.start();
  } catch (err) {
    await mounted.unmount();
    throw err;
  }
  log.info({ mountpoint }, 'mounted');

  let resolveDone!: (code: number) => void;
  const done = new Promise<number>((r) => (resolveDone = r));
  let stopping: Promise<number> | null = null;
  const stop = (reason: string): Promise<number> => {
    stopping ??= (async () => {
      log.info({ reason }, 'unmounting');
      // A hard deadline: shutdown always ends, even if the kernel keeps the mount busy.
      const deadline = setTimeout(() => {
        log.error({ mountpoint }, 'unmount did not finish within 5 s; detaching the mount');
        try {
          lazyUnmount(mountpoint);
        } finally {
          resolveDone(1);
        }
      }, 5000);
      deadline.unref();
      try {
        // A server's close waits for its peers to end their connections; one that never does must not
        // hold up the unmount (the process exits once unmounted, connections or not).
        const closed = Promise.allSettled(services.map((service) => service.close())).then(() => true);
        const waited = new Promise<false>((r) => setTimeout(r, SERVICES_CLOSE_MS, false).unref());
        if (!(await Promise.race([closed, waited]))) log.warn({ afterMs: SERVICES_CLOSE_MS }, 'services still closing (peers hold connections open): unmounting anyway');
        // nothing changes what the daemon owns any more: the last checkpoint is exact
        await state?.close();
        await mounted.unmount();
        log.info({ mountpoint }, 'unmounted');
        resolveDone(0);
      } catch (err) {
        log.error({ err }, 'unmount failed');
        resolveDone(1);
      } finally {
        clearTimeout(deadline);
      }
      return done;
    })();
    return stopping;
  };
  return { root, mounted, done, stop };
}

/** Runs the daemon in the foreground until a signal; returns the exit status. */
export async function runDaemon(options: DaemonOptions): Promise<number> {
  const daemon = await startDaemon(options);
  const onSignal = (signal: NodeJS.Signals) => void daemon.stop(signal);
  // Request handlers already turn what they throw into EIO; anything else escaping is a bug of ours, so
  // leave cleanly (unmounted, exit 1) rather than serve on in an unknown state.
  let crashed = false;
  const onCrash = (err: unknown) => {
    options.log.fatal({ err }, 'unexpected error outside any request');
    crashed = true;
    void daemon.stop('uncaught exception');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  process.on('uncaughtException', onCrash);
  process.on('unhandledRejection', onCrash);
  try {
    const code = await daemon.done;
    return crashed ? 1 : code;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('SIGHUP', onSignal);
    process.off('uncaughtException', onCrash);
    process.off('unhandledRejection', onCrash);
  }
}
