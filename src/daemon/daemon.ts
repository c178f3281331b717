/**
 * The daemon: prepares the mountpoint (recovering a stale mount left by a killed daemon), mounts the tree,
 * serves until SIGINT/SIGTERM, then unmounts and exits 0 with no mount left behind.
 */
import { mkdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { lazyUnmount, mount, type MountedStatsFs } from '../fs/mount.js';
import { Source } from '../model/index.js';
import type { Logger } from './logger.js';
import { createSelfStats } from './self-stats.js';

/** A failure the user can fix: printed as one line that says what to do, exit status 1. */
export class UserError extends Error {
  override readonly name = 'UserError';
}

export interface DaemonOptions {
  mountpoint: string;
  /** The default mountpoint is created when missing; one the user names must exist. */
  createMountpoint: boolean;
  cacheSeconds: number;
  allowOther: boolean;
  /** Bytes of snapshots one user may hold open (see MountOptions.snapshotBudget). */
  snapshotBudget?: number;
  log: Logger;
  /** Adds producers and collectors to the tree before it is mounted. */
  populate?: (root: Source) => void;
  /** Starts the services that feed or export the tree (producer socket, StatsD, HTTP); closed at stop. */
  services?: (root: Source) => Promise<Service[]>;
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

/** Turns the binding's mount errors into one line that says what to do. */
function mountFailure(err: unknown, mountpoint: string): Error {
  const e = err as { code?: string; message?: string };
  const why = String(e.message ?? err).replace(/\s*\n\s*/g, '; ');
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

/** Mounts and serves; the returned promise settles once the filesystem is up. */
export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const { log } = options;
  const mountpoint = resolve(options.mountpoint);
  await prepareMountpoint(mountpoint, options.createMountpoint, log);
  const root = Source.root();
  options.populate?.(root);
  const mounted = await mount(root, mountpoint, {
    cacheSeconds: options.cacheSeconds,
    allowOther: options.allowOther,
    snapshotBudget: options.snapshotBudget,
    onError: (op, err) => log.error({ op, err }, 'a request failed inside the daemon and was answered EIO'),
  }).catch((err: unknown) => {
    throw mountFailure(err, mountpoint);
  });
  root.addSubordinate(createSelfStats(mounted.counters));
  let services: Service[] = [];
  try {
    services = (await options.services?.(root)) ?? [];
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
        await Promise.allSettled(services.map((service) => service.close()));
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
