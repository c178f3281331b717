/**
 * The Unix-socket listener of the producer socket and of StatsD's stream socket: one rule for a socket file
 * left behind, a bind that is never more open than 0600, then the mode and group asked for.
 */
import { execFile } from 'node:child_process';
import { chmod, chown, lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import { promisify } from 'node:util';
import { isMainThread } from 'node:worker_threads';
import { whenListening } from '../net.js';

export interface UnixSocketOptions {
  /** File mode of the socket; default 0600, or 0660 when `group` is given. */
  mode?: number;
  /** Group (name or gid) given to the socket, so its members may connect too. */
  group?: string | number;
  /** The command-line option that chooses the path, named in errors ("--socket"). */
  option: string;
}

/**
 * Makes `server` listen on `path`. A stale socket file (nothing accepts on it, as a killed daemon leaves it)
 * is replaced; a live one is EADDRINUSE; anything at the path that is not a socket is left alone and EEXIST.
 * When the mode or group cannot be set, the server is closed again and the error thrown.
 */
export async function listenUnix(server: net.Server, path: string, options: UnixSocketOptions): Promise<void> {
  await removeStaleSocket(path, options.option);
  await whenListening(server, (onListening) => {
    // Bind with a umask that leaves only the owner's bits, so the socket is never more open than 0600 for a
    // moment; the final mode is set below. process.umask() cannot be set in a worker thread.
    const oldMask = isMainThread ? process.umask(0o177) : null;
    try {
      server.listen(path, onListening);
    } finally {
      if (oldMask !== null) process.umask(oldMask);
    }
  });
  try {
    if (options.group !== undefined) await chown(path, -1, await resolveGroup(options.group));
    await chmod(path, options.mode ?? (options.group !== undefined ? 0o660 : 0o600));
  } catch (err) {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    throw err;
  }
}

async function removeStaleSocket(path: string, option: string): Promise<void> {
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw Object.assign(new Error(`${path} exists and is not a socket: remove it or choose another ${option}`), { code: 'EEXIST' });
  }
  if (await accepting(path)) {
    throw Object.assign(new Error(`EADDRINUSE: something already listens on ${path} (another statsfs daemon?): stop it or choose another ${option}`), {
      code: 'EADDRINUSE',
    });
  }
  await unlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

/** True when something accepts connections on the socket at `path`. */
function accepting(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else reject(err);
    });
  });
}

const run = promisify(execFile);

/** The gid of a group given by name or number; names are looked up through NSS (`getent group`), as ls and id do. */
export async function resolveGroup(group: string | number): Promise<number> {
  if (typeof group === 'number') return group;
  if (/^\d+$/.test(group)) return Number(group);
  let stdout: string;
  try {
    ({ stdout } = await run('getent', ['group', group], { encoding: 'utf8' }));
  } catch (err) {
    const e = err as { code?: unknown; message: string };
    // getent exits with 2 when the name is not found
    if (e.code === 2) throw Object.assign(new Error(`no group "${group}" (getent group has none): give an existing group or a gid`), { code: 'ENOENT' });
    throw Object.assign(new Error(`cannot look up group "${group}" with getent: ${e.message}`), { code: 'EIO' });
  }
  const gid = stdout.split('\n')[0].split(':')[2];
  if (gid === undefined || !/^\d+$/.test(gid)) throw Object.assign(new Error(`getent group ${group} answered ${JSON.stringify(stdout.trim())}: no gid`), { code: 'EIO' });
  return Number(gid);
}
