/**
 * The daemon's own statistics, shown from the first start so a fresh mount holds real, changing values of
 * both kinds: clearable counters (FUSE requests by kind, errors, bytes read) and read-only gauges (open
 * handles, uptime, memory). The services add theirs (producer socket, StatsD), so that every cap and every
 * drop is seen where the data is missing.
 */
import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';
import { counterType, gaugeType, LiveValues } from '../model/live.js';
import { arena, Schema, Source, type CustomType, type ValueSpec } from '../model/index.js';
import type { FuseCounterReader } from '../fs/mount.js';
import type { ProducerServerStats } from '../producers/socket-server.js';
import type { StatsdStats } from '../producers/statsd.js';
import type { StateStats } from '../state/keeper.js';

const opSchema = new Schema([
  { name: 'requests', type: counterType, aggr: 'sum', description: 'FUSE requests served', unit: 'requests' },
  { name: 'errors', type: counterType, aggr: 'sum', description: 'FUSE requests answered with an error', unit: 'requests' },
]);

const fuseSchema = new Schema([
  { name: 'bytes_read', type: counterType, description: 'bytes returned by read requests', unit: 'bytes' },
  { name: 'open_files', type: gaugeType, floating: true, description: 'files open now', unit: 'files' },
  { name: 'open_dirs', type: gaugeType, floating: true, description: 'directories open now', unit: 'directories' },
  { name: 'in_flight', type: gaugeType, floating: true, description: 'requests waiting for the daemon now', unit: 'requests' },
  { name: 'inodes', type: gaugeType, floating: true, description: 'inode numbers the kernel holds', unit: 'inodes' },
  { name: 'snapshot_bytes', type: gaugeType, floating: true, description: 'bytes held by open files and snapshots being filled', unit: 'bytes' },
  { name: 'snapshot_refusals', type: counterType, description: 'opens refused with EMFILE: the user had spent its snapshot budget', unit: 'opens' },
]);

const processSchema = new Schema([
  { name: 'uptime_seconds', type: gaugeType, floating: true, description: 'seconds since the daemon started', unit: 'seconds' },
  { name: 'rss_bytes', type: gaugeType, floating: true, description: 'resident set size', unit: 'bytes' },
  { name: 'heap_used_bytes', type: gaugeType, floating: true, description: 'V8 heap in use', unit: 'bytes' },
  { name: 'external_bytes', type: gaugeType, floating: true, description: 'memory held outside the V8 heap (buffers)', unit: 'bytes' },
  { name: 'value_slots', type: gaugeType, floating: true, description: 'simple values stored in the compact arena', unit: 'values' },
]);

/**
 * Samples the event loop every 10 ms only while it matters: from a read of the value until a minute after
 * the last read, and within that only while the loop is busy (more than 2% of the last second in use;
 * the first second after a read always). Sampling all the time cost an idle daemon ~5 ms of CPU per second,
 * and a daemon scraped every second (its only work) ~4 ms per second; the check costs one wake-up a second.
 */
class LoopSampler {
  readonly h: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  private readAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private sampling = false;
  private elu = performance.eventLoopUtilization();

  touch(): IntervalHistogram {
    this.readAt = Date.now();
    if (this.timer === null) {
      this.sample(true);
      this.elu = performance.eventLoopUtilization();
      this.timer = setInterval(() => this.check(), 1000).unref();
    }
    return this.h;
  }

  private check(): void {
    const now = performance.eventLoopUtilization();
    const busy = performance.eventLoopUtilization(now, this.elu).utilization > 0.02;
    this.elu = now;
    if (Date.now() - this.readAt < 60_000) {
      this.sample(busy);
      return;
    }
    this.sample(false);
    clearInterval(this.timer!);
    this.timer = null;
  }

  private sample(on: boolean): void {
    if (on === this.sampling) return;
    if (on) this.h.enable();
    else this.h.disable();
    this.sampling = on;
  }
}

