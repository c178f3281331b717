/**
 * net/<ifname>/: the 24 link counters of struct rtnl_link_stats64, named as the files of
 * /sys/class/net/<if>/statistics; net/<counter>: the sum over every interface (net/rx_bytes is the host's
 * total). All are cumulative u64 counters (0644): clearing one records a baseline, later reads show the
 * delta since, and the sums at net/ add those deltas.
 *
 * Where the values come from (one read serves the burst; see common.ts for the freshness rule):
 * - 13 counters come from ONE parse of <procRoot>/net/dev, shared by every interface. Its 16 columns map
 *   to names as the kernel prints them (net/core/net-procfs.c, dev_seq_printf_stats):
 *       Receive:  bytes      -> rx_bytes            Transmit: bytes      -> tx_bytes
 *                 packets    -> rx_packets                    packets    -> tx_packets
 *                 errs       -> rx_errors                     errs       -> tx_errors
 *                 drop       =  rx_dropped + rx_missed_errors drop       -> tx_dropped
 *                 fifo       -> rx_fifo_errors                fifo       -> tx_fifo_errors
 *                 frame      =  rx_length_errors + rx_over_errors + rx_crc_errors + rx_frame_errors
 *                 compressed -> rx_compressed                 colls      -> collisions
 *                 multicast  -> multicast                     carrier    =  tx_carrier_errors + tx_aborted_errors
 *                                                                           + tx_window_errors + tx_heartbeat_errors
 *                                                             compressed -> tx_compressed
 *   The three columns marked '=' are sums of several counters, not counters of their own, so they are not
 *   used: rx "drop" in particular is NOT rx_dropped.
 * - The other 11 (rx_dropped, rx_missed_errors, rx_length_errors, rx_over_errors, rx_crc_errors,
 *   rx_frame_errors, tx_aborted_errors, tx_carrier_errors, tx_heartbeat_errors, tx_window_errors,
 *   rx_nohandler) come from <sysRoot>/class/net/<if>/statistics/<counter>, each through its own KernelFile
 *   per (interface, counter), so a burst reads each file once. A counter file the kernel does not have
 *   while the interface's statistics directory exists (rx_nohandler before Linux 4.6) reads 0.
 *
 * Membership: the interfaces are the entries of <sysRoot>/class/net (directories or symlinks; the regular
 * file bonding_masters is not an interface) that also have a line in /proc/net/dev, re-listed each time
 * /proc/net/dev is re-parsed (at most once per freshness window, when net/ is listed, looked up or
 * aggregated). The listing that starts an aggregate and the values it reads come from the same parse
 * (unless the window ends in the middle of it), so an aggregate does not meet members its parse lacks. Names the model rejects (longer than 99 characters; Linux
 * limits interface names to 15, so only a fixture can have them) are skipped.
 *
 * A read of an interface that has disappeared gives ENOENT: its /proc/net/dev line is gone from the current
 * parse, or its statistics file is gone (which also makes the next access re-list at once).
 */
import { existsSync, readdirSync } from 'node:fs';
import { counterType, LiveValues, Schema, Source, StatsError, isValidName, type ValueSpec } from '../model/index.js';
import { shown } from './filters.js';
import { KernelFile, kernelPath, syncSubordinates, type Collector, type CollectorOptions } from './common.js';

type Origin = { proc: number } | { sys: true };

interface Counter {
  name: string;
  unit: string;
  description: string;
  /** Column of the /proc/net/dev line (0 = rx bytes), or read from sysfs. */
  from: Origin;
}

const sys = { sys: true } as const;

/** In the order of struct rtnl_link_stats64. */
const COUNTERS: readonly Counter[] = [
  { name: 'rx_packets', unit: 'packets', description: 'packets received', from: { proc: 1 } },
  { name: 'tx_packets', unit: 'packets', description: 'packets transmitted', from: { proc: 9 } },
  { name: 'rx_bytes', unit: 'bytes', description: 'bytes received', from: { proc: 0 } },
  { name: 'tx_bytes', unit: 'bytes', description: 'bytes transmitted', from: { proc: 8 } },
  { name: 'rx_errors', unit: 'packets', description: 'bad packets received', from: { proc: 2 } },
  { name: 'tx_errors', unit: 'packets', description: 'packets that could not be transmitted', from: { proc: 10 } },
  { name: 'rx_dropped', unit: 'packets', description: 'packets received but dropped (no buffer, unsupported protocol, …)', from: sys },
  { name: 'tx_dropped', unit: 'packets', description: 'packets dropped on transmit', from: { proc: 11 } },
  { name: 'multicast', unit: 'packets', description: 'multicast packets received', from: { proc: 7 } },
  { name: 'collisions', unit: 'collisions', description: 'collisions on the medium while transmitting', from: { proc: 13 } },
  { name: 'rx_length_errors', unit: 'packets', description: 'packets received with a bad length', from: sys },
  { name: 'rx_over_errors', unit: 'packets', description: 'receive ring buffer overflows', from: sys },
  { name: 'rx_crc_errors', unit: 'packets', description: 'packets received with a CRC error', from: sys },
  { name: 'rx_frame_errors', unit: 'packets', description: 'packets received with a frame alignment error', from: sys },
  { name: 'rx_fifo_errors', unit: 'packets', description: 'receive FIFO overruns', from: { proc: 4 } },
  { name: 'rx_missed_errors', unit: 'packets', description: 'packets missed by the device (no room in its buffer)', from: sys },
  { name: 'tx_aborted_errors', unit: 'packets', description: 'transmissions aborted', from: sys },
  { name: 'tx_carrier_errors', unit: 'packets', description: 'transmissions failed for loss of carrier', from: sys },
  { name: 'tx_fifo_errors', unit: 'packets', description: 'transmit FIFO underruns', from: { proc: 12 } },
  { name: 'tx_heartbeat_errors', unit: 'packets', description: 'SQE heartbeat errors while transmitting', from: sys },
  { name: 'tx_window_errors', unit: 'packets', description: 'late collisions while transmitting', from: sys },
  { name: 'rx_compressed', unit: 'packets', description: 'compressed packets received (CSLIP, PPP)', from: { proc: 6 } },
  { name: 'tx_compressed', unit: 'packets', description: 'compressed packets transmitted (CSLIP, PPP)', from: { proc: 15 } },
  { name: 'rx_nohandler', unit: 'packets', description: 'packets received and dropped for want of a protocol handler', from: sys },
];

