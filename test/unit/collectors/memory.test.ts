/**
 * memory collector against a fixture /proc/meminfo in the kernel's exact format: exact bytes (kB × 1024)
 * and counts, the kernel's own names, read-only values, the freshness rule, u64 exactness, and keys that
 * appear or disappear after the freshness window.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { collectorOptions, type CollectorOptions } from '../../../src/collectors/common.js';
import { memoryCollector, parseMeminfo } from '../../../src/collectors/memory.js';
import { StatsError, type Source } from '../../../src/model/index.js';

const FRESH = 250;

/** A meminfo as the kernel prints it ("%-15s%8lu kB" style padding, unit-less huge page counts). */
const ENTRIES: [string, bigint, string][] = [
  ['MemTotal', 24684084n, 'kB'],
  ['MemFree', 24514136n, 'kB'],
  ['MemAvailable', 24431156n, 'kB'],
  ['Buffers', 228n, 'kB'],
  ['Cached', 13448n, 'kB'],
  ['SwapCached', 0n, 'kB'],
  ['Active', 5816n, 'kB'],
  ['Inactive', 5540n, 'kB'],
  ['Active(anon)', 1468n, 'kB'],
  ['Inactive(anon)', 5008n, 'kB'],
  ['Active(file)', 4348n, 'kB'],
  ['Inactive(file)', 532n, 'kB'],
  ['Unevictable', 13612n, 'kB'],
  ['Mlocked', 12608n, 'kB'],
  ['SwapTotal', 0n, 'kB'],
  ['SwapFree', 0n, 'kB'],
  ['Dirty', 12n, 'kB'],
  ['Writeback', 0n, 'kB'],
  ['AnonPages', 11288n, 'kB'],
  ['Mapped', 10656n, 'kB'],
  ['Shmem', 8872n, 'kB'],
  ['KReclaimable', 72152n, 'kB'],
  ['Slab', 96672n, 'kB'],
  ['SReclaimable', 72152n, 'kB'],
  ['SUnreclaim', 24520n, 'kB'],
  ['KernelStack', 1364n, 'kB'],
  ['PageTables', 1876n, 'kB'],
  ['CommitLimit', 12342040n, 'kB'],
  ['Committed_AS', 55836n, 'kB'],
  ['VmallocTotal', 34359738367n, 'kB'],
  ['VmallocUsed', 14188n, 'kB'],
  ['VmallocChunk', 0n, 'kB'],
  ['Percpu', 664n, 'kB'],
  ['AnonHugePages', 0n, 'kB'],
  ['HugePages_Total', 512n, ''],
  ['HugePages_Free', 500n, ''],
  ['HugePages_Rsvd', 3n, ''],
  ['HugePages_Surp', 0n, ''],
  ['Hugepagesize', 2048n, 'kB'],
  ['Hugetlb', 1048576n, 'kB'],
  ['DirectMap4k', 26624n, 'kB'],
  ['DirectMap2M', 2070528n, 'kB'],
  ['DirectMap1G', 25165824n, 'kB'],
];

function meminfoText(entries: readonly [string, bigint, string][]): string {
  return entries.map(([k, v, u]) => `${(k + ':').padEnd(16)}${String(v).padStart(8)}${u ? ' ' + u : ''}`).join('\n') + '\n';
}

let dir: string;
let clock: number;
let options: CollectorOptions;
let entries: [string, bigint, string][];

