/**
 * Port of the kunit suite of the statsfs v3 series (fs/stats_fs/stats_fs-tests.c, May 2020) to our model:
 * same fixtures, same expected numbers, one `it` per C test function, under the C function's name.
 *
 * Translation notes:
 * - A `struct stats_fs_value[]` is a Schema; aggregation matches by Schema identity as the C code matched
 *   by array address, so the four fixtures are four module-level schemas shared by every test, like the C
 *   globals.
 * - `&cont` / `&cont2` are plain objects shared by several sources, as the C tests share the containers.
 * - add_values(src, arr, NULL) is addAggregates(schema); with a base it is addValues(schema, { base }).
 * - get_value_by_name returns the value already interpreted by the type's signedness, so the C casts
 *   ((int32_t)ret, (int64_t)ret, ...) become plain bigint comparisons.
 * - On -ENOENT the C tests also check that `ret` was zeroed; getValue throws instead of returning, so that
 *   half of those assertions has no equivalent here.
 * - stats_fs_source_put() has no equivalent: sources are garbage collected.
 */
import { describe, expect, it } from 'vitest';
import { Schema, Source, StatsError, type StatsErrorCode, type ValueGroup } from '../../../src/model/index.js';

// --- limits of <linux/limits.h> as the types read them back ---------------------------------------------
const S16_MAX = 32767n;
const S32_MIN = -2147483648n;
const S64_MAX = 2n ** 63n - 1n;
const S64_MIN = -(2n ** 63n);

// --- fixtures -------------------------------------------------------------------------------------------
const test_values = new Schema([
  { name: 'u64', type: 'u64', aggr: 'none', floating: true },
  { name: 's32', type: 's32', aggr: 'none' },
  { name: 'bo', type: 'bool', aggr: 'none', floating: true },
  { name: 'u8', type: 'u8', aggr: 'none' },
  { name: 's16', type: 's16', aggr: 'none', floating: true },
]);

const test_aggr = new Schema([
  { name: 's32', type: 's32', aggr: 'min', floating: true },
  { name: 'bo', type: 'bool', aggr: 'max', floating: true },
  { name: 'u64', type: 'u64', aggr: 'sum', floating: true },
]);

const test_same_name = new Schema([
  { name: 's32', type: 's32', aggr: 'none' },
  { name: 's32', type: 's32', aggr: 'min' },
]);

const test_all_aggr = new Schema([
  { name: 's32', type: 's32', aggr: 'min' },
  { name: 'bo', type: 'bool', aggr: 'count_zero', floating: true },
  { name: 'u64', type: 'u64', aggr: 'sum' },
  { name: 'u8', type: 'u8', aggr: 'avg', floating: true },
  { name: 's16', type: 's16', aggr: 'max', floating: true },
]);

const def_u64 = 64n;

const def_val_s32 = S32_MIN;
const def_val_bool = true;
const def_val_u8 = 127n;
const def_val_s16 = 10000n;

const def_val2_s32 = S16_MAX;
const def_val2_bool = false;
const def_val2_u8 = 255n;
const def_val2_s16 = -20000n;

// The containers: fields named like the values (the C offsets), holding what the C initializers hold.
const cont = { u64: def_u64, s32: Number(def_val_s32), bo: def_val_bool, u8: Number(def_val_u8), s16: Number(def_val_s16) };
const cont2 = { u64: def_u64, s32: Number(def_val2_s32), bo: def_val2_bool, u8: Number(def_val2_u8), s16: Number(def_val2_s16) };

/** ARR_SIZE(): entries of the array without its terminator. */
const ARR_SIZE = (schema: Schema): number => schema.size;

// --- introspection helpers of the C test, on top of valueGroups / subordinates -----------------------------

/** Whether a group was added with this base; `null` stands for the C NULL base, i.e. aggregate groups. */
function groupHasBase(group: ValueGroup, base: object | null): boolean {
  if (base === null) return group.storage === 'aggregate';
  return group.storage === 'object' && group.sameAs(group.schema, base, 'object');
}

