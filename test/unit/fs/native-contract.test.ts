/**
 * The contract between the binding and the wrapper (native/contract.h, src/fs/native-contract.ts):
 * the binding's own export passes the check made at load, and any difference fails it loudly, naming
 * what differs. No mount needed: the check is tried on the built addon and on fake exports.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SEQ, SlotArena } from '../../../src/model/arena.js';
import {
  ARENA_LAYOUT, ATTR_FIELDS, checkContract, ContractError, DIR_CACHE_NAMES, DIR_META_FIELDS, EVENT_ARGS, GAUGE_NAMES, MOUNT_FLAGS,
  OP_NAMES, SETATTR_BITS,
} from '../../../src/fs/native-contract.js';
import { ROOT } from '../../helpers/mount.js';

const addonPath = join(ROOT, 'build/Release/statsfs_fuse.node');

const index = (names: readonly string[]) =>
  Object.fromEntries([...names.map((name, i) => [name, i] as const), ['length', names.length] as const]);
const bits = (names: readonly string[]) => Object.fromEntries(names.map((name, i) => [name, 1 << i]));

/** A well-formed export, built from the expectations (its numbers need not be the binding's). */
function fakeContract(): Record<string, Record<string, unknown> | unknown[]> {
  const n = OP_NAMES.length;
  return {
    ops: [...OP_NAMES],
    stats: { length: 2 * n + GAUGE_NAMES.length, requests: 0, errors: n, ...Object.fromEntries(GAUGE_NAMES.map((g, i) => [g, 2 * n + i])) },
    events: {
      ...Object.fromEntries(Object.entries(EVENT_ARGS).map(([name, args], i) => [name, { code: i, args: args.join(' ') }])),
      length: Object.keys(EVENT_ARGS).length,
    },
    mountFlags: bits(MOUNT_FLAGS),
    attr: index(ATTR_FIELDS),
    dirMeta: index(DIR_META_FIELDS),
    dirCache: index(DIR_CACHE_NAMES),
    setattr: bits(SETATTR_BITS),
    arena: { ...ARENA_LAYOUT },
  };
}

function rejection(exported: unknown): string {
  try {
    checkContract(exported);
  } catch (err) {
    expect(err).toBeInstanceOf(ContractError);
    expect((err as ContractError).code).toBe('ENOFUSE');
    const message = (err as Error).message;
    expect(message).toMatch(/^statsfs_fuse\.node does not match src\/fs\/native-contract\.ts \(rebuild it with npm run build:native\): /);
    return message;
  }
  throw new Error('checkContract accepted it');
}

describe('native contract', () => {
  it.skipIf(!existsSync(addonPath))('the built binding exports a contract that passes the check, with the codes it always had', () => {
    const exported = (createRequire(import.meta.url)(addonPath) as { contract: unknown }).contract;
    const c = checkContract(exported);
    expect(c.ops).toEqual([...OP_NAMES]);
    expect(c.stats).toMatchObject({ length: 34, requests: 0, errors: 14, bytesRead: 28, overBudget: 33 });
    expect(Object.keys(EVENT_ARGS).map((name) => c.events[name as keyof typeof EVENT_ARGS].code)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(c.mountFlags).toEqual({ debug: 1, forget: 2 });
    // libfuse's FUSE_SET_ATTR_* bits
    expect(c.setattr).toEqual({ mode: 1, uid: 2, gid: 4, size: 8, atime: 16, mtime: 32, atimeNow: 128, mtimeNow: 256 });
    expect(c.attr).toEqual(index(ATTR_FIELDS));
    expect(c.dirMeta).toEqual(index(DIR_META_FIELDS));
    expect(c.dirCache).toEqual({ length: 3, none: 0, fresh: 1, keep: 2 });
    expect(c.arena).toEqual(ARENA_LAYOUT);
  });

  it('accepts any numbering that is consistent, since the wrapper reads the numbers', () => {
    const c = fakeContract();
    const events = c.events as Record<string, { code: number }>;
    [events.lookup.code, events.sent.code] = [events.sent.code, events.lookup.code];
    c.attr = { ...c.attr, ino: 1, mode: 0 };
    expect(checkContract(c)).toBe(c);
  });

  it('names each difference, all at once', () => {
    const c = fakeContract();
    c.events = { ...c.events, lookup: { code: 0, args: 'ino:number name:string' }, sent: undefined, chmod: { code: 10, args: '' } };
    c.attr = { ...c.attr, length: 10 };
    c.setattr = { ...c.setattr, uid: c.setattr.mode, size: 3 };
    const message = rejection(c);
    expect(message).toContain('events.lookup carries ("ino:number name:string"), expected (parent:number name:string)');
    expect(message).toContain('events.sent is not an event with a code below events.length');
    expect(message).toContain('events.chmod is not known here');
    expect(message).toContain('attr.length is 10, expected 9');
    expect(message).toContain('setattr.uid and setattr.mode are both 1');
    expect(message).toContain('setattr.size is not a single bit');
  });

  it('refuses statistics laid out otherwise: reordered kinds, overlapping or missing counters', () => {
    const reordered = fakeContract();
    reordered.ops = ['forget', 'lookup', ...OP_NAMES.slice(2)];
    expect(rejection(reordered)).toContain('ops is ["forget","lookup"');
    const overlapping = fakeContract();
    overlapping.stats = { ...overlapping.stats, errors: 5 };
    expect(rejection(overlapping)).toContain('stats.errors overlaps stats.requests');
    const short = fakeContract();
    short.stats = { ...short.stats, overBudget: undefined, length: 33 };
    const message = rejection(short);
    expect(message).toContain('stats.length is 33, expected 34');
    expect(message).toContain('stats.overBudget is not an index in the statistics');
  });

  it('refuses a different arena layout, and a binding without a contract or a part of it', () => {
    const c = fakeContract();
    c.arena = { ...c.arena, wordsPerSlot: 4 };
    expect(rejection(c)).toContain('arena.wordsPerSlot is 4, expected 2');
    expect(() => checkContract(undefined)).toThrow(
      'statsfs_fuse.node exports no contract: it was built from other sources; rebuild it with npm run build:native',
    );
    const partial = fakeContract();
    delete partial.attr;
    expect(rejection(partial)).toMatch(/: attr is missing$/);
  });

  it('describes the arena as SlotArena lays it out', () => {
    const arena = new SlotArena(4);
    const slot = arena.alloc(1);
    arena.store(slot, 0x11111111, 0x22222222);
    expect(SEQ).toBe(ARENA_LAYOUT.sequenceWord);
    expect(slot).toBeGreaterThanOrEqual(ARENA_LAYOUT.firstSlot);
    expect(arena.u32[slot * ARENA_LAYOUT.wordsPerSlot]).toBe(0x11111111);
    expect(arena.u32[slot * ARENA_LAYOUT.wordsPerSlot + 1]).toBe(0x22222222);
  });
});
