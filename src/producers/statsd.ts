/**
 * StatsD producer: keeps what StatsD clients send (over UDP, or a Unix stream socket: statsd-listeners.ts;
 * lines parsed by statsd-line.ts) as sources and values of the model.
 *
 *   a.b.c:1|c      counter   source a/b, value c: u64, cumulative (0644, clearable)
 *   a.b.c:21|g     gauge     source a/b, value c: s64, floating (0444)
 *   a.b.t:5|ms     timing    source a/b, histogram value t (a directory t/): count, sum_us, min_us, max_us,
 *                            avg_us, p50_us, p90_us, p99_us, p999_us, buckets (milliseconds kept as whole µs)
 *   a.b.h:5|h (|d) histogram source a/b, histogram value h: count, sum, min, max, avg, p50 … p999, buckets
 *                            (the value's own unit, decimals kept)
 *
 * Malformed lines, bad names, type conflicts and metrics beyond the cap are counted in `stats` and never
 * throw. A metric lives until it is removed (removePath, which the producer socket's REMOVE_PATH reaches)
 * or, with `expireSeconds`, until it has not been updated for that long.
 */
import { SILENT_LOG, type Log } from '../log.js';
import { Source, Writes } from '../model/index.js';
import { forEachLine, parseStatsdLine, type StatsdBadReason, type StatsdMetric } from './statsd-line.js';
import { StatsdListeners, type StatsdTransportStats } from './statsd-listeners.js';
import { StatsdTree, type SavedMetric } from './statsd-tree.js';

export const STATSD_DEFAULT_MAX_METRICS = 100_000;
/**
 * Most entries (values and sources) this server puts in one source. The model finds a value and checks a
 * new group by scanning the source's groups, so a source of n values costs O(n) per lookup and O(n²) to
 * build: 10,000 take about 0.2 s to create and 0.1 ms per lookup, 30,000 took 1.2 s and 0.4 ms.
 */
export const STATSD_DEFAULT_MAX_PER_SOURCE = 10_000;

/** Metrics an expiry sweep removes per slice of the event loop: about 10 ms beside 10,000 siblings (each removal scans them). */
const EXPIRE_SLICE = 250;

export interface StatsdOptions {
  udp?: { host: string; port: number };
  /** A Unix stream socket (Node has no Unix datagram sockets) carrying newline-terminated lines. */
  unixPath?: string;
  /** Most metrics kept; lines that would create more are dropped and counted (default 100,000). */
  maxMetrics?: number;
  /** Most sources this server creates (prefix directories; default 100,000). */
  maxSources?: number;
  /** Most values and sources this server adds to one source; more are dropped and counted (default 10,000). */
  maxPerSource?: number;
  /** Removes a metric not updated for this many seconds, and counts it (default 0: never). */
  expireSeconds?: number;
  /** Where changes are journaled (the daemon's state directory): once per event-loop turn. */
  journal?: { append(part: string, data: unknown): void };
  log?: Log;
}

export interface StatsdStats extends StatsdTransportStats {
  /** UDP datagrams received */
  packets: number;
  /** bytes received over UDP and the Unix socket */
  bytes: number;
  /** Unix socket connections accepted */
  connections: number;
  /** Unix socket connections closed at once: STATSD_MAX_CONNECTIONS were open */
  refusedConnections: number;
  /** non-empty lines seen */
  lines: number;
  /** lines applied to the tree */
  applied: number;
  /** malformed lines: syntax, unknown type, bad value or rate, a negative counter delta, out of range */
  badLines: number;
  /** names refused: empty part, '.', '..', '/', control characters, invalid UTF-8, too long or too deep */
  badNames: number;
  /** a name already used with another type, or clashing with a source or value already in the tree */
  conflicts: number;
  /** valid but not kept: sets, events, service checks */
  unsupported: number;
  /** lines refused by a cap: the sum of the three below */
  dropped: number;
  /** lines that would have made a metric beyond maxMetrics */
  droppedMetricCap: number;
  /** lines that would have made a source beyond maxSources, or an entry beyond maxPerSource in one source */
  droppedSourceCap: number;
  /** Unix-socket lines over 64 KiB */
  droppedLongLines: number;
  /** metrics removed because they were not updated within expireSeconds */
  expired: number;
  /** metrics removed by removePath (`statsfs rm`), one per metric below a removed source */
  removed: number;
  /** unexpected exceptions while applying a line (a bug if not 0); the server goes on */
  errors: number;
}

/**
 * Receives StatsD lines and keeps them under `root`. Metrics live until removed or expired; closing stops
 * listening and leaves the sources in the tree.
 */
export class StatsdServer {
  readonly stats: StatsdStats = {
    packets: 0,
    bytes: 0,
    connections: 0,
    refusedConnections: 0,
    lines: 0,
    applied: 0,
    badLines: 0,
    badNames: 0,
    conflicts: 0,
    unsupported: 0,
    dropped: 0,
    droppedMetricCap: 0,
    droppedSourceCap: 0,
    droppedLongLines: 0,
    expired: 0,
    removed: 0,
    errors: 0,
  };