const writeMeminfo = (text = meminfoText(entries)) => writeFileSync(join(dir, 'proc', 'meminfo'), text);
const advance = (ms = FRESH) => (clock += ms);
const set = (key: string, value: bigint) => (entries.find((e) => e[0] === key)![1] = value);
/** What opendir does: refresh (through the subordinate listing), then list the values. */
const listed = (top: Source) => {
  top.visibleSubordinates();
  return top.visibleValues().map((v) => v.def.name);
};
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err instanceof StatsError ? err.code : String(err);
  }
  return 'no error';
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'statsfs-memory-'));
  mkdirSync(join(dir, 'proc'));
  mkdirSync(join(dir, 'sys'));
  clock = 1_000;
  options = collectorOptions({ procRoot: join(dir, 'proc'), sysRoot: join(dir, 'sys'), freshnessMs: FRESH, now: () => clock });
  entries = ENTRIES.map((e) => [...e]);
  writeMeminfo();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('memory collector', () => {
  it('shows every meminfo line under its kernel name, in the kernel order', () => {
    const top = memoryCollector.create(options);
    expect(top.name).toBe('memory');
    expect(top.visibleSubordinates()).toEqual([]);
    expect(new Set(listed(top))).toEqual(new Set(ENTRIES.map((e) => e[0])));
    expect(top.valueGroups[0].schema.defs.map((d) => d.name)).toEqual(ENTRIES.map((e) => e[0]));
  });

  it('gives exact bytes for kB lines and counts for unit-less lines', () => {
    const top = memoryCollector.create(options);
    for (const [key, value, unit] of ENTRIES) {
      expect(top.getValue(key), key).toBe(unit === 'kB' ? value * 1024n : value);
    }
    expect(top.getValue('MemTotal')).toBe(25_276_502_016n);
    expect(top.getValue('Active(anon)')).toBe(1_503_232n);
    expect(top.getValue('VmallocTotal')).toBe(35_184_372_087_808n);
    expect(top.getValue('Hugepagesize')).toBe(2_097_152n);
    expect(top.getValue('HugePages_Total')).toBe(512n);
    expect(top.valueGroups[0].render('MemFree')).toBe('25102475264\n');
  });

  it('states units: bytes, pages for huge page counts, count for other unit-less lines', () => {
    entries.push(['Widgets', 7n, '']);
    writeMeminfo();
    const top = memoryCollector.create(options);
    const unitOf = (key: string) => top.findValue(key)!.def.unit;
    expect(unitOf('MemTotal')).toBe('bytes');
    expect(unitOf('DirectMap1G')).toBe('bytes');
    expect(unitOf('HugePages_Free')).toBe('pages');
    expect(unitOf('Widgets')).toBe('count');
    expect(top.getValue('Widgets')).toBe(7n);
    for (const { def } of top.visibleValues()) expect(def.description, def.name).not.toBe('');
    expect(top.findValue('MemAvailable')!.def.description).toMatch(/available/);
  });

  it('is read-only: floating, 0444, clearing is EPERM and changes nothing', () => {
    const top = memoryCollector.create(options);
    for (const { def } of top.visibleValues()) {
      expect(def.floating, def.name).toBe(true);
      expect(def.mode, def.name).toBe(0o444);
      expect(def.clearable, def.name).toBe(false);
    }
    expect(code(() => top.clear('MemTotal'))).toBe('EPERM');
    expect(code(() => top.clear('HugePages_Total'))).toBe('EPERM');
    expect(top.getValue('MemTotal')).toBe(24684084n * 1024n);
  });

  it('keeps u64 values exact beyond 2^53', () => {
    const huge = 2n ** 54n - 1n; // kB: × 1024 is far above 2^53 and below 2^64
    set('VmallocTotal', huge);
    set('HugePages_Total', 2n ** 63n + 5n);
    writeMeminfo();
    const top = memoryCollector.create(options);
    expect(top.getValue('VmallocTotal')).toBe(huge * 1024n);
    expect(top.getValue('HugePages_Total')).toBe(2n ** 63n + 5n);
    expect(top.valueGroups[0].render('VmallocTotal')).toBe('18446744073709550592\n');
  });

  it('serves a burst from one parse: a change inside the window is not seen, after it it is', () => {
    const top = memoryCollector.create(options);
    set('MemFree', 1n);
    set('Dirty', 2n);
    writeMeminfo();
    advance(FRESH - 1);
    expect(top.getValue('MemFree')).toBe(24514136n * 1024n);
    expect(top.getValue('Dirty')).toBe(12n * 1024n);
    advance(1);
    expect(top.getValue('MemFree')).toBe(1024n);
    expect(top.getValue('Dirty')).toBe(2048n);
  });

  it('a key added to the file appears after the window; a removed one disappears (ENOENT meanwhile)', () => {
    const top = memoryCollector.create(options);
    const before = top.valueGroups[0];
    entries.splice(2, 0, ['Zswap', 64n, 'kB']);
    entries = entries.filter((e) => e[0] !== 'Percpu');
    writeMeminfo();
    advance(FRESH - 1);
    expect(listed(top)).not.toContain('Zswap');
    expect(listed(top)).toContain('Percpu');
    expect(top.getValue('Percpu')).toBe(664n * 1024n);
    advance(1);
    // a read of the gone key before the listing is refreshed: ENOENT, not EIO
    expect(code(() => top.getValue('Percpu'))).toBe('ENOENT');
    expect(listed(top)).toContain('Zswap');
    expect(listed(top)).not.toContain('Percpu');
    expect(top.getValue('Zswap')).toBe(65_536n);
    expect(top.findValue('Zswap', true)!.def.unit).toBe('bytes');
    expect(code(() => top.getValue('Percpu'))).toBe('ENOENT');
    expect(top.valueGroups).toHaveLength(1);
    expect(top.valueGroups[0]).not.toBe(before);
    expect(top.valueGroups[0].schema.defs.map((d) => d.name).slice(0, 4)).toEqual(['MemTotal', 'MemFree', 'Zswap', 'MemAvailable']);
  });

  it('keeps the same value group while the key set is unchanged', () => {
    const top = memoryCollector.create(options);
    const group = top.valueGroups[0];
    set('MemFree', 5n);
    writeMeminfo();
    advance();
    expect(listed(top)).toHaveLength(ENTRIES.length);
    expect(top.valueGroups[0]).toBe(group);
    expect(top.getValue('MemFree')).toBe(5120n);
  });

  it('leaves out names the model rejects and units other than kB', () => {
    const text = meminfoText(entries) + `${'X'.repeat(100)}:  1 kB\nOddUnit:  5 MB\n`;
    writeMeminfo(text);
    const top = memoryCollector.create(options);
    expect(listed(top)).toHaveLength(ENTRIES.length);
    expect(top.findValue('OddUnit')).toBeUndefined();
    expect(parseMeminfo(text).values.size).toBe(ENTRIES.length);
  });

  it('fails with ENOENT when meminfo is missing, at create() or later', () => {
    const top = memoryCollector.create(options);
    rmSync(join(dir, 'proc', 'meminfo'));
    advance();
    expect(code(() => top.getValue('MemTotal'))).toBe('ENOENT');
    expect(code(() => top.visibleSubordinates())).toBe('ENOENT');
    expect(code(() => memoryCollector.create(options))).toBe('ENOENT');
  });
});
