/**
 * The cgroup collector against fixture trees written in the kernel's formats: where the v2 root is found,
 * the nested layout, exact values (io.stat summed over devices, 64-bit values beyond 2^53), no double
 * counting of the kernel's hierarchical files, procs_total as the only aggregate, clear to a baseline, the
 * freshness rule, cgroups and controllers that come and go, re-created cgroups, and names the model rejects.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cgroupCollector, findCgroup2Root } from '../../../src/collectors/cgroup.js';
import { collectorOptions } from '../../../src/collectors/common.js';
import { Source, StatsError } from '../../../src/model/index.js';
import { at, BIG, cpuStat, Fixture, FRESH, memoryStat, names, smallHierarchy } from '../../helpers/cgroup-fixture.js';

// as the filesystem lists a directory: subordinates first (which refreshes the source), then values
const valueNames = (s: Source) => (s.visibleSubordinates(), s.visibleValues()).map((v) => v.def.name).sort();

function statsError(fn: () => unknown): StatsError {
  try {
    fn();
  } catch (err) {
    if (err instanceof StatsError) return err;
    throw err;
  }
  throw new Error('expected a StatsError');
}

describe('cgroup collector: finding the v2 hierarchy', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'statsfs-cgroot-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const opts = () => collectorOptions({ sysRoot: join(dir, 'sys'), procRoot: join(dir, 'proc') });

  it('pure v2: <sys>/fs/cgroup with cgroup.controllers', () => {
    mkdirSync(join(dir, 'sys/fs/cgroup/unified'), { recursive: true });
    writeFileSync(join(dir, 'sys/fs/cgroup/cgroup.controllers'), 'cpu io memory pids\n');
    writeFileSync(join(dir, 'sys/fs/cgroup/unified/cgroup.controllers'), '\n');
    expect(findCgroup2Root(opts())).toBe(join(dir, 'sys/fs/cgroup'));
  });

  it('hybrid: <sys>/fs/cgroup/unified when fs/cgroup itself is not v2', () => {
    mkdirSync(join(dir, 'sys/fs/cgroup/unified'), { recursive: true });
    writeFileSync(join(dir, 'sys/fs/cgroup/unified/cgroup.controllers'), '\n');
    expect(findCgroup2Root(opts())).toBe(join(dir, 'sys/fs/cgroup/unified'));
  });

  it('neither (v1 only, or nothing mounted): an empty cgroup source, no error', () => {
    mkdirSync(join(dir, 'sys/fs/cgroup/memory'), { recursive: true });
    expect(findCgroup2Root(opts())).toBeNull();
    const top = cgroupCollector.create(opts());
    expect(top.name).toBe('cgroup');
    expect(top.visibleSubordinates()).toEqual([]);
    expect(top.visibleValues()).toEqual([]);
  });
});

describe('cgroup collector on a fixture hierarchy', () => {
  let f: Fixture;
  let top: Source;
  beforeEach(() => {
    f = new Fixture();
    smallHierarchy(f);
    top = cgroupCollector.create(f.options);
  });
  afterEach(() => f.cleanup());

  it('mirrors the hierarchy as nested sources; the top source is the root cgroup', () => {
    expect(top.name).toBe('cgroup');
    expect(names(top).sort()).toEqual(['system.slice', 'user.slice']);
    expect(names(at(top, 'system.slice')).sort()).toEqual(['a.service', 'b.service']);
    expect(names(at(top, 'system.slice', 'a.service'))).toEqual(['worker']);
    expect(names(at(top, 'system.slice', 'a.service', 'worker'))).toEqual([]);
    Source.root().addSubordinate(top);
    expect(at(top, 'system.slice', 'a.service', 'worker').path).toBe('cgroup/system.slice/a.service/worker');
  });

  it('shows only the values whose files exist (controllers not enabled there are absent, not 0)', () => {
    const io = ['io.dbytes', 'io.dios', 'io.rbytes', 'io.rios', 'io.wbytes', 'io.wios'];
    const cpu = ['cpu.system_usec', 'cpu.usage_usec', 'cpu.user_usec'];
    const mem = ['memory.anon', 'memory.current', 'memory.file', 'memory.file_dirty', 'memory.file_mapped', 'memory.file_writeback', 'memory.kernel_stack', 'memory.pagetables', 'memory.pgfault', 'memory.pgmajfault', 'memory.shmem', 'memory.sock'];
    const procs = ['procs', 'procs_total'];
    // the root has cpu.stat and io.stat but, as in the kernel, no memory.current or pids.current
    expect(valueNames(top)).toEqual([...cpu, ...io, ...procs].sort());
    expect(valueNames(at(top, 'system.slice'))).toEqual([...cpu, ...io, ...mem, 'pids.current', ...procs].sort());
    expect(valueNames(at(top, 'system.slice', 'b.service'))).toEqual([...cpu, ...procs].sort());
    expect(statsError(() => at(top, 'system.slice', 'b.service').getValue('memory.current')).code).toBe('ENOENT');
  });

  it('reads exact values, with types, units and modes', () => {
    const slice = at(top, 'system.slice');
    expect(slice.getValue('cpu.usage_usec')).toBe(5000n);
    expect(slice.getValue('cpu.user_usec')).toBe(3000n);
    expect(slice.getValue('cpu.system_usec')).toBe(2000n);
    expect(slice.getValue('memory.current')).toBe(1n << 30n);
    const stat = { anon: 100n, file: 200n, kernel_stack: 300n, pagetables: 400n, sock: 500n, shmem: 600n, file_mapped: 700n, file_dirty: 800n, file_writeback: 900n, pgfault: 1000n, pgmajfault: 11n };
    for (const [k, v] of Object.entries(stat)) expect(slice.getValue('memory.' + k), k).toBe(v);
    expect(slice.getValue('pids.current')).toBe(12n);

    const modes = Object.fromEntries(slice.visibleValues().map(({ def }) => [def.name, [def.mode, def.unit, def.description !== '']]));
    expect(modes['cpu.usage_usec']).toEqual([0o644, 'microseconds', true]);
    expect(modes['memory.current']).toEqual([0o444, 'bytes', true]);
    expect(modes['memory.anon']).toEqual([0o444, 'bytes', true]);
    expect(modes['memory.pgfault']).toEqual([0o644, 'faults', true]);
    expect(modes['io.rbytes']).toEqual([0o644, 'bytes', true]);
    expect(modes['io.rios']).toEqual([0o644, 'operations', true]);
    expect(modes['pids.current']).toEqual([0o444, 'tasks', true]);
    expect(modes['procs']).toEqual([0o444, 'processes', true]);
    expect(modes['procs_total']).toEqual([0o444, 'processes', true]);
  });

  it('sums io.stat over devices, ignoring other keys (iocost); an empty io.stat is 0', () => {
    const slice = at(top, 'system.slice');
    expect(slice.getValue('io.rbytes')).toBe(1005n);
    expect(slice.getValue('io.wbytes')).toBe(2006n);
    expect(slice.getValue('io.rios')).toBe(11n);
    expect(slice.getValue('io.wios')).toBe(22n);
    expect(slice.getValue('io.dbytes')).toBe(37n);
    expect(slice.getValue('io.dios')).toBe(4n);
    expect(at(top, 'system.slice', 'a.service').getValue('io.wbytes')).toBe(0n);
  });

  it('keeps 64-bit values exact beyond 2^53, also when summing devices', () => {
    const user = at(top, 'user.slice');
    expect(user.getValue('cpu.usage_usec')).toBe(BIG);
    expect(user.getValue('cpu.user_usec')).toBe(BIG - 1n);
    f.cgroup('big', { io: [`8:0 rbytes=${2n ** 62n + 1n} wbytes=1 rios=0 wios=0 dbytes=0 dios=0`, `8:16 rbytes=${2n ** 62n + 2n} wbytes=${2n ** 64n - 2n} rios=0 wios=0 dbytes=0 dios=0`], memory: { current: 2n ** 64n - 1n, stat: { anon: BIG } } });
    f.advance();
    const big = at(top, 'big');
    expect(big.getValue('io.rbytes')).toBe(2n ** 63n + 3n);
    expect(big.getValue('io.wbytes')).toBe(2n ** 64n - 1n);
    expect(big.getValue('memory.current')).toBe(2n ** 64n - 1n);
    expect(big.getValue('memory.anon')).toBe(BIG);
    expect(big.valueGroups.find((g) => g.schema.find('memory.anon'))!.render('memory.anon')).toBe(`${BIG}\n`);
  });

  it('adds no aggregate over hierarchical files: each value is the kernel file, not a sum again', () => {
    // system.slice's cpu.stat already includes a.service, worker and b.service: 5000, not 5000+4000+1000+1000
    expect(at(top, 'system.slice').getValue('cpu.usage_usec')).toBe(5000n);
    expect(top.getValue('cpu.usage_usec')).toBe(1000n);
    expect(top.getValue('io.rbytes')).toBe(10n);
    for (const s of [top, at(top, 'system.slice')]) {
      for (const { group, def } of s.visibleValues()) expect(group.isAggregate, def.name).toBe(def.name === 'procs_total');
    }
  });

  it('procs counts own distinct PIDs; procs_total sums the subtree', () => {
    expect(top.getValue('procs')).toBe(2n);
    expect(at(top, 'system.slice').getValue('procs')).toBe(0n);
    expect(at(top, 'system.slice', 'a.service', 'worker').getValue('procs')).toBe(2n); // 102 listed twice
    expect(at(top, 'system.slice', 'a.service').getValue('procs_total')).toBe(4n);
    expect(at(top, 'system.slice').getValue('procs_total')).toBe(5n);
    expect(top.getValue('procs_total')).toBe(9n);
    expect(statsError(() => top.clear('procs_total')).code).toBe('EPERM');
  });

  it('clearing a counter records a baseline; later reads show the delta; gauges are read-only', () => {
    const a = at(top, 'system.slice', 'a.service');
    a.clear('cpu.usage_usec');
    a.clear('io.rbytes');
    expect(a.getValue('cpu.usage_usec')).toBe(0n);
    expect(a.getValue('cpu.user_usec')).toBe(2500n); // other values of the same file are untouched
    f.write('system.slice/a.service', 'cpu.stat', cpuStat([4750n, 2700n, 2050n]));
    f.write('system.slice/a.service', 'io.stat', '8:0 rbytes=300 wbytes=0 rios=0 wios=0 dbytes=0 dios=0\n8:16 rbytes=45 wbytes=0 rios=0 wios=0 dbytes=0 dios=0\n');
    f.advance();
    expect(a.getValue('cpu.usage_usec')).toBe(750n);
    expect(a.getValue('io.rbytes')).toBe(345n);
    expect(at(top, 'system.slice').getValue('cpu.usage_usec')).toBe(5000n); // a baseline is per value
    expect(statsError(() => a.clear('memory.current')).code).toBe('EPERM');
    expect(statsError(() => a.clear('pids.current')).code).toBe('EPERM');
    expect(statsError(() => a.clear('procs')).code).toBe('EPERM');
  });

  it('reads each file at most once per freshness window', () => {
    const slice = at(top, 'system.slice');
    expect(slice.getValue('memory.anon')).toBe(100n);
    f.write('system.slice', 'memory.stat', memoryStat({ anon: 111n, pgfault: 2000n }));
    f.write('system.slice', 'memory.current', '5\n');
    f.clock += FRESH - 1;
    expect(slice.getValue('memory.anon')).toBe(100n); // the same parse serves the burst
    expect(slice.getValue('memory.pgfault')).toBe(1000n);
    f.clock += 1;
    expect(slice.getValue('memory.anon')).toBe(111n);
    expect(slice.getValue('memory.pgfault')).toBe(2000n);
    expect(slice.getValue('memory.current')).toBe(5n);
  });

  it('follows cgroups that are created and removed at run time, at every level', () => {
    const slice = at(top, 'system.slice');
    const b = at(top, 'system.slice', 'b.service');
    f.remove('system.slice/b.service');
    f.cgroup('system.slice/c.service', { cpu: [42n, 40n, 2n], procs: [400, 401, 402] });
    f.cgroup('system.slice/a.service/worker/deeper', { procs: [500] });
    expect(names(slice).sort()).toEqual(['a.service', 'b.service']); // within the window
    f.advance();
    expect(names(slice).sort()).toEqual(['a.service', 'c.service']);
    expect(b.parent).toBeNull();
    expect(statsError(() => b.getValue('cpu.usage_usec')).code).toBe('ENOENT'); // a handle on the removed one
    expect(at(top, 'system.slice', 'c.service').getValue('cpu.usage_usec')).toBe(42n);
    expect(names(at(top, 'system.slice', 'a.service', 'worker'))).toEqual(['deeper']);
    expect(top.getValue('procs_total')).toBe(2n + 2n + 2n + 1n + 3n + 2n); // b's 1 gone; c's 3 and deeper's 1 in

    f.remove('user.slice');
    f.advance();
    expect(names(top)).toEqual(['system.slice']);
  });

  it('follows controllers enabled and disabled at run time', () => {
    const b = at(top, 'system.slice', 'b.service');
    f.write('system.slice/b.service', 'memory.current', '8192\n');
    f.write('system.slice/b.service', 'pids.current', '4\n');
    f.remove('system.slice/b.service', 'cpu.stat');
    f.advance();
    expect(valueNames(b)).toEqual(['memory.current', 'pids.current', 'procs', 'procs_total']);
    expect(b.getValue('memory.current')).toBe(8192n);
    expect(statsError(() => b.getValue('cpu.usage_usec')).code).toBe('ENOENT');
  });

  it('a value read notices a disabled controller itself: ENOENT, not EIO', () => {
    const slice = at(top, 'system.slice');
    const group = slice.findValue('io.rbytes')!.group;
    f.remove('system.slice', 'io.stat');
    f.advance();
    expect(statsError(() => group.get('io.rbytes')).code).toBe('ENOENT');
    expect(slice.findValue('io.rbytes')).toBeUndefined();
  });

  it('a memory.stat without a key (an older kernel) reads that value as ENOENT', () => {
    f.write('system.slice', 'memory.stat', 'anon 1\nfile 2\n');
    f.advance();
    expect(at(top, 'system.slice').getValue('memory.anon')).toBe(1n);
    expect(statsError(() => at(top, 'system.slice').getValue('memory.file_dirty')).code).toBe('ENOENT');
  });

  it('a cgroup re-created under the same name is new: fresh values, the old baseline dropped', () => {
    const a = at(top, 'system.slice', 'a.service');
    a.clear('cpu.usage_usec');
    const old = a.findValue('cpu.usage_usec')!.group;
    // the restarted service's cgroup: a new directory (a new cgroup id) with counters from 0
    f.cgroup('system.slice/a.service.new', { cpu: [30n, 20n, 10n], procs: [600] });
    f.remove('system.slice/a.service');
    renameSync(join(f.root, 'system.slice/a.service.new'), join(f.root, 'system.slice/a.service'));
    f.advance();
    expect(statsError(() => old.get('cpu.usage_usec')).code).toBe('ENOENT');
    expect(at(top, 'system.slice', 'a.service')).toBe(a);
    expect(a.getValue('cpu.usage_usec')).toBe(30n); // not 30 - 4000 wrapped to 2^64 - 3970
    expect(valueNames(a)).toEqual(['cpu.system_usec', 'cpu.usage_usec', 'cpu.user_usec', 'procs', 'procs_total']);
  });

  it('keeps cgroups whose names the model rejects out of listings, yet counts their processes', () => {
    const long = 'x'.repeat(120);
    f.cgroup(`user.slice/${long}`, { cpu: [1n, 1n, 0n], procs: [700, 701] });
    f.cgroup('user.slice/bad\nname', { procs: [702] });
    f.cgroup('user.slice/ok.scope', { procs: [703] });
    f.advance();
    const user = at(top, 'user.slice');
    expect(names(user)).toEqual(['ok.scope']);
    expect(user.subordinates.filter((s) => s.hidden)).toHaveLength(2);
    expect(user.getValue('procs_total')).toBe(2n + 2n + 1n + 1n);
    // they keep their identity across refreshes
    const hidden = user.subordinates.filter((s) => s.hidden);
    f.advance();
    user.visibleSubordinates();
    expect(user.subordinates.filter((s) => s.hidden)).toEqual(hidden);
  });
});
