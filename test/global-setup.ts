/**
 * One temporary folder per test run: every test's temp files (mkdtemp under os.tmpdir()) and every daemon it
 * spawns inherit TMPDIR pointing here, and the teardown detaches any mount left under it and removes it, so
 * a run leaves nothing behind in the system's temp folder, even when a test fails half-way.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(join(tmpdir(), 'statsfs-run-'));
  chmodSync(dir, 0o755); // tests that drop to another user must reach the mounts below it
  process.env.TMPDIR = dir;
  return () => {
    const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((line) => line.split(' ')[4])
      .filter((path) => path !== undefined && path.startsWith(dir + '/'));
    for (const path of mounts.reverse()) spawnSync('fusermount3', ['-u', '-z', path]);
    rmSync(dir, { recursive: true, force: true });
  };
}
