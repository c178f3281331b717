/**
 * Issue 11 through the real daemon and a real mount: empty directories list as empty, a clearing write
 * may be followed by its newline on the same open file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, sh, skipWithoutFuse, startDaemon, type Daemon } from '../helpers/mount.js';

describe.skipIf(skipWithoutFuse)('empty sources and split writes through the real daemon', { timeout: 60_000 }, () => {
  let d: Daemon;
  let m: string;
  let producer: ChildProcess;
  beforeAll(async () => {
    d = await startDaemon(['--no-collectors']);
    m = d.mountpoint;
    producer = spawn(process.execPath, [join(ROOT, 'test/fixtures/empty-sources.mjs'), join(m, '..', 'producers.sock')], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    producer.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
    await new Promise<void>((resolve, reject) => {
      producer.stdout!.on('data', () => out.includes('ready') && resolve());
      producer.once('exit', (code) => reject(new Error(`the producer exited (${code}) before it was ready`)));
    });
  });
  afterAll(async () => {
    if (producer && producer.exitCode === null) {
      producer.stdin!.end();
      await once(producer, 'exit');
    }
    d?.cleanup();
  });

  it('ls, find and os.walk list empty sources as empty directories', () => {
    for (const name of ['fresh', 'hidden', 'drained']) {
      const ls = sh(`ls -A ${m}/empty/${name}`);
      expect({ name, ...ls }).toEqual({ name, status: 0, stdout: '', stderr: '' });
    }
    const find = sh(`cd ${m} && find empty | sort`);
    expect(find).toEqual({ status: 0, stdout: 'empty\nempty/drained\nempty/fresh\nempty/hidden\n', stderr: '' });
    const walk = sh(`python3 -c 'import os,sys; [print(p, sorted(ds), sorted(fs)) for p, ds, fs in os.walk(sys.argv[1], onerror=lambda e: sys.exit(str(e)))]' ${m}/empty`);
    expect(walk.stderr).toBe('');
    expect(walk.stdout.split('\n').filter((l) => l.includes('/empty/')).sort()).toEqual([
      `${m}/empty/drained [] []`,
      `${m}/empty/fresh [] []`,
      `${m}/empty/hidden [] []`,
    ]);
  });

  it('write("0") then write("\\n") on one open file clears and accepts the newline', () => {
    expect(sh(`node ${join(ROOT, 'bin/statsfs.js')} set split/hits 42 --socket ${m}/../producers.sock`).status).toBe(0);
    expect(sh(`cat ${m}/split/hits`).stdout).toBe('42\n');
    const py = sh(`python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
print(os.write(fd, b"0"), os.write(fd, b"\\n"), os.write(fd, b" \\n"))
os.close(fd)' ${m}/split/hits`);
    expect(py).toEqual({ status: 0, stdout: '1 1 2\n', stderr: '' });
    expect(sh(`cat ${m}/split/hits`).stdout).toBe('0\n');
  });

  it('a newline alone, or after a refused write, is still refused and changes nothing', () => {
    expect(sh(`node ${join(ROOT, 'bin/statsfs.js')} set split/more 7 --socket ${m}/../producers.sock`).status).toBe(0);
    const py = sh(`python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for data in (b"\\n", b"5", b"\\n"):
    try:
        os.write(fd, data); print("ok")
    except OSError as e:
        print(e.strerror)
os.close(fd)' ${m}/split/more`);
    expect(py.stdout).toBe('Invalid argument\nInvalid argument\nInvalid argument\n');
    // node: a second write on the same fd after a clear, from a child process
    const node = sh(`node -e 'const fs = require("fs"); const fd = fs.openSync(process.argv[1], "w"); fs.writeSync(fd, "0"); fs.writeSync(fd, "\\n"); fs.closeSync(fd)' ${m}/split/more`);
    expect(node).toEqual({ status: 0, stdout: '', stderr: '' });
    expect(sh(`cat ${m}/split/more`).stdout).toBe('0\n');
  });
});

describe.skipIf(skipWithoutFuse)('a path removed and re-created by a producer', { timeout: 120_000 }, () => {
  let d: Daemon;
  beforeAll(async () => {
    d = await startDaemon(['--no-collectors']);
  });
  afterAll(() => d?.cleanup());

  it('is found through the mount after every OK (2,000 rounds, no ENOENT)', () => {
    const m = d.mountpoint;
    const r = sh(`node ${join(ROOT, 'test/fixtures/recreate.mjs')} ${m}/../producers.sock ${m} 2000`);
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({ rounds: 2000, failures: {}, wrong: 0 });
  });
});
