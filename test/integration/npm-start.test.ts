/**
 * The README's run command, as scripts and service managers use it: `npm start -- <mountpoint> [options]`,
 * then `kill <pid of npm start>`. The daemon must stop and unmount; nothing may be left running or mounted.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { forceUnmount, isMounted, ROOT, skipWithoutFuse, tempDir, waitFor } from '../helpers/mount.js';

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readStatus(pid));
function readStatus(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return '';
  }
}

describe.skipIf(skipWithoutFuse)('npm start', { timeout: 60_000 }, () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} to the npm process stops the daemon and unmounts`, async () => {
      const dir = tempDir();
      const m = join(dir, 'm');
      mkdirSync(m);
      // --ignore-scripts skips only prestart (the set-up, already done by the test run; it would rebuild dist/
      // under the other tests' daemons); the start script itself runs as `npm start` runs it
      const npm = spawn('npm', ['start', '--ignore-scripts', '--', m, '--no-collectors', '--socket', join(dir, 'p.sock'), '--state-dir', join(dir, 'state')], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      npm.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      npm.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
      let daemonPid = 0;
      try {
        await waitFor('npm start to mount', () => /"msg":"mounted"/.test(out) && isMounted(m), 30_000);
        daemonPid = Number(/"pid":(\d+)[^\n]*"msg":"mounted"/.exec(out)![1]);
        expect(alive(daemonPid)).toBe(true);
        const exited = new Promise<number | null>((r) => npm.on('exit', (code) => r(code)));
        npm.kill(signal);
        await waitFor('the daemon to exit', () => !alive(daemonPid), 10_000);
        await waitFor('the mount to go', () => !isMounted(m), 10_000);
        await exited;
        expect(out).toMatch(/"msg":"unmounted"/);
      } finally {
        if (daemonPid && alive(daemonPid)) process.kill(daemonPid, 'SIGKILL');
        npm.kill('SIGKILL');
        forceUnmount(m);
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
