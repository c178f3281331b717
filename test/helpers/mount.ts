/**
 * Starts the real daemon (bin/statsfs.js) in a separate process on a temporary mountpoint, waits for the
 * mount, and cleans up. With CI=true a mount that cannot be made fails the test; nothing is skipped.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { waitFor } from './wait.js';

export { waitFor };

export const ROOT = new URL('../..', import.meta.url).pathname;
export const BIN = join(ROOT, 'bin/statsfs.js');

/**
 * Mount tests skip only outside CI on a machine with no FUSE device at all; with CI=true they run and a
 * mount that cannot be made fails them.
 */
export const skipWithoutFuse = process.env.CI !== 'true' && !existsSync('/dev/fuse');

export function isMounted(path: string): boolean {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => line.split(' ')[4] === path);
}


/** Detaches whatever is mounted at path; for cleanup only. */
export function forceUnmount(path: string): void {
  if (!isMounted(path)) return;
  spawnSync('fusermount3', ['-u', '-z', path]);
  if (isMounted(path)) spawnSync('umount', ['-l', path]);
}

export interface Daemon {
  mountpoint: string;
  child: ChildProcess;
  /** Everything the daemon wrote to stderr so far (its JSON log). */
  stderr(): string;
  /** Resolves with the exit code and signal once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  cleanup(): void;
}

export function tempDir(prefix = 'statsfs-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Spawns `statsfs mount <mountpoint> ...args` and waits until the mount is live. */
export async function startDaemon(args: string[] = [], mountpoint = join(tempDir(), 'mnt'), extraArgs: { create?: boolean } = {}): Promise<Daemon> {
  if (extraArgs.create !== false && !existsSync(mountpoint)) spawnSync('mkdir', ['-p', mountpoint]);
  // each daemon gets a producer socket of its own beside its mountpoint, so that tests can run in parallel
  const socket = args.some((a) => a === '--socket' || a === '--no-socket') ? [] : ['--socket', join(mountpoint, '..', 'producers.sock')];
  // nothing of a test goes to /var/lib/statsfs or ~: in memory unless the test names a state directory
  const state = args.some((a) => a === '--state-dir' || a === '--no-state') ? [] : ['--no-state'];
  const child = spawn(process.execPath, [BIN, 'mount', mountpoint, '--log-level', 'debug', ...socket, ...state, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  let dead = false;
  void exited.then(() => (dead = true));
  try {
    await waitFor(`the daemon to mount ${mountpoint}`, () => {
      if (dead) throw new Error(`the daemon exited before mounting:\n${err}`);
      // the log line, not the path: a stale mount's cached dentries can make the path look alive
      return /"msg":"mounted"/.test(err) && isMounted(mountpoint);
    });
  } catch (e) {
    child.kill('SIGKILL');
    forceUnmount(mountpoint);
    throw e;
  }
  return {
    mountpoint,
    child,
    stderr: () => err,
    exited,
    async stop() {
      if (!dead) child.kill('SIGTERM');
      return exited;
    },
    cleanup() {
      if (!dead) child.kill('SIGKILL');
      forceUnmount(mountpoint);
      if (!isMounted(mountpoint)) rmSync(join(mountpoint, '..'), { recursive: true, force: true });
    },
  };
}

/** Runs a shell command against the mount from a separate process; never throws. */
export function sh(command: string, cwd?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('bash', ['-c', command], { cwd, encoding: 'utf8', timeout: 20000 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}