/** /proc/net/dev's own combined columns (net/core/net-procfs.c), which node_exporter exports. */
const COMBINED: readonly Counter[] = [
  { name: 'rx_drop', unit: 'packets', description: '/proc/net/dev "drop": rx_dropped + rx_missed_errors', from: { proc: 3 } },
  { name: 'rx_frame', unit: 'packets', description: '/proc/net/dev "frame": rx_length_errors + rx_over_errors + rx_crc_errors + rx_frame_errors', from: { proc: 5 } },
  { name: 'tx_carrier', unit: 'packets', description: '/proc/net/dev "carrier": tx_carrier_errors + tx_aborted_errors + tx_window_errors + tx_heartbeat_errors', from: { proc: 14 } },
];

/**
 * node_exporter's netdev names (its default, /proc/net/dev-compatible set of 17), with device="<if>". The
 * detailed counters that those columns combine are in the tree but not exported (they would repeat them).
 */
const EXPOSED: Readonly<Record<string, string>> = {
  rx_bytes: 'receive_bytes',
  rx_packets: 'receive_packets',
  rx_errors: 'receive_errs',
  rx_drop: 'receive_drop',
  rx_fifo_errors: 'receive_fifo',
  rx_frame: 'receive_frame',
  rx_compressed: 'receive_compressed',
  multicast: 'receive_multicast',
  rx_nohandler: 'receive_nohandler',
  tx_bytes: 'transmit_bytes',
  tx_packets: 'transmit_packets',
  tx_errors: 'transmit_errs',
  tx_dropped: 'transmit_drop',
  tx_fifo_errors: 'transmit_fifo',
  collisions: 'transmit_colls',
  tx_carrier: 'transmit_carrier',
  tx_compressed: 'transmit_compressed',
};

function exposure(name: string): ValueSpec['expose'] {
  const exposed = EXPOSED[name];
  return exposed === undefined ? false : { name: `node_network_${exposed}_total`, type: 'counter', help: `Network device statistic ${exposed}.` };
}

/** The 24 rtnl_link_stats64 counters. */
export const NET_COUNTER_NAMES: readonly string[] = COUNTERS.map((c) => c.name);
/** Every value of an interface: the 24, then /proc/net/dev's combined drop, frame and carrier columns. */
export const NET_VALUE_NAMES: readonly string[] = [...COUNTERS, ...COMBINED].map((c) => c.name);

const BY_NAME = new Map([...COUNTERS, ...COMBINED].map((c) => [c.name, c]));

/** One schema for every interface, so that net/'s aggregates cover them all. */
export const netSchema = new Schema(
  [...COUNTERS, ...COMBINED].map((c): ValueSpec => ({ name: c.name, type: counterType, aggr: 'sum', unit: c.unit, description: c.description, expose: exposure(c.name) })),
);

/** The 16 columns of one interface's /proc/net/dev line, kept as text until a value is read. */
class NetDevRow {
  private values: bigint[] | null = null;
  constructor(private readonly text: string) {}

  column(i: number): bigint {
    if (this.values === null) {
      const fields = this.text.trim().split(/\s+/);
      // 64-bit exact: BigInt, never Number
      this.values = fields.map((f) => (/^\d+$/.test(f) ? BigInt(f) : 0n));
    }
    return this.values[i] ?? 0n;
  }
}

/** /proc/net/dev: two header lines, then "<name>: <16 columns>" (the name right-aligned, no ':' in names). */
export function parseNetDev(text: string): Map<string, NetDevRow> {
  const rows = new Map<string, NetDevRow>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    // the header lines have '|' and no ':'; be safe anyway
    if (name === '' || name.includes('|')) continue;
    rows.set(name, new NetDevRow(line.slice(colon + 1)));
  }
  return rows;
}