/** get_stats_at_addr(): entries with aggr none count as values, the others as aggregates. */
function getStatsAtBase(src: Source, base: object | null, useBase: boolean): { aggr: number; val: number } {
  let aggr = 0;
  let val = 0;
  for (const group of src.valueGroups) {
    if (useBase && !groupHasBase(group, base)) continue;
    for (const def of group.schema.defs) {
      if (def.aggr === 'none') val++;
      else aggr++;
    }
  }
  return { aggr, val };
}

function source_has_subsource(src: Source, sub: Source): boolean {
  return src.subordinates.includes(sub);
}

function get_number_subsources(src: Source): number {
  return src.subordinates.length;
}

function get_number_values(src: Source): number {
  return getStatsAtBase(src, null, false).val;
}

function get_total_number_values(src: Source): number {
  let counter = getStatsAtBase(src, null, false).val;
  for (const sub of src.subordinates) counter += get_total_number_values(sub);
  return counter;
}

function get_number_aggregates(src: Source): number {
  return getStatsAtBase(src, null, true).aggr;
}

function get_number_values_with_base(src: Source, base: object | null): number {
  return getStatsAtBase(src, base, true).val;
}

function get_number_aggr_with_base(src: Source, base: object | null): number {
  return getStatsAtBase(src, base, true).aggr;
}

/** stats_fs_source_add_values(src, arr, base, 0): a NULL base adds aggregates. */
function add_values(src: Source, schema: Schema, base: object | null): ValueGroup {
  return base === null ? src.addAggregates(schema) : src.addValues(schema, { base });
}

function expectErrno(fn: () => unknown, code: StatsErrorCode): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(StatsError);
  expect((caught as StatsError).code).toBe(code);
}

/** The ENOENT half of get_value_by_name (see the note at the top about `ret`). */
function expectNoValue(src: Source, name: string): void {
  expectErrno(() => src.getValue(name), 'ENOENT');
}

// --- the cases ------------------------------------------------------------------------------------------

