/**
 * Binding tests through a real FUSE mount. The filesystem (test/fixtures/native-fs.mjs) runs
 * in a child Node process that imports src/fs/native.ts (transpiled into a temp dir); this
 * process drives the mount with real tools and never serves it.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMounted, lazyUnmount, mountSession, OP_NAMES, type FuseError } from '../../src/fs/native.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const fixture = join(root, 'test/fixtures/native-fs.mjs');
const inCI = process.env.CI === 'true';
// Outside CI the suite may only be skipped when the machine has no FUSE device at all.
const skip = !inCI && !existsSync('/dev/fuse');

const work = mkdtempSync(join(tmpdir(), 'statsfs-native-'));
const mountpoints: string[] = [];
const children: ChildProcess[] = [];

function sh(cmd: string, timeout = 60_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('bash', ['-c', cmd], { encoding: 'utf8', timeout, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function newMountpoint(): string {
  const mp = mkdtempSync(join(work, 'mnt-'));
  mountpoints.push(mp);
  return mp;
}

/** Compile the wrapper (and the contract it checks) to plain JS next to a `build` symlink, so it finds the addon as in dist/. */
function buildWrapper(): string {
  const out = join(work, 'pkg/src/fs/native.js');
  mkdirSync(dirname(out), { recursive: true });
  symlinkSync(join(root, 'build'), join(work, 'pkg/build'));
  for (const name of ['native', 'native-contract']) {
    const js = ts.transpileModule(readFileSync(join(root, `src/fs/${name}.ts`), 'utf8'), {
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    });
    writeFileSync(join(dirname(out), `${name}.js`), js.outputText);
  }
  return out;
}

