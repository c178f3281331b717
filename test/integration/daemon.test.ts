/**
 * The real daemon (bin/statsfs.js) in a separate process on a temporary mountpoint, driven with real tools
 * and a second Node process. Asserts outputs, errnos, modes, clean shutdown and stale-mount recovery.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, isMounted, sh, skipWithoutFuse, startDaemon, tempDir, waitFor, type Daemon } from '../helpers/mount.js';

const num = (text: string): bigint => {
  expect(text).toMatch(/^\d+\n$/);
  return BigInt(text.trim());
};

describe.skipIf(skipWithoutFuse)('statsfs daemon (real mount, separate process)', { timeout: 60_000 }, () => {
  let d: Daemon;
  let m: string;
  beforeAll(async () => {
    d = await startDaemon(['--no-collectors']);
    m = d.mountpoint;
  });
  afterAll(() => d?.cleanup());

  it('lists sources as directories and values as files', () => {
    expect(sh(`ls ${m}`).stdout).toBe('statsfs\n');
    expect(sh(`ls ${m}/statsfs`).stdout).toBe('fuse\nprocess\nproducers\n'); // producers: the producer socket's counters
    const fuse = sh(`ls ${m}/statsfs/fuse`).stdout.split('\n');
    for (const name of ['requests', 'errors', 'bytes_read', 'open_files', 'lookup', 'open', 'read', 'release']) expect(fuse).toContain(name);
    expect(sh(`ls ${m}/statsfs/fuse/open`).stdout).toBe('errors\nrequests\n');
    expect(sh(`stat -c '%F %a' ${m}/statsfs ${m}/statsfs/fuse/requests ${m}/statsfs/process/rss_bytes`).stdout).toBe(
      'directory 755\nregular empty file 644\nregular empty file 444\n',
    );
  });

  it('cat reads a value computed when the file is opened; counters move', () => {
    const first = num(sh(`cat ${m}/statsfs/fuse/open/requests`).stdout);
    const second = num(sh(`cat ${m}/statsfs/fuse/open/requests`).stdout);
    expect(second).toBeGreaterThan(first);
    expect(num(sh(`cat ${m}/statsfs/process/rss_bytes`).stdout)).toBeGreaterThan(10_000_000n);
    expect(num(sh(`cat ${m}/statsfs/fuse/bytes_read`).stdout)).toBeGreaterThan(0n);
  });

  it('the longest event-loop delay is a clearable value: echo 0 > restarts the measurement', async () => {
    const f = `${m}/statsfs/process/event_loop_delay_max_us`;
    expect(sh(`stat -c %a ${f}`).stdout).toBe('644\n');
    sh(`cat ${f}`); // sampling starts at the first read (an idle daemon samples nothing)
    await new Promise((resolve) => setTimeout(resolve, 50)); // a few 10 ms samples
    expect(num(sh(`cat ${f}`).stdout)).toBeGreaterThan(0n);
    expect(sh(`echo 0 > ${f}`).status).toBe(0);
    expect(sh(`cat ${f}`).stdout).toMatch(/^\d+\n$/);
  });

  it('an aggregate sums its subordinates at read time', () => {
    // read every per-op counter and the aggregate in one process; the aggregate is opened last
    const ops = sh(`ls ${m}/statsfs/fuse`).stdout.split('\n').filter((n) => sh(`test -d ${m}/statsfs/fuse/${n}`).status === 0 && n);
    const out = sh(`cd ${m}/statsfs/fuse && exec 3<requests && cat ${ops.map((o) => `${o}/requests`).join(' ')} && cat <&3`).stdout.trim().split('\n');
    const total = BigInt(out.pop()!);
    const parts = out.reduce((a, v) => a + BigInt(v), 0n);
    // the aggregate was computed at open, before the parts were read (each read adds requests)
    expect(total).toBeGreaterThan(0n);
    expect(total).toBeLessThanOrEqual(parts);
  });

  it('every reader sees the whole value: cat, head -c1, dd bs=1, tail, python, a second node process', () => {
    const f = `${m}/statsfs/process/uptime_seconds`;
    expect(sh(`cat ${f}`).stdout).toMatch(/^\d+\n$/);
    expect(sh(`head -c1 ${f}`).stdout).toMatch(/^\d$/);
    expect(sh(`dd if=${f} bs=1 status=none`).stdout).toMatch(/^\d+\n$/);
    expect(sh(`tail -n1 ${f}`).stdout).toMatch(/^\d+\n$/);
    expect(sh(`python3 -c "import sys; sys.stdout.write(open('${f}').read())"`).stdout).toMatch(/^\d+\n$/);
    const node = spawnSync(process.execPath, ['-e', `process.stdout.write(require('fs').readFileSync(${JSON.stringify(f)}, 'utf8'))`], { encoding: 'utf8' });
    expect(node.stdout).toMatch(/^\d+\n$/);
  });

  it('echo 0 > and truncate -s 0 clear a counter; clearing an aggregate clears every value below it', () => {
    expect(sh(`echo 0 > ${m}/statsfs/fuse/bytes_read`).status).toBe(0);
    expect(num(sh(`cat ${m}/statsfs/fuse/bytes_read`).stdout)).toBeLessThan(4n); // only this cat's own bytes
    for (let i = 0; i < 20; i++) sh(`cat ${m}/statsfs/fuse/open/requests`);
    expect(num(sh(`cat ${m}/statsfs/fuse/open/requests`).stdout)).toBeGreaterThan(20n);
    expect(sh(`truncate -s 0 ${m}/statsfs/fuse/requests`).status).toBe(0);
    expect(num(sh(`cat ${m}/statsfs/fuse/open/requests`).stdout)).toBeLessThan(4n);
  });

  it('bad writes are EINVAL and change nothing; read-only values are EACCES', () => {
    for (let i = 0; i < 10; i++) sh(`cat ${m}/statsfs/fuse/open/requests`);
    const r = sh(`echo 5 > ${m}/statsfs/fuse/open/requests`);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Invalid argument/);
    expect(num(sh(`cat ${m}/statsfs/fuse/open/requests`).stdout)).toBeGreaterThanOrEqual(10n);
    expect(sh(`printf 0x > ${m}/statsfs/fuse/open/requests`).stderr).toMatch(/Invalid argument/);
    expect(sh(`truncate -s 3 ${m}/statsfs/fuse/open/requests`).stderr).toMatch(/Invalid argument/);
    expect(sh(`echo 0 > ${m}/statsfs/process/rss_bytes`).stderr).toMatch(/Permission denied/);
    expect(sh(`truncate -s 0 ${m}/statsfs/process/rss_bytes`).stderr).toMatch(/Permission denied/);
  });

  it('refuses namespace and ownership changes with EPERM; statfs answers', () => {
    const f = `${m}/statsfs/fuse/requests`;
    for (const cmd of [
      `mkdir ${m}/statsfs/x`,
      `rmdir ${m}/statsfs/fuse/open`,
      `touch ${m}/statsfs/new`,
      `rm -f ${f}`,
      `mv ${f} ${m}/statsfs/moved`,
      `chmod 666 ${f}`,
      `chown nobody ${f}`,
      `ln ${f} ${m}/statsfs/hard`,
      `ln -s ${f} ${m}/statsfs/soft`,
    ]) {
      const r = sh(cmd);
      expect(r.status, cmd).not.toBe(0);
      expect(r.stderr, cmd).toMatch(/Operation not permitted/);
    }
    expect(sh(`stat -f -c %T ${m}`).stdout).toMatch(/fuse/);
  });

  it('SIGTERM unmounts and exits 0', async () => {
    const { code } = await d.stop();
    expect(code).toBe(0);
    expect(isMounted(m)).toBe(false);
    expect(d.stderr()).toMatch(/"msg":"unmounted"/);
  });
});

describe.skipIf(skipWithoutFuse)('statsfs daemon start-up and failures', { timeout: 60_000 }, () => {
  it('recovers the stale mount a killed daemon (kill -9) left behind', async () => {
    const first = await startDaemon(['--no-collectors']);
    first.child.kill('SIGKILL');
    await first.exited;
    expect(isMounted(first.mountpoint)).toBe(true); // the dead mount stays: "Transport endpoint is not connected"
    expect(sh(`ls ${first.mountpoint}`).stderr).toMatch(/Transport endpoint is not connected/);
    const second = await startDaemon(['--no-collectors'], first.mountpoint);
    try {
      const listing = sh(`ls ${first.mountpoint}`);
      expect(listing.stderr + listing.stdout).toBe('statsfs\n');
      expect(second.stderr()).toMatch(/recovered a stale mount/);
      expect((await second.stop()).code).toBe(0);
      expect(isMounted(first.mountpoint)).toBe(false);
    } finally {
      second.cleanup();
    }
  });

  it('logs each service start once', async () => {
    const dir = tempDir();
    const d = await startDaemon(['--no-collectors', '--statsd', '127.0.0.1:0', '--statsd-socket', join(dir, 'statsd.sock'), '--http', '127.0.0.1:0']);
    try {
      const lines = d.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg: string });
      const count = (re: RegExp) => lines.filter((l) => re.test(l.msg)).length;
      expect(count(/producer socket listening/i)).toBe(1);
      expect(count(/statsd listening/i)).toBe(2); // once for UDP, once for the Unix socket
      expect(count(/statsd listening on UDP/i)).toBe(1);
      expect(count(/\/metrics/)).toBe(1);
      expect((await d.stop()).code).toBe(0);
    } finally {
      d.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('SIGTERM stops the daemon and unmounts even while producers hold connections open, refused ones too', async () => {
    const d = await startDaemon(['--no-collectors']);
    const held: Socket[] = [];
    try {
      // fill the connection cap, then hold 64 refused connections open as well: these peers never read, so
      // they never see the daemon's end of the connection and never close theirs
      const stat = (name: string) => BigInt(sh(`cat ${d.mountpoint}/statsfs/producers/${name}`).stdout.trim() || '0');
      const refused = () => stat('accepted') - stat('connections'); // accepted counts the refused ones too
      while (refused() < 64n && held.length < 5000) {
        for (let i = 0; i < 64; i++) {
          const s = netConnect(join(d.mountpoint, '..', 'producers.sock'));
          s.on('error', () => {});
          held.push(s);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(refused()).toBeGreaterThanOrEqual(64n);
      let exit: { code: number | null } | undefined;
      void d.stop().then((e) => (exit = e));
      await waitFor('the daemon to exit after SIGTERM', () => exit !== undefined, 15_000);
      expect(exit!.code).toBe(0);
      expect(isMounted(d.mountpoint)).toBe(false);
    } finally {
      for (const s of held) s.destroy();
      d.cleanup();
    }
  });

  const fail = (args: string[]) => spawnSync(process.execPath, [BIN, 'mount', '--no-state', ...args], { encoding: 'utf8', timeout: 20000 });

  it('a missing mountpoint or a file gives one line that says what to do, and exit 1', () => {
    const dir = tempDir();
    const missing = fail([join(dir, 'nope')]);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^statsfs: mountpoint .*nope does not exist: create it with 'mkdir -p .*'.*\n$/);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    writeFileSync(join(dir, 'file'), '');
    const file = fail([join(dir, 'file')]);
    expect(file.status).toBe(1);
    expect(file.stderr).toMatch(/^statsfs: mountpoint .*file is not a directory.*\n$/);
  });

  it('a busy mountpoint is refused with one line, and the running daemon is untouched', async () => {
    const d = await startDaemon(['--no-collectors']);
    try {
      const busy = fail([d.mountpoint]);
      expect(busy.status).toBe(1);
      expect(busy.stderr).toMatch(/^statsfs: mountpoint .* is busy .*fusermount3 -u.*\n$/);
      expect(busy.stderr.trim().split('\n')).toHaveLength(1);
      expect(sh(`ls ${d.mountpoint}`).stdout).toBe('statsfs\n');
    } finally {
      await d.stop();
      d.cleanup();
    }
  });

  it('bad options are refused with a message and exit 2 (a usage error); --help works on every command', () => {
    expect(spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' }).stdout).toMatch(/^statsfs <command> \[options\]/);
    expect(spawnSync(process.execPath, [BIN, 'mount', '--help'], { encoding: 'utf8' }).stdout).toMatch(/--cache-seconds/);
    const dir = tempDir();
    mkdirSync(join(dir, 'm'));
    const bad = fail([join(dir, 'm'), '--cache-seconds', 'soon']);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/cache-seconds/);
  });
});
