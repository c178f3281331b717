/**
 * memory/: every line of <procRoot>/meminfo as a value of memory/.
 *
 *   memory/<Key>    the kernel's own key, unchanged (MemTotal, Active(anon), HugePages_Total, DirectMap2M, …):
 *                   they are valid file names, they are what `man 5 proc`, free(1) and every article use, and
 *                   a translation (snake_case or other) would make them harder to look up, not easier.
 *                   Lines in kB are shown in bytes (× 1024, exact as u64: parsed with BigInt); lines without a
 *                   unit are counts: HugePages_Total/Free/Rsvd/Surp in huge pages ('pages', each Hugepagesize
 *                   bytes), any other unit-less line as a plain 'count'. A line with a unit other than kB (none
 *                   exists today) is left out rather than shown in the wrong unit; so is a key the model would
 *                   reject as a name (none today).
 *
 * All values are levels: floating (read-only, 0444; clearing is EPERM) and read as they are, with no
 * baseline. There are no aggregates: memory/ has no subordinates.
 *
 * Freshness: one parse of meminfo serves every value within options.freshnessMs (see common.ts).
 * Key set: built from the file at create() (a missing meminfo makes create() fail, and the daemon leaves the
 * collector out) and followed afterwards. Whenever a new parse shows a different set of keys (or units), the
 * refresher, which runs when memory/ is listed or a name in it is looked up, replaces memory/'s value group
 * with one built from the new set: a new key appears, a vanished one disappears (reading it in between gives
 * ENOENT). A running kernel never changes its keys, so in practice this happens only with fixtures or a
 * different procRoot; the replacement renews the names of memory/ for the mount, which is harmless for
 * read-only values.
 */
import { gaugeType, LiveValues, Schema, Source, StatsError, isValidName, type ValueGroup, type ValueSpec } from '../model/index.js';
import { KernelFile, kernelPath, type Collector, type CollectorOptions } from './common.js';

export type MeminfoUnit = 'bytes' | 'pages' | 'count';

/** One parse of meminfo: values already converted (kB -> bytes), keys in the kernel's order. */
export interface Meminfo {
  readonly values: ReadonlyMap<string, bigint>;
  readonly units: ReadonlyMap<string, MeminfoUnit>;
  /** Keys and units in order: a new schema is needed exactly when this changes. */
  readonly signature: string;
}

const LINE = /^([^:\s]+):\s*(\d+)(?:\s+(\S+))?\s*$/;


export function parseMeminfo(text: string): Meminfo {
  const values = new Map<string, bigint>();
  const units = new Map<string, MeminfoUnit>();
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (m === null) continue;
    const [, key, number, unitText] = m;
    if (values.has(key) || !isValidName(key)) continue;
    let unit: MeminfoUnit;
    let value = BigInt(number);
    if (unitText === 'kB') {
      unit = 'bytes';
      value = BigInt.asUintN(64, value * 1024n);
    } else if (unitText === undefined) {
      unit = key.startsWith('HugePages_') ? 'pages' : 'count';
    } else {
      continue; // an unknown unit: not shown rather than shown wrong
    }
    values.set(key, value);
    units.set(key, unit);
  }
  let signature = '';
  for (const [key, unit] of units) signature += `${key}\t${unit}\n`;
  return { values, units, signature };
}

