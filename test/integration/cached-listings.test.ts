/**
 * Large directories (a kept listing, 256 entries or more) are opened with cache_readdir: the kernel keeps
 * the listing in its page cache and an `ls` of an unchanged directory costs no readdir (src/fs/adapter.ts
 * opendir, native/replies.c replyOpendir). Checked through the real daemon, with a producer in a second
 * process changing the directory, and ls, cat and the daemon's own statistics.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, sh, skipWithoutFuse, startDaemon, type Daemon } from '../helpers/mount.js';

const N = 300;

/** The real daemon with `--cache-seconds <seconds>`, and the producer of big/ in a second process. */
function setup(seconds: number) {
  const ctx = {} as {
    d: Daemon;
    m: string;
    producer: ChildProcessWithoutNullStreams;
    lines: AsyncIterator<string>;
  };
  beforeAll(async () => {
    ctx.d = await startDaemon(['--no-collectors', '--cache-seconds', String(seconds)]);
    ctx.m = ctx.d.mountpoint;
    ctx.producer = spawn(process.execPath, [join(ROOT, 'test/fixtures/listing-producer.mjs'), join(ctx.m, '../producers.sock'), String(N)]);
    ctx.lines = createInterface({ input: ctx.producer.stdout })[Symbol.asyncIterator]();
    expect((await ctx.lines.next()).value).toBe('ready');
  });
  afterAll(() => {
    ctx.producer?.kill();
    ctx.d?.cleanup();
  });
  return {
    /** Sends a command to the producer; resolves once it has been applied. */
    command: async (line: string) => {
      ctx.producer.stdin.write(`${line}\n`);
      expect((await ctx.lines.next()).value).toBe('ok');
    },
    listed: () => sh(`ls ${ctx.m}/big`).stdout.split('\n').filter(Boolean),
    long: () => sh(`ls -l ${ctx.m}/big`),
    cat: (paths: string) => sh(`cat ${paths.split(' ').map((p) => `${ctx.m}/${p}`).join(' ')}`).stdout,
    stat: (path: string) => BigInt(sh(`cat ${ctx.m}/statsfs/fuse/${path}`).stdout.trim()),
  };
}

const directories = (out: string) => out.split('\n').filter((l) => l.startsWith('d'));

// a long cache time: how fast this machine runs ls decides nothing
describe.skipIf(skipWithoutFuse)('listings the kernel keeps in its cache', { timeout: 60_000 }, () => {
  const { command, listed, long, cat, stat } = setup(60);

  it('an unchanged directory is listed again without a readdir', () => {
    expect(listed()).toHaveLength(N);
    const before = stat('readdir/requests');
    for (let i = 0; i < 5; i++) expect(listed()).toHaveLength(N);
    expect(stat('readdir/requests')).toBe(before);
    // ls -l takes the attributes of the cached names; values still read through the mount
    const l = long();
    expect(l.stderr).toBe('');
    expect(directories(l.stdout)).toHaveLength(N);
    expect(stat('readdir/requests')).toBe(before);
    expect(cat('big/s7/v big/s299/v')).toBe('7\n299\n');
  });

  it('a source that comes or goes shows in the next ls, at once', async () => {
    expect(listed()).not.toContain('s300');
    await command('add 300');
    expect(listed()).toContain('s300');
    expect(listed()).toHaveLength(N + 1);
    expect(cat('big/s300/v')).toBe('300\n');
    await command('rm 5');
    const now = listed();
    expect(now).not.toContain('s5');
    expect(now).toHaveLength(N);
    expect(long().stdout).not.toMatch(/ s5\n/);
    // and the listing the kernel keeps is the new one from then on
    for (let i = 0; i < 3; i++) expect(listed()).toEqual(now);
    await command('add 5');
    expect(listed()).toContain('s5');
  });

  it.skipIf(process.getuid?.() !== 0 && process.env.CI !== 'true')(
    'listings served from the cache hold no inode once the kernel forgets: the lookups they did not hand out are given back',
    async () => {
      for (let i = 0; i < 20; i++) expect(listed()).toHaveLength(N + 1);
      expect(stat('inodes')).toBeGreaterThan(BigInt(N));
      await command('rmall');
      // the kernel forgets what it no longer caches
      expect(sh('sync && echo 2 > /proc/sys/vm/drop_caches')).toMatchObject({ status: 0, stderr: '' });
      await sleep(300);
      expect(stat('inodes')).toBeLessThan(BigInt(N) / 2n);
    },
  );
});

describe.skipIf(skipWithoutFuse)('a kept listing past half the entries\' timeout', { timeout: 60_000 }, () => {
  const { listed, long, stat } = setup(1);

  it('ls -l after the entries\' timeout (1 s) takes the listing anew rather than a lookup or getattr per name', async () => {
    expect(listed()).toHaveLength(N);
    await sleep(1200);
    const asked = () => stat('lookup/requests') + stat('getattr/requests');
    const before = asked();
    expect(directories(long().stdout)).toHaveLength(N);
    expect(asked() - before).toBeLessThan(20n);
  });
});
