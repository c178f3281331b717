/**
 * Behaviour of the model beyond what the kunit port covers: exact 64-bit arithmetic, aggregation corner
 * cases, visibility, clearing, modes, rendering, custom types, revoke, validation, tree rules, the observer
 * and slot storage.
 */
import { describe, expect, it } from 'vitest';
import {
  arena,
  isValidName,
  NAME_MAX,
  RESERVED_NAMES,
  Schema,
  SEQ,
  SlotArena,
  Source,
  StatsError,
  type Aggregation,
  type CustomType,
  type StandardTypeName,
  type StatsErrorCode,
  type TreeObserver,
  type ValueGroup,
} from '../../../src/model/index.js';
import { Accumulator } from '../../../src/model/aggregate.js';
import { SNAPSHOT_FILES } from '../../../src/export/snapshot-files.js';

const U64_MAX = 2n ** 64n - 1n;
const S64_MAX = 2n ** 63n - 1n;
const S64_MIN = -(2n ** 63n);
const TWO53 = 2n ** 53n;

function errorOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error('expected the call to throw');
}

function expectCode(fn: () => unknown, code: StatsErrorCode): void {
  const e = errorOf(fn);
  expect(e).toBeInstanceOf(StatsError);
  expect((e as StatsError).code).toBe(code);
}

/** One value of the given type and aggregation, in a fresh group of our own storage. */
function single(type: StandardTypeName, aggr: Aggregation = 'none'): { schema: Schema; src: Source; group: ValueGroup } {
  const schema = new Schema([{ name: 'v', type, aggr }]);
  const src = new Source('s');
  return { schema, src, group: src.addValues(schema) };
}

/** A parent with an aggregate group over `values.length` children each holding one value. */
function aggregateOver(
  type: StandardTypeName,
  aggr: Aggregation,
  values: readonly (number | bigint | boolean)[],
): { parent: Source; agg: ValueGroup } {
  const schema = new Schema([{ name: 'v', type, aggr }]);
  const parent = new Source('parent');
  const agg = parent.addAggregates(schema);
  values.forEach((v, i) => {
    const child = new Source(`c${i}`);
    child.addValues(schema).set('v', v);
    parent.addSubordinate(child);
  });
  return { parent, agg };
}

