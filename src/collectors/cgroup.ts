/**
 * cgroup/<path…>/: the cgroup v2 hierarchy mirrored as nested sources. The top source `cgroup` is the root
 * cgroup itself; every cgroup directory below becomes a subordinate with the same values and a refresher of
 * its own, so cgroups that are created or removed at run time appear and disappear without a restart.
 *
 * Where the v2 hierarchy is: `<sysRoot>/fs/cgroup` when it has `cgroup.controllers` (pure v2), else
 * `<sysRoot>/fs/cgroup/unified` when that has it (hybrid: v1 controllers plus a v2 tree). Decided once, at
 * create(). With neither (a v1-only host, or no cgroupfs mounted) the `cgroup` source is empty: no values,
 * no subordinates; create() does not throw, so the other collectors and the daemon start as usual.
 *
 * Values of each cgroup, named `<controller>.<key>` after the kernel's files:
 *
 * | value | from | type, unit | hierarchical in the kernel? | aggregate in statsfs? |
 * |---|---|---|---|---|
 * | cpu.usage_usec, cpu.user_usec, cpu.system_usec | cpu.stat | counter, microseconds | yes (rstat, subtree) | no |
 * | memory.current | memory.current | gauge, bytes | yes | no |
 * | memory.anon, .file, .kernel_stack, .pagetables, .sock, .shmem, .file_mapped, .file_dirty, .file_writeback | memory.stat | gauge, bytes | yes (v2 memory.stat is recursive) | no |
 * | memory.pgfault, memory.pgmajfault | memory.stat | counter, faults | yes | no |
 * | io.rbytes, io.wbytes, io.dbytes / io.rios, io.wios, io.dios | io.stat, summed over devices | counter, bytes / operations | yes (rstat, subtree) | no |
 * | pids.current | pids.current | gauge, tasks | yes | no |
 * | procs | cgroup.procs (distinct PIDs listed) | gauge, processes | no: this cgroup's own processes | yes: `procs_total` (sum over the cgroup and every cgroup below) |
 *
 * The kernel's files above are already totals over the subtree (cgroup-v2.rst: memory.current and
 * pids.current count "the cgroup and its descendants"; cpu.stat, memory.stat and io.stat are kept with
 * rstat, which propagates every child's deltas to its parent; checked on a real hybrid hierarchy: a parent
 * with no task of its own shows its child's cpu.stat usage). Summing them again over subordinates would
 * count each descendant twice, so those values get no aggregates: `cgroup/system.slice/memory.current` is
 * already the slice's total. `cgroup.procs` lists only the cgroup's own processes, so `procs` is
 * per-cgroup and `procs_total` is a statsfs sum aggregate over the subtree. On the root cgroup the kernel
 * reports cpu.stat and io.stat system-wide; it has no memory.current or pids.current.
 *
 * Files that are missing (the controller is not enabled for that cgroup, or the root lacks the file) are
 * absent: their values are not shown, rather than shown as 0, which would be a false reading. Presence is
 * re-checked with the cgroup's directory listing under the freshness rule, so enabling or disabling a
 * controller in the parent's cgroup.subtree_control adds or removes the values (with fresh baselines: the
 * kernel restarts the counters of a re-enabled controller). A key missing from a file that exists (an older
 * kernel's memory.stat) reads as ENOENT. A threaded cgroup's cgroup.procs cannot be read (EOPNOTSUPP, "always
 * empty" per the kernel): its `procs` is 0.
 *
 * Freshness: each file of each cgroup is read at most once per freshness window (one KernelFile per cgroup
 * per file, shared by every value from it); the directory of a cgroup (its children, which files exist, its
 * inode number) is listed at most once per window, when it is listed, looked up, aggregated, or one of its
 * values is read.
 *
 * Identity: a cgroup removed and re-created under the same name between two refreshes (a restarted systemd
 * service) is a new cgroup with new counters; it is recognised by its directory's inode number (the cgroup
 * id), and its values are replaced with fresh ones, baselines dropped, instead of showing a delta that wraps.
 *
 * Names: cgroup directory names the model rejects (longer than 99 characters, control characters such as a
 * newline) are not shown; they are kept as hidden subordinates (with a derived name) so that `procs_total`
 * still counts their processes. The kernel's own hierarchical values need nothing from them. A cgroup whose
 * name equals one of its parent's value names hides that value in listings (subordinates win).
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync, type Dirent } from 'node:fs';
import { join } from 'node:path';
import { counterType, gaugeType, LiveValues, Schema, Source, StatsError, isValidName, type ValueGroup, type ValueSpec } from '../model/index.js';
import { shown } from './filters.js';
import { KernelFile, kernelPath, syncSubordinates, throttle, type Collector, type CollectorOptions } from './common.js';

type Values = Map<string, bigint>;

const DIGITS = /^\d+$/;

/**
 * Exposition: statsfs_cgroup_<name>{cgroup="/system.slice/foo.service"} (node_exporter has no cgroups), in
 * base units: µs as seconds, exactly. These values already include every descendant (see above), so
 * sum() over all cgroups counts them again: select one level, e.g. {cgroup=~"/[^/]+"} for the top one.
 */