/** The longest the event loop was held since the last clear (while sampled): what the slicing of big work is for. */
const loopDelayType: CustomType<LoopSampler> = Object.freeze({
  name: 'loop_delay',
  signed: false,
  get: (s: LoopSampler) => (s.touch().count === 0 ? 0 : Math.round(s.h.max / 1000)),
  clear: (s: LoopSampler) => s.touch().reset(),
});

const loopSchema = new Schema([
  {
    name: 'event_loop_delay_max_us',
    type: loopDelayType,
    description: 'longest event-loop delay since the last clear (sampled every 10 ms while the loop is busy, from a read until a minute after the last); echo 0 > to restart',
    unit: 'microseconds',
  },
]);

/**
 * Builds statsfs/ with fuse/<op>/{requests,errors}, sums of both at fuse/, and process/ gauges.
 * The FUSE part appears only once a session exists (the library may serve a tree without mounting).
 */
export function createSelfStats(fuse: FuseCounterReader | null, startedAt = Date.now()): Source {
  const self = new Source('statsfs');
  const proc = new Source('process');
  // one process.memoryUsage() (a system call for the RSS each time) serves the three values of one read
  let usage = process.memoryUsage();
  let usageAt = performance.now();
  const memory = () => {
    if (performance.now() - usageAt > 100) {
      usage = process.memoryUsage();
      usageAt = performance.now();
    }
    return usage;
  };
  proc.addValues(processSchema, {
    base: new LiveValues((name) => {
      switch (name) {
        case 'uptime_seconds':
          return Math.floor((Date.now() - startedAt) / 1000);
        case 'rss_bytes':
          return memory().rss;
        case 'heap_used_bytes':
          return memory().heapUsed;
        case 'external_bytes':
          return memory().external;
        default:
          return arena.usage.used;
      }
    }),
  });
  proc.addValues(loopSchema, { base: new LoopSampler() });
  self.addSubordinate(proc);
  if (fuse !== null) self.addSubordinate(fuseSource(fuse));
  return self;
}

function fuseSource(fuse: FuseCounterReader): Source {
  const dir = new Source('fuse', { expose: { instanceLabel: 'op' } });
  dir.addAggregates(opSchema);
  dir.addValues(fuseSchema, {
    base: new LiveValues((name) => {
      switch (name) {
        case 'bytes_read':
          return fuse.bytesRead();
        case 'open_files':
          return fuse.openFiles();
        case 'open_dirs':
          return fuse.openDirs();
        case 'in_flight':
          return fuse.inFlight();
        case 'snapshot_bytes':
          return fuse.snapshotBytes();
        case 'snapshot_refusals':
          return fuse.overBudget();
        default:
          return fuse.inodes();
      }
    }),
  });
  fuse.ops.forEach((op, i) => {
    const src = new Source(op);
    src.addValues(opSchema, { base: new LiveValues((name) => (name === 'requests' ? fuse.requests(i) : fuse.errors(i))) });
    dir.addSubordinate(src);
  });
  return dir;
}

/** One file of a service's counters: its name in the tree, and how to read it from the live object. */
interface ServiceStat<T> {
  name: string;
  read: (from: T) => number;
  /** A level (0444, read as it is); otherwise a counter (0644, echo 0 > counts from now). */
  level?: boolean;
  unit: string;
  description: string;
}

/** A source named `name` whose files read `from` at the moment they are read. */
function serviceSource<T>(name: string, from: T, stats: ServiceStat<T>[]): Source {
  const schema = new Schema(
    stats.map(
      (s): ValueSpec => ({ name: s.name, type: s.level ? gaugeType : counterType, floating: s.level === true, unit: s.unit, description: s.description }),
    ),
  );
  const byName = new Map(stats.map((s) => [s.name, s.read]));
  const src = new Source(name);
  src.addValues(schema, { base: new LiveValues((value) => byName.get(value)!(from)) });
  return src;
}

