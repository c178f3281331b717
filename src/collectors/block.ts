/**
 * block/<dev>/: the /proc/diskstats fields of every whole device listed in <sysRoot>/block (disks, loop,
 * ram, zram, dm, md, nvme: all of them, none skipped); block/<field>: the sum over those devices.
 * block/<disk>/<partition>/: the same fields for each partition, under a DIFFERENT schema, so the sums at
 * block/ cover whole devices only and never count a partition's sectors a second time (a partition's I/O
 * is already counted in its disk's line). Stacked devices (dm-N, mdN) are whole devices in /sys/block and
 * are summed as the kernel lists them, so I/O through them also appears in the disks below them.
 *
 * Fields, after "major minor name" (Documentation/admin-guide/iostats.rst); one line has 14 fields on
 * kernels before 4.18, 18 with the discard fields (4.18), 20 with the flush fields (5.5):
 *
 *   reads_completed  reads_merged  sectors_read  time_reading_ms  writes_completed  writes_merged
 *   sectors_written  time_writing_ms  ios_in_progress  time_io_ms  weighted_time_io_ms
 *   [4.18+] discards_completed  discards_merged  sectors_discarded  time_discarding_ms
 *   [5.5+]  flushes_completed  time_flushing_ms
 *
 * Fields the kernel does not have are ABSENT, not 0: a device gets the discard (flush) values only when its
 * line has them, and block/ gets their sums when the first such device appears (one kernel prints the same
 * number of fields on every line; block/ is listed once when it is created, so they are there from the start). Sectors are 512-byte units whatever the device's sector size.
 *
 * Types: ios_in_progress is a level (gauge, floating, 0444; block/ios_in_progress is the host's in-flight
 * total). Everything else is a cumulative counter (0644: clearing records a baseline, reads show the delta
 * since, and the sums add deltas). The kernel prints the *_ms fields as 32-bit unsigned ints, which wrap
 * after 2^32 ms (49.7 days): their delta since a clear is taken modulo 2^32 so that a wrap in between
 * still gives the right difference. The other counters are "%lu" (64-bit on 64-bit hosts), parsed as BigInt.
 *
 * Sources: ONE parse of <procRoot>/diskstats serves every device and partition within the freshness window
 * (see common.ts). Membership: the entries of <sysRoot>/block that also have a diskstats line, re-listed
 * whenever diskstats is re-parsed (at most once per window) or at once after a device's line vanished.
 * sysfs spells a '/' in a device name as '!' (cciss!c0d0), diskstats as '/': the source keeps the '!'.
 * Partitions: the diskstats lines that are not whole devices, placed under the device whose
 * <sysRoot>/block/<dev>/<part>/partition file exists. Names the model rejects are skipped.
 */
import { existsSync, readdirSync } from 'node:fs';
import { counterType, gaugeType, LiveValues, Schema, Source, StatsError, isValidName, type CustomType, type ValueSpec } from '../model/index.js';
import { shown } from './filters.js';
import { KernelFile, kernelPath, syncSubordinates, type Collector, type CollectorOptions } from './common.js';

/** A counter the kernel keeps in 32 bits: the delta since a clear is modulo 2^32, so one wrap is harmless. */
export const counter32Type: CustomType<LiveValues> = Object.freeze({
  name: 'counter32',
  signed: false,
  get: (base: LiveValues, name: string) => BigInt.asUintN(32, base.delta(name)),
  clear: (base: LiveValues, name: string) => base.reset(name),
});

/** node_exporter's diskstats scaling: 512-byte sectors to bytes (its discarded_sectors stays in sectors), ms to seconds. */
const SECTOR_BYTES = { times: 512 } as const;
const MS_TO_SECONDS = { exp10: -3 } as const;

