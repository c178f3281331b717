/**
 * cpu collector against fixture /proc trees written in the kernel's exact /proc/stat format: exact values per
 * CPU and above 2^53, sums that equal the machine-wide "cpu" line, busy and busy_max, the freshness rule,
 * clear + baseline on a CPU and on an aggregate, CPUs going offline and online, and a 256-CPU host.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { collectorOptions, type CollectorOptions } from '../../../src/collectors/common.js';
import { CPU_TIME_UNIT, CPU_TIMES, cpuCollector, parseCpuTimes } from '../../../src/collectors/cpu.js';
import { StatsError, type Source } from '../../../src/model/index.js';

type Times = bigint[]; // the ten kernel fields, in order

const FRESH = 250;
const BUSIEST = 100_000_000n;
const BUSY_PARTS = [0, 1, 2, 5, 6, 7];
const busyOf = (t: Times) => BUSY_PARTS.reduce((a, i) => a + t[i], 0n);

/** A /proc/stat as show_stat() prints it: the machine-wide line (sum over CPUs), cpuN lines, then the rest. */
function statText(cpus: ReadonlyMap<number, Times>, aggregateLine = true): string {
  const total = new Array<bigint>(10).fill(0n);
  for (const t of cpus.values()) t.forEach((v, i) => (total[i] += v));
  const lines: string[] = [];
  if (aggregateLine) lines.push(`cpu  ${total.join(' ')}`);
  for (const [n, t] of cpus) lines.push(`cpu${n} ${t.join(' ')}`);
  lines.push(`intr 1462898 ${Array.from({ length: 300 }, (_, i) => i % 7).join(' ')}`);
  lines.push('ctxt 5031277', 'btime 1413637009', 'processes 16044', 'procs_running 1', 'procs_blocked 0');
  lines.push('softirq 2026463 13 603216 2216 136416 0 0 33960 623390 0 614252');
  return lines.join('\n') + '\n';
}

/** Deterministic, distinct, unevenly spread times for CPU n. */
function timesOf(n: number): Times {
  const b = BigInt(n);
  return [
    1_000_000n + b * 7919n, // user
    1_000n + b * 13n, // nice
    300_000n + b * 104_729n, // system
    40_000_000n - b * 1_013n, // idle
    16_000n + b, // iowait
    b % 5n, // irq
    25_000n + b * 3n, // softirq
    b % 3n === 0n ? 0n : 17n * b, // steal
    b * 11n, // guest (part of user)
    b % 2n, // guest_nice (part of nice)
  ];
}

let dir: string;
let clock: number;
let options: CollectorOptions;
let cpus: Map<number, Times>;