const producerStats: ServiceStat<ProducerServerStats>[] = [
  { name: 'connections', read: (s) => s.connections, level: true, unit: 'connections', description: 'producer connections open now' },
  { name: 'accepted', read: (s) => s.accepted, unit: 'connections', description: 'connections accepted by the socket, refused ones included' },
  { name: 'refused', read: (s) => s.refused, unit: 'connections', description: 'connections refused at the connection cap (EBUSY)' },
  { name: 'timed_out', read: (s) => s.timedOut, unit: 'connections', description: 'connections closed because a frame did not arrive in time' },
  { name: 'frames', read: (s) => s.frames, unit: 'frames', description: 'frames received' },
  { name: 'updates', read: (s) => s.updates, unit: 'operations', description: 'set and add operations applied by UPDATE frames' },
  { name: 'errors', read: (s) => s.errors, unit: 'requests', description: 'requests answered with an error' },
  { name: 'closed_for_protocol_errors', read: (s) => s.closedForProtocolErrors, unit: 'connections', description: 'connections closed after an error that lost the framing' },
  { name: 'throttled', read: (s) => s.throttled, unit: 'pauses', description: 'times reading a connection was paused because frames it sent were still waiting to be applied' },
  { name: 'backlog', read: (s) => s.backlogBytes, level: true, unit: 'bytes', description: 'bytes received from producers and not applied yet' },
];

/** statsfs/producers/: the producer socket's counters, read from `stats` at read time. */
export function producerServerSource(stats: ProducerServerStats): Source {
  return serviceSource('producers', stats, producerStats);
}

/** What statsfs/statsd/ reads: a StatsdServer. */
export interface StatsdStatsReader {
  readonly stats: StatsdStats;
  readonly receiver: { kernelDrops: number; stalls: number; errors: number };
  readonly metricCount: number;
  readonly metricCap: number;
}

const statsdStats: ServiceStat<StatsdStatsReader>[] = [
  { name: 'packets', read: (s) => s.stats.packets, unit: 'datagrams', description: 'UDP datagrams received' },
  {
    name: 'kernel_drops',
    read: (s) => s.receiver.kernelDrops,
    unit: 'datagrams',
    description: "UDP datagrams the kernel dropped: the socket's receive buffer (--statsd-rcvbuf) was full",
  },
  {
    name: 'receiver_stalls',
    read: (s) => s.receiver.stalls,
    unit: 'waits',
    description: "times the receiver thread waited for the event loop to apply a full table (datagrams wait in the socket's buffer meanwhile)",
  },
  { name: 'receive_errors', read: (s) => s.receiver.errors, unit: 'errors', description: 'UDP receive calls that failed (a bug or a kernel problem if not 0)' },
  { name: 'bytes', read: (s) => s.stats.bytes, unit: 'bytes', description: 'bytes received over UDP and the Unix socket' },
  { name: 'connections', read: (s) => s.stats.connections, unit: 'connections', description: 'Unix socket connections accepted' },
  { name: 'refused_connections', read: (s) => s.stats.refusedConnections, unit: 'connections', description: 'Unix socket connections closed at once: 256 were open' },
  { name: 'lines', read: (s) => s.stats.lines, unit: 'lines', description: 'non-empty lines received' },
  { name: 'applied', read: (s) => s.stats.applied, unit: 'lines', description: 'lines applied to the tree' },
  { name: 'bad_lines', read: (s) => s.stats.badLines, unit: 'lines', description: 'malformed lines (syntax, type, value, rate, range, a negative counter delta)' },
  { name: 'bad_names', read: (s) => s.stats.badNames, unit: 'lines', description: 'lines whose name is not a valid path' },
  { name: 'conflicts', read: (s) => s.stats.conflicts, unit: 'lines', description: 'lines whose name has another type, or is taken in the tree' },
  { name: 'unsupported', read: (s) => s.stats.unsupported, unit: 'lines', description: 'sets, events and service checks: valid, not kept' },
  { name: 'dropped', read: (s) => s.stats.dropped, unit: 'lines', description: 'lines dropped at a cap: the sum of the three dropped_* below' },
  { name: 'dropped_metric_cap', read: (s) => s.stats.droppedMetricCap, unit: 'lines', description: 'lines that would have made a metric beyond metric_cap' },
  { name: 'dropped_source_cap', read: (s) => s.stats.droppedSourceCap, unit: 'lines', description: 'lines that would have made too many sources, or too many entries in one source' },
  { name: 'dropped_long_lines', read: (s) => s.stats.droppedLongLines, unit: 'lines', description: 'Unix socket lines over 64 KiB' },
  { name: 'expired', read: (s) => s.stats.expired, unit: 'metrics', description: 'metrics removed after --statsd-expire seconds without a line' },
  { name: 'removed', read: (s) => s.stats.removed, unit: 'metrics', description: 'metrics removed by statsfs rm' },
  { name: 'errors', read: (s) => s.stats.errors, unit: 'lines', description: 'unexpected failures applying a line (a bug if not 0)' },
  { name: 'metrics', read: (s) => s.metricCount, level: true, unit: 'metrics', description: 'metrics kept now' },
  { name: 'metric_cap', read: (s) => s.metricCap, level: true, unit: 'metrics', description: 'the most metrics kept; lines for new ones beyond it are dropped' },
];

