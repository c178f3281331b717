/**
 * The block collector against fixture trees in the kernel's formats: /proc/diskstats as diskstats_show
 * prints it (14, 18 or 20 fields a line), /sys/block/<dev> symlinks into /sys/devices, and partitions as
 * subdirectories of their disk with a `partition` file.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BLOCK_FIELD_NAMES, blockCollector } from '../../../src/collectors/block.js';
import { collectorOptions, type CollectorOptions } from '../../../src/collectors/common.js';
import { Source, StatsError } from '../../../src/model/index.js';
import { BlockFixture, field, fieldsFor, names } from '../../helpers/block-fixture.js';

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
const valueNames = (src: Source) => src.visibleValues().map((v) => v.def.name).sort();

function expectCode(code: string, fn: () => unknown): void {
  let error: unknown;
  try {
    fn();
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(StatsError);
  expect((error as StatsError).code).toBe(code);
}

describe('block collector', () => {
  it('shows every /proc/diskstats field of every device in /sys/block, partitions below their disk', () => {
    fx.disk('sda', fieldsFor(1));
    fx.partition('sda', 'sda1', fieldsFor(2));
    fx.partition('sda', 'sda2', fieldsFor(3));
    fx.disk('nvme0n1', fieldsFor(4));
    fx.partition('nvme0n1', 'nvme0n1p1', fieldsFor(5));
    fx.disk('loop0', fieldsFor(0).map(() => 0n));
    fx.disk('ram0', fieldsFor(6));
    fx.write();
    const block = blockCollector.create(options);
    expect(block.name).toBe('block');
    expect(names(block)).toEqual(['loop0', 'nvme0n1', 'ram0', 'sda']);
    for (const name of ['sda', 'nvme0n1', 'loop0', 'ram0']) {
      const src = block.subordinate(name)!;
      expect(valueNames(src)).toEqual([...BLOCK_FIELD_NAMES].sort());
      BLOCK_FIELD_NAMES.forEach((f, i) => expect(src.getValue(f), `${name}/${f}`).toBe(fx.devs.get(name)!.fields[i]));
    }
    expect(names(block.subordinate('sda')!)).toEqual(['sda1', 'sda2']);
    expect(names(block.subordinate('nvme0n1')!)).toEqual(['nvme0n1p1']);
    expect(names(block.subordinate('loop0')!)).toEqual([]);
    const sda2 = block.subordinate('sda')!.subordinate('sda2')!;
    BLOCK_FIELD_NAMES.forEach((f, i) => expect(sda2.getValue(f), `sda2/${f}`).toBe(fieldsFor(3)[i]));

    // modes: a level is read-only, counters clear
    for (const { def } of block.subordinate('sda')!.visibleValues()) {
      expect(def.mode, def.name).toBe(def.name === 'ios_in_progress' ? 0o444 : 0o644);
      expect(def.floating).toBe(def.name === 'ios_in_progress');
      expect(def.unit, def.name).not.toBe('');
      expect(def.description, def.name).not.toBe('');
    }
    expect(block.subordinate('sda')!.findValue('sectors_read')!.def.unit).toBe('512-byte sectors');
  });

  it('sums at block/ cover whole devices only, exactly beyond 2^53', () => {
    const big = fieldsFor(1);
    big[field('sectors_read')] = 2n ** 60n + 1n;
    big[field('sectors_written')] = 2n ** 53n + 1n;
    fx.disk('sda', big);
    fx.partition('sda', 'sda1', fieldsFor(2));
    const big2 = fieldsFor(3);
    big2[field('sectors_read')] = 2n ** 60n + 3n;
    big2[field('sectors_written')] = 2n ** 53n + 3n;
    fx.disk('sdb', big2);
    fx.partition('sdb', 'sdb1', fieldsFor(4));
    fx.write();
    const block = blockCollector.create(options);
    expect(valueNames(block)).toEqual([...BLOCK_FIELD_NAMES].sort());
    BLOCK_FIELD_NAMES.forEach((f, i) => expect(block.getValue(f), f).toBe(big[i] + big2[i]));
    expect(block.getValue('sectors_read')).toBe(2n ** 61n + 4n);
    expect(block.getValue('sectors_written')).toBe(2n ** 54n + 4n);
    expect(block.getValue('ios_in_progress')).toBe(big[field('ios_in_progress')] + big2[field('ios_in_progress')]);
    // the partitions' schema is not the disks': it is not in the sums
    const disk = block.subordinate('sda')!;
    const part = disk.subordinate('sda1')!;
    expect(part.findValue('sectors_read')!.group.schema).not.toBe(disk.findValue('sectors_read')!.group.schema);
  });

  it('old kernels: 14 fields a line give the 11 base values and no discard or flush values at any level', () => {
    fx.width = 11;
    fx.disk('sda', fieldsFor(1));
    fx.partition('sda', 'sda1', fieldsFor(2));
    fx.disk('sdb', fieldsFor(3));
    fx.write();
    const block = blockCollector.create(options);
    const base = BLOCK_FIELD_NAMES.slice(0, 11);
    expect(valueNames(block.subordinate('sda')!)).toEqual([...base].sort());
    expect(valueNames(block.subordinate('sda')!.subordinate('sda1')!)).toEqual([...base].sort());
    block.visibleSubordinates();
    expect(valueNames(block)).toEqual([...base].sort());
    expectCode('ENOENT', () => block.getValue('discards_completed'));
    expectCode('ENOENT', () => block.subordinate('sda')!.getValue('flushes_completed'));
    expect(block.getValue('weighted_time_io_ms')).toBe(fieldsFor(1)[10] + fieldsFor(3)[10]);
  });

  it('4.18 to 5.4: 18 fields a line give the discard values but no flush values', () => {
    fx.width = 15;
    fx.disk('sda', fieldsFor(1));
    fx.write();
    const block = blockCollector.create(options);
    block.visibleSubordinates();
    expect(valueNames(block)).toEqual([...BLOCK_FIELD_NAMES.slice(0, 15)].sort());
    expect(block.subordinate('sda')!.getValue('time_discarding_ms')).toBe(fieldsFor(1)[14]);
    expect(block.getValue('sectors_discarded')).toBe(fieldsFor(1)[13]);
    expectCode('ENOENT', () => block.subordinate('sda')!.getValue('time_flushing_ms'));
  });

  it('clearing records a baseline: reads and block/ sums show the delta; 32-bit ms fields wrap correctly; the level is read-only', () => {
    const a = fieldsFor(1);
    a[field('time_io_ms')] = 2n ** 32n - 10n;
    fx.disk('sda', a);
    fx.disk('sdb', fieldsFor(2));
    fx.write();
    const block = blockCollector.create(options);
    const sda = block.subordinate('sda')!;
    sda.clear('sectors_read');
    sda.clear('time_io_ms');
    expect(sda.getValue('sectors_read')).toBe(0n);
    expect(block.getValue('sectors_read')).toBe(fieldsFor(2)[field('sectors_read')]);

    fx.set('sda', 'sectors_read', a[field('sectors_read')] + 4096n);
    fx.set('sda', 'time_io_ms', 5n); // the kernel's unsigned int wrapped: 15 ms passed
    later();
    expect(sda.getValue('sectors_read')).toBe(4096n);
    expect(sda.getValue('time_io_ms')).toBe(15n);
    expect(block.getValue('sectors_read')).toBe(4096n + fieldsFor(2)[field('sectors_read')]);
    expect(block.getValue('time_io_ms')).toBe(15n + fieldsFor(2)[field('time_io_ms')]);

    block.clear('writes_completed');
    fx.set('sdb', 'writes_completed', fieldsFor(2)[field('writes_completed')] + 3n);
    later();
    expect(block.getValue('writes_completed')).toBe(3n);
    expect(sda.getValue('writes_completed')).toBe(0n);

    expectCode('EPERM', () => sda.clear('ios_in_progress'));
    expectCode('EPERM', () => block.clear('ios_in_progress'));
  });

  it('one parse of /proc/diskstats serves the burst: not re-read within the window, re-read after it', () => {
    fx.disk('sda', fieldsFor(1));
    fx.partition('sda', 'sda1', fieldsFor(2));
    fx.write();
    const block = blockCollector.create(options);
    const sda = block.subordinate('sda')!;
    const sda1 = sda.subordinate('sda1')!;
    expect(sda.getValue('reads_completed')).toBe(101n);
    fx.set('sda', 'reads_completed', 111n);
    fx.set('sda', 'writes_completed', 555n);
    fx.set('sda1', 'reads_completed', 222n);
    clock += 249;
    expect(sda.getValue('reads_completed')).toBe(101n);
    expect(sda.getValue('writes_completed')).toBe(105n);
    expect(sda1.getValue('reads_completed')).toBe(201n);
    expect(block.getValue('reads_completed')).toBe(101n);
    clock += 1;
    expect(sda.getValue('reads_completed')).toBe(111n);
    expect(sda.getValue('writes_completed')).toBe(555n);
    expect(sda1.getValue('reads_completed')).toBe(222n);
  });

  it('devices and partitions appear and disappear at run time; a read of a gone one is ENOENT', () => {
    fx.disk('sda', fieldsFor(1));
    fx.write();
    const block = blockCollector.create(options);
    const sda = block.subordinate('sda')!;
    expect(names(block)).toEqual(['sda']);

    fx.disk('loop8', fieldsFor(8));
    fx.partition('sda', 'sda1', fieldsFor(2)); // the partition table was re-read
    fx.write();
    expect(names(block)).toEqual(['sda']);
    later();
    expect(names(block)).toEqual(['loop8', 'sda']);
    expect(names(sda)).toEqual(['sda1']);
    expect(block.getValue('reads_merged')).toBe(fieldsFor(1)[1] + fieldsFor(8)[1]);
    const sda1 = sda.subordinate('sda1')!;

    fx.remove('sda1');
    fx.remove('sda');
    fx.write();
    later();
    expectCode('ENOENT', () => sda.getValue('reads_merged'));
    expectCode('ENOENT', () => sda1.getValue('reads_merged'));
    expect(names(block)).toEqual(['loop8']);
    expect(block.getValue('reads_merged')).toBe(fieldsFor(8)[1]);

    // a device whose line vanishes before /sys/block is re-listed
    const loop8 = block.subordinate('loop8')!;
    fx.devs.delete('loop8');
    fx.write();
    later();
    expectCode('ENOENT', () => loop8.getValue('reads_merged'));
    expect(names(block)).toEqual([]);
    expect(block.getValue('reads_merged')).toBe(0n);
  });

  it("maps sysfs's '!' to diskstats's '/', and leaves out lines that are neither listed devices nor their partitions", () => {
    fx.disk('cciss/c0d0', fieldsFor(1));
    fx.partition('cciss/c0d0', 'cciss/c0d0p1', fieldsFor(2));
    fx.disk('nvme0c0n1', fieldsFor(3), { hidden: true }); // in diskstats, not in /sys/block
    fx.disk('sda', fieldsFor(4));
    fx.write();
    // a /sys/block entry without a diskstats line is not shown either
    mkdirSync(join(fx.sys, 'block', 'sdz'));
    const block = blockCollector.create(options);
    expect(names(block)).toEqual(['cciss!c0d0', 'sda']);
    const cciss = block.subordinate('cciss!c0d0')!;
    expect(cciss.getValue('sectors_read')).toBe(fieldsFor(1)[2]);
    expect(names(cciss)).toEqual(['cciss!c0d0p1']);
    expect(cciss.subordinate('cciss!c0d0p1')!.getValue('sectors_read')).toBe(fieldsFor(2)[2]);
    expect(block.getValue('sectors_read')).toBe(fieldsFor(1)[2] + fieldsFor(4)[2]);
  });

  it('a partition whose name starts with another disk is placed under its own disk', () => {
    fx.disk('loop1', fieldsFor(1));
    fx.disk('loop10', fieldsFor(2));
    fx.partition('loop10', 'loop10p1', fieldsFor(3));
    fx.partition('loop1', 'loop1p1', fieldsFor(4));
    fx.write();
    const block = blockCollector.create(options);
    expect(names(block.subordinate('loop1')!)).toEqual(['loop1p1']);
    expect(names(block.subordinate('loop10')!)).toEqual(['loop10p1']);
  });

  it('without /proc/diskstats or /sys/block, block/ is empty and its sums are 0', () => {
    rmSync(join(fx.proc, 'diskstats'));
    const block = blockCollector.create(options);
    expect(names(block)).toEqual([]);
    expect(block.getValue('sectors_read')).toBe(0n);
    const bare = blockCollector.create(collectorOptions({ procRoot: fx.proc, sysRoot: join(fx.root, 'nowhere'), now: () => clock }));
    expect(names(bare)).toEqual([]);
  });
});