describe('exact 64-bit values', () => {
  it('keeps u64 exact near and above 2^53', () => {
    const { group } = single('u64');
    group.set('v', TWO53);
    group.add('v', 1);
    expect(group.get('v')).toBe(TWO53 + 1n);
    group.add('v', 1n);
    expect(group.get('v')).toBe(TWO53 + 2n);
    group.set('v', 2n ** 60n + 12345n);
    group.add('v', -12346);
    expect(group.get('v')).toBe(2n ** 60n - 1n);
    expect(group.render('v')).toBe(`${2n ** 60n - 1n}\n`);
  });

  it('holds U64_MAX and wraps past it', () => {
    const { group } = single('u64');
    group.set('v', U64_MAX);
    expect(group.get('v')).toBe(U64_MAX);
    expect(group.render('v')).toBe('18446744073709551615\n');
    group.add('v', 1);
    expect(group.get('v')).toBe(0n);
    group.add('v', -1);
    expect(group.get('v')).toBe(U64_MAX);
    group.set('v', 2n ** 64n + 7n);
    expect(group.get('v')).toBe(7n);
  });

  it('carries from the low half into the high half', () => {
    const { group } = single('u64');
    group.set('v', 0xffffffffn);
    group.add('v', 1);
    expect(group.get('v')).toBe(0x100000000n);
    group.add('v', -1);
    expect(group.get('v')).toBe(0xffffffffn);
    group.set('v', 2n ** 63n);
    group.add('v', 2n ** 63n);
    expect(group.get('v')).toBe(0n);
  });

  it('holds s64 min and max and wraps between them', () => {
    const { group } = single('s64');
    group.set('v', S64_MAX);
    expect(group.get('v')).toBe(S64_MAX);
    group.add('v', 1);
    expect(group.get('v')).toBe(S64_MIN);
    expect(group.render('v')).toBe('-9223372036854775808\n');
    group.add('v', -1);
    expect(group.get('v')).toBe(S64_MAX);
    group.set('v', -1);
    group.add('v', -1n);
    expect(group.get('v')).toBe(-2n);
    expect(group.render('v')).toBe('-2\n');
    group.set('v', -(2n ** 40n) - 3n);
    expect(group.get('v')).toBe(-(2n ** 40n) - 3n);
    expect(group.render('v')).toBe(`${-(2n ** 40n) - 3n}\n`);
  });

  it('refuses numbers that are not exact rather than losing bits', () => {
    const { group } = single('u64');
    group.set('v', 5);
    expect(() => group.set('v', 2 ** 53)).toThrow(RangeError);
    expect(() => group.add('v', 1.5)).toThrow(RangeError);
    expect(group.get('v')).toBe(5n);
  });

  // [type, value set, value read back]
  const setCases: [StandardTypeName, number | bigint | boolean, bigint][] = [
    ['u8', 255, 255n],
    ['u8', 256, 0n],
    ['u8', -1, 255n],
    ['u8', 2n ** 64n + 5n, 5n],
    ['s8', 127, 127n],
    ['s8', 128, -128n],
    ['s8', -129, 127n],
    ['s8', 255, -1n],
    ['u16', 65536, 0n],
    ['u16', -1, 65535n],
    ['s16', 32768, -32768n],
    ['s16', -32769, 32767n],
    ['u32', 2 ** 32, 0n],
    ['u32', -1, 4294967295n],
    ['u32', 2n ** 32n + 9n, 9n],
    ['s32', 2 ** 31, -2147483648n],
    ['s32', -(2 ** 31) - 1, 2147483647n],
    ['s32', 0xffffffff, -1n],
    ['u64', -1, U64_MAX],
    ['u64', 2n ** 64n, 0n],
    ['s64', 2n ** 63n, S64_MIN],
    ['s64', S64_MIN - 1n, S64_MAX],
    ['s64', U64_MAX, -1n],
    ['bool', true, 1n],
    ['bool', false, 0n],
    ['bool', 256, 1n], // C bool conversion: any nonzero is true, not the low byte
    ['bool', 2n ** 32n, 1n],
    ['bool', -1, 1n],
    ['bool', 0, 0n],
  ];
  it.each(setCases)('set(%s, %s) reads %s like the C type', (type, value, expected) => {
    const { group } = single(type);
    group.set('v', value);
    expect(group.get('v')).toBe(expected);
    expect(group.render('v')).toBe(`${expected}\n`);
  });

  // [type, start, delta, result]
  const addCases: [StandardTypeName, number | bigint | boolean, number | bigint, bigint][] = [
    ['u8', 255, 1, 0n],
    ['u8', 0, -1, 255n],
    ['u8', 200, 100, 44n],
    ['s8', 127, 1, -128n],
    ['s8', -128, -1, 127n],
    ['s8', -1, 1, 0n],
    ['u16', 65535, 1, 0n],
    ['u16', 0, -2, 65534n],
    ['s16', 32767, 1, -32768n],
    ['s16', -32768, -1, 32767n],
    ['u32', 4294967295, 1, 0n],
    ['u32', 0, -1, 4294967295n],
    ['s32', 2147483647, 1, -2147483648n],
    ['s32', -2147483648, -1, 2147483647n],
    ['s32', -1, 1, 0n],
    ['u64', U64_MAX, 1, 0n],
    ['u64', 0, -1, U64_MAX],
    ['s64', S64_MAX, 1n, S64_MIN],
    ['s64', S64_MIN, -1, S64_MAX],
    ['bool', true, 1, 1n], // true + 1 == 2, stored in a bool: true
    ['bool', true, -1, 0n],
    ['bool', false, 2, 1n],
    ['bool', false, 0, 0n],
  ];
  it.each(addCases)('add on %s: %s + %s wraps to %s', (type, start, delta, expected) => {
    const { group } = single(type);
    group.set('v', start);
    group.add('v', delta);
    expect(group.get('v')).toBe(expected);
  });

  /** The (lo, hi) halves of `v` as a u64 pattern, as the producer protocol carries a word. */
  const halves = (v: number | bigint | boolean): [number, number] => {
    const u = BigInt.asUintN(64, BigInt(v));
    return [Number(u & 0xffffffffn), Number(u >> 32n)];
  };
  it.each(addCases)('setWord/addWord on %s: %s + %s wraps to %s, as set/add do', (type, start, delta, expected) => {
    const { group } = single(type);
    group.setWord(0, ...halves(start));
    group.addWord(0, ...halves(delta));
    expect(group.get('v')).toBe(expected);
  });

  it('setWord narrows to the type, and refuses what set refuses', () => {
    const schema = new Schema([
      { name: 'b', type: 'u8' },
      { name: 's', type: 's16' },
      { name: 'h', type: 'histogram' },
    ]);
    const group = new Source('s').addValues(schema);
    group.setWord(0, 0x1ff, 7);
    expect(group.get('b')).toBe(0xffn);
    group.setWord(1, 0xffff, 0);
    expect(group.get('s')).toBe(-1n);
    expect(() => group.setWord(2, 1, 0)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    const agg = new Source('a').addAggregates(schema);
    expect(() => agg.addWord(0, 1, 0)).toThrow(expect.objectContaining({ code: 'EPERM' }));
  });

  it('narrows values read from an object base to the field type', () => {
    const schema = new Schema([
      { name: 'a', type: 'u8' },
      { name: 'b', type: 's16' },
      { name: 'c', type: 'u64' },
      { name: 'd', type: 'bool' },
    ]);
    const base = { a: 0x1ff, b: 0xffff, c: U64_MAX, d: 42 };
    const group = new Source('s').addValues(schema, { base });
    expect(group.get('a')).toBe(0xffn);
    expect(group.get('b')).toBe(-1n);
    expect(group.get('c')).toBe(U64_MAX);
    expect(group.get('d')).toBe(1n);
  });

  it('keeps the JS type of object fields, switching to bigint only when a number would not be exact', () => {
    const schema = new Schema([
      { name: 'n', type: 'u64' },
      { name: 'big', type: 'u64' },
      { name: 'flag', type: 'bool' },
      { name: 's', type: 's64' },
    ]);
    const base: Record<string, unknown> = { n: 1, big: 1n, flag: true, s: 0 };
    const group = new Source('s').addValues(schema, { base });
    group.add('n', 41);
    expect(base.n).toBe(42);
    group.set('n', TWO53);
    expect(base.n).toBe(TWO53); // above MAX_SAFE_INTEGER: stored as bigint
    group.add('n', 1);
    expect(base.n).toBe(TWO53 + 1n);
    group.add('big', 1);
    expect(base.big).toBe(2n);
    group.set('flag', 0);
    expect(base.flag).toBe(false);
    group.add('s', -5);
    expect(base.s).toBe(-5);
    group.set('s', S64_MIN);
    expect(base.s).toBe(S64_MIN);
  });

  it('reads the field named by `field`, and a missing field as 0', () => {
    const schema = new Schema([
      { name: 'rx_bytes', type: 'u64', field: 'rxBytes' },
      { name: 'absent', type: 's32' },
    ]);
    const base = { rxBytes: 77n };
    const src = new Source('eth0');
    src.addValues(schema, { base });
    expect(src.getValue('rx_bytes')).toBe(77n);
    expect(src.getValue('absent')).toBe(0n);
  });
});

describe('aggregation', () => {
  it('wraps a sum at 2^64 across subordinates', () => {
    const { agg } = aggregateOver('u64', 'sum', [U64_MAX, U64_MAX, 5]);
    // 2 * (2^64 - 1) + 5 = 2^65 + 3
    expect(agg.get('v')).toBe(3n);
    expect(agg.render('v')).toBe('3\n');
  });

  it('sums exactly above 2^53', () => {
    const { agg } = aggregateOver('u64', 'sum', [TWO53, 1, 1, 2n ** 62n]);
    expect(agg.get('v')).toBe(TWO53 + 2n + 2n ** 62n);
  });

  it('wraps a signed sum and reads it as s64', () => {
    const { agg } = aggregateOver('s64', 'sum', [S64_MAX, 1]);
    expect(agg.get('v')).toBe(S64_MIN);
    const small = aggregateOver('s8', 'sum', [-100, -100, -100]);
    // narrow values are sign-extended before summing: the sum is not narrowed back
    expect(small.agg.get('v')).toBe(-300n);
  });

  it('keeps the sum exact over more values than one fold period', () => {
    const n = (1 << 20) + 3;
    const sum = new Accumulator(false, 'sum');
    const avg = new Accumulator(false, 'avg');
    for (let i = 0; i < n; i++) {
      sum.add(0xffffffff, 0xffffffff);
      avg.add(0xffffffff, 0xffffffff);
    }
    expect(sum.count).toBe(n);
    expect(sum.result()).toBe(BigInt.asUintN(64, -BigInt(n)));
    expect(avg.result()).toBe(U64_MAX); // the mean of n copies of U64_MAX, though their sum is far beyond 2^64
    const acc2 = new Accumulator(false, 'sum');
    for (let i = 0; i < n; i++) acc2.add(0x80000001, 0);
    expect(acc2.result()).toBe(0x80000001n * BigInt(n));
  });

  it('compares min and max as signed or unsigned by the type', () => {
    const s = aggregateOver('s64', 'min', [-1, 1]);
    expect(s.agg.get('v')).toBe(-1n);
    expect(aggregateOver('s64', 'max', [-1, 1]).agg.get('v')).toBe(1n);
    // the same bit patterns as u64
    expect(aggregateOver('u64', 'min', [U64_MAX, 1]).agg.get('v')).toBe(1n);
    expect(aggregateOver('u64', 'max', [U64_MAX, 1]).agg.get('v')).toBe(U64_MAX);
    // high halves equal, low halves above 2^31
    expect(aggregateOver('s64', 'min', [-1, -(2 ** 31)]).agg.get('v')).toBe(-(2n ** 31n));
    expect(aggregateOver('s64', 'max', [-1, -(2 ** 31)]).agg.get('v')).toBe(-1n);
    // differing only in the high half
    expect(aggregateOver('s64', 'min', [2 ** 32, -(2 ** 32)]).agg.get('v')).toBe(-(2n ** 32n));
    expect(aggregateOver('u64', 'max', [2n ** 63n, S64_MAX]).agg.get('v')).toBe(2n ** 63n);
    expect(aggregateOver('s64', 'max', [S64_MIN, S64_MAX]).agg.get('v')).toBe(S64_MAX);
    // narrow types: s32 compares sign-extended, u32 does not
    expect(aggregateOver('s32', 'min', [-5, 3]).agg.get('v')).toBe(-5n);
    expect(aggregateOver('u32', 'min', [0xffffffff, 3]).agg.get('v')).toBe(3n);
    expect(aggregateOver('u32', 'max', [0xffffffff, 3]).agg.get('v')).toBe(0xffffffffn);
  });

  it('counts zeros', () => {
    expect(aggregateOver('u32', 'count_zero', [0, 5, 0, 0]).agg.get('v')).toBe(3n);
    expect(aggregateOver('s64', 'count_zero', [-1, 1]).agg.get('v')).toBe(0n);
    expect(aggregateOver('bool', 'count_zero', [false, true, false]).agg.get('v')).toBe(2n);
  });

  it('truncates averages, toward zero for signed types', () => {
    expect(aggregateOver('u8', 'avg', [1, 2]).agg.get('v')).toBe(1n);
    expect(aggregateOver('u32', 'avg', [10, 10, 11]).agg.get('v')).toBe(10n);
    expect(aggregateOver('s32', 'avg', [-3, -4]).agg.get('v')).toBe(-3n); // -3.5: not -4
    expect(aggregateOver('s64', 'avg', [-1, 0]).agg.get('v')).toBe(0n);
    expect(aggregateOver('s16', 'avg', [-10, 4, -3]).agg.get('v')).toBe(-3n);
    expect(aggregateOver('u64', 'avg', [TWO53 + 1n, TWO53 + 3n]).agg.get('v')).toBe(TWO53 + 2n);
  });

  // The original divided a sum that had wrapped at 2^64; the mean is computed from the exact sum instead.
  it('averages from the exact sum, beyond 2^64 and below -2^63', () => {
    expect(aggregateOver('u64', 'avg', [U64_MAX, 1n]).agg.get('v')).toBe(2n ** 63n);
    expect(aggregateOver('u64', 'avg', [U64_MAX, U64_MAX]).agg.get('v')).toBe(U64_MAX);
    expect(aggregateOver('u64', 'avg', [U64_MAX, U64_MAX, 0n]).agg.get('v')).toBe((2n * U64_MAX) / 3n);
    expect(aggregateOver('s64', 'avg', [S64_MIN, -1n]).agg.get('v')).toBe(-(2n ** 62n)); // -(2^63 + 1) / 2, toward zero
    expect(aggregateOver('s64', 'avg', [S64_MIN, S64_MIN]).agg.get('v')).toBe(S64_MIN);
    expect(aggregateOver('s64', 'avg', [S64_MAX, S64_MAX, S64_MAX]).agg.get('v')).toBe(S64_MAX);
    expect(aggregateOver('s64', 'avg', [S64_MAX, S64_MIN]).agg.get('v')).toBe(0n); // -1 / 2
    expect(aggregateOver('s64', 'avg', [S64_MIN, S64_MIN, 1n]).agg.get('v')).toBe((2n * S64_MIN + 1n) / 3n);
  });

  it('averages exactly over more values than one fold period, signed and unsigned', () => {
    const n = (1 << 20) + 7;
    const u = new Accumulator(false, 'avg');
    const s = new Accumulator(true, 'avg');
    for (let i = 0; i < n; i++) {
      u.add(0xffffffff, 0xffffffff); // U64_MAX
      s.add(0, 0x80000000); // S64_MIN
    }
    u.add(0, 0);
    s.add(0, 0);
    expect(u.result()).toBe((U64_MAX * BigInt(n)) / BigInt(n + 1));
    expect(s.result()).toBe((S64_MIN * BigInt(n)) / BigInt(n + 1));
  });

  // [aggregation, signed type result, unsigned type result] with nothing to aggregate
  const sentinels: [Aggregation, bigint, bigint][] = [
    ['sum', 0n, 0n],
    ['avg', 0n, 0n],
    ['count_zero', 0n, 0n],
    ['min', S64_MAX, U64_MAX],
    ['max', S64_MIN, 0n],
  ];
  it.each(sentinels)('empty %s reads %s when signed and %s when unsigned', (aggr, signed, unsigned) => {
    for (const type of ['s8', 's16', 's32', 's64'] as const) {
      const { agg } = aggregateOver(type, aggr, []);
      expect(agg.get('v')).toBe(signed);
      expect(agg.render('v')).toBe(`${signed}\n`);
    }
    for (const type of ['u8', 'u16', 'u32', 'u64', 'bool'] as const) {
      const { agg } = aggregateOver(type, aggr, []);
      expect(agg.get('v')).toBe(unsigned);
      expect(agg.render('v')).toBe(`${unsigned}\n`);
    }
  });

  it('counts the source own values and every level below, but no aggregate twice', () => {
    const schema = new Schema([{ name: 'n', type: 'u64', aggr: 'sum' }]);
    const top = new Source('top');
    const mid = new Source('mid');
    const leaf1 = new Source('leaf1');
    const leaf2 = new Source('leaf2');
    top.addSubordinate(mid);
    mid.addSubordinate(leaf1);
    mid.addSubordinate(leaf2);
    const topAgg = top.addAggregates(schema);
    const midAgg = mid.addAggregates(schema);
    top.addValues(schema, { base: { n: 1000 } });
    mid.addValues(schema, { base: { n: 100 } });
    leaf1.addValues(schema).set('n', 10);
    leaf2.addValues(schema).set('n', 1);
    expect(midAgg.get('n')).toBe(111n);
    expect(topAgg.get('n')).toBe(1111n);
    // the value found by name is the most recently added group's: the simple value
    expect(top.getValue('n')).toBe(1000n);
  });

  it('aggregates only values of its own schema', () => {
    const a = new Schema([{ name: 'x', type: 'u32', aggr: 'sum' }]);
    const b = new Schema([{ name: 'x', type: 'u32', aggr: 'sum' }]);
    const parent = new Source('p');
    const aggA = parent.addAggregates(a);
    const child = new Source('c');
    parent.addSubordinate(child);
    child.addValues(a).set('x', 3);
    child.addValues(b).set('x', 40);
    expect(aggA.get('x')).toBe(3n);
  });

  it('reads an aggregate of a definition without aggregation as 0', () => {
    const schema = new Schema([{ name: 'x', type: 'u32' }]);
    const parent = new Source('p');
    const agg = parent.addAggregates(schema);
    const child = new Source('c');
    parent.addSubordinate(child);
    child.addValues(schema).set('x', 9);
    expect(agg.get('x')).toBe(0n);
  });

  it('follows the tree as it changes', () => {
    const { parent, agg } = aggregateOver('u32', 'sum', [1, 2, 4]);
    const c1 = parent.subordinates[1];
    parent.removeSubordinate(c1);
    expect(agg.get('v')).toBe(5n);
    parent.addSubordinate(c1);
    expect(agg.get('v')).toBe(7n);
  });
});

describe('hidden sources and groups', () => {
  it('aggregates a hidden source but does not show it', () => {
    const schema = new Schema([{ name: 'n', type: 'u32', aggr: 'sum' }]);
    const parent = new Source('vm');
    const agg = parent.addAggregates(schema);
    const shown = new Source('vcpu0');
    const hidden = new Source('vcpu1', { hidden: true });
    parent.addSubordinate(shown);
    parent.addSubordinate(hidden);
    shown.addValues(schema).set('n', 1);
    hidden.addValues(schema).set('n', 2);
    expect(agg.get('n')).toBe(3n);
    expect(parent.subordinates).toEqual([shown, hidden]);
    expect(parent.visibleSubordinates()).toEqual([shown]);
    expect(parent.subordinate('vcpu0')).toBe(shown);
    expect(parent.subordinate('vcpu1')).toBeUndefined();
  });

  it('lets a hidden source share a name with a visible one, and hidden ones with each other', () => {
    const parent = new Source('p');
    const visible = new Source('x');
    const h1 = new Source('x', { hidden: true });
    const h2 = new Source('x', { hidden: true });
    parent.addSubordinate(h1);
    parent.addSubordinate(visible);
    parent.addSubordinate(h2);
    expect(parent.subordinate('x')).toBe(visible);
    parent.removeSubordinate(h1);
    expect(parent.subordinate('x')).toBe(visible);
    parent.removeSubordinate(visible);
    expect(parent.subordinate('x')).toBeUndefined();
    expect(parent.subordinates).toEqual([h2]);
  });

  it('aggregates a hidden group but does not list it', () => {
    const schema = new Schema([{ name: 'n', type: 'u32', aggr: 'max' }]);
    const other = new Schema([{ name: 'm', type: 'u32' }]);
    const parent = new Source('p');
    const agg = parent.addAggregates(schema);
    const child = new Source('c');
    parent.addSubordinate(child);
    const hiddenGroup = child.addValues(schema, { hidden: true });
    hiddenGroup.set('n', 8);
    const shownGroup = child.addValues(other);
    expect(hiddenGroup.hidden).toBe(true);
    expect(agg.get('n')).toBe(8n);
    expect(child.visibleValues().map((v) => v.def.name)).toEqual(['m']);
    expect(child.visibleValues()[0].group).toBe(shownGroup);
    expect(child.findValue('n', true)).toBeUndefined();
    expect(child.findValue('n')?.group).toBe(hiddenGroup);
    expect(child.getValue('n')).toBe(8n);
  });

  it('lists visible values once per name, the newest group first, and not under a subdirectory name', () => {
    const s1 = new Schema([{ name: 'a', type: 'u8' }, { name: 'b', type: 'u8' }]);
    const s2 = new Schema([{ name: 'b', type: 'u8' }, { name: 'sub', type: 'u8' }]);
    const src = new Source('s');
    const g1 = src.addValues(s1);
    const g2 = src.addValues(s2);
    src.addSubordinate(new Source('sub'));
    const listed = src.visibleValues().map((v) => [v.def.name, v.group] as const);
    expect(listed).toEqual([
      ['b', g2],
      ['a', g1],
    ]);
    g1.set('b', 1);
    g2.set('b', 2);
    expect(src.getValue('b')).toBe(2n);
  });
});

describe('clearing', () => {
  it('clears a simple value in our storage and in an object base', () => {
    const schema = new Schema([{ name: 'n', type: 'u64' }, { name: 'f', type: 'bool' }, { name: 'k', type: 'u64' }]);
    const own = new Source('own').addValues(schema);
    own.set('n', U64_MAX);
    own.set('k', 5);
    own.clear('n');
    expect(own.get('n')).toBe(0n);
    expect(own.get('k')).toBe(5n);

    const base: Record<string, unknown> = { n: 2n ** 60n, f: true, k: 3 };
    const src = new Source('obj');
    src.addValues(schema, { base });
    src.clear('n');
    src.clear('f');
    expect(base).toEqual({ n: 0n, f: false, k: 3 });
    expectCode(() => src.clear('nope'), 'ENOENT');
  });

  it('clears through an aggregate every matching value below, hidden ones included, and nothing else', () => {
    const schema = new Schema([
      { name: 'n', type: 'u32', aggr: 'sum' },
      { name: 'm', type: 'u32', aggr: 'sum' },
    ]);
    const other = new Schema([{ name: 'n', type: 'u32', aggr: 'sum' }]);
    const top = new Source('top');
    const agg = top.addAggregates(schema);
    const ownValues = top.addValues(schema);
    const visible = new Source('a');
    const hiddenSrc = new Source('b', { hidden: true });
    const deep = new Source('deep');
    top.addSubordinate(visible);
    top.addSubordinate(hiddenSrc);
    hiddenSrc.addSubordinate(deep);
    const outsider = new Source('outside');

    const groups = [
      ownValues,
      visible.addValues(schema),
      visible.addValues(schema, { hidden: true, base: { n: 7, m: 7 } }),
      hiddenSrc.addValues(schema),
      deep.addValues(schema),
    ];
    for (const g of groups) {
      g.set('n', 5);
      g.set('m', 6);
    }
    const otherGroup = visible.addValues(other);
    otherGroup.set('n', 9);
    const outsiderGroup = outsider.addValues(schema);
    outsiderGroup.set('n', 11);

    expect(agg.get('n')).toBe(25n);
    top.clear('n'); // found first: the simple value added after the aggregate
    expect(ownValues.get('n')).toBe(0n);
    expect(agg.get('n')).toBe(20n);

    agg.clear('n');
    for (const g of groups) {
      expect(g.get('n')).toBe(0n);
      expect(g.get('m')).toBe(6n);
    }
    expect(agg.get('n')).toBe(0n);
    expect(agg.get('m')).toBe(30n);
    expect(otherGroup.get('n')).toBe(9n);
    expect(outsiderGroup.get('n')).toBe(11n);
  });

  it('refuses to clear floating values and custom values without clear', () => {
    const readOnly: CustomType<{ x: number }> = { name: 'ro', signed: false, get: (b) => b.x };
    const schema = new Schema([
      { name: 'level', type: 'u32', aggr: 'max', floating: true },
      { name: 'custom', type: readOnly, aggr: 'sum' },
      { name: 'count', type: 'u32', aggr: 'sum' },
    ]);
    const parent = new Source('p');
    const agg = parent.addAggregates(schema);
    const child = new Source('c');
    parent.addSubordinate(child);
    const base = { level: 4, custom: 0, count: 2, x: 3 };
    const values = child.addValues(schema, { base });
    expectCode(() => values.clear('level'), 'EPERM');
    expectCode(() => child.clear('level'), 'EPERM');
    expectCode(() => agg.clear('level'), 'EPERM');
    expectCode(() => values.clear('custom'), 'EPERM');
    expectCode(() => agg.clear('custom'), 'EPERM');
    expect(base.level).toBe(4);
    expect(values.get('custom')).toBe(3n);
    values.clear('count');
    expect(base.count).toBe(0);
  });

  it('refuses writes to aggregates and custom values', () => {
    const custom: CustomType = { name: 'c', signed: false, get: () => 1 };
    const schema = new Schema([{ name: 'n', type: 'u32', aggr: 'sum' }, { name: 'c', type: custom }]);
    const src = new Source('s');
    const agg = src.addAggregates(schema);
    expectCode(() => agg.set('n', 1), 'EPERM');
    expectCode(() => agg.add('n', 1), 'EPERM');
    const values = new Source('t').addValues(schema, { base: {} });
    expectCode(() => values.set('c', 1), 'EPERM');
    expectCode(() => values.add('c', 1), 'EPERM');
    expectCode(() => values.get('nope'), 'ENOENT');
    expectCode(() => values.get(5), 'ENOENT');
  });
});

describe('modes', () => {
  it('derives the mode from floating and clearability, unless given', () => {
    const withClear: CustomType = { name: 'wc', signed: false, get: () => 0, clear: () => {} };
    const without: CustomType = { name: 'wo', signed: false, get: () => 0 };
    const schema = new Schema([
      { name: 'floating', type: 'u64', floating: true },
      { name: 'cumulative', type: 'u64' },
      { name: 'explicit', type: 'u64', mode: 0o600 },
      { name: 'explicit_floating', type: 'u64', floating: true, mode: 0o640 },
      { name: 'custom_clear', type: withClear },
      { name: 'custom_ro', type: without },
      { name: 'agg', type: 's32', aggr: 'sum' },
    ]);
    const modes = Object.fromEntries(schema.defs.map((d) => [d.name, d.mode]));
    expect(modes).toEqual({
      floating: 0o444,
      cumulative: 0o644,
      explicit: 0o600,
      explicit_floating: 0o640,
      custom_clear: 0o644,
      custom_ro: 0o444,
      agg: 0o644,
    });
    expect(schema.defs.map((d) => d.clearable)).toEqual([false, true, true, false, true, false, true]);
  });

  it('rejects modes that are not permission bits', () => {
    for (const mode of [0o1000, -1, 1.5, 0o4755, Number.NaN]) {
      expectCode(() => new Schema([{ name: 'x', type: 'u8', mode }]), 'EINVAL');
    }
    expect(new Schema([{ name: 'x', type: 'u8', mode: 0 }]).defs[0].mode).toBe(0);
    expect(new Schema([{ name: 'x', type: 'u8', mode: 0o777 }]).defs[0].mode).toBe(0o777);
  });
});

describe('rendering', () => {
  it('prints %llu / %lld with a newline, or the show() text', () => {
    const states = ['RUNNABLE', 'UNINITIALIZED', 'INIT_RECEIVED', 'HALTED'];
    const schema = new Schema([
      { name: 'mp_state', type: 'u32', show: (v) => states[Number(v)] ?? `unknown ${v}` },
      { name: 'offset', type: 's64', floating: true },
      { name: 'u', type: 'u64' },
      { name: 'flag', type: 'bool', aggr: 'max', show: (v) => (v ? 'yes' : 'no') },
    ]);
    const group = new Source('vcpu0').addValues(schema);
    group.set('mp_state', 3);
    group.set('offset', -123456789012345n);
    group.set('u', 2n ** 63n);
    expect(group.render('mp_state')).toBe('HALTED\n');
    group.set('mp_state', 9);
    expect(group.render('mp_state')).toBe('unknown 9\n');
    expect(group.render('offset')).toBe('-123456789012345\n');
    expect(group.render('u')).toBe('9223372036854775808\n');
    expect(group.render('flag')).toBe('no\n');
    group.set('flag', true);
    expect(group.render('flag')).toBe('yes\n');

    const parent = new Source('vm');
    const agg = parent.addAggregates(schema);
    expect(agg.render('flag')).toBe('no\n'); // max of nothing: 0, through show()
    const sub = new Source('vcpu0');
    parent.addSubordinate(sub);
    sub.addValues(schema).set('offset', -7);
    expect(agg.render('offset')).toBe('0\n'); // no aggregation
    expect(agg.render('flag')).toBe('no\n');
    const sub2 = new Source('vcpu1');
    parent.addSubordinate(sub2);
    sub2.addValues(schema).set('flag', 1);
    expect(agg.render('flag')).toBe('yes\n');
  });
});

describe('custom types', () => {
  interface Counter {
    raw: bigint;
    cleared: string[];
  }
  const counterType: CustomType<Counter> = {
    name: 'counter',
    signed: false,
    get: (base) => base.raw,
    clear: (base, name) => {
      base.cleared.push(name);
      base.raw = 0n;
    },
  };
  const signedType: CustomType<{ v: number }> = { name: 'delta', signed: true, get: (base) => base.v };

  it('reads through get(), with the type signedness, and clears through clear()', () => {
    const schema = new Schema([
      { name: 'hits', type: counterType, aggr: 'sum' },
      { name: 'delta', type: signedType, aggr: 'min' },
    ]);
    const a = { raw: U64_MAX, cleared: [] as string[], v: -5 };
    const b = { raw: 2n, cleared: [] as string[], v: 3 };
    const parent = new Source('p');
    const agg = parent.addAggregates(schema);
    const ca = new Source('a');
    const cb = new Source('b');
    parent.addSubordinate(ca);
    parent.addSubordinate(cb);
    ca.addValues(schema, { base: a });
    cb.addValues(schema, { base: b });
    expect(ca.getValue('hits')).toBe(U64_MAX);
    expect(ca.getValue('delta')).toBe(-5n);
    expect(ca.findValue('delta')!.group.render('delta')).toBe('-5\n');
    expect(agg.get('hits')).toBe(1n); // wrapped
    expect(agg.get('delta')).toBe(-5n);

    agg.clear('hits');
    expect(a.cleared).toEqual(['hits']);
    expect(b.cleared).toEqual(['hits']);
    expect(agg.get('hits')).toBe(0n);
    ca.clear('hits');
    expect(a.cleared).toEqual(['hits', 'hits']);
  });

  it('reads a negative result of an unsigned get() as its u64 pattern', () => {
    const t: CustomType = { name: 't', signed: false, get: () => -1 };
    const src = new Source('s');
    src.addValues(new Schema([{ name: 'x', type: t }]), { base: {} });
    expect(src.getValue('x')).toBe(U64_MAX);
  });

  it('propagates an error thrown by get() as it is', () => {
    const failure = new Error('cannot read /proc/whatever');
    const failing: CustomType = {
      name: 'failing',
      signed: false,
      get: () => {
        throw failure;
      },
    };
    const schema = new Schema([{ name: 'x', type: failing, aggr: 'sum' }]);
    const parent = new Source('p');
    const agg = parent.addAggregates(schema);
    const child = new Source('c');
    parent.addSubordinate(child);
    child.addValues(schema, { base: {} });
    expect(errorOf(() => child.getValue('x'))).toBe(failure);
    expect(errorOf(() => child.findValue('x')!.group.render('x'))).toBe(failure);
    expect(errorOf(() => agg.get('x'))).toBe(failure);
  });
});

describe('revoke', () => {
  it('turns values into aggregates that no longer read the storage', () => {
    const schema = new Schema([
      { name: 'n', type: 'u64', aggr: 'sum' },
      { name: 'lo', type: 's32', aggr: 'min' },
      { name: 'plain', type: 'u8' },
    ]);
    const parent = new Source('p');
    const agg = parent.addAggregates(schema);
    const owner = new Source('owner');
    parent.addSubordinate(owner);
    const base = { n: 7, lo: -3, plain: 9 };
    const group = owner.addValues(schema, { base });
    const other = new Source('other');
    parent.addSubordinate(other);
    other.addValues(schema).set('n', 100);
    expect(agg.get('n')).toBe(107n);

    const changes: Source[] = [];
    parent.observe({ valuesChanged: (s) => changes.push(s) });
    owner.revoke();
    expect(changes).toEqual([owner]);
    expect(group.storage).toBe('aggregate');
    expect(group.isAggregate).toBe(true);
    base.n = 1000;
    expect(owner.getValue('n')).toBe(0n);
    expect(owner.getValue('lo')).toBe(S64_MAX);
    expect(owner.getValue('plain')).toBe(0n);
    expect(agg.get('n')).toBe(100n);
    expectCode(() => group.set('n', 1), 'EPERM');
  });

  it('releases slot storage and then aggregates what is below', () => {
    const schema = new Schema([{ name: 'n', type: 'u32', aggr: 'sum' }]);
    const mid = new Source('mid');
    const group = mid.addValues(schema);
    group.set('n', 5);
    const leaf = new Source('leaf');
    mid.addSubordinate(leaf);
    leaf.addValues(schema).set('n', 40);
    const before = arena.usage.used;
    mid.revoke();
    expect(arena.usage.used).toBe(before - 1);
    expect(mid.getValue('n')).toBe(40n);
    mid.revoke(); // twice is harmless
    expect(arena.usage.used).toBe(before - 1);
    mid.removeValues(group);
    expect(arena.usage.used).toBe(before - 1);
  });
});

describe('names', () => {
  const bad = ['', '.', '..', 'a/b', '/', '\0', 'a\0b', 'a\nb', '\t', '\x1f', '\x7f', 'x'.repeat(NAME_MAX + 1)];

  it('rejects names that cannot be a path component', () => {
    expect(NAME_MAX).toBe(99);
    for (const name of bad) {
      expectCode(() => new Source(name), 'EINVAL');
      expectCode(() => new Schema([{ name, type: 'u8' }]), 'EINVAL');
      expect(isValidName(name)).toBe(false);
    }
  });

  it('refuses the names of the snapshot files every source shows, which they would shadow', () => {
    for (const name of ['.snapshot', '.snapshot.json', '.snapshot.bin']) {
      expectCode(() => new Source(name), 'EINVAL');
      expectCode(() => new Schema([{ name, type: 'u8' }]), 'EINVAL');
    }
    for (const name of RESERVED_NAMES) expect(isValidName(name)).toBe(false);
    expect(new Source('.snapshot.old').name).toBe('.snapshot.old');
    // the same list as the files the mount serves
    expect([...RESERVED_NAMES].sort()).toEqual(Object.keys(SNAPSHOT_FILES).sort());
  });

  it('accepts 99 characters, spaces and dots inside a name', () => {
    for (const name of ['x'.repeat(99), 'not a child', '...', '.hidden', 'kvm_123', 'é']) {
      expect(new Source(name).name).toBe(name);
      expect(new Schema([{ name, type: 'u8' }]).defs[0].name).toBe(name);
      expect(isValidName(name)).toBe(true);
    }
  });

  it('rejects unknown types and aggregations', () => {
    expectCode(() => new Schema([{ name: 'x', type: 'u128' as StandardTypeName }]), 'EINVAL');
    expectCode(() => new Schema([{ name: 'x', type: 'u8', aggr: 'median' as Aggregation }]), 'EINVAL');
  });
});

describe('tree rules', () => {
  it('refuses a second visible subordinate of the same name', () => {
    const p = new Source('p');
    p.addSubordinate(new Source('x'));
    const dup = new Source('x');
    expectCode(() => p.addSubordinate(dup), 'EEXIST');
    expect(p.subordinates).toHaveLength(1);
    expect(dup.parent).toBeNull();
  });

  it('keeps order, names and hidden subordinates right through random adds and removals', () => {
    const p = new Source('p');
    const other = new Source('other');
    const model: Source[] = [];
    let seed = 12345;
    const rand = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) % n);
    for (let step = 0; step < 4000; step++) {
      if (model.length > 0 && rand(3) === 0) {
        const victim = model.splice(rand(model.length), 1)[0];
        expectCode(() => other.removeSubordinate(victim), 'ENOENT');
        p.removeSubordinate(victim);
        expectCode(() => p.removeSubordinate(victim), 'ENOENT');
      } else {
        const hidden = rand(4) === 0;
        const name = hidden ? `h${rand(5)}` : `v${step}`;
        const s = new Source(name, { hidden });
        p.addSubordinate(s);
        model.push(s);
      }
    }
    expect(p.subordinates).toEqual(model);
    for (const s of model) {
      if (s.hidden) expect(p.hiddenSubordinates(s.name)).toContain(s);
      else expect(p.subordinate(s.name)).toBe(s);
    }
    for (let h = 0; h < 5; h++) expect([...p.hiddenSubordinates(`h${h}`)]).toEqual(model.filter((s) => s.name === `h${h}`));
  });

  it('refuses re-parenting until the source is removed', () => {
    const a = new Source('a');
    const b = new Source('b');
    const s = new Source('s');
    a.addSubordinate(s);
    expectCode(() => b.addSubordinate(s), 'EEXIST');
    expectCode(() => a.addSubordinate(s), 'EEXIST');
    expect(s.parent).toBe(a);
    a.removeSubordinate(s);
    expect(s.parent).toBeNull();
    b.addSubordinate(s);
    expect(s.parent).toBe(b);
    expect(a.subordinates).toEqual([]);
  });

  it('refuses cycles', () => {
    const a = new Source('a');
    const b = new Source('b');
    const c = new Source('c');
    a.addSubordinate(b);
    b.addSubordinate(c);
    expectCode(() => a.addSubordinate(a), 'EINVAL');
    expectCode(() => b.addSubordinate(a), 'EINVAL');
    expectCode(() => c.addSubordinate(a), 'EINVAL');
    expect(a.parent).toBeNull();
    expect(c.subordinates).toEqual([]);
  });

  it('reports ENOENT for removing what is not a direct subordinate', () => {
    const a = new Source('a');
    const b = new Source('b');
    const c = new Source('c');
    expectCode(() => a.removeSubordinate(b), 'ENOENT');
    a.addSubordinate(b);
    b.addSubordinate(c);
    expectCode(() => a.removeSubordinate(c), 'ENOENT');
    a.removeSubordinate(b);
    expectCode(() => a.removeSubordinate(b), 'ENOENT');
    const schema = new Schema([{ name: 'n', type: 'u8' }]);
    const g = b.addValues(schema);
    expectCode(() => a.removeValues(g), 'ENOENT');
    b.removeValues(g);
    expectCode(() => b.removeValues(g), 'ENOENT');
  });

  it('refuses the same schema twice with the same storage, but not with different storage', () => {
    const schema = new Schema([{ name: 'n', type: 'u8', aggr: 'sum' }]);
    const s = new Source('s');
    const base1 = { n: 1 };
    s.addValues(schema);
    expectCode(() => s.addValues(schema), 'EEXIST');
    s.addValues(schema, { base: base1 });
    expectCode(() => s.addValues(schema, { base: base1 }), 'EEXIST');
    s.addValues(schema, { base: { n: 2 } });
    s.addAggregates(schema);
    expectCode(() => s.addAggregates(schema, { hidden: true }), 'EEXIST');
    expect(s.valueGroups.map((g) => g.storage)).toEqual(['slots', 'object', 'object', 'aggregate']);
  });

  it('builds paths from the root', () => {
    const root = Source.root();
    const a = new Source('a');
    const b = new Source('b');
    root.addSubordinate(a);
    a.addSubordinate(b);
    expect(root.name).toBe('');
    expect(root.path).toBe('');
    expect(b.path).toBe('a/b');
    expect(b.parent).toBe(a);
  });
});