/** statsfs/statsd/: the StatsD receiver's counters and levels, read at read time. */
export function statsdSource(server: StatsdStatsReader): Source {
  return serviceSource('statsd', server, statsdStats);
}

const stateStats: ServiceStat<StateStats>[] = [
  { name: 'checkpoints', read: (s) => s.checkpoints, unit: 'checkpoints', description: 'state checkpoints written and made durable' },
  { name: 'checkpoint_bytes', read: (s) => s.checkpointBytes, level: true, unit: 'bytes', description: 'size of the last checkpoint' },
  { name: 'build_ms', read: (s) => s.buildMs, level: true, unit: 'milliseconds', description: 'how long building the last checkpoint held the event loop' },
  { name: 'interval_ms', read: (s) => s.intervalMs, level: true, unit: 'milliseconds', description: 'checkpoint interval now: 10000 (when something changed), or 50 times the last build when longer' },
  { name: 'fsyncs', read: (s) => s.fsyncs, unit: 'calls', description: 'fsync calls made (the journal every second, checkpoints: file and directory)' },
  { name: 'last_durable_ms', read: (s) => s.lastDurableMs, level: true, unit: 'milliseconds since the epoch', description: 'the last durable point: every change applied before it is fsynced, in the journal or a checkpoint (0: none yet)' },
  { name: 'write_failures', read: (s) => s.writeFailures, unit: 'checkpoints', description: 'checkpoints that could not be written (logged; the previous one stays)' },
  { name: 'corrupt_moved_aside', read: (s) => s.corruptMovedAside, unit: 'files', description: 'state files that failed their checks and were moved aside' },
  { name: 'journal_records', read: (s) => s.journalRecords, unit: 'records', description: 'journal records appended (before the changes they hold were acknowledged)' },
  { name: 'journal_bytes', read: (s) => s.journalBytes, unit: 'bytes', description: 'bytes appended to the journal' },
  { name: 'journal_replayed', read: (s) => s.journalReplayed, unit: 'records', description: 'journal records replayed at the start' },
  { name: 'journal_torn', read: (s) => s.journalTorn, unit: 'files', description: 'journal files that ended with a record cut short (replayed up to it)' },
  { name: 'journal_failures', read: (s) => s.journalFailures, unit: 'records', description: 'journal records that could not be written (logged once)' },
  { name: 'load_failures', read: (s) => s.loadFailures, unit: 'parts', description: 'parts of a loaded state that could not be restored (logged)' },
];

/** statsfs/state/: the state directory's checkpoints and what loading found. */
export function stateSource(stats: StateStats): Source {
  return serviceSource('state', stats, stateStats);
}
