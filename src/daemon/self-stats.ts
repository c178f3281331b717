/**
 * The daemon's own statistics, shown from the first start so a fresh mount holds real, changing values of
 * both kinds: clearable counters (FUSE requests by kind, errors, bytes read) and read-only gauges (open
 * handles, uptime, memory).
 */
import { monitorEventLoopDelay, performance, type IntervalHistogram } from 'node:perf_hooks';
import { counterType, gaugeType, LiveValues } from '../model/live.js';
import { arena, Schema, Source, type CustomType } from '../model/index.js';

/** What the filesystem session counts; read at the moment a value is read. */
export interface FuseCounterReader {
  readonly ops: readonly string[];
  requests(op: number): bigint;
  errors(op: number): bigint;
  bytesRead(): bigint;
  openFiles(): bigint;
  openDirs(): bigint;
  inFlight(): bigint;
  inodes(): number;
}

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
