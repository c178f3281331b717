/**
 * The adapter lets the native session answer opens of plain stored values itself (StoredValueServer).
 * These check, without FUSE, which values it registers, with which arena slot, and that every tree change
 * that could make an inode mean something else drops the registrations before any slot is reused.
 */
import { constants } from 'node:os';
import { describe, expect, it } from 'vitest';
import { StatsFsAdapter, type StoredValueServer } from '../../../src/fs/adapter.js';
import type { Attr } from '../../../src/fs/native.js';
import { arena, Schema, Source } from '../../../src/model/index.js';

const E = constants.errno;
const O_RDONLY = 0, O_WRONLY = 1, O_RDWR = 2;

const schema = new Schema([
  { name: 'count', type: 'u64', aggr: 'sum' },
  { name: 'level', type: 's32', aggr: 'min', floating: true },
  { name: 'state', type: 'u8', floating: true, show: (v) => (v === 0n ? 'down' : 'up') },
]);

/** Records what the adapter asks of the native session; `log` holds "serve ino slot signed" and "drop". */
class FakeServer implements StoredValueServer {
  readonly log: string[] = [];
  readonly served = new Map<number, { slot: number; signed: boolean; attr: Attr }>();
  serveStored(ino: number, slot: number, signed: boolean, attr: Attr): boolean {
    this.log.push(`serve ${ino}`);
    this.served.set(ino, { slot, signed, attr });
    return true;
  }
  dropStored(): void {
    this.log.push('drop');
    this.served.clear();
  }
  /** What the session thread would answer for ino: the arena word, formatted. */
  answer(ino: number): string | undefined {
    const e = this.served.get(ino);
    if (e === undefined) return undefined;
    const w = (BigInt(arena.u32[e.slot * 2 + 1]) << 32n) | BigInt(arena.u32[e.slot * 2]);
    return `${e.signed ? BigInt.asIntN(64, w) : w}\n`;
  }
}

function setup() {
  const root = Source.root();
  root.addAggregates(schema);
  const a = new Source('a');
  root.addSubordinate(a);
  const values = a.addValues(schema);
  values.set('count', 2n ** 64n - 1n);
  values.set('level', -5);
  const adapter = new StatsFsAdapter(root);
  const server = new FakeServer();
  adapter.storedServer = server;
  const ino = (dir: number, name: string) => {
    const r = adapter.lookup(dir, name);
    if (typeof r === 'number') throw new Error(`lookup ${name}: errno ${r}`);
    return r.attr.ino;
  };
  const aIno = ino(1, 'a');
  return { root, a, values, adapter, server, ino, aIno };
}