function gone(ifname: string): StatsError {
  return new StatsError('ENOENT', `interface ${ifname} is gone`);
}

export const netCollector: Collector = {
  name: 'net',
  description: 'network interfaces: the 24 rtnl_link_stats64 counters per interface, summed at net/',
  create(options: CollectorOptions): Source {
    const top = new Source('net');
    top.addAggregates(netSchema);
    const state: NetState = {
      top,
      options,
      classNet: kernelPath(options.sysRoot, 'class', 'net'),
      netDev: new KernelFile(kernelPath(options.procRoot, 'net', 'dev'), parseNetDev, options),
      listed: null,
      dirty: false,
      unsupported: new Set<string>(),
    };
    // The refresher is throttled by the parse itself: membership is re-listed exactly when /proc/net/dev
    // is re-read, at most once per freshness window (or at once after an interface's files vanished).
    top.setRefresher(() => syncInterfaces(state));
    return top;
  },
};

/** What net/'s refresher and its interfaces' values share. */
interface NetState {
  readonly top: Source;
  readonly options: CollectorOptions;
  readonly classNet: string;
  readonly netDev: KernelFile<Map<string, NetDevRow>>;
  /** The parse that membership was last synchronised with (values read whatever parse is current). */
  listed: Map<string, NetDevRow> | null;
  /** Set when an interface's sysfs files vanished: re-list at the next access, whatever the window. */
  dirty: boolean;
  /** Counters this kernel has no sysfs file for (kernel-wide, e.g. rx_nohandler before 4.6). */
  readonly unsupported: Set<string>;
}

/** The interfaces: entries of class/net (not the file bonding_masters) with a line in the parse, shown and nameable. */
function listInterfaces(state: NetState, table: Map<string, NetDevRow>): string[] {
  let entries;
  try {
    entries = readdirSync(state.classNet, { withFileTypes: true });
  } catch {
    return [];
  }
  const names: string[] = [];
  for (const e of entries) {
    if (!(e.isDirectory() || e.isSymbolicLink()) || !table.has(e.name) || !shown(state.options.filters.interfaces, e.name)) continue;
    if (!isValidName(e.name)) continue; // a name the model cannot show (only possible in a fixture): left out
    names.push(e.name);
  }
  return names;
}

/** Brings membership in line with the current parse. */
function syncInterfaces(state: NetState): void {
  let table: Map<string, NetDevRow>;
  try {
    table = state.netDev.get();
  } catch (err) {
    if (!(err instanceof StatsError && err.code === 'ENOENT')) throw err;
    table = new Map(); // no /proc/net/dev: no interfaces
  }
  if (table !== state.listed || state.dirty) {
    state.listed = table;
    state.dirty = false;
    syncSubordinates(state.top, listInterfaces(state, table), (ifname) => makeInterface(state, ifname));
  }
}

/** net/<ifname>/: its values read the shared /proc/net/dev parse, or its own sysfs files. */
function makeInterface(state: NetState, ifname: string): Source {
  const src = new Source(ifname, { expose: { labels: { device: ifname } } });
  const sysCounter = sysfsCounters(state, ifname);
  const read = (name: string): bigint => {
    const counter = BY_NAME.get(name)!;
    // Values never re-list (that would change net/'s subordinates under an aggregate that is
    // walking them): they read the shared parse, and a member missing from it is gone.
    const row = state.netDev.get().get(ifname);
    if (row === undefined) {
      state.dirty = true;
      throw gone(ifname);
    }
    // no longer ours (removed, perhaps replaced by a namesake): gone too
    if (src.parent !== state.top) throw gone(ifname);
    return 'proc' in counter.from ? row.column(counter.from.proc) : sysCounter(name);
  };
  src.addValues(netSchema, { base: new LiveValues(read) });
  return src;
}

/**
 * Reads ifname's counters from <sysRoot>/class/net/<if>/statistics, one KernelFile per counter (so a burst
 * reads each file once). A missing file reads 0 while the directory exists; without it the interface is gone.
 */
function sysfsCounters(state: NetState, ifname: string): (name: string) => bigint {
  const statsDir = kernelPath(state.classNet, ifname, 'statistics');
  const files = new Map<string, KernelFile<bigint>>();
  return (name: string): bigint => {
    if (state.unsupported.has(name)) return 0n;
    let file = files.get(name);
    if (file === undefined) {
      file = new KernelFile(kernelPath(statsDir, name), (text) => BigInt(text.trim()), state.options);
      files.set(name, file);
    }
    try {
      return file.get();
    } catch (err) {
      if (!(err instanceof StatsError && err.code === 'ENOENT')) throw err;
      if (!existsSync(statsDir)) {
        state.dirty = true; // the interface is gone: re-list at the next access
        throw gone(ifname);
      }
      state.unsupported.add(name);
      return 0n;
    }
  };
}
