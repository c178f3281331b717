/**
 * The cgroup collector at scale: 1,000 cgroups listed and procs_total aggregated over them exactly (moved
 * from the unit suite, test/unit/collectors/cgroup.test.ts, for its run time).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cgroupCollector } from '../../src/collectors/cgroup.js';
import type { Source } from '../../src/model/index.js';
import { at, BIG, Fixture, names } from '../helpers/cgroup-fixture.js';

describe('cgroup collector on a fixture hierarchy', () => {
  let f: Fixture;
  let top: Source;
  beforeEach(() => {
    f = new Fixture();
    f.cgroup('system.slice', {
      cpu: [5000n, 3000n, 2000n],
      memory: { current: 1n << 30n, stat: { anon: 100n, file: 200n, kernel_stack: 300n, pagetables: 400n, sock: 500n, shmem: 600n, file_mapped: 700n, file_dirty: 800n, file_writeback: 900n, pgfault: 1000n, pgmajfault: 11n } },
      io: ['8:0 rbytes=1000 wbytes=2000 rios=10 wios=20 dbytes=30 dios=3', '259:0 rbytes=5 wbytes=6 rios=1 wios=2 dbytes=7 dios=1 cost.vrate=100.00 cost.usage=5 cost.wait=0 cost.indebt=0 cost.indelay=0'],
      pids: 12n,
      procs: [],
    });
    f.cgroup('system.slice/a.service', { cpu: [4000n, 2500n, 1500n], memory: { current: 4096n, stat: {} }, io: [], pids: 3n, procs: [100, 101] });
    f.cgroup('system.slice/a.service/worker', { cpu: [1000n, 1000n, 0n], pids: 1n, procs: [102, 102, 103] });
    f.cgroup('system.slice/b.service', { cpu: [1000n, 500n, 500n], procs: [200] });
    f.cgroup('user.slice', { cpu: [BIG, BIG - 1n, 1n], pids: 2n, procs: [300, 301] });
    top = cgroupCollector.create(f.options);
  });
  afterEach(() => f.cleanup());

  it('lists 1,000 cgroups and aggregates procs_total over them exactly', () => {
    for (let s = 0; s < 10; s++) {
      f.cgroup(`many-${s}.slice`, { cpu: [0n, 0n, 0n] });
      for (let u = 0; u < 100; u++) f.cgroup(`many-${s}.slice/unit-${u}.service`, { cpu: [BigInt(u), 0n, 0n], pids: 1n, procs: [s * 1000 + u, s * 1000 + u + 500] });
    }
    f.advance();
    const t0 = performance.now();
    const slices = names(top).filter((n) => n.startsWith('many-'));
    let units = 0;
    for (const n of slices) units += names(at(top, n)).length;
    const total = top.getValue('procs_total');
    const ms = performance.now() - t0;
    expect(slices).toHaveLength(10);
    expect(units).toBe(1000);
    expect(total).toBe(2000n + 2n + 2n + 2n + 1n + 2n); // + root, a.service, worker, b.service, user.slice
    f.advance();
    const t1 = performance.now();
    expect(top.getValue('procs_total')).toBe(2009n);
    const again = performance.now() - t1;
    console.log(`cgroup: 1,016 cgroups: first listing + procs_total ${ms.toFixed(1)} ms, procs_total after the window ${again.toFixed(1)} ms`);
  });
});