interface Fixture {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

function startFixture(wrapper: string, mp: string, mode = 'serve'): Fixture {
  const child = spawn(process.execPath, [fixture, wrapper, mp, mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  return { child, output: () => out, exited };
}

async function waitFor(cond: () => boolean, what: string, timeoutMs = 10_000, fx?: Fixture): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (fx && fx.child.exitCode !== null) throw new Error(`fixture exited (${fx.child.exitCode}) before ${what}: ${fx.output()}`);
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${fx ? `: ${fx.output()}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function startMounted(wrapper: string, mode = 'serve'): Promise<{ fx: Fixture; mp: string }> {
  const mp = newMountpoint();
  const fx = startFixture(wrapper, mp, mode);
  await waitFor(() => fx.output().includes('ready') && isMounted(mp), `the mount at ${mp}`, 15_000, fx);
  return { fx, mp };
}

interface FixtureStats {
  requests: Record<string, number>;
  errors: Record<string, number>;
  bytesRead: number;
  openFiles: number;
  openDirs: number;
  inFlight: number;
  forgets: number;
  handlerErrors: string[];
}

const noopHandler = { lookup: () => 2, getattr: () => 2, opendir: () => 2, open: () => 2 };

/** mountSession() in this process where it is expected to fail (unmounts at once if it does not). */
function mountError(p: string, opts = {}): FuseError {
  try {
    void mountSession(p, noopHandler, opts).unmount();
  } catch (err) {
    return err as FuseError;
  }
  throw new Error(`mount on ${p} unexpectedly succeeded`);
}

afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const mp of mountpoints) {
    if (isMounted(mp)) {
      spawnSync('fusermount3', ['-u', '-z', mp]);
      if (isMounted(mp)) spawnSync('umount', ['-l', mp]);
    }
  }
  rmSync(work, { recursive: true, force: true });
});

describe.skipIf(skip)('native FUSE binding (real mount)', { timeout: 60_000 }, () => {
  let wrapper: string;
  let fx: Fixture;
  let mp: string;
  const stats = (): FixtureStats => JSON.parse(readFileSync(join(mp, 'stats'), 'utf8')) as FixtureStats;

  beforeAll(async () => {
    wrapper = buildWrapper();
    ({ fx, mp } = await startMounted(wrapper));
  }, 30_000);

  it('serves file content to cat, dd bs=1 and head -c1', () => {
    expect(sh(`cat ${mp}/hello`).stdout).toBe('hello world\n');
    expect(sh(`dd if=${mp}/hello bs=1 status=none`).stdout).toBe('hello world\n');
    expect(sh(`head -c1 ${mp}/hello`).stdout).toBe('h');
    expect(sh(`tail -c6 ${mp}/hello`).stdout).toBe('world\n');
    expect(sh(`wc -c < ${mp}/large`).stdout.trim()).toBe(String(1 << 20));
  });

  it('lists directories with ls and ls -l (readdirplus: no per-entry lookups)', () => {
    const names = sh(`ls ${mp}`).stdout.trim().split('\n');
    expect(names).toEqual(['async', 'big', 'hello', 'large', 'rejects', 'secret', 'stats', 'throws', 'writable']);
    const before = stats().requests.lookup;
    const long = sh(`ls -l ${mp}`);
    expect(long.status).toBe(0);
    expect(long.stdout).toMatch(/^-rw-r--r-- 1 root root 7 .* hello$/m);
    expect(long.stdout).toMatch(/^drwxr-xr-x 2 root root 7 .* big$/m);
    expect(long.stdout).toMatch(/^-rw-rw-rw- 1 root root 7 .* writable$/m);
    // `stats` itself costs one lookup at most (its entry may have expired); ls -l costs none.
    expect(stats().requests.lookup - before).toBeLessThanOrEqual(1);
  });

  it('lists a 100,000-entry directory completely', () => {
    const ls = sh(`ls -f ${mp}/big`);
    expect(ls.status).toBe(0);
    const names = ls.stdout.trim().split('\n');
    expect(names.length).toBe(100_002);
    expect(new Set(names).size).toBe(100_002);
    expect(names).toContain('e0');
    expect(names).toContain('e99999');
    const node = sh(`${process.execPath} -e "process.stdout.write(String(require('fs').readdirSync('${mp}/big').length))"`);
    expect(node.stdout).toBe('100000');
    const before = stats().requests.lookup;
    const long = sh(`ls -l ${mp}/big | wc -l`);
    expect(long.stdout.trim()).toBe('100001');
    expect(stats().requests.lookup - before).toBeLessThanOrEqual(2);
    expect(sh(`cat ${mp}/big/e12345`).stdout).toBe('12345\n');
  });

  it('truncates and writes: echo 0 >, truncate -s 0, printf >', () => {
    const setattrs = stats().requests.setattr;
    expect(sh(`echo 0 > ${mp}/writable && cat ${mp}/writable`).stdout).toBe('0\n');
    expect(sh(`truncate -s 0 ${mp}/writable && cat ${mp}/writable`).stdout).toBe('');
    expect(sh(`printf abc > ${mp}/writable && cat ${mp}/writable`).stdout).toBe('abc');
    // atomic O_TRUNC: shell redirections truncate inside open; only truncate(1) sends a setattr
    expect(stats().requests.setattr - setattrs).toBe(1);
    expect(sh(`echo x > ${mp}/hello`).stderr).toMatch(/Operation not permitted/);
  });

  it('refuses namespace changes with EPERM and xattrs with ENOTSUP', () => {
    for (const cmd of [`mkdir ${mp}/d`, `rm ${mp}/hello`, `rmdir ${mp}/big`, `touch ${mp}/new`,
      `mv ${mp}/hello ${mp}/h2`, `ln -s x ${mp}/l`, `ln ${mp}/hello ${mp}/h3`]) {
      const r = sh(cmd);
      expect(r.status, cmd).not.toBe(0);
      expect(r.stderr, cmd).toMatch(/Operation not permitted/);
    }
    const x = sh(`python3 -c "import os; os.getxattr('${mp}/hello', 'user.x')" 2>&1`);
    expect(x.stdout).toMatch(/Operation not supported/);
  });

  it('reads from a second Node process with readFileSync', () => {
    const r = sh(`${process.execPath} -e "const fs=require('fs'); process.stdout.write(fs.readFileSync('${mp}/hello','utf8') + fs.readFileSync('${mp}/large').length)"`);
    expect(r.stdout).toBe(`hello world\n${1 << 20}`);
  });

  it('answers EIO when a handler throws or rejects, and keeps serving', () => {
    expect(sh(`cat ${mp}/throws`).stderr).toMatch(/Input\/output error/);
    expect(sh(`cat ${mp}/rejects`).stderr).toMatch(/Input\/output error/);
    expect(sh(`stat ${mp}/boom`).stderr).toMatch(/Input\/output error/);
    expect(sh(`cat ${mp}/async`).stdout).toBe('async value\n');
    expect(sh(`cat ${mp}/secret`).stderr).toMatch(/Permission denied/);
    expect(sh(`cat ${mp}/hello`).stdout).toBe('hello world\n');
    const s = stats();
    expect(s.handlerErrors).toEqual(expect.arrayContaining([
      'open: open handler failure', 'open: rejected', 'lookup: lookup handler failure',
    ]));
    expect(s.errors.open).toBeGreaterThanOrEqual(3);
    expect(fx.child.exitCode).toBeNull();
  });

  it('keeps serving the per-open snapshot across an invalidation', () => {
    const forgets = stats().forgets;
    const script = `
      const fs = require('fs');
      const p = '${mp}/writable';
      fs.writeFileSync(p, 'old');
      const fd = fs.openSync(p, 'r');
      fs.writeFileSync(p, 'new value');   // the handler invalidates inode and entry
      const b = Buffer.alloc(64);
      const n = fs.readSync(fd, b, 0, 64, 0);
      fs.closeSync(fd);
      process.stdout.write(b.subarray(0, n).toString() + '|' + fs.readFileSync(p, 'utf8'));`;
    expect(sh(`${process.execPath} -e "${script.replace(/"/g, '\\"')}"`).stdout).toBe('old|new value');
    // The invalidated entry's inode is evicted once closed: the kernel forgets it.
    expect(stats().forgets).toBeGreaterThan(forgets);
  });

  it('answers statfs in C', () => {
    expect(sh(`stat -f -c '%S %l %b' ${mp}`).stdout.trim()).toBe('4096 255 0');
  });

  it('serves concurrent readers and counts every request', () => {
    const before = stats();
    const r = sh(`for i in $(seq 8); do (for j in $(seq 100); do cat ${mp}/hello > /dev/null || exit 1; done) & done; wait`);
    expect(r.status).toBe(0);
    const after = stats();
    expect(after.requests.open - before.requests.open).toBeGreaterThanOrEqual(800);
    expect(after.requests.release - before.requests.release).toBeGreaterThanOrEqual(800);
    expect(after.bytesRead - before.bytesRead).toBeGreaterThanOrEqual(800 * 12);
    expect(after.openFiles).toBe(0); // the stats snapshot is rendered before its open is answered
    expect(after.openDirs).toBe(0);
    expect(after.inFlight).toBe(1);
    expect(Object.keys(after.requests)).toEqual([...OP_NAMES]);
  });

  it('refuses to mount over a live FUSE mount (EBUSY)', () => {
    const err = mountError(mp);
    expect(err.code).toBe('EBUSY');
    expect(err.message).toContain(mp);
  });

  it('unmounts and exits 0 on SIGTERM', async () => {
    fx.child.kill('SIGTERM');
    expect(await fx.exited).toBe(0);
    expect(fx.output()).toContain('unmounted');
    expect(isMounted(mp)).toBe(false);
  });

  it('stops keeping the event loop alive after unmount (idempotent unmount)', async () => {
    const mp2 = newMountpoint();
    const fx2 = startFixture(wrapper, mp2, 'mount-unmount');
    const code = await Promise.race([fx2.exited, new Promise((r) => setTimeout(() => r('still running'), 10_000))]);
    expect(code, fx2.output()).toBe(0);
    expect(fx2.output()).toContain('unmounted');
    expect(isMounted(mp2)).toBe(false);
  });

  it('reports mount errors with an errno-like code and a clear message', () => {
    const missing = mountError(join(work, 'does-not-exist'));
    expect(missing.code).toBe('ENOENT');
    expect(missing.message).toMatch(/does-not-exist.*No such file or directory/);
    const file = join(work, 'a-file');
    writeFileSync(file, '');
    expect(mountError(file).code).toBe('ENOTDIR');
    const bad = mountError(newMountpoint(), { extraOptions: ['no_such_option'] });
    expect(bad.code).toBe('EINVAL');
    expect(bad.message).toMatch(/no_such_option/);
  });

  it('recovers a stale mount left by a killed daemon with lazyUnmount', async () => {
    const { fx: crash, mp: mp3 } = await startMounted(wrapper, 'crash-on-open');
    const cat = sh(`cat ${mp3}/hello`, 10_000); // the daemon SIGKILLs itself while serving the open
    expect(cat.status).not.toBe(0);
    await crash.exited;
    expect(isMounted(mp3)).toBe(true);
    expect(sh(`stat ${mp3}`).stderr).toMatch(/Transport endpoint is not connected/);
    const err = mountError(mp3);
    expect(err.code).toBe('ENOTCONN');
    expect(err.message).toMatch(/lazyUnmount/);
    lazyUnmount(mp3);
    expect(isMounted(mp3)).toBe(false);
    expect(() => lazyUnmount(mp3)).toThrow(/not a mount point/);
  });
});