/** The diskstats fields in their order (index 0 is the 4th whitespace-separated field of a line). */
const FIELDS: readonly ValueSpec[] = [
  { name: 'reads_completed', type: counterType, aggr: 'sum', unit: 'requests', description: 'reads completed', expose: { name: 'node_disk_reads_completed_total', type: 'counter' } },
  { name: 'reads_merged', type: counterType, aggr: 'sum', unit: 'requests', description: 'adjacent reads merged into one', expose: { name: 'node_disk_reads_merged_total', type: 'counter' } },
  { name: 'sectors_read', type: counterType, aggr: 'sum', unit: '512-byte sectors', description: 'sectors read', expose: { name: 'node_disk_read_bytes_total', type: 'counter', scale: SECTOR_BYTES } },
  { name: 'time_reading_ms', type: counter32Type, aggr: 'sum', unit: 'milliseconds', description: 'time spent by all reads (32-bit in the kernel)', expose: { name: 'node_disk_read_time_seconds_total', type: 'counter', scale: MS_TO_SECONDS } },
  { name: 'writes_completed', type: counterType, aggr: 'sum', unit: 'requests', description: 'writes completed', expose: { name: 'node_disk_writes_completed_total', type: 'counter' } },
  { name: 'writes_merged', type: counterType, aggr: 'sum', unit: 'requests', description: 'adjacent writes merged into one', expose: { name: 'node_disk_writes_merged_total', type: 'counter' } },
  { name: 'sectors_written', type: counterType, aggr: 'sum', unit: '512-byte sectors', description: 'sectors written', expose: { name: 'node_disk_written_bytes_total', type: 'counter', scale: SECTOR_BYTES } },
  { name: 'time_writing_ms', type: counter32Type, aggr: 'sum', unit: 'milliseconds', description: 'time spent by all writes (32-bit in the kernel)', expose: { name: 'node_disk_write_time_seconds_total', type: 'counter', scale: MS_TO_SECONDS } },
  { name: 'ios_in_progress', type: gaugeType, floating: true, aggr: 'sum', unit: 'requests', description: 'requests issued to the driver and not yet completed', expose: { name: 'node_disk_io_now', type: 'gauge' } },
  { name: 'time_io_ms', type: counter32Type, aggr: 'sum', unit: 'milliseconds', description: 'time during which the device had requests in flight (32-bit in the kernel)', expose: { name: 'node_disk_io_time_seconds_total', type: 'counter', scale: MS_TO_SECONDS } },
  { name: 'weighted_time_io_ms', type: counter32Type, aggr: 'sum', unit: 'milliseconds', description: 'time with requests in flight weighted by their number (32-bit in the kernel)', expose: { name: 'node_disk_io_time_weighted_seconds_total', type: 'counter', scale: MS_TO_SECONDS } },
  { name: 'discards_completed', type: counterType, aggr: 'sum', unit: 'requests', description: 'discards completed (Linux 4.18+)', expose: { name: 'node_disk_discards_completed_total', type: 'counter' } },
  { name: 'discards_merged', type: counterType, aggr: 'sum', unit: 'requests', description: 'adjacent discards merged into one (Linux 4.18+)', expose: { name: 'node_disk_discards_merged_total', type: 'counter' } },
  { name: 'sectors_discarded', type: counterType, aggr: 'sum', unit: '512-byte sectors', description: 'sectors discarded (Linux 4.18+)', expose: { name: 'node_disk_discarded_sectors_total', type: 'counter' } },
  { name: 'time_discarding_ms', type: counter32Type, aggr: 'sum', unit: 'milliseconds', description: 'time spent by all discards (Linux 4.18+; 32-bit in the kernel)', expose: { name: 'node_disk_discard_time_seconds_total', type: 'counter', scale: MS_TO_SECONDS } },
  { name: 'flushes_completed', type: counterType, aggr: 'sum', unit: 'requests', description: 'flush requests completed (Linux 5.5+)', expose: { name: 'node_disk_flush_requests_total', type: 'counter' } },
  { name: 'time_flushing_ms', type: counter32Type, aggr: 'sum', unit: 'milliseconds', description: 'time spent by all flushes (Linux 5.5+; 32-bit in the kernel)', expose: { name: 'node_disk_flush_requests_time_seconds_total', type: 'counter', scale: MS_TO_SECONDS } },
];

export const BLOCK_FIELD_NAMES: readonly string[] = FIELDS.map((f) => f.name);
const INDEX = new Map(FIELDS.map((f, i) => [f.name, i]));

/** The fields in three parts, by the kernel version that added them: [first field, end). */
const PARTS: readonly (readonly [number, number])[] = [
  [0, 11],
  [11, 15],
  [15, 17],
];

function schemas(): readonly Schema[] {
  return PARTS.map(([from, to]) => new Schema(FIELDS.slice(from, to)));
}