function exposed(name: string, type: 'counter' | 'gauge', exp10?: number): ValueSpec['expose'] {
  return { name: `statsfs_cgroup_${name}`, type, ...(exp10 === undefined ? {} : { scale: { exp10 } }) };
}

function gauge(name: string, unit: string, description: string, expose: string = name.replace('.', '_') + (unit === 'bytes' ? '_bytes' : '')): ValueSpec {
  return { name, type: gaugeType, floating: true, unit, description, expose: exposed(expose, 'gauge') };
}

function counter(name: string, unit: string, description: string, expose: string = name.replace('.', '_') + '_total', exp10?: number): ValueSpec {
  return { name, type: counterType, unit, description, expose: exposed(expose, 'counter', exp10) };
}

/** A flat-keyed file ("key value" lines): the wanted keys, as `<prefix><key>`. */
function flatKeyed(prefix: string, keys: readonly string[]): (text: string) => Values {
  const wanted = new Set(keys);
  return (text) => {
    const out: Values = new Map();
    for (const line of text.split('\n')) {
      const space = line.indexOf(' ');
      if (space < 0) continue;
      const key = line.slice(0, space);
      const value = line.slice(space + 1).trim();
      if (wanted.has(key) && DIGITS.test(value)) out.set(prefix + key, BigInt(value));
    }
    return out;
  };
}

/** A single-value file such as memory.current. */
function singleValue(name: string): (text: string) => Values {
  return (text) => {
    const value = text.trim();
    return DIGITS.test(value) ? new Map([[name, BigInt(value)]]) : new Map();
  };
}

const IO_KEYS = ['rbytes', 'wbytes', 'rios', 'wios', 'dbytes', 'dios'] as const;

/**
 * io.stat is nested-keyed, one line per device ("8:16 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0", more
 * keys with iocost); the kernel leaves out devices with nothing to report, so a key sums to 0 over no lines.
 */
function parseIoStat(text: string): Values {
  const sums = new Map<string, bigint>(IO_KEYS.map((k) => ['io.' + k, 0n]));
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    for (let i = 1; i < fields.length; i++) {
      const eq = fields[i].indexOf('=');
      if (eq < 0) continue;
      const name = 'io.' + fields[i].slice(0, eq);
      const value = fields[i].slice(eq + 1);
      const sum = sums.get(name);
      if (sum !== undefined && DIGITS.test(value)) sums.set(name, sum + BigInt(value));
    }
  }
  return sums;
}

/** cgroup.procs: one PID per line; a PID may be listed twice while it moves, so distinct ones are counted. */
function countProcs(text: string): bigint {
  const pids = new Set<string>();
  for (const line of text.split('\n')) if (line !== '') pids.add(line);
  return BigInt(pids.size);
}

const MEMORY_GAUGES = ['anon', 'file', 'kernel_stack', 'pagetables', 'sock', 'shmem', 'file_mapped', 'file_dirty', 'file_writeback'] as const;
const MEMORY_COUNTERS = ['pgfault', 'pgmajfault'] as const;

const MEMORY_STAT_TEXT: Record<(typeof MEMORY_GAUGES)[number], string> = {
  anon: 'anonymous memory (memory.stat anon)',
  file: 'page cache (memory.stat file)',
  kernel_stack: 'kernel stacks (memory.stat kernel_stack)',
  pagetables: 'page tables (memory.stat pagetables)',
  sock: 'network transmission buffers (memory.stat sock)',
  shmem: 'swap-backed shared memory: tmpfs, shm, shared anonymous mappings (memory.stat shmem)',
  file_mapped: 'page cache mapped with mmap (memory.stat file_mapped)',
  file_dirty: 'page cache modified but not yet written back (memory.stat file_dirty)',
  file_writeback: 'page cache being written back (memory.stat file_writeback)',
};

const SUBTREE = ', this cgroup and its descendants';