describe('TreeObserver', () => {
  it('reports changes anywhere in the tree to the root observer', () => {
    const events: string[] = [];
    const observer: TreeObserver = {
      subordinateAdded: (p, s) => events.push(`+${p.path || '/'}:${s.name}`),
      subordinateRemoved: (p, s) => events.push(`-${p.path || '/'}:${s.name}`),
      valuesChanged: (s) => events.push(`v:${s.path}`),
    };
    const root = Source.root();
    root.observe(observer);
    const a = new Source('a');
    const b = new Source('b');
    a.addSubordinate(b); // not in the tree yet
    root.addSubordinate(a);
    const schema = new Schema([{ name: 'n', type: 'u8', aggr: 'sum' }]);
    const g = b.addValues(schema);
    a.addAggregates(schema);
    b.removeValues(g);
    b.revoke();
    const c = new Source('c', { hidden: true });
    b.addSubordinate(c);
    a.removeSubordinate(b);
    b.addValues(schema); // detached: nobody hears
    c.revoke();
    root.removeSubordinate(a);
    expect(events).toEqual(['+/:a', 'v:a/b', 'v:a', 'v:a/b', 'v:a/b', '+a/b:c', '-a:b', '-/:a']);

    events.length = 0;
    root.observe(null);
    root.addSubordinate(a);
    expect(events).toEqual([]);
  });

  it('accepts an observer with only some callbacks', () => {
    const added: Source[] = [];
    const root = Source.root();
    root.observe({ subordinateAdded: (_p, s) => added.push(s) });
    const a = new Source('a');
    root.addSubordinate(a);
    a.addValues(new Schema([{ name: 'n', type: 'u8' }]));
    root.removeSubordinate(a);
    expect(added).toEqual([a]);
  });
});