describe('stats_fs kunit suite (v3 port)', () => {
  it('test_empty_folder', () => {
    const src = new Source(`kvm_${123}`);
    expect(src.name).toBe('kvm_123');
    expect(get_number_subsources(src)).toBe(0);
    expect(get_number_values(src)).toBe(0);
    expect(get_number_aggregates(src)).toBe(0);
  });

  it('test_add_subfolder', () => {
    const src = new Source('parent');
    let sub = new Source('child');
    src.addSubordinate(sub);
    expect(source_has_subsource(src, sub)).toBe(true);
    expect(get_number_subsources(src)).toBe(1);
    expect(get_number_values(src)).toBe(0);
    expect(get_number_aggregates(src)).toBe(0);
    expect(get_number_values(sub)).toBe(0);
    expect(get_number_aggregates(sub)).toBe(0);
    expect(get_total_number_values(src)).toBe(0);

    sub = new Source('not a child');
    expect(source_has_subsource(src, sub)).toBe(false);
    expect(get_number_subsources(src)).toBe(1);
  });

  it('test_add_value', () => {
    const src = new Source('parent');

    // add values
    add_values(src, test_values, cont);
    expect(get_number_values_with_base(src, cont)).toBe(ARR_SIZE(test_values));

    // add same values, nothing happens
    expectErrno(() => add_values(src, test_values, cont), 'EEXIST');
    expect(get_number_values_with_base(src, cont)).toBe(ARR_SIZE(test_values));

    // size is unchanged
    expect(get_number_values(src)).toBe(ARR_SIZE(test_values));

    // no aggregates
    expect(get_number_aggr_with_base(src, cont)).toBe(0);
    expect(get_number_values(src)).toBe(ARR_SIZE(test_values));
    expect(get_number_aggregates(src)).toBe(0);
  });

  it('test_add_value_in_subfolder', () => {
    const src = new Source('parent');
    const sub = new Source('child');

    // src -> sub
    src.addSubordinate(sub);

    add_values(sub, test_values, cont);
    expect(get_number_values_with_base(sub, cont)).toBe(ARR_SIZE(test_values));
    expect(get_number_values(src)).toBe(0);
    expect(get_number_aggregates(src)).toBe(0);
    expect(get_total_number_values(src)).toBe(ARR_SIZE(test_values));

    expect(get_number_values(sub)).toBe(ARR_SIZE(test_values));
    expect(get_number_aggregates(sub)).toBe(0);

    // a source outside the tree, sharing the same base
    const sub_not = new Source('not a child');
    add_values(sub_not, test_values, cont);
    expect(get_number_values_with_base(sub_not, cont)).toBe(ARR_SIZE(test_values));
    expect(get_number_values(src)).toBe(0);
    expect(get_number_aggregates(src)).toBe(0);
    expect(get_total_number_values(src)).toBe(ARR_SIZE(test_values));

    // remove sub: no values below src any more
    src.removeSubordinate(sub);
    expect(get_total_number_values(src)).toBe(0);

    // re-add sub: its values count again
    src.addSubordinate(sub);
    expect(get_total_number_values(src)).toBe(ARR_SIZE(test_values));

    // add sub_not: twice as many
    src.addSubordinate(sub_not);
    expect(get_total_number_values(src)).toBe(ARR_SIZE(test_values) * 2);

    expect(get_number_values(sub_not)).toBe(ARR_SIZE(test_values));
    expect(get_number_aggregates(sub_not)).toBe(0);
  });

  it('test_search_value', () => {
    const src = new Source('parent');

    add_values(src, test_values, cont);
    expect(get_number_values_with_base(src, cont)).toBe(ARR_SIZE(test_values));

    expect(src.getValue('u64')).toBe(def_u64);
    expect(src.getValue('s32')).toBe(def_val_s32);
    expect(src.getValue('bo') !== 0n).toBe(def_val_bool);

    // a value that was never added
    expectNoValue(src, 'does not exist');
  });

  it('test_search_value_in_subfolder', () => {
    const src = new Source('parent');
    const sub = new Source('child');

    // src -> sub
    src.addSubordinate(sub);

    // values in sub only
    add_values(sub, test_values, cont);
    expect(get_number_values_with_base(sub, cont)).toBe(ARR_SIZE(test_values));

    expect(sub.getValue('u64')).toBe(def_u64);
    expectNoValue(src, 'u64');

    expect(sub.getValue('s32')).toBe(def_val_s32);
    expectNoValue(src, 's32');

    expect(sub.getValue('bo') !== 0n).toBe(def_val_bool);
    expectNoValue(src, 'bo');

    expectNoValue(sub, 'does not exist');
    expectNoValue(src, 'does not exist');
  });

  it('test_search_value_in_empty_folder', () => {
    const src = new Source('empty folder');
    expect(get_number_aggregates(src)).toBe(0);
    expect(get_number_subsources(src)).toBe(0);
    expect(get_number_values(src)).toBe(0);

    expectNoValue(src, 'u64');
    expectNoValue(src, 's32');
    expectNoValue(src, 'bo');
    expectNoValue(src, 'does not exist');
  });

  it('test_add_aggregate', () => {
    const src = new Source('parent');

    // aggregates on src, no values
    add_values(src, test_aggr, null);
    expect(get_number_values_with_base(src, null)).toBe(0);
    expect(get_number_aggr_with_base(src, null)).toBe(ARR_SIZE(test_aggr));

    // the same array again is refused
    expectErrno(() => add_values(src, test_aggr, null), 'EEXIST');
    expect(get_number_aggr_with_base(src, null)).toBe(ARR_SIZE(test_aggr));

    expect(get_number_values(src)).toBe(0);
    expect(get_number_aggregates(src)).toBe(ARR_SIZE(test_aggr));
  });

  it('test_add_aggregate_in_subfolder', () => {
    const src = new Source('parent');
    const sub = new Source('child');
    // src -> sub
    src.addSubordinate(sub);

    // aggregates on sub
    add_values(sub, test_aggr, null);
    expect(get_number_aggr_with_base(sub, null)).toBe(ARR_SIZE(test_aggr));
    expect(get_number_values(src)).toBe(0);
    expect(get_number_aggregates(src)).toBe(0);
    expect(get_total_number_values(src)).toBe(0);

    expect(get_number_values(sub)).toBe(0);
    expect(get_number_aggregates(sub)).toBe(ARR_SIZE(test_aggr));

    // not a child
    const sub_not = new Source('not a child');
    add_values(sub_not, test_aggr, null);
    expect(get_number_aggr_with_base(sub_not, null)).toBe(ARR_SIZE(test_aggr));
    expect(get_number_values(src)).toBe(0);
    expect(get_number_aggregates(src)).toBe(0);
    expect(get_total_number_values(src)).toBe(0);

    // remove sub
    src.removeSubordinate(sub);
    expect(get_total_number_values(src)).toBe(0);

    // re-add both
    src.addSubordinate(sub);
    expect(get_total_number_values(src)).toBe(0);
    src.addSubordinate(sub_not);
    expect(get_total_number_values(src)).toBe(0);

    expect(get_number_values(sub_not)).toBe(0);
    expect(get_number_aggregates(sub_not)).toBe(ARR_SIZE(test_aggr));
  });

  it('test_search_aggregate', () => {
    const src = new Source('parent');
    add_values(src, test_aggr, null);
    expect(get_number_aggr_with_base(src, null)).toBe(ARR_SIZE(test_aggr));
    expect(get_number_aggr_with_base(src, cont)).toBe(0);

    // nothing to aggregate: sum 0, signed min S64_MAX, unsigned max 0
    expect(src.getValue('u64')).toBe(0n);
    expect(src.getValue('s32')).toBe(S64_MAX);
    expect(src.getValue('bo')).toBe(0n);

    expectNoValue(src, 'does not exist');
  });

  it('test_search_aggregate_in_subfolder', () => {
    const src = new Source('parent');
    const sub = new Source('child');

    src.addSubordinate(sub);

    add_values(sub, test_aggr, null);
    expect(get_number_aggr_with_base(sub, null)).toBe(ARR_SIZE(test_aggr));
    expect(get_number_aggr_with_base(sub, cont)).toBe(0);

    expect(sub.getValue('u64')).toBe(0n);
    expectNoValue(src, 'u64');

    expect(sub.getValue('s32')).toBe(S64_MAX);
    expectNoValue(src, 's32');

    expect(sub.getValue('bo')).toBe(0n);
    expectNoValue(src, 'bo');

    expectNoValue(sub, 'does not exist');
    expectNoValue(src, 'does not exist');
  });

  it('test_search_same', () => {
    const src = new Source('parent');
    add_values(src, test_same_name, cont);
    expect(get_number_values_with_base(src, cont)).toBe(1);
    expect(get_number_aggr_with_base(src, cont)).toBe(1);

    expectErrno(() => add_values(src, test_same_name, cont), 'EEXIST');
    expect(get_number_values_with_base(src, cont)).toBe(1);
    expect(get_number_aggr_with_base(src, cont)).toBe(1);

    // the first entry of that name wins: the simple value
    expect(src.getValue('s32')).toBe(def_val_s32);
  });

  it('test_add_mixed', () => {
    const src = new Source('parent');

    add_values(src, test_aggr, null);
    expect(get_number_values_with_base(src, null)).toBe(0);
    add_values(src, test_values, cont);
    expect(get_number_aggr_with_base(src, null)).toBe(ARR_SIZE(test_aggr));

    expectErrno(() => add_values(src, test_values, cont), 'EEXIST');
    expect(get_number_values_with_base(src, cont)).toBe(ARR_SIZE(test_values));
    expectErrno(() => add_values(src, test_aggr, null), 'EEXIST');
    expect(get_number_aggr_with_base(src, null)).toBe(ARR_SIZE(test_aggr));

    expect(get_number_values(src)).toBe(ARR_SIZE(test_values));
    expect(get_number_aggregates(src)).toBe(ARR_SIZE(test_aggr));
  });

  it('test_search_mixed', () => {
    const src = new Source('parent');
    const sub = new Source('child');
    src.addSubordinate(sub);

    // sub has test_values, src has test_aggr, both on &cont (so src's are simple values too)
    add_values(sub, test_values, cont);
    expect(get_number_values_with_base(sub, cont)).toBe(ARR_SIZE(test_values));
    add_values(src, test_aggr, cont);
    expect(get_number_aggr_with_base(src, cont)).toBe(ARR_SIZE(test_aggr));

    // u64
    expect(sub.getValue('u64')).toBe(def_u64);
    expect(src.getValue('u64')).toBe(def_u64);

    // s32
    expect(sub.getValue('s32')).toBe(def_val_s32);
    expect(src.getValue('s32')).toBe(def_val_s32);

    // bo
    expect(sub.getValue('bo') !== 0n).toBe(def_val_bool);
    expect(src.getValue('bo') !== 0n).toBe(def_val_bool);

    expectNoValue(sub, 'does not exist');
    expectNoValue(src, 'does not exist');
  });

  it('test_all_aggregations_agg_val_val', () => {
    const src = new Source('parent');
    const sub1 = new Source('child1');
    const sub2 = new Source('child2');
    src.addSubordinate(sub1);
    src.addSubordinate(sub2);

    add_values(sub1, test_all_aggr, cont);
    expect(get_number_aggr_with_base(sub1, cont)).toBe(ARR_SIZE(test_all_aggr));
    add_values(sub2, test_all_aggr, cont2);
    expect(get_number_aggr_with_base(sub2, cont2)).toBe(ARR_SIZE(test_all_aggr));

    add_values(src, test_all_aggr, null);
    expect(get_number_aggr_with_base(src, null)).toBe(ARR_SIZE(test_all_aggr));

    // sum
    expect(src.getValue('u64')).toBe(def_u64 * 2n);
    // min
    expect(src.getValue('s32')).toBe(def_val_s32);
    // count_zero
    expect(src.getValue('bo')).toBe(1n);
    // avg
    expect(src.getValue('u8')).toBe(191n);
    // max
    expect(src.getValue('s16')).toBe(def_val_s16);
  });

  it('test_all_aggregations_val_agg_val', () => {
    const src = new Source('parent');
    const sub1 = new Source('child1');
    const sub2 = new Source('child2');
    src.addSubordinate(sub1);
    src.addSubordinate(sub2);

    add_values(src, test_all_aggr, cont);
    expect(get_number_aggr_with_base(src, cont)).toBe(ARR_SIZE(test_all_aggr));
    add_values(sub2, test_all_aggr, cont2);
    expect(get_number_aggr_with_base(sub2, cont2)).toBe(ARR_SIZE(test_all_aggr));

    add_values(sub1, test_all_aggr, null);
    expect(get_number_aggr_with_base(sub1, null)).toBe(ARR_SIZE(test_all_aggr));

    expect(src.getValue('u64')).toBe(def_u64);
    expect(sub1.getValue('u64')).toBe(0n);
    expect(sub2.getValue('u64')).toBe(def_u64);

    expect(src.getValue('s32')).toBe(def_val_s32);
    expect(sub1.getValue('s32')).toBe(S64_MAX); // min of nothing
    expect(sub2.getValue('s32')).toBe(def_val2_s32);

    expect(src.getValue('bo') !== 0n).toBe(def_val_bool);
    expect(sub1.getValue('bo')).toBe(0n);
    expect(sub2.getValue('bo') !== 0n).toBe(def_val2_bool);

    expect(src.getValue('u8')).toBe(def_val_u8);
    expect(sub1.getValue('u8')).toBe(0n);
    expect(sub2.getValue('u8')).toBe(def_val2_u8);

    expect(src.getValue('s16')).toBe(def_val_s16);
    expect(sub1.getValue('s16')).toBe(S64_MIN); // max of nothing
    expect(sub2.getValue('s16')).toBe(def_val2_s16);
  });

  it('test_all_aggregations_agg_val_val_sub', () => {
    const src = new Source('parent');
    const sub1 = new Source('child1');
    const sub11 = new Source('child11');
    src.addSubordinate(sub1);
    sub1.addSubordinate(sub11); // nested this time

    add_values(sub1, test_values, cont);
    expect(get_number_values_with_base(sub1, cont)).toBe(ARR_SIZE(test_values));
    add_values(sub11, test_values, cont2);
    expect(get_number_values_with_base(sub11, cont2)).toBe(ARR_SIZE(test_values));

    expect(get_total_number_values(src)).toBe(ARR_SIZE(test_values) * 2);

    add_values(sub1, test_all_aggr, cont);
    expect(get_number_aggr_with_base(sub1, cont)).toBe(ARR_SIZE(test_all_aggr));
    add_values(sub11, test_all_aggr, cont2);
    expect(get_number_aggr_with_base(sub11, cont2)).toBe(ARR_SIZE(test_all_aggr));

    add_values(src, test_all_aggr, null);
    expect(get_number_aggr_with_base(src, null)).toBe(ARR_SIZE(test_all_aggr));

    // sum
    expect(src.getValue('u64')).toBe(def_u64 * 2n);
    // min
    expect(src.getValue('s32')).toBe(def_val_s32);
    // count_zero
    expect(src.getValue('bo')).toBe(1n);
    // avg
    expect(src.getValue('u8')).toBe(191n);
    // max
    expect(src.getValue('s16')).toBe(def_val_s16);
  });

  it('test_all_aggregations_agg_no_val_sub', () => {
    const src = new Source('parent');
    const sub1 = new Source('child1');
    const sub11 = new Source('child11');
    src.addSubordinate(sub1);
    sub1.addSubordinate(sub11);

    add_values(sub11, test_all_aggr, cont2);
    expect(get_number_aggr_with_base(sub11, cont2)).toBe(ARR_SIZE(test_all_aggr));

    expect(get_total_number_values(src)).toBe(0);

    add_values(src, test_all_aggr, null);
    expect(get_number_aggr_with_base(src, null)).toBe(ARR_SIZE(test_all_aggr));

    // sum
    expect(src.getValue('u64')).toBe(def_u64);
    // min
    expect(src.getValue('s32')).toBe(def_val2_s32);
    // count_zero
    expect(src.getValue('bo')).toBe(1n);
    // avg
    expect(src.getValue('u8')).toBe(def_val2_u8);
    // max
    expect(src.getValue('s16')).toBe(def_val2_s16);
  });

  it('test_all_aggregations_agg_agg_val_sub', () => {
    const src = new Source('parent');
    const sub1 = new Source('child1');
    const sub11 = new Source('child11');
    const sub12 = new Source('child12');
    src.addSubordinate(sub1);
    sub1.addSubordinate(sub11);
    sub1.addSubordinate(sub12);

    add_values(sub11, test_all_aggr, cont2);
    expect(get_number_aggr_with_base(sub11, cont2)).toBe(ARR_SIZE(test_all_aggr));

    add_values(sub12, test_all_aggr, cont);
    expect(get_number_aggr_with_base(sub12, cont)).toBe(ARR_SIZE(test_all_aggr));

    expect(get_total_number_values(src)).toBe(0);

    add_values(src, test_all_aggr, null);
    expect(get_number_aggr_with_base(src, null)).toBe(ARR_SIZE(test_all_aggr));

    add_values(sub1, test_all_aggr, null);
    expect(get_number_aggr_with_base(sub1, null)).toBe(ARR_SIZE(test_all_aggr));

    // sum: sub1's aggregate is not counted on top of the values below it
    expect(src.getValue('u64')).toBe(def_u64 * 2n);
    // min
    expect(src.getValue('s32')).toBe(def_val_s32);
    // count_zero
    expect(src.getValue('bo')).toBe(1n);
    // avg
    expect(src.getValue('u8')).toBe((def_val2_u8 + def_val_u8) / 2n);
    // max
    expect(src.getValue('s16')).toBe(def_val_s16);
  });
});
