/**
 * Large directories keep their listing between opendirs (StatsFsAdapter.listings): checked without FUSE,
 * that a kept listing is never stale (entries that came or went, inodes the kernel forgot) and that every
 * opendir still counts its entries as looked up.
 */
import { describe, expect, it } from 'vitest';
import { StatsFsAdapter } from '../../../src/fs/adapter.js';
import type { DirListing } from '../../../src/fs/native.js';
import { Schema, Source } from '../../../src/model/index.js';

const N = 300; // above the size from which listings are kept

function setup(cacheSeconds = 1) {
  const root = Source.root();
  const big = new Source('big');
  root.addSubordinate(big);
  for (let i = 0; i < N; i++) big.addSubordinate(new Source(`s${i}`));
  const adapter = new StatsFsAdapter(root, { cacheSeconds });
  const lookup = adapter.lookup(1, 'big');
  if (typeof lookup === 'number') throw new Error('no big');
  const bigIno = lookup.attr.ino;
  const list = () => {
    const l = adapter.opendir(bigIno);
    if (typeof l === 'number') throw new Error(`opendir: errno ${l}`);
    return l;
  };
  return { root, big, adapter, bigIno, list };
}

const namesOf = (l: DirListing) => (typeof l.names === 'string' ? l.names.split('\0') : [...l.names]);
const inoOf = (l: DirListing, name: string) => l.inos[namesOf(l).indexOf(name)];

describe('adapter: kept listings of large directories', () => {
  it('lists the same entries and inodes again, and counts every opendir as a lookup of each entry', () => {
    const { adapter, list } = setup();
    const first = list();
    const second = list();
    expect(namesOf(second)).toEqual(namesOf(first));
    expect(Array.from(second.inos)).toEqual(Array.from(first.inos));
    const s7 = inoOf(first, 's7');
    // two listings: two references; the first forget leaves the inode mapped, the second drops it
    adapter.forget(s7, 1);
    expect(adapter.getattr(s7)).toMatchObject({ ino: s7 });
    adapter.forget(s7, 1);
    expect(adapter.getattr(s7)).toBe(2); // ENOENT
    // and the next listing hands out a fresh inode for s7, not the forgotten one
    const third = list();
    expect(inoOf(third, 's7')).not.toBe(s7);
    expect(adapter.getattr(inoOf(third, 's7'))).toMatchObject({ ino: inoOf(third, 's7') });
  });

  it('lets the kernel keep the very listing it was handed last, and drop it once it changed', () => {
    // a day of cache time: the half-timeout renewal plays no part here
    const { root, big, adapter, list } = setup(86_400);
    expect(list().cache).toBe('fresh');
    expect(list().cache).toBe('keep');
    expect(list().cache).toBe('keep');
    big.addSubordinate(new Source('extra'));
    expect(list().cache).toBe('fresh');
    expect(list().cache).toBe('keep');
    // small directories are built anew at each opendir: nothing for the kernel to keep
    const small = new Source('small');
    root.addSubordinate(small);
    const lookup = adapter.lookup(1, 'small');
    if (typeof lookup === 'number') throw new Error('no small');
    expect(adapter.opendir(lookup.attr.ino)).toMatchObject({ cache: 'none' });
  });

  it('with a cache time of 0, hands every listing fresh: the entries it renews would have expired already', () => {
    const { list } = setup(0);
    expect(list().cache).toBe('fresh');
    expect(list().cache).toBe('fresh');
  });

  it('follows entries that come and go, values included', () => {
    const { big, list } = setup();
    list();
    const extra = new Source('extra');
    big.addSubordinate(extra);
    expect(namesOf(list())).toContain('extra');
    big.removeSubordinate(extra);
    expect(namesOf(list())).not.toContain('extra');
    const group = big.addValues(new Schema([{ name: 'v', type: 'u64' }]));
    expect(namesOf(list()).slice(-1)).toEqual(['v']);
    big.removeValues(group);
    expect(namesOf(list())).toHaveLength(N);
  });

  it('reports the parent inode as it is now, not as it was when the listing was kept', () => {
    const root = Source.root();
    const mid = new Source('mid');
    root.addSubordinate(mid);
    const big = new Source('big');
    mid.addSubordinate(big);
    for (let i = 0; i < N; i++) big.addSubordinate(new Source(`s${i}`));
    const adapter = new StatsFsAdapter(root);
    const ino = (dir: number, name: string) => (adapter.lookup(dir, name) as { attr: { ino: number } }).attr.ino;
    const midIno = ino(1, 'mid');
    const bigIno = ino(midIno, 'big');
    expect(adapter.opendir(bigIno)).toMatchObject({ parent: midIno });
    adapter.forget(midIno, 1); // the kernel let go of mid: it gets a new inode at its next lookup
    const midAgain = ino(1, 'mid');
    expect(midAgain).not.toBe(midIno);
    expect(adapter.opendir(bigIno)).toMatchObject({ parent: midAgain });
  });
});