/** One kernel file of a cgroup and the values it gives. */
interface Kind {
  readonly file: string;
  readonly schema: Schema;
  readonly parse: (text: string) => Values;
}

/** Shared by every cgroup source (aggregates match by schema identity; these have none, being hierarchical). */
const KINDS: readonly Kind[] = [
  {
    file: 'cpu.stat',
    parse: flatKeyed('cpu.', ['usage_usec', 'user_usec', 'system_usec']),
    schema: new Schema([
      counter('cpu.usage_usec', 'microseconds', 'CPU time used' + SUBTREE + ' (cpu.stat usage_usec)', 'cpu_usage_seconds_total', -6),
      counter('cpu.user_usec', 'microseconds', 'CPU time used in user mode' + SUBTREE + ' (cpu.stat user_usec)', 'cpu_user_seconds_total', -6),
      counter('cpu.system_usec', 'microseconds', 'CPU time used in kernel mode' + SUBTREE + ' (cpu.stat system_usec)', 'cpu_system_seconds_total', -6),
    ]),
  },
  {
    file: 'memory.current',
    parse: singleValue('memory.current'),
    schema: new Schema([gauge('memory.current', 'bytes', 'memory in use' + SUBTREE + ' (memory.current)')]),
  },
  {
    file: 'memory.stat',
    parse: flatKeyed('memory.', [...MEMORY_GAUGES, ...MEMORY_COUNTERS]),
    schema: new Schema([
      ...MEMORY_GAUGES.map((k) => gauge('memory.' + k, 'bytes', MEMORY_STAT_TEXT[k] + SUBTREE)),
      counter('memory.pgfault', 'faults', 'page faults' + SUBTREE + ' (memory.stat pgfault)'),
      counter('memory.pgmajfault', 'faults', 'major page faults' + SUBTREE + ' (memory.stat pgmajfault)'),
    ]),
  },
  {
    file: 'io.stat',
    parse: parseIoStat,
    schema: new Schema([
      counter('io.rbytes', 'bytes', 'bytes read, summed over devices' + SUBTREE + ' (io.stat rbytes)', 'io_read_bytes_total'),
      counter('io.wbytes', 'bytes', 'bytes written, summed over devices' + SUBTREE + ' (io.stat wbytes)', 'io_written_bytes_total'),
      counter('io.rios', 'operations', 'read operations, summed over devices' + SUBTREE + ' (io.stat rios)', 'io_reads_total'),
      counter('io.wios', 'operations', 'write operations, summed over devices' + SUBTREE + ' (io.stat wios)', 'io_writes_total'),
      counter('io.dbytes', 'bytes', 'bytes discarded, summed over devices' + SUBTREE + ' (io.stat dbytes)', 'io_discarded_bytes_total'),
      counter('io.dios', 'operations', 'discard operations, summed over devices' + SUBTREE + ' (io.stat dios)', 'io_discards_total'),
    ]),
  },
  {
    file: 'pids.current',
    parse: singleValue('pids.current'),
    schema: new Schema([gauge('pids.current', 'tasks', 'tasks (threads)' + SUBTREE + ' (pids.current)', 'tasks')]),
  },
];

const procsSchema = new Schema([gauge('procs', 'processes', "this cgroup's own processes, without its descendants (PIDs in cgroup.procs)")]);
// pids.current counts tasks (threads): statsfs_cgroup_tasks
/** Simple (hidden) in every cgroup, aggregated (sum) at every cgroup: the processes of the whole subtree. */
const procsTotalSchema = new Schema([
  { ...gauge('procs_total', 'processes', 'processes in this cgroup and all its descendants (sum of procs)'), aggr: 'sum' },
]);

/** The values of one kernel file as added to one cgroup's source; `stale` once removed. */
interface Attached {
  readonly group: ValueGroup;
  stale: boolean;
}

function gone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENODEV';
}

/** The source name for a cgroup directory: its own when the model accepts it, else a hidden derived one. */
function sourceNameOf(dirName: string): { name: string; hidden: boolean } {
  if (isValidName(dirName)) return { name: dirName, hidden: false };
  return { name: 'unnamed-' + createHash('sha256').update(dirName, 'latin1').digest('hex').slice(0, 24), hidden: true };
}

/** One cgroup directory and the source that mirrors it. */
class CgroupNode {
  readonly source: Source;
  private readonly attached: (Attached | null)[] = KINDS.map(() => null);
  private ino: bigint | null = null;
  /** Throttled refresh: at most one directory listing per freshness window. */
  readonly sync: () => void;