/** Whole devices: block/'s sums cover exactly these schemas. */
export const diskSchemas: readonly Schema[] = schemas();
/** Partitions: the same fields under other schema objects, left out of block/'s sums. */
export const partitionSchemas: readonly Schema[] = schemas();

/** One diskstats line, kept as text until a value is read. */
class DiskRow {
  private values: bigint[] | null = null;
  /** Fields after the name: 11, 15 or 17. */
  readonly count: number;
  constructor(private readonly fields: string[]) {
    this.count = fields.length;
  }

  field(i: number): bigint {
    // 64-bit exact: BigInt, never Number
    this.values ??= this.fields.map((f) => (/^\d+$/.test(f) ? BigInt(f) : 0n));
    return this.values[i] ?? 0n;
  }
}

/** /proc/diskstats: "major minor name f1 … fN" per line, N = 11, 15 or 17; keyed by the kernel's name. */
export function parseDiskstats(text: string): Map<string, DiskRow> {
  const rows = new Map<string, DiskRow>();
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 3 + 11) continue;
    rows.set(fields[2], new DiskRow(fields.slice(3)));
  }
  return rows;
}

/** sysfs writes a '/' of a device name as '!'. */
const kernelName = (sysName: string): string => sysName.replaceAll('!', '/');


interface Listing {
  /** Whole devices (sysfs names). */
  disks: string[];
  /** Partitions (sysfs names) of each whole device. */
  partitions: Map<string, string[]>;
}

export const blockCollector: Collector = {
  name: 'block',
  description: 'block devices: the /proc/diskstats fields per device (and per partition), summed over whole devices at block/',
  create(options: CollectorOptions): Source {
    const top = new Source('block');
    top.addAggregates(diskSchemas[0]);
    const state: BlockState = {
      top,
      options,
      aggregated: new Set<Schema>([diskSchemas[0]]),
      sysBlock: kernelPath(options.sysRoot, 'block'),
      diskstats: new KernelFile(kernelPath(options.procRoot, 'diskstats'), parseDiskstats, options),
      listed: null,
      listing: { disks: [], partitions: new Map() },
      dirty: false,
      placed: new Map(),
    };
    top.setRefresher(() => syncDisks(state));
    // List once now, so that block/ has the discard and flush sums from the start on kernels that have them
    // (a lookup or listing refreshes first anyway; a direct getValue() on block/ does not).
    syncDisks(state);
    return top;
  },
};

/** What block/'s refresher, its devices' refreshers and their values share. */
interface BlockState {
  readonly top: Source;
  readonly options: CollectorOptions;
  /** The disk schemas block/ already sums. */
  readonly aggregated: Set<Schema>;
  readonly sysBlock: string;
  readonly diskstats: KernelFile<Map<string, DiskRow>>;
  /** The parse that membership was last synchronised with. */
  listed: Map<string, DiskRow> | null;
  listing: Listing;
  /** Set when a device's line vanished: re-list at the next access, whatever the window. */
  dirty: boolean;
  /** Partition -> its disk, as of the last listing (so a listing stats only new partitions). */
  placed: Map<string, string>;
}

/** The whole devices: entries of <sysRoot>/block with a diskstats line, nameable and shown. */
function listDisks(state: BlockState, table: Map<string, DiskRow>): string[] | null {
  let entries;
  try {
    entries = readdirSync(state.sysBlock, { withFileTypes: true });
  } catch {
    return null;
  }
  return entries
    .filter((e) => (e.isDirectory() || e.isSymbolicLink()) && table.has(kernelName(e.name)) && isValidName(e.name) && shown(state.options.filters.devices, kernelName(e.name)))
    .map((e) => e.name);
}

/**
 * The disk a partition belongs to: where it was at the last listing, if that disk is still there; else
 * the longest disk name it starts with that has it as a partition (so "loop10p1" goes under loop10, not loop1).
 */
function diskOf(state: BlockState, sysName: string, sysDisks: Set<string>): string | undefined {
  const disk = state.placed.get(sysName);
  if (disk !== undefined && sysDisks.has(disk)) return disk;
  for (let l = sysName.length - 1; l > 0; l--) {
    const prefix = sysName.slice(0, l);
    if (sysDisks.has(prefix) && existsSync(kernelPath(state.sysBlock, prefix, sysName, 'partition'))) return prefix;
  }
  return undefined;
}

