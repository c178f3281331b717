/**
 * Opens of plain stored values are answered by the native session thread, from the value arena, without
 * the JS thread (src/fs/adapter.ts StoredValueServer, native/ops.c "Stored values"). Checked
 * through a real mount served by a library program (test/fixtures/stored-tree.mjs), with cat, echo and a
 * second Node process.
 */
import { spawn, spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFixture, type Fixture } from '../helpers/fixture.js';
import { sh, skipWithoutFuse } from '../helpers/mount.js';

const S64_MIN = -(2n ** 63n);

/** Runs a shell command and says how long it took, in ms. */
function timed(command: string): { stdout: string; ms: number } {
  const start = performance.now();
  const { stdout } = sh(command);
  return { stdout, ms: performance.now() - start };
}

describe.skipIf(skipWithoutFuse)('stored values answered on the session thread', { timeout: 60_000 }, () => {
  let fixture: Fixture;
  let m: string;

  beforeAll(async () => {
    fixture = await startFixture('stored-tree.mjs');
    m = fixture.m;
  });
  afterAll(() => fixture?.cleanup());

  it('a plain value opened once is read while the JS thread is held; an aggregate waits for it', async () => {
    // the first opens go through JS, which registers the plain values
    expect(sh(`cat ${m}/a/count ${m}/a/level ${m}/a/state ${m}/count`).stdout).toBe(`5\n${S64_MIN}\nup\n5\n`);
    const held = fixture.command('block 5000');
    await sleep(300);
    // a reader cannot give up on a request the daemon has already taken, so time them rather than kill them
    const plain = timed(`cat ${m}/a/count ${m}/a/level`);
    expect(plain.stdout).toBe(`5\n${S64_MIN}\n`);
    expect(plain.ms).toBeLessThan(2000);
    const aggregate = timed(`cat ${m}/count`);
    expect(aggregate.stdout).toBe('5\n');
    expect(aggregate.ms).toBeGreaterThan(1000); // answered once the block is over
    expect(await held).toBe('ok');
  });

  it('what the session thread answers follows every write, exact to 64 bits, clears included', async () => {
    expect(await fixture.command('set count 18446744073709551615')).toBe('ok');
    expect(sh(`cat ${m}/a/count`).stdout).toBe('18446744073709551615\n');
    expect(await fixture.command('set count 9007199254740993')).toBe('ok');
    expect(sh(`cat ${m}/a/count`).stdout).toBe('9007199254740993\n');
    expect(sh(`echo 0 > ${m}/a/count`).status).toBe(0);
    expect(sh(`cat ${m}/a/count ${m}/count`).stdout).toBe('0\n0\n');
    expect(sh(`echo 0 > ${m}/a/level`).stderr).toMatch(/Permission denied/);
    expect(sh(`cat ${m}/a/level`).stdout).toBe(`${S64_MIN}\n`);
  });

  it('never shows half of a 64-bit write: a value flipped between 2^32 - 1 and 2^32 reads as one or the other', async () => {
    expect(sh(`cat ${m}/flip/word`).stdout).toBe('4294967295\n');
    const toggling = fixture.command('toggle 2500');
    await sleep(200);
    const reader = spawnSync(process.execPath, ['-e', `
      const fs = require('fs');
      const seen = {};
      for (const until = Date.now() + 1500; Date.now() < until;) {
        const text = fs.readFileSync(${JSON.stringify(`${m}/flip/word`)}, 'latin1');
        seen[text] = (seen[text] ?? 0) + 1;
      }
      process.stdout.write(JSON.stringify(seen));`], { encoding: 'utf8', timeout: 20_000 });
    expect(reader.stderr).toBe('');
    const seen = JSON.parse(reader.stdout) as Record<string, number>;
    const flips = Number((await toggling).replace(/^ok /, ''));
    expect(flips).toBeGreaterThan(100_000);
    // torn reads would be 0 (low half written first on the way up) or 2^33 - 1 (on the way down)
    expect(Object.keys(seen).sort()).toEqual(['4294967295\n', '4294967296\n']);
  });

  it.skipIf(process.getuid?.() !== 0 && process.env.CI !== 'true')(
    'inodes the kernel forgets leave the registry; the others are still answered on the session thread',
    async () => {
      const n = 2000;
      expect(await fixture.command(`many ${n}`)).toBe('ok');
      const paths = Array.from({ length: n }, (_, i) => `${m}/many/s${i}/v`);
      const expected = (i: number) => `${1000 + i}\n`;
      // relative to the mount: 2,000 absolute paths in one `bash -c` argument can pass Linux's 128 KiB limit
      // for one argument (MAX_ARG_STRLEN) when TMPDIR is long
      const relative = (path: string) => path.slice(m.length + 1);
      expect(sh(`cat ${m}/many/s*/v | wc -l`).stdout.trim()).toBe(String(n)); // all registered: the table grew
      // a second process pins the even files open; dropping the kernel's caches makes it forget the odd ones
      const holder = spawn(process.execPath, ['-e', `
        const fs = require('fs');
        const fds = ${JSON.stringify(paths.filter((_, i) => i % 2 === 0))}.map((p) => fs.openSync(p, 'r'));
        process.stdout.write('held\\n');
        process.stdin.once('data', () => process.exit(0));`]);
      try {
        await new Promise((resolve) => holder.stdout.once('data', resolve));
        const before = Number((await fixture.command('forgets')).replace(/^ok /, ''));
        expect(sh('sync && echo 2 > /proc/sys/vm/drop_caches')).toMatchObject({ status: 0, stderr: '' });
        await sleep(200);
        const forgets = Number((await fixture.command('forgets')).replace(/^ok /, '')) - before;
        expect(forgets).toBeGreaterThan(0);
        // with the JS thread held, every pinned value must still be answered, and at once
        const held = fixture.command('block 5000');
        await sleep(300);
        const even = paths.filter((_, i) => i % 2 === 0);
        const read = timed(`cd ${m} && cat ${even.map(relative).join(' ')}`);
        expect(read.stdout).toBe(even.map((_, k) => expected(2 * k)).join(''));
        expect(read.ms).toBeLessThan(2000);
        expect(await held).toBe('ok');
        // and the forgotten ones come back through JS
        expect(sh(`cat ${paths.map(relative).join(' ')}`, m).stdout).toBe(paths.map((_, i) => expected(i)).join(''));
      } finally {
        holder.kill();
      }
    },
  );

  it('a value whose source left the tree is gone at once, even to an inode the kernel still holds', async () => {
    expect(sh(`cat ${m}/a/count`).stdout).toBe('0\n');
    expect(await fixture.command('remove')).toBe('ok');
    expect(sh(`cat ${m}/a/count`).stderr).toMatch(/No such file or directory/);
  });
});