  constructor(
    private readonly dir: string,
    name: string,
    hidden: boolean,
    private readonly options: CollectorOptions,
    /** Path below the v2 root: "/" for the root, "/system.slice/foo.service". */
    private readonly path: string = '/',
  ) {
    this.source = new Source(name, { hidden, expose: { labels: { cgroup: path } } });
    const procsFile = new KernelFile(join(dir, 'cgroup.procs'), countProcs, options);
    const procs = new LiveValues(() => {
      try {
        return procsFile.get();
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOTSUP' || code === 'EOPNOTSUPP') return 0n; // threaded cgroup: no processes of its own
        throw err;
      }
    });
    this.source.addValues(procsSchema, { base: procs });
    this.source.addValues(procsTotalSchema, { base: procs, hidden: true });
    this.source.addAggregates(procsTotalSchema);
    this.sync = throttle(options, () => this.refresh(true));
    this.source.setRefresher(this.sync);
    // Values now, so a source is complete when first seen; subordinates when it is first refreshed (lazily:
    // creating a source does not walk the whole subtree).
    this.refresh(false);
  }

  private refresh(withSubordinates: boolean): void {
    let ino: bigint;
    let entries: Dirent[];
    try {
      ino = statSync(this.dir, { bigint: true }).ino;
      entries = readdirSync(this.dir, { withFileTypes: true });
    } catch (err) {
      if (gone(err)) return; // removed: the parent drops this source, and its values read ENOENT meanwhile
      throw err;
    }
    if (this.ino !== null && ino !== this.ino) this.detachAll(); // re-created under the same name
    this.ino = ino;

    const files = new Set<string>();
    const dirs = new Map<string, string>(); // source name -> directory name
    for (const e of entries) {
      if (e.isDirectory()) {
        if (!shown(this.options.filters.cgroups, this.childPath(e.name))) continue;
        const { name } = sourceNameOf(e.name);
        if (!dirs.has(name)) dirs.set(name, e.name);
      } else files.add(e.name);
    }
    KINDS.forEach((kind, i) => {
      const present = files.has(kind.file);
      if (present && this.attached[i] === null) this.attach(i);
      else if (!present && this.attached[i] !== null) this.detach(i);
    });
    if (withSubordinates) {
      syncSubordinates(this.source, dirs.keys(), (name) => {
        const dirName = dirs.get(name)!;
        return new CgroupNode(join(this.dir, dirName), name, sourceNameOf(dirName).hidden, this.options, this.childPath(dirName)).source;
      });
    }
  }

  private childPath(dirName: string): string {
    return this.path === '/' ? `/${dirName}` : `${this.path}/${dirName}`;
  }

  private attach(i: number): void {
    const kind = KINDS[i];
    const file = new KernelFile(join(this.dir, kind.file), kind.parse, this.options);
    let attached: Attached | null = null;
    const base = new LiveValues((name) => {
      this.sync(); // a value read also notices a re-created cgroup or a disabled controller
      if (attached!.stale) throw new StatsError('ENOENT', `${file.path}: this cgroup's ${kind.file} was replaced or removed`);
      const value = file.get().get(name);
      if (value === undefined) throw new StatsError('ENOENT', `${file.path} has no ${name.slice(name.indexOf('.') + 1)}`);
      return value;
    });
    attached = { group: this.source.addValues(kind.schema, { base }), stale: false };
    this.attached[i] = attached;
  }

  private detach(i: number): void {
    const attached = this.attached[i]!;
    attached.stale = true;
    this.source.removeValues(attached.group);
    this.attached[i] = null;
  }

  private detachAll(): void {
    for (let i = 0; i < KINDS.length; i++) if (this.attached[i] !== null) this.detach(i);
  }
}

/** The v2 root: pure v2 first, then the hybrid layout's unified tree; null when there is none. */
export function findCgroup2Root(options: CollectorOptions): string | null {
  for (const dir of [kernelPath(options.sysRoot, '/fs/cgroup'), kernelPath(options.sysRoot, '/fs/cgroup/unified')]) {
    if (existsSync(join(dir, 'cgroup.controllers'))) return dir;
  }
  return null;
}

export const cgroupCollector: Collector = {
  name: 'cgroup',
  description: 'the cgroup v2 hierarchy: CPU, memory, I/O and task usage per cgroup (subtree totals, as the kernel keeps them)',
  create(options: CollectorOptions): Source {
    const root = findCgroup2Root(options);
    // No cgroup v2 tree: an empty source rather than an error, so the rest of the host still shows.
    if (root === null) return new Source('cgroup');
    return new CgroupNode(root, 'cgroup', false, options).source;
  },
};
