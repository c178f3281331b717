/**
 * A histogram value through the filesystem adapter (without FUSE): a directory of files, each errno
 * deliberate. The real mount is exercised in test/histogram-daemon.test.ts.
 */
import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { StatsFsAdapter } from '../../../src/fs/adapter.js';
import { HISTOGRAM_FILES, Schema, Source } from '../../../src/model/index.js';

const E = constants.errno;
const S_IFDIR = 0o040000;
const O_WRONLY = 1;

function setup() {
  const root = Source.root();
  const schema = new Schema([{ name: 'latency', type: 'histogram', unit: 'ms', aggr: 'sum' }]);
  const api = new Source('api');
  root.addSubordinate(api);
  const group = api.addValues(schema);
  const adapter = new StatsFsAdapter(root);
  const ino = (parent: number, name: string): number => {
    const r = adapter.lookup(parent, name);
    if (typeof r === 'number') throw new Error(`lookup ${name}: errno ${r}`);
    return r.attr.ino;
  };
  const read = (i: number): string => {
    const r = adapter.open(i, 0);
    if (typeof r !== 'string') throw new Error(`open: ${String(r)}`);
    return r;
  };
  const apiIno = ino(1, 'api');
  return { root, api, group, adapter, ino, read, apiIno, dirIno: ino(apiIno, 'latency') };
}

describe('adapter: histogram values', () => {
  it('is a directory listing its files; count clears it, the rest are read-only', () => {
    const { group, adapter, ino, read, apiIno, dirIno } = setup();
    const listing = adapter.opendir(apiIno);
    if (typeof listing === 'number') throw new Error('opendir');
    expect(listing.modes[0] & S_IFDIR).toBe(S_IFDIR);
    const attr = adapter.getattr(dirIno);
    if (typeof attr === 'number') throw new Error('getattr');
    expect(attr.mode).toBe(S_IFDIR | 0o755);
    const files = adapter.opendir(dirIno);
    if (typeof files === 'number') throw new Error('opendir latency');
    expect(String(files.names).split('\0')).toEqual([...HISTOGRAM_FILES]);
    expect(Array.from(files.modes, (m) => m & 0o777)).toEqual([0o644, ...Array(9).fill(0o444)]);
    expect(files.parent).toBe(apiIno);

    for (const v of [0, 1, 2, 3, 100]) group.observe('latency', v);
    expect(read(ino(dirIno, 'count'))).toBe('5\n');
    expect(read(ino(dirIno, 'sum'))).toBe('106\n');
    expect(read(ino(dirIno, 'min'))).toBe('0\n');
    expect(read(ino(dirIno, 'max'))).toBe('100\n');
    expect(read(ino(dirIno, 'avg'))).toBe('21.2\n');
    expect(read(ino(dirIno, 'p50'))).toBe('1.97834\n'); // 2 (a bucket's upper bound) within 1.09 %
    expect(read(ino(dirIno, 'p999'))).toBe('100\n'); // the last rank: max, exact
    expect(read(ino(dirIno, 'buckets')).split('\n')[0]).toBe('0 1');

    expect(adapter.open(dirIno, 0)).toBe(E.EISDIR);
    expect(adapter.lookup(dirIno, 'p42')).toBe(E.ENOENT);
    expect(adapter.lookup(dirIno, '.snapshot')).toBe(E.ENOENT);
    expect(adapter.lookup(ino(dirIno, 'count'), 'x')).toBe(E.ENOTDIR);
    expect(adapter.open(ino(dirIno, 'p99'), O_WRONLY)).toBe(E.EACCES);
    expect(adapter.setattr(ino(dirIno, 'p99'), { size: 0 })).toBe(E.EACCES);
    expect(adapter.setattr(dirIno, { size: 0 })).toBe(E.EISDIR);
    expect(adapter.write(ino(dirIno, 'count'), Buffer.from('1\n'), 0)).toBe(E.EINVAL);
    expect(adapter.write(ino(dirIno, 'count'), Buffer.from('0\n'), 0)).toBeUndefined();
    expect(read(ino(dirIno, 'count'))).toBe('0\n');
    expect(read(ino(dirIno, 'buckets'))).toBe('\n');
  });

  it('a removed histogram is ENOENT through inodes the kernel still holds', () => {
    const { api, group, adapter, ino, dirIno } = setup();
    const p99 = ino(dirIno, 'p99');
    api.removeValues(group);
    expect(adapter.open(p99, 0)).toBe(E.ENOENT);
    expect(adapter.opendir(dirIno)).toBe(E.ENOENT);
  });
});