const writeStat = (text = statText(cpus)) => writeFileSync(join(dir, 'proc', 'stat'), text);
const advance = (ms = FRESH) => (clock += ms);
const names = (top: Source) => top.visibleSubordinates().map((s) => s.name);
const sum = (i: number) => [...cpus.values()].reduce((a, t) => a + t[i], 0n);
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return err instanceof StatsError ? err.code : String(err);
  }
  return 'no error';
};

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'statsfs-cpu-'));
  mkdirSync(join(dir, 'proc'));
  mkdirSync(join(dir, 'sys'));
  clock = 1_000;
  options = collectorOptions({ procRoot: join(dir, 'proc'), sysRoot: join(dir, 'sys'), freshnessMs: FRESH, now: () => clock });
  cpus = new Map([0, 1, 2, 3].map((n) => [n, timesOf(n)]));
  writeStat();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('cpu collector', () => {
  it('lays out cpu/cpuN/ with the ten times and busy, and sums plus busy_max at cpu/', () => {
    const top = cpuCollector.create(options);
    expect(top.name).toBe('cpu');
    expect(names(top)).toEqual(['cpu0', 'cpu1', 'cpu2', 'cpu3']);
    const perCpu = top.subordinate('cpu0')!.visibleValues();
    expect(perCpu.map((v) => v.def.name).sort()).toEqual([...CPU_TIMES, 'busy'].sort());
    for (const { def } of perCpu) {
      expect(def.mode).toBe(0o644);
      expect(def.unit).toBe(CPU_TIME_UNIT);
      expect(def.description).not.toBe('');
    }
    const atTop = top.visibleValues();
    expect(atTop.map((v) => v.def.name).sort()).toEqual([...CPU_TIMES, 'busy', 'busy_max'].sort());
    for (const { group, def } of atTop) {
      expect(group.isAggregate).toBe(true);
      expect(def.aggr).toBe(def.name === 'busy_max' ? 'max' : 'sum');
      expect(def.unit).toBe(CPU_TIME_UNIT);
      expect(def.mode).toBe(0o644);
    }
  });

  it('reads every time of every CPU exactly, and busy = user+nice+system+irq+softirq+steal', () => {
    const top = cpuCollector.create(options);
    for (const [n, t] of cpus) {
      const cpu = top.subordinate(`cpu${n}`)!;
      CPU_TIMES.forEach((name, i) => expect(cpu.getValue(name), `cpu${n}/${name}`).toBe(t[i]));
      expect(cpu.getValue('busy')).toBe(busyOf(t));
      expect(cpu.getValue('busy')).toBe(t[0] + t[1] + t[2] + t[5] + t[6] + t[7]); // guest not added again
      expect(top.subordinate(`cpu${n}`)!.findValue('busy_max', true)).toBeUndefined(); // hidden per CPU
    }
  });

  it('cpu/<time> equals the machine-wide "cpu" line, which is not itself counted', () => {
    const top = cpuCollector.create(options);
    const line = parseLine(statText(cpus).split('\n')[0]);
    CPU_TIMES.forEach((name, i) => {
      expect(top.getValue(name), name).toBe(line[i]);
      expect(top.getValue(name), name).toBe(sum(i));
    });
    expect(top.getValue('busy')).toBe(busyOf(line));
    expect(top.getValue('busy_max')).toBe([...cpus.values()].map(busyOf).reduce((a, b) => (b > a ? b : a)));
    // the same without the machine-wide line: nothing depended on it
    writeStat(statText(cpus, false));
    advance();
    expect(top.getValue('user')).toBe(line[0]);
  });

  it('keeps values above 2^53 exact, in CPUs and sums', () => {
    const big = 2n ** 62n + 12_345n; // > 2^53, and four of them still fit in 64 bits
    cpus.set(1, [big, 1n, big + 1n, 2n ** 53n + 1n, 0n, 0n, 0n, 0n, 0n, 0n]);
    cpus.set(2, [big + 7n, 0n, 0n, 2n ** 53n + 3n, 0n, 0n, 0n, 0n, 0n, 0n]);
    writeStat();
    const top = cpuCollector.create(options);
    expect(top.subordinate('cpu1')!.getValue('user')).toBe(big);
    expect(top.subordinate('cpu1')!.getValue('busy')).toBe(big + 1n + big + 1n);
    expect(top.getValue('user')).toBe(sum(0));
    expect(top.getValue('idle')).toBe(sum(3));
    expect(top.getValue('busy_max')).toBe(2n * big + 2n);
  });

  it('serves a burst from one parse: a change inside the window is not seen, after it it is', () => {
    const top = cpuCollector.create(options);
    const cpu0 = top.subordinate('cpu0')!;
    const before = cpu0.getValue('user');
    cpus.get(0)![0] += 500n;
    writeStat();
    advance(FRESH - 1);
    expect(cpu0.getValue('user')).toBe(before);
    expect(top.getValue('user')).toBe(sum(0) - 500n);
    advance(1);
    expect(cpu0.getValue('user')).toBe(before + 500n);
    expect(top.getValue('user')).toBe(sum(0));
  });

  it('clearing one CPU counter records a baseline: later reads and the sum show the delta', () => {
    const top = cpuCollector.create(options);
    const cpu2 = top.subordinate('cpu2')!;
    cpu2.clear('system');
    expect(cpu2.getValue('system')).toBe(0n);
    expect(top.getValue('system')).toBe(sum(2) - cpus.get(2)![2]);
    cpus.get(2)![2] += 42n;
    cpus.get(3)![2] += 8n;
    writeStat();
    advance();
    expect(cpu2.getValue('system')).toBe(42n);
    expect(top.getValue('system')).toBe(sum(2) - cpus.get(2)![2] + 42n);
    expect(cpu2.getValue('user')).toBe(cpus.get(2)![0]); // other counters keep counting from boot
  });

  it('clearing cpu/user sets a baseline on every CPU; the aggregate then sums the deltas', () => {
    const top = cpuCollector.create(options);
    top.clear('user');
    expect(top.getValue('user')).toBe(0n);
    for (const n of cpus.keys()) expect(top.subordinate(`cpu${n}`)!.getValue('user')).toBe(0n);
    expect(top.getValue('system')).toBe(sum(2)); // only user was cleared
    const deltas = [3n, 0n, 1_000n, 2n ** 40n];
    deltas.forEach((d, n) => (cpus.get(n)![0] += d));
    writeStat();
    advance();
    deltas.forEach((d, n) => expect(top.subordinate(`cpu${n}`)!.getValue('user')).toBe(d));
    expect(top.getValue('user')).toBe(deltas.reduce((a, b) => a + b));
  });

  it('busy_max restarts from its own clear, independently of busy', () => {
    const top = cpuCollector.create(options);
    const busyBefore = top.getValue('busy');
    top.clear('busy_max');
    expect(top.getValue('busy_max')).toBe(0n);
    expect(top.getValue('busy')).toBe(busyBefore);
    cpus.get(1)![0] += 70n; // user
    cpus.get(3)![6] += 90n; // softirq
    cpus.get(3)![3] += 1_000n; // idle: not busy
    writeStat();
    advance();
    expect(top.getValue('busy_max')).toBe(90n);
    expect(top.getValue('busy')).toBe(busyBefore + 160n);
    top.clear('busy');
    expect(top.getValue('busy')).toBe(0n);
    expect(top.getValue('busy_max')).toBe(90n);
  });

  it('CPUs going offline disappear, coming back they reappear with their baselines; new CPUs appear', () => {
    const top = cpuCollector.create(options);
    top.clear('user');
    const cpu1 = top.subordinate('cpu1')!;
    const offline = cpus.get(1)!;
    cpus.delete(1);
    writeStat();
    // within the window nothing changes
    advance(FRESH - 1);
    expect(names(top)).toEqual(['cpu0', 'cpu1', 'cpu2', 'cpu3']);
    advance(1);
    expect(names(top)).toEqual(['cpu0', 'cpu2', 'cpu3']);
    expect(top.subordinate('cpu1')).toBeUndefined();
    expect(code(() => cpu1.getValue('user'))).toBe('ENOENT'); // a held handle on the gone CPU
    expect(top.getValue('idle')).toBe(sum(3));
    expect(top.getValue('user')).toBe(0n);

    offline[0] += 5n; // the kernel keeps an offline CPU's counters
    cpus.set(1, offline);
    cpus.set(4, timesOf(4)); // hot-added
    writeStat();
    advance();
    expect(new Set(names(top))).toEqual(new Set(['cpu0', 'cpu1', 'cpu2', 'cpu3', 'cpu4']));
    expect(top.subordinate('cpu1')!.getValue('user')).toBe(5n);
    expect(top.subordinate('cpu4')!.getValue('user')).toBe(timesOf(4)[0]); // no baseline: never cleared
    expect(top.getValue('user')).toBe(5n + timesOf(4)[0]);
    expect(top.getValue('idle')).toBe(sum(3));
  });

  it('an aggregate read right after a CPU went offline does not touch it', () => {
    const top = cpuCollector.create(options);
    const cpu0 = top.subordinate('cpu0')!;
    advance(FRESH);
    cpu0.getValue('user'); // a value read makes a new parse at t
    advance(10);
    top.visibleSubordinates(); // the refresher runs at t+10 (same parse)
    cpus.delete(3);
    writeStat();
    advance(FRESH - 10); // past the parse's window, not past the refresher's last run
    expect(top.getValue('user')).toBe(sum(0));
    expect(names(top)).toEqual(['cpu0', 'cpu1', 'cpu2']);
  });

  it('reads an older kernel format without steal/guest/guest_nice as zeros', () => {
    writeFileSync(join(dir, 'proc', 'stat'), 'cpu  10 20 30 40 50 60 70\ncpu0 10 20 30 40 50 60 70\nintr 0\nctxt 1\n');
    const top = cpuCollector.create(options);
    const cpu0 = top.subordinate('cpu0')!;
    expect(CPU_TIMES.map((n) => cpu0.getValue(n))).toEqual([10n, 20n, 30n, 40n, 50n, 60n, 70n, 0n, 0n, 0n]);
    expect(cpu0.getValue('busy')).toBe(10n + 20n + 30n + 60n + 70n);
  });

  it('fails with ENOENT when /proc/stat is missing, at create() or later', () => {
    const top = cpuCollector.create(options);
    rmSync(join(dir, 'proc', 'stat'));
    advance();
    expect(code(() => top.subordinate('cpu0')!.getValue('user'))).toBe('ENOENT');
    expect(code(() => cpuCollector.create(options))).toBe('ENOENT');
  });

  it('parses only the cpuN lines', () => {
    const parsed = parseCpuTimes(statText(cpus));
    expect([...parsed.keys()]).toEqual(['cpu0', 'cpu1', 'cpu2', 'cpu3']);
    expect(parsed.get('cpu2')!.slice(0, 10)).toEqual(cpus.get(2));
  });

  describe('256 CPUs', () => {
    beforeEach(() => {
      cpus = new Map(Array.from({ length: 256 }, (_, n) => [n, timesOf(n)] as [number, Times]));
      cpus.get(77)![2] += BUSIEST; // system: cpu77 is the busiest, not the last one
      writeStat();
    });

    it('lists them all, sums exactly to the machine-wide line and finds the busiest', () => {
      const top = cpuCollector.create(options);
      expect(names(top)).toEqual(Array.from({ length: 256 }, (_, n) => `cpu${n}`));
      const line = parseLine(statText(cpus).split('\n')[0]);
      CPU_TIMES.forEach((name, i) => expect(top.getValue(name), name).toBe(line[i]));
      // fixed figures, so the fixture itself is checked too
      expect(top.getValue('user')).toBe(256_000_000n + 7919n * 32_640n);
      expect(top.getValue('system')).toBe(76_800_000n + 104_729n * 32_640n + BUSIEST);
      const busies = [...cpus.values()].map(busyOf);
      expect(top.getValue('busy')).toBe(busies.reduce((a, b) => a + b));
      const max = busies.reduce((a, b) => (b > a ? b : a));
      expect(top.getValue('busy_max')).toBe(max);
      expect(busies.indexOf(max)).toBe(77);
      expect(max).toBe(busyOf(timesOf(77)) + BUSIEST);
    });

    it('clear on an aggregate reaches every CPU, and a CPU leaves and comes back', () => {
      const top = cpuCollector.create(options);
      top.clear('user');
      for (const sub of top.visibleSubordinates()) expect(sub.getValue('user'), sub.name).toBe(0n);
      for (const [n, t] of cpus) t[0] += BigInt(n);
      cpus.delete(128);
      writeStat();
      advance();
      expect(names(top)).toHaveLength(255);
      expect(names(top)).not.toContain('cpu128');
      expect(top.getValue('user')).toBe(32_640n - 128n);
      expect(top.getValue('busy_max')).toBe(busyOf(timesOf(77)) + BUSIEST + 77n); // busy_max was not cleared
      cpus.set(128, timesOf(128).map((v, i) => (i === 0 ? v + 128n : v)));
      writeStat();
      advance();
      expect(names(top)).toHaveLength(256);
      expect(top.subordinate('cpu128')!.getValue('user')).toBe(128n);
      expect(top.getValue('user')).toBe(32_640n);
    });
  });
});

function parseLine(line: string): Times {
  return line.trim().split(/\s+/).slice(1).map(BigInt);
}