  private readonly maxMetrics: number;
  private readonly maxPerSource: number;
  private readonly maxSources: number;
  private readonly log: Log;
  private readonly tree: StatsdTree;
  private readonly warned = new Set<string>();
  private readonly listeners: StatsdListeners;
  private readonly expireMs: number;
  private expiryTimer: NodeJS.Timeout | null = null;
  private sweeping = false;
  /** Date.now() of the lines being applied: read once per datagram or chunk. */
  private now = 0;
  /** With a journal: the metrics changed in this turn, and whether some were removed. */
  private readonly touched: Set<string> | null;
  private removedSome = false;
  private journalScheduled = false;

  private readonly writes: Writes;

  constructor(
    readonly root: Source,
    private readonly options: StatsdOptions = {},
  ) {
    this.writes = Writes.of(root);
    this.maxMetrics = options.maxMetrics ?? STATSD_DEFAULT_MAX_METRICS;
    this.maxPerSource = options.maxPerSource ?? STATSD_DEFAULT_MAX_PER_SOURCE;
    this.maxSources = options.maxSources ?? STATSD_DEFAULT_MAX_METRICS;
    this.log = options.log ?? SILENT_LOG;
    this.tree = new StatsdTree(root, { maxMetrics: this.maxMetrics, maxSources: this.maxSources, maxPerSource: this.maxPerSource });
    this.listeners = new StatsdListeners({
      stats: this.stats,
      log: this.log,
      ingest: (data) => this.ingest(data),
      ingestLines: (data) => this.ingestLines(data),
      warnOnce: (key, obj, msg) => this.warnOnce(key, obj, msg),
    });
    this.touched = options.journal === undefined ? null : new Set();
    this.expireMs = Math.max(0, (options.expireSeconds ?? 0) * 1000);
    if (this.expireMs > 0) {
      // a metric goes between expireSeconds and 1.25 × expireSeconds (at most a minute more) after its last line
      const every = Math.min(Math.max(this.expireMs / 4, 100), 60_000);
      this.expiryTimer = setInterval(() => this.sweep(), every);
      this.expiryTimer.unref();
    }
  }

  /** The most metrics kept (maxMetrics). */
  get metricCap(): number {
    return this.maxMetrics;
  }

  /** Metrics kept (counters, gauges, timings, histograms). */
  get metricCount(): number {
    return this.tree.metrics.size;
  }