describe('adapter: stored values answered by the native session', () => {
  it('registers a plain value at its first read-only open, with its slot and signedness; the answer is the text open gives', () => {
    const { values, adapter, server, ino, aIno } = setup();
    const count = ino(aIno, 'count');
    const level = ino(aIno, 'level');
    expect(server.served.size).toBe(0);
    expect(adapter.open(count, O_RDONLY)).toBe('18446744073709551615\n');
    expect(adapter.open(level, O_RDONLY)).toBe('-5\n');
    expect(server.served.get(count)).toMatchObject({ signed: false });
    expect(server.served.get(level)).toMatchObject({ signed: true });
    expect(server.answer(count)).toBe('18446744073709551615\n');
    expect(server.answer(level)).toBe('-5\n');
    // and getattr answers what the adapter would
    expect(server.served.get(count)!.attr).toEqual(adapter.getattr(count));
    expect(server.served.get(level)!.attr).toEqual(adapter.getattr(level));
    // later writes are what the session reads: the registration points at the storage, not at a copy
    values.set('count', 42);
    values.set('level', -2147483648);
    expect(server.answer(count)).toBe(adapter.open(count, O_RDONLY));
    expect(server.answer(level)).toBe('-2147483648\n');
  });

  it('does not register aggregates, show() values, custom types, writable opens or values under a refresher', () => {
    const { root, adapter, server, ino, aIno } = setup();
    adapter.open(ino(1, 'count'), O_RDONLY); // aggregate
    adapter.open(ino(aIno, 'state'), O_RDONLY); // show()
    adapter.open(ino(aIno, 'count'), O_WRONLY);
    adapter.open(ino(aIno, 'count'), O_RDWR);
    const custom = new Source('custom');
    root.addSubordinate(custom);
    custom.addValues(new Schema([{ name: 'v', type: { name: 'live', signed: false, get: () => 7 } }]));
    expect(adapter.open(ino(ino(1, 'custom'), 'v'), O_RDONLY)).toBe('7\n');
    // a refresher could remove `a` on the next lookup; only JS would notice
    root.setRefresher(() => {});
    expect(adapter.open(ino(aIno, 'count'), O_RDONLY)).toBe('18446744073709551615\n');
    expect(server.log).toEqual([]);
  });

  it('drops every registration before storage is released or a name changes meaning', () => {
    const { root, a, adapter, server, ino, aIno } = setup();
    /** Opens a/<name> (looked up anew) so that it is registered; clears the log. */
    const registered = (name: string) => {
      const at = ino(aIno, name);
      expect(typeof adapter.open(at, O_RDONLY)).toBe('string');
      expect(server.served.has(at)).toBe(true);
      server.log.length = 0;
      return at;
    };

    // a visible group added beside another may shadow its names
    const count = registered('count');
    a.addValues(new Schema([{ name: 'count', type: 'u64' }]));
    expect(server.log).toEqual(['drop']);
    expect(adapter.open(count, O_RDONLY)).toBe(E.ENOENT); // the newest group with `count` wins now

    // a hidden group, a group on a source of its own, subordinates: nothing to drop (a subordinate named like
    // a value takes the name, but the value's inode still reads the value, as it does through JS)
    const again = registered('count');
    a.addValues(new Schema([{ name: 'other', type: 'u64' }]), { hidden: true });
    const b = new Source('b');
    root.addSubordinate(b);
    b.addValues(schema);
    a.addSubordinate(new Source('count'));
    expect(server.log).toEqual([]);
    expect(server.answer(again)).toBe(adapter.open(again, O_RDONLY));

    // removal and revocation: the drop comes while the slots still hold the group's words
    let seenAtDrop = new Map<number, string | undefined>();
    server.dropStored = function () {
      seenAtDrop = new Map([...this.served.keys()].map((i) => [i, this.answer(i)]));
      FakeServer.prototype.dropStored.call(this);
    };
    const c = new Source('c');
    root.addSubordinate(c);
    const cValues = c.addValues(schema);
    cValues.set('count', 9);
    const cCount = ino(ino(1, 'c'), 'count');
    expect(adapter.open(cCount, O_RDONLY)).toBe('9\n');
    c.removeValues(cValues);
    expect(seenAtDrop.get(cCount)).toBe('9\n');
    expect(adapter.open(cCount, O_RDONLY)).toBe(E.ENOENT);

    const d = new Source('d');
    root.addSubordinate(d);
    d.addValues(schema).set('count', 3);
    const dCount = ino(ino(1, 'd'), 'count');
    expect(adapter.open(dCount, O_RDONLY)).toBe('3\n');
    d.revoke();
    expect(seenAtDrop.get(dCount)).toBe('3\n');
    expect(server.served.size).toBe(0);

    // a source leaving the tree takes its values with it
    const e = new Source('e');
    root.addSubordinate(e);
    e.addValues(schema);
    const eCount = ino(ino(1, 'e'), 'count');
    expect(adapter.open(eCount, O_RDONLY)).toBe('0\n');
    root.removeSubordinate(e);
    expect(server.served.size).toBe(0);
    expect(adapter.open(eCount, O_RDONLY)).toBe(E.ENOENT);
  });
});
