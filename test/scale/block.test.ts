/**
 * The block collector at scale: 256 disks with 4 partitions each, exact sums (moved from the unit suite,
 * test/unit/collectors/block.test.ts, for its run time).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BLOCK_FIELD_NAMES, blockCollector } from '../../src/collectors/block.js';
import { collectorOptions, type CollectorOptions } from '../../src/collectors/common.js';
import { BlockFixture, field, fieldsFor, names } from '../helpers/block-fixture.js';

let fx: BlockFixture;
let clock: number;
let options: CollectorOptions;

beforeEach(() => {
  fx = new BlockFixture();
  clock = 0;
  options = collectorOptions({ procRoot: fx.proc, sysRoot: fx.sys, freshnessMs: 250, now: () => clock });
});
afterEach(() => fx.cleanup());

const later = () => (clock += 1000);

describe('block collector', () => {
  it('256 disks with 4 partitions each: exact sums, and listing + aggregating stays cheap', () => {
    let sectors = 0n;
    for (let i = 0; i < 256; i++) {
      const f = fieldsFor(i);
      f[field('sectors_written')] = 2n ** 55n + BigInt(i);
      fx.disk(`sd${i}`, f);
      sectors += f[field('sectors_written')];
      for (let p = 1; p <= 4; p++) fx.partition(`sd${i}`, `sd${i}p${p}`, fieldsFor(i * 10 + p));
    }
    fx.write();
    const t0 = performance.now();
    const block = blockCollector.create(options); // lists block/
    const t1 = performance.now();
    const total = block.getValue('sectors_written'); // first visit of each disk: lists its partitions
    const t2 = performance.now();
    later();
    const t3 = performance.now();
    block.visibleSubordinates(); // a new window: parse and list again
    const again = block.getValue('sectors_written');
    const t4 = performance.now();
    for (const f of BLOCK_FIELD_NAMES) block.getValue(f);
    const t5 = performance.now();
    expect(block.visibleSubordinates()).toHaveLength(256);
    expect(total).toBe(sectors);
    expect(again).toBe(sectors);
    expect(names(block.subordinate('sd1')!)).toEqual(['sd1p1', 'sd1p2', 'sd1p3', 'sd1p4']);
    expect(block.subordinate('sd1')!.subordinate('sd1p3')!.getValue('reads_completed')).toBe(fieldsFor(13)[0]);
    console.log(
      `block, 256 disks x 4 partitions: create + listing ${(t1 - t0).toFixed(1)} ms, first block/sectors_written ${(t2 - t1).toFixed(1)} ms, ` +
        `new window: listing + sum ${(t4 - t3).toFixed(1)} ms, all 17 sums in the window ${(t5 - t4).toFixed(1)} ms`,
    );
  });
});