  /**
   * Starts listening. Resolves with the UDP address and port (the port chosen when 0 was asked), or with
   * the Unix path and port 0 when there is no UDP listener.
   */
  async listen(): Promise<{ address: string; port: number }> {
    try {
      let result = { address: this.options.unixPath ?? '', port: 0 };
      if (this.options.udp) result = await this.listeners.listenUdp(this.options.udp.host, this.options.udp.port);
      if (this.options.unixPath !== undefined) await this.listeners.listenUnix(this.options.unixPath);
      return result;
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** Applies every line of a datagram or text, as the UDP listener does (counts bytes, not packets). */
  ingest(data: Buffer | string): void {
    this.stats.bytes += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    this.ingestLines(data);
  }

  private ingestLines(data: Buffer | string): void {
    // lines change the tree: they wait while a snapshot is being captured in slices, and a datagram's lines
    // are one write for readers on other threads (the FUSE session thread)
    this.writes.defer(() => this.applyLines(data));
  }

  private applyLines(data: Buffer | string): void {
    this.now = Date.now();
    forEachLine(typeof data === 'string' ? data : data.toString('utf8'), (line) => this.line(line));
  }

  private line(line: string): void {
    this.stats.lines++;
    try {
      const parsed = parseStatsdLine(line);
      if (parsed.ok) this.apply(parsed.metric, line);
      else this.refuse(parsed.reason, parsed.message, line);
    } catch (err) {
      this.stats.errors++;
      this.log.error({ err, line: excerpt(line) }, 'statsd line failed');
    }
  }

  private refuse(reason: StatsdBadReason | 'conflict' | 'metric-cap' | 'source-cap', message: string, line: string): void {
    switch (reason) {
      case 'name':
        this.stats.badNames++;
        break;
      case 'unsupported':
        this.stats.unsupported++;
        break;
      case 'conflict':
        this.stats.conflicts++;
        break;
      case 'metric-cap':
        this.stats.dropped++;
        this.stats.droppedMetricCap++;
        break;
      case 'source-cap':
        this.stats.dropped++;
        this.stats.droppedSourceCap++;
        break;
      default:
        this.stats.badLines++;
    }
    this.warnOnce(reason, { line: excerpt(line), reason: message }, 'statsd line refused');
  }

  /** The first refusal of each kind is a warning, the rest are debug lines (a flood must not flood the log). */
  private warnOnce(key: string, obj: object, msg: string): void {
    if (this.warned.has(key)) this.log.debug(obj, msg);
    else {
      this.warned.add(key);
      this.log.warn(obj, `${msg} (further ones are logged at debug level and counted)`);
    }
  }

  private apply(metric: StatsdMetric, line: string): void {
    let m = this.tree.metrics.get(metric.name);
    if (m === undefined) {
      const created = this.tree.create(metric, this.now);
      if (typeof created === 'string') {
        if (created === 'metric-cap') this.refuse(created, `${this.maxMetrics} metrics are kept already (remove some, or let them expire)`, line);
        else if (created === 'source-cap') this.refuse(created, `over a cap: ${this.maxSources} sources, or ${this.maxPerSource} entries in one source`, line);
        else this.refuse('conflict', created, line);
        return;
      }
      m = created;
    } else if (m.kind !== metric.kind) {
      this.refuse('conflict', `${metric.name} is a ${m.kind}, not a ${metric.kind}`, line);
      return;
    }
    switch (metric.kind) {
      case 'counter':
        m.group.add(0, metric.delta);
        break;
      case 'gauge':
        if (metric.op === 'set') m.group.set(0, metric.value);
        else m.group.add(0, metric.value);
        break;
      default:
        m.group.observe(0, metric.value, Number(metric.weight)); // at most 2^32: exact as a number
    }
    m.touched = this.now;
    this.stats.applied++;
    if (this.touched !== null) this.journalLater(metric.name); // state (issue 15): every applied line passes here
  }

  /**
   * Removes the metric, or the prefix source with every metric below it, at `path` ('/'-separated), as
   * `statsfs rm` asks through the producer socket: see StatsdTree.removePath. False when nothing there is
   * this server's (the caller answers for it).
   */
  removePath(path: string): boolean {
    const removed = this.tree.removePath(path);
    if (removed === false) return false;
    this.stats.removed += removed;
    if (this.touched !== null) this.journalLater(null);
    return true;
  }

  // --- state (issue 15): every path that changes a metric is counted in applied, removed or expired, so a
  // state keeper sees each change here, whatever transport the lines came by (the C receive path included).

  /** Moves with every change of the metrics kept (lines applied, removals, expiries). */
  get changes(): number {
    return this.stats.applied + this.stats.removed + this.stats.expired;
  }

  /** The metrics and their values, for a state checkpoint. */
  saveMetrics(): SavedMetric[] {
    return this.tree.save();
  }

  /** Journals `name` (or, for null, a removal) at the end of this event-loop turn. */
  private journalLater(name: string | null): void {
    if (name === null) this.removedSome = true;
    else this.touched!.add(name);
    if (this.journalScheduled) return;
    this.journalScheduled = true;
    setImmediate(() => {
      this.journalScheduled = false;
      const touched = this.touched!;
      // after a removal, every metric (a replay replaces them all); else the values of those changed
      const data = this.removedSome ? { all: this.tree.save() } : { values: this.tree.save(touched) };
      this.removedSome = false;
      touched.clear();
      this.options.journal!.append('statsd', data);
    });
  }

  /** Applies a journal record (after restoreMetrics()). */
  replayJournal(data: { all: SavedMetric[] } | { values: SavedMetric[] }): void {
    if ('all' in data) this.tree.removeAll();
    this.tree.restore('all' in data ? data.all : data.values, Date.now());
  }

  /** Puts back saved metrics (call before listen()); those that no longer fit are left out and logged. */
  restoreMetrics(saved: readonly SavedMetric[]): void {
    const skipped = this.tree.restore(saved, Date.now());
    this.log.info({ metrics: saved.length - skipped, skipped }, 'statsd metrics restored');
  }

  /**
   * Removes the metrics not updated within expireMs. The scan only reads; the removals are writes, so they
   * wait behind the write barrier like lines, in slices so that a mass expiry does not hold the event loop.
   */
  private sweep(): void {
    if (this.sweeping) return;
    const cutoff = Date.now() - this.expireMs;
    const stale: string[] = [];
    for (const [name, m] of this.tree.metrics) if (m.touched <= cutoff) stale.push(name);
    if (stale.length === 0) return;
    this.sweeping = true;
    let next = 0;
    const slice = (): void => {
      const end = Math.min(next + EXPIRE_SLICE, stale.length);
      for (; next < end; next++) {
        const name = stale[next];
        const m = this.tree.metrics.get(name);
        if (m === undefined || m.touched > cutoff) continue; // removed meanwhile, or a line came
        try {
          this.tree.remove(name, m);
          this.stats.expired++;
          if (this.touched !== null) this.journalLater(null);
        } catch (err) {
          this.stats.errors++;
          this.log.error({ err, metric: name }, 'statsd expiry failed');
        }
      }
      if (next < stale.length && this.expiryTimer !== null) setImmediate(() => this.writes.defer(slice));
      else this.sweeping = false;
    };
    this.writes.defer(slice);
  }

  /** Stops listening (UDP and Unix, whose socket file is removed); the tree keeps what was received. */
  async close(): Promise<void> {
    if (this.expiryTimer !== null) clearInterval(this.expiryTimer);
    this.expiryTimer = null;
    await this.listeners.close();
  }
}

function excerpt(line: string): string {
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
