/**
 * .snapshot, .snapshot.json and .snapshot.bin through a real mount, served by a program whose values change
 * on every turn of its event loop.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseBinarySnapshot } from '../../src/client/snapshot-reader.js';
import { BINARY_CHUNK_SIZE } from '../../src/export/binary.js';
import { forceUnmount, isMounted, ROOT, sh, skipWithoutFuse, tempDir, waitFor } from '../helpers/mount.js';

describe.skipIf(skipWithoutFuse)('atomic snapshots through the mount', { timeout: 60_000 }, () => {
  let child: ChildProcess;
  let m: string;
  beforeAll(async () => {
    m = join(tempDir(), 'mnt');
    sh(`mkdir -p ${m}`);
    child = spawn(process.execPath, [join(ROOT, 'test/fixtures/snapshot-tree.mjs'), m], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('exit', () => reject(new Error('the fixture exited before mounting')));
    });
    await waitFor('the mount', () => isMounted(m));
  });
  afterAll(() => {
    child?.kill('SIGKILL');
    if (m) forceUnmount(m);
  });

  it('snapshot files exist in every directory but ls does not list them', () => {
    expect(sh(`ls -a ${m}/pair`).stdout).toBe('.\n..\na\nb\n');
    expect(sh(`stat -c %a ${m}/pair/.snapshot ${m}/.snapshot.json ${m}/many/s1/.snapshot.bin`).stdout).toBe('444\n444\n444\n');
    expect(sh(`echo 0 > ${m}/pair/.snapshot`).stderr).toMatch(/Permission denied/);
  });

  it('every .snapshot holds a and b from one instant: their sum is always 1000', () => {
    for (let i = 0; i < 200; i++) {
      const lines = sh(`cat ${m}/pair/.snapshot`).stdout;
      const [, a] = /^a (\d+)$/m.exec(lines)!;
      const [, b] = /^b (\d+)$/m.exec(lines)!;
      expect(BigInt(a) + BigInt(b), lines).toBe(1000n);
    }
  });

  it('a root .snapshot of 400,000+ values, captured in slices, still holds one instant: aa/v + zz/v is 1000', () => {
    const file = join(tempDir(), 'root.snapshot');
    for (let i = 0; i < 12; i++) {
      const r = sh(`cat ${m}/.snapshot > ${file} && wc -l < ${file} && grep -E '^(aa|zz)/v ' ${file}`);
      const [lines, aa, zz] = r.stdout.trimEnd().split('\n');
      expect(Number(lines), r.stderr).toBeGreaterThan(400_000);
      expect(aa).toMatch(/^aa\/v \d+$/);
      expect(zz).toMatch(/^zz\/v \d+$/);
      expect(BigInt(aa.split(' ')[1]) + BigInt(zz.split(' ')[1])).toBe(1000n);
    }
  });

  it('a root .snapshot.json of ~70 MB, handed to the binding in pieces, is whole, valid and one instant', () => {
    const r = sh(
      `cat ${m}/.snapshot.json | python3 -c "import json,sys; d=json.load(sys.stdin); v={x['path']: int(x['value']) for x in d['values']}; print(d['count'], len(d['values']), v['aa/v'] + v['zz/v'], v['big/s39999/v9'])"`,
    );
    const [count, values, sum, last] = r.stdout.trim().split(' ').map(Number);
    expect(r.stderr).toBe('');
    expect(values).toBe(count);
    expect(count).toBeGreaterThan(410_000);
    expect(sum).toBe(1000);
    expect(last).toBe(399_999);
  });

  it('a root .snapshot.bin of 410,000+ values, streamed into the binding in 8 MiB pieces, is whole, valid and one instant', () => {
    for (let i = 0; i < 3; i++) {
      const file = readFileSync(`${m}/.snapshot.bin`);
      expect(file.length).toBeGreaterThan(BINARY_CHUNK_SIZE); // more than one piece, the header's last
      const bin = parseBinarySnapshot(file);
      expect(bin.length).toBeGreaterThan(410_000);
      const value: Record<string, bigint> = {};
      for (let k = 0; k < bin.length; k++) {
        const path = bin.path(k);
        if (path === 'aa/v' || path === 'zz/v' || path === 'big/s39999/v9') value[path] = bin.value(k);
      }
      expect(value['aa/v'] + value['zz/v']).toBe(1000n);
      expect(value['big/s39999/v9']).toBe(399_999n);
    }
  });

  it('.snapshot.json and .snapshot.bin hold the same instant, with the schema', () => {
    for (let i = 0; i < 50; i++) {
      const json = JSON.parse(readFileSync(`${m}/pair/.snapshot.json`, 'utf8'));
      const byPath = Object.fromEntries(json.values.map((v: { path: string; value: string }) => [v.path, v]));
      expect(BigInt(byPath.a.value) + BigInt(byPath.b.value)).toBe(1000n);
      expect(byPath.a).toMatchObject({ type: 'u64', unit: 'tokens', description: 'left half', kind: 'cumulative', mode: '0644', aggregate: false });
      const bin = parseBinarySnapshot(readFileSync(`${m}/pair/.snapshot.bin`));
      const paths = Array.from({ length: bin.length }, (_, k) => bin.path(k));
      expect(paths).toEqual(['a', 'b']);
      expect(bin.value(0) + bin.value(1)).toBe(1000n);
    }
  });

  it('a 10,000-source snapshot is complete and exact, aggregates included', () => {
    const text = sh(`cat ${m}/many/.snapshot`).stdout.trimEnd().split('\n');
    expect(text).toHaveLength(10001);
    // sum of i for even i minus i for odd i over 0..9999 = -5000
    expect(text[0]).toBe('v -5000');
    expect(text[10000]).toBe('s9999/v -9999');
    const bin = parseBinarySnapshot(readFileSync(`${m}/many/.snapshot.bin`));
    expect(bin.length).toBe(10001);
    expect(bin.value(1234)).toBe(-1233n);
  });
});
