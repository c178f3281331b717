/**
 * Runs a library program from test/fixtures that mounts its own tree and takes commands on stdin, one per
 * line, each answered by one line on stdout ("ok [output]" or "error <message>").
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { forceUnmount, isMounted, ROOT, sh, tempDir, waitFor } from './mount.js';

export interface Fixture {
  /** The mountpoint. */
  m: string;
  child: ChildProcessWithoutNullStreams;
  /** Sends a command; resolves with its answer line. */
  command(line: string): Promise<string>;
  cleanup(): void;
}

/** Starts `node test/fixtures/<name> <mountpoint>` and waits for its "mounted" line and the mount. */
export async function startFixture(name: string): Promise<Fixture> {
  const m = join(tempDir(), 'mnt');
  sh(`mkdir -p ${m}`);
  const child = spawn(process.execPath, [join(ROOT, 'test/fixtures', name), m]);
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const pending: ((line: string) => void)[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => pending.shift()?.(line));
  const mounted = new Promise<void>((resolve) => pending.push(() => resolve()));
  await Promise.race([
    mounted,
    new Promise((_, reject) => child.on('exit', () => reject(new Error(`${name} exited before mounting:\n${stderr}`)))),
  ]);
  await waitFor('the mount', () => isMounted(m));
  return {
    m,
    child,
    command: (line) =>
      new Promise<string>((resolve) => {
        pending.push(resolve);
        child.stdin.write(line + '\n');
      }),
    cleanup() {
      child.kill('SIGKILL');
      forceUnmount(m);
    },
  };
}