describe('slot storage', () => {
  it('reuses the slots of removed values, zeroed', () => {
    const schema = new Schema([{ name: 'a', type: 'u64' }, { name: 'b', type: 's64' }, { name: 'c', type: 'u8' }]);
    const s = new Source('s');
    const before = arena.usage.used;
    const g1 = s.addValues(schema);
    expect(arena.usage.used).toBe(before + 3);
    g1.set('a', U64_MAX);
    g1.set('b', -1);
    g1.set('c', 200);
    s.removeValues(g1);
    expect(arena.usage.used).toBe(before);
    expect(s.valueGroups).toEqual([]);
    const t = new Source('t');
    const g2 = t.addValues(schema);
    expect(arena.usage.used).toBe(before + 3);
    expect([g2.get('a'), g2.get('b'), g2.get('c')]).toEqual([0n, 0n, 0n]);
  });

  it('keeps a removed group from reading or writing the slots it gave back', () => {
    const schema = new Schema([{ name: 'a', type: 'u64' }, { name: 'b', type: 'u64' }]);
    const s = new Source('s');
    const removed = s.addValues(schema);
    removed.set('b', 1);
    s.removeValues(removed);
    const t = new Source('t');
    const reused = t.addValues(schema); // takes over the same run
    reused.set('a', 111);
    reused.set('b', 222);
    // and some other group elsewhere in the arena
    const u = new Source('u');
    const bystander = u.addValues(new Schema([{ name: 'z', type: 'u64' }]));
    bystander.set('z', 333);
    const snapshot = arena.u32.slice();

    expect(removed.get('a')).toBe(0n);
    expect(removed.get('b')).toBe(0n);
    expect(removed.render('b')).toBe('0\n');
    expectCode(() => removed.set('b', 999), 'ENOENT');
    expectCode(() => removed.add('a', 1), 'ENOENT');
    expectCode(() => removed.clear('a'), 'ENOENT');
    expect(arena.u32).toEqual(snapshot);
    expect([reused.get('a'), reused.get('b'), bystander.get('z')]).toEqual([111n, 222n, 333n]);
  });

  it('keeps slot 0 as a write sequence: even between writes, two steps per write, told of growth first', () => {
    const a = new SlotArena(2);
    const grown: Uint32Array[] = [];
    const stop = a.onGrowth((u32) => grown.push(u32));
    const slot = a.alloc(1);
    expect(slot).toBeGreaterThan(0);
    const seq = a.u32[SEQ];
    a.store(slot, 0xffffffff, 0x12345678);
    expect(a.u32[SEQ]).toBe(seq + 2);
    expect([a.u32[slot * 2], a.u32[slot * 2 + 1]]).toEqual([0xffffffff, 0x12345678]);
    a.release(slot, 1);
    expect(a.u32[SEQ]).toBe(seq + 4);
    const more = a.alloc(4); // grows: the listener gets the new array, holding the sequence
    expect(grown).toEqual([a.u32]);
    expect(a.u32[SEQ]).toBe(seq + 4);
    // a batch is one write, odd all through, even when it grows the arena; nested ones add nothing
    const inside: number[] = [];
    a.batch(() => {
      a.store(more, 1, 0);
      a.batch(() => a.store(more + 1, 2, 0));
      inside.push(a.u32[SEQ]);
      a.alloc(64);
      a.store(more + 2, 3, 0);
      inside.push(a.u32[SEQ]);
    });
    expect(inside).toEqual([seq + 5, seq + 5]);
    expect(a.u32[SEQ]).toBe(seq + 6);
    expect([a.u32[more * 2], a.u32[more * 2 + 2], a.u32[more * 2 + 4]]).toEqual([1, 2, 3]);
    expect(() => a.batch(() => { throw new Error('boom'); })).toThrow('boom');
    expect(a.u32[SEQ]).toBe(seq + 8);
    stop();
    a.alloc(1024);
    expect(grown.length).toBe(2);
    expect(more).toBeGreaterThan(slot);
  });

  it('grows without losing values and recycles runs by length', () => {
    const a = new SlotArena(2);
    const first = a.alloc(2);
    a.u32[first * 2] = 0xdeadbeef;
    a.u32[first * 2 + 3] = 0x12345678;
    const second = a.alloc(5); // forces growth
    expect(second).toBe(first + 2);
    expect(a.usage).toEqual({ used: 7, capacity: 8 });
    expect(a.u32[first * 2]).toBe(0xdeadbeef);
    expect(a.u32[first * 2 + 3]).toBe(0x12345678);
    a.u32.fill(7, second * 2, (second + 5) * 2);
    a.release(second, 5);
    expect(a.usage.used).toBe(2);
    expect(a.alloc(3)).toBe(second + 5); // no run of 3 to recycle: fresh slots
    const again = a.alloc(5);
    expect(again).toBe(second);
    expect(Array.from(a.u32.subarray(again * 2, (again + 5) * 2))).toEqual(new Array(10).fill(0));
  });
});
