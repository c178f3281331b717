/**
 * The cgroup collector at scale: 1,000 cgroups listed and procs_total aggregated over them exactly (moved
 * from the unit suite, test/unit/collectors/cgroup.test.ts, for its run time).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cgroupCollector } from '../../src/collectors/cgroup.js';
import type { Source } from '../../src/model/index.js';
import { at, Fixture, names, smallHierarchy } from '../helpers/cgroup-fixture.js';

describe('cgroup collector on a fixture hierarchy', () => {
  let f: Fixture;
  let top: Source;
  beforeEach(() => {
    f = new Fixture();
    smallHierarchy(f);
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
