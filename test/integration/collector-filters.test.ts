/**
 * The command line's include/exclude patterns, through the real daemon (a separate process, a real mount).
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, sh, skipWithoutFuse, startDaemon, type Daemon } from '../helpers/mount.js';

describe.skipIf(skipWithoutFuse)('statsfs mount --collector-include / --collector-exclude', { timeout: 60_000 }, () => {
  let d: Daemon;
  beforeAll(async () => {
    d = await startDaemon(['--collectors', 'net,block', '--collector-exclude', 'interfaces=^lo$', '--collector-include', 'devices=^$']);
  });
  afterAll(() => d?.cleanup());

  it('leaves out what the patterns exclude, from the tree and so from /metrics', () => {
    const net = sh(`ls ${d.mountpoint}/net`).stdout.split('\n');
    expect(net).not.toContain('lo');
    expect(sh(`ls ${d.mountpoint}/block`).stdout.split('\n').filter((n) => n !== '' && sh(`test -d ${d.mountpoint}/block/${n}`).status === 0)).toEqual([]);
  });

  it('refuses a pattern of an unknown kind or an invalid regex with one line that says what is expected', () => {
    const bad = spawnSync(process.execPath, [BIN, 'mount', '/nonexistent/x', '--collector-exclude', 'disks=^sd'], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/kind one of devices, interfaces, mountpoints, fstypes, cgroups/);
    const regex = spawnSync(process.execPath, [BIN, 'mount', '/nonexistent/x', '--collector-include', 'devices=(']);
    expect(regex.status).not.toBe(0);
    expect(String(regex.stderr)).toMatch(/devices: Invalid regular expression/);
  });
});