/** The disks, and the diskstats lines that are not disks placed under theirs (updating state.placed). */
function listDevices(state: BlockState, table: Map<string, DiskRow>): Listing {
  const disks = listDisks(state, table);
  if (disks === null) return { disks: [], partitions: new Map() };
  const whole = new Set(disks.map(kernelName));
  const sysDisks = new Set(disks);
  const partitions = new Map<string, string[]>();
  const placedNow = new Map<string, string>();
  for (const name of table.keys()) {
    if (whole.has(name)) continue;
    const sysName = name.replaceAll('/', '!');
    if (!isValidName(sysName) || !shown(state.options.filters.devices, name)) continue;
    const disk = diskOf(state, sysName, sysDisks);
    if (disk === undefined) continue;
    placedNow.set(sysName, disk);
    let list = partitions.get(disk);
    if (list === undefined) partitions.set(disk, (list = []));
    list.push(sysName);
  }
  state.placed = placedNow;
  return { disks, partitions };
}

/** Brings block/'s disks in line with the current parse (at most once per parse, unless a line vanished). */
function syncDisks(state: BlockState): void {
  let table: Map<string, DiskRow>;
  try {
    table = state.diskstats.get();
  } catch (err) {
    if (!(err instanceof StatsError && err.code === 'ENOENT')) throw err;
    table = new Map(); // no /proc/diskstats: no devices
  }
  if (table === state.listed && !state.dirty) return;
  state.listed = table;
  state.dirty = false;
  state.listing = listDevices(state, table);
  syncSubordinates(state.top, state.listing.disks, (disk) => makeDisk(state, disk));
}

/** Values read the shared parse; they never re-list (an aggregate may be walking the sources). */
function deviceReader(state: BlockState, src: Source, parent: () => Source | null, name: string): (field: string) => bigint {
  const key = kernelName(name);
  return (field: string): bigint => {
    const row = state.diskstats.get().get(key);
    if (row === undefined || src.parent !== parent()) {
      if (row === undefined) state.dirty = true;
      throw new StatsError('ENOENT', `block device ${name} is gone`);
    }
    return row.field(INDEX.get(field)!);
  };
}

/** Adds the parts of the fields that this device's line has. */
function addFields(src: Source, own: readonly Schema[], read: (field: string) => bigint, count: number): void {
  const base = new LiveValues(read);
  PARTS.forEach(([, to], i) => {
    if (count >= to) src.addValues(own[i], { base });
  });
}

/** Gives block/ the sums of the parts a disk with `count` fields has, the first time one appears. */
function addDiskSums(state: BlockState, count: number): void {
  for (const [i, [, to]] of PARTS.entries()) {
    if (count >= to && !state.aggregated.has(diskSchemas[i])) {
      state.top.addAggregates(diskSchemas[i]);
      state.aggregated.add(diskSchemas[i]);
    }
  }
}

/** block/<disk>/: its fields, and its partitions as subordinates. */
function makeDisk(state: BlockState, disk: string): Source {
  const src = new Source(disk, { expose: { labels: { device: kernelName(disk) } } });
  const count = state.listed?.get(kernelName(disk))?.count ?? 11;
  addFields(src, diskSchemas, deviceReader(state, src, () => state.top, disk), count);
  addDiskSums(state, count);
  // Partitions follow the top-level listing; this never re-lists block/ itself, since it runs while an
  // aggregate walks block/'s subordinates (a lookup below block/ refreshes block/ first anyway).
  let synced: Listing | null = null;
  src.setRefresher(() => {
    if (synced === state.listing) return;
    synced = state.listing;
    syncSubordinates(src, state.listing.partitions.get(disk) ?? [], (part) => makePartition(state, src, part));
  });
  return src;
}

/** block/<disk>/<part>/: the same fields under the partition schemas, which block/ does not sum. */
function makePartition(state: BlockState, disk: Source, part: string): Source {
  const p = new Source(part, { expose: { labels: { device: kernelName(part) } } });
  addFields(p, partitionSchemas, deviceReader(state, p, () => disk, part), state.listed?.get(kernelName(part))?.count ?? 11);
  return p;
}
