/**
 * The cgroup collector tests' fixture: a cgroup v2 hierarchy in the kernel's formats under a temporary
 * directory, and the helpers that the unit and the scale tests share.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { collectorOptions, type CollectorOptions } from '../../src/collectors/common.js';
import type { Source } from '../../src/model/index.js';

export const FRESH = 250;
export const BIG = 2n ** 53n + 1n; // not representable as a double

export interface Cg {
  cpu?: [bigint, bigint, bigint];
  memory?: { current: bigint; stat: Record<string, bigint> };
  io?: string[];
  pids?: bigint;
  procs?: number[];
}

export function cpuStat([usage, user, system]: [bigint, bigint, bigint]): string {
  // the kernel's layout with the cpu controller enabled (extra keys are ignored)
  return `usage_usec ${usage}\nuser_usec ${user}\nsystem_usec ${system}\nnice_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n`;
}

export function memoryStat(stat: Record<string, bigint>): string {
  // the order and the neighbours of the kernel's memory.stat, with the wanted keys overridden
  const keys = ['anon', 'file', 'kernel', 'kernel_stack', 'pagetables', 'sec_pagetables', 'percpu', 'sock', 'vmalloc', 'shmem', 'zswap', 'zswapped', 'file_mapped', 'file_dirty', 'file_writeback', 'swapcached', 'anon_thp', 'inactive_anon', 'active_anon', 'inactive_file', 'active_file', 'unevictable', 'slab_reclaimable', 'slab_unreclaimable', 'slab', 'workingset_refault_anon', 'pgscan', 'pgsteal', 'pgfault', 'pgmajfault', 'pgrefill', 'thp_fault_alloc'];
  return keys.map((k) => `${k} ${stat[k] ?? 7n}\n`).join('');
}

export class Fixture {
  readonly dir = mkdtempSync(join(tmpdir(), 'statsfs-cgroup-'));
  readonly sys = join(this.dir, 'sys');
  /** the hybrid layout of this machine: v1 hierarchies in fs/cgroup, v2 in fs/cgroup/unified */
  readonly root = join(this.sys, 'fs/cgroup/unified');
  clock = 0;
  readonly options: CollectorOptions = collectorOptions({ procRoot: join(this.dir, 'proc'), sysRoot: this.sys, freshnessMs: FRESH, now: () => this.clock });

  constructor() {
    mkdirSync(join(this.sys, 'fs/cgroup/memory'), { recursive: true });
    writeFileSync(join(this.sys, 'fs/cgroup/memory/memory.usage_in_bytes'), '1\n');
    this.cgroup('', { cpu: [1000n, 600n, 400n], io: ['8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0'], procs: [1, 2] });
    writeFileSync(join(this.root, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb pids rdma misc\n');
  }

  /** Writes a cgroup directory with the files of the controllers given (others are not enabled there). */
  cgroup(path: string, cg: Cg): void {
    const d = join(this.root, path);
    mkdirSync(d, { recursive: true });
    writeFileSync(join(d, 'cgroup.procs'), (cg.procs ?? []).map((p) => `${p}\n`).join(''));
    writeFileSync(join(d, 'cgroup.type'), 'domain\n');
    writeFileSync(join(d, 'cpu.pressure'), 'some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n');
    if (cg.cpu) writeFileSync(join(d, 'cpu.stat'), cpuStat(cg.cpu));
    if (cg.memory) {
      writeFileSync(join(d, 'memory.current'), `${cg.memory.current}\n`);
      writeFileSync(join(d, 'memory.stat'), memoryStat(cg.memory.stat));
      writeFileSync(join(d, 'memory.max'), 'max\n');
    }
    if (cg.io) writeFileSync(join(d, 'io.stat'), cg.io.map((l) => l + '\n').join(''));
    if (cg.pids !== undefined) {
      writeFileSync(join(d, 'pids.current'), `${cg.pids}\n`);
      writeFileSync(join(d, 'pids.max'), 'max\n');
    }
  }

  write(path: string, file: string, text: string): void {
    writeFileSync(join(this.root, path, file), text);
  }

  remove(path: string, file?: string): void {
    rmSync(join(this.root, path, file ?? ''), { recursive: true, force: true });
  }

  /** Past the freshness window: the next read goes to the files again. */
  advance(): void {
    this.clock += FRESH;
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export const names = (s: Source) => s.visibleSubordinates().map((x) => x.name);
export const at = (top: Source, ...path: string[]) => path.reduce<Source>((s, name) => s.subordinate(name)!, top);

/** The hierarchy the collector's tests start from: two slices, services below one, a worker below a service. */
export function smallHierarchy(f: Fixture): void {
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
}