/** What the common keys mean (from the kernel's Documentation/filesystems/proc.rst). */
const DESCRIPTIONS: Readonly<Record<string, string>> = {
  MemTotal: 'usable RAM: physical RAM minus reserved memory and the kernel binary',
  MemFree: 'RAM left unused',
  MemAvailable: 'estimate of the memory available for starting new applications without swapping',
  Buffers: 'temporary storage for raw disk blocks',
  Cached: 'page cache (file data in RAM), excluding SwapCached',
  SwapCached: 'memory swapped out and back in that is still in the swap file',
  Active: 'memory used more recently, not reclaimed unless necessary',
  Inactive: 'memory used less recently, more eligible for reclaim',
  'Active(anon)': 'anonymous memory on the active list',
  'Inactive(anon)': 'anonymous memory on the inactive list',
  'Active(file)': 'file-backed memory on the active list',
  'Inactive(file)': 'file-backed memory on the inactive list',
  Unevictable: 'memory that cannot be reclaimed (mlocked, ramfs, …)',
  Mlocked: 'memory locked with mlock()',
  SwapTotal: 'swap space in all',
  SwapFree: 'swap space unused',
  Dirty: 'memory waiting to be written back to disk',
  Writeback: 'memory being written back to disk',
  AnonPages: 'anonymous pages mapped into user page tables',
  Mapped: 'files mapped into memory (mmap, libraries)',
  Shmem: 'shared memory and tmpfs',
  KReclaimable: 'kernel allocations the kernel will reclaim under pressure',
  Slab: 'kernel data structure cache',
  SReclaimable: 'part of Slab that can be reclaimed',
  SUnreclaim: 'part of Slab that cannot be reclaimed',
  KernelStack: 'kernel stacks',
  PageTables: 'page tables',
  CommitLimit: 'total that can be allocated under the current overcommit policy',
  Committed_AS: 'memory allocated (committed) by all processes, even if not yet used',
  VmallocTotal: 'size of the vmalloc address space',
  VmallocUsed: 'vmalloc space used',
  AnonHugePages: 'anonymous transparent huge pages',
  HugePages_Total: 'size of the huge page pool',
  HugePages_Free: 'huge pages not yet allocated',
  HugePages_Rsvd: 'huge pages reserved but not yet allocated',
  HugePages_Surp: 'huge pages above the pool size (overcommitted)',
  Hugepagesize: 'size of one default huge page',
  Hugetlb: 'memory used by huge pages of every size',
};

function specOf(key: string, unit: MeminfoUnit): ValueSpec {
  const meaning = DESCRIPTIONS[key];
  const origin = unit === 'bytes' ? `/proc/meminfo ${key} (kB there, bytes here)` : `/proc/meminfo ${key}`;
  const unitNote = unit === 'pages' ? ', in huge pages of Hugepagesize bytes each' : '';
  // node_exporter: "Active(anon)" -> node_memory_Active_anon_bytes; kB values get _bytes, counts nothing
  const exposed = 'node_memory_' + key.replace(/\((.*)\)/, '_$1').replace(/[^a-zA-Z0-9_]/g, '_') + (unit === 'bytes' ? '_bytes' : '');
  return {
    name: key,
    type: gaugeType,
    floating: true,
    expose: { name: exposed, type: 'gauge', help: `Memory information field ${key}.` },
    unit,
    description: meaning ? `${meaning}${unitNote} (${origin})` : `${origin}${unitNote}`,
  };
}

export const memoryCollector: Collector = {
  name: 'memory',
  description: '/proc/meminfo in bytes (huge page counts in pages), read-only, under the kernel\'s own names',
  create(options: CollectorOptions): Source {
    const meminfo = new KernelFile(kernelPath(options.procRoot, 'meminfo'), parseMeminfo, options);
    const top = new Source('memory');
    const base = new LiveValues((key) => {
      const value = meminfo.get().values.get(key);
      if (value === undefined) throw new StatsError('ENOENT', `${meminfo.path} has no ${key} any more`);
      return value;
    });

    let synced: Meminfo | null = null;
    let signature: string | null = null;
    let group: ValueGroup | null = null;
    top.setRefresher(() => {
      const info = meminfo.get(); // at most one parse per freshness window
      if (info === synced) return;
      synced = info;
      if (info.signature === signature) return;
      signature = info.signature;
      if (group !== null) top.removeValues(group);
      group = top.addValues(new Schema([...info.units].map(([key, unit]) => specOf(key, unit))), { base });
    });
    top.refresh(); // builds the value set now; a missing meminfo fails here (ENOENT)
    return top;
  },
};
