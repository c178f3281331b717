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
import { Source, Writes, type ValueGroup } from '../model/index.js';
import { forEachLine, parseStatsdLine, parseStatsdName, type StatsdBadReason, type StatsdKind, type StatsdMetric } from './statsd-line.js';
import { StatsdListeners, type StatsdTransportStats } from './statsd-listeners.js';
import { StatsdNativeUdp, type StatsdCoalesced, type StatsdNativeBinding } from './statsd-native.js';
import { StatsdTree, type Metric, type SavedMetric } from './statsd-tree.js';

export const STATSD_DEFAULT_MAX_METRICS = 100_000;
/** The UDP socket's receive buffer as the kernel counts it (SO_RCVBUF asks half: the kernel doubles it for its bookkeeping). */
export const STATSD_DEFAULT_RCVBUF = 8 << 20;
/**
 * Most entries (values and sources) this server puts in one source. The model finds a value and checks a
 * new group by scanning the source's groups, so a source of n values costs O(n) per lookup and O(n²) to
 * build: 10,000 take about 0.2 s to create and 0.1 ms per lookup, 30,000 took 1.2 s and 0.4 ms.
 */
export const STATSD_DEFAULT_MAX_PER_SOURCE = 10_000;

/** Metrics an expiry sweep removes per slice of the event loop: about 10 ms beside 10,000 siblings (each removal scans them). */
const EXPIRE_SLICE = 250;

export interface StatsdOptions {
  /** rcvbuf: the socket's receive buffer in bytes as the kernel counts it (default STATSD_DEFAULT_RCVBUF). */
  udp?: { host: string; port: number; rcvbuf?: number };
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
  /**
   * The binding (src/fs/native.ts): UDP is then received and parsed by a thread of it (statsd-native.ts),
   * and the kernel's drops are counted. Without it, a Node dgram socket receives.
   */
  native?: StatsdNativeBinding;
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
  private readonly nativeUdp: StatsdNativeUdp | null;
  private readonly expireMs: number;
  private expiryTimer: NodeJS.Timeout | null = null;
  private sweeping = false;
  /** Date.now() of the lines being applied: read once per datagram or chunk. */
  private now = 0;
  /** With a journal: the metrics changed in this turn (not yet journaled), and whether some were removed. */
  private readonly unjournaled = new Set<string>();
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
    this.nativeUdp =
      options.native === undefined
        ? null
        : new StatsdNativeUdp(options.native, {
            stats: this.stats,
            write: (change) =>
              this.writes.defer(() => {
                this.now = Date.now();
                change();
              }),
            line: (line) => this.line(line),
            coalesced: (record) => this.coalesced(record),
          });
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

  /**
   * The receiver binding's own counts: datagrams the kernel dropped because the socket's buffer was full
   * (SO_MEMINFO), times its thread waited for this side to drain a full table, and receive errors. Zeros
   * without the binding.
   */
  get receiver(): { kernelDrops: number; stalls: number; errors: number } {
    const t = this.nativeUdp?.totals();
    return { kernelDrops: t?.kernelDrops ?? 0, stalls: t?.stalls ?? 0, errors: t?.errors ?? 0 };
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
      const udp = this.options.udp;
      if (udp && this.nativeUdp !== null) {
        const bound = this.nativeUdp.listen(udp.host, udp.port, udp.rcvbuf ?? STATSD_DEFAULT_RCVBUF);
        result = { address: udp.host, port: bound.port };
        // the kernel caps the buffer at twice net.core.rmem_max: the log says what it is
        this.log.info({ ...result, rcvbuf: bound.rcvbuf, receiver: 'native' }, 'statsd listening on UDP');
      } else if (udp) result = await this.listeners.listenUdp(udp.host, udp.port, udp.rcvbuf ?? STATSD_DEFAULT_RCVBUF);
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

  /** Counts `lines` lines refused for `reason` (more than one for a record the binding coalesced). */
  private refuse(reason: StatsdBadReason | 'conflict' | 'metric-cap' | 'source-cap', message: string, line: string, lines = 1): void {
    switch (reason) {
      case 'name':
        this.stats.badNames += lines;
        break;
      case 'unsupported':
        this.stats.unsupported += lines;
        break;
      case 'conflict':
        this.stats.conflicts += lines;
        break;
      case 'metric-cap':
        this.stats.dropped += lines;
        this.stats.droppedMetricCap += lines;
        break;
      case 'source-cap':
        this.stats.dropped += lines;
        this.stats.droppedSourceCap += lines;
        break;
      default:
        this.stats.badLines += lines;
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
    this.change(metric.kind, metric.name, metric.parts, line, 1, (group) => {
      switch (metric.kind) {
        case 'counter':
          group.add(0, metric.delta);
          break;
        case 'gauge':
          if (metric.op === 'set') group.set(0, metric.value);
          else group.add(0, metric.value);
          break;
        default:
          group.observe(0, metric.value, Number(metric.weight)); // at most 2^32: exact as a number
      }
    });
  }

  /**
   * Applies a record the binding coalesced: `lines` lines of one name and kind, with the effect they have
   * one after the other (statsd-native.ts).
   */
  private coalesced(r: StatsdCoalesced): void {
    this.stats.lines += r.lines;
    try {
      this.change(r.kind, r.name, null, `${r.name}|${r.kind} (${r.lines} lines)`, r.lines, (group) => {
        switch (r.kind) {
          case 'counter':
            group.addWord(0, r.lo, r.hi);
            break;
          case 'gauge':
            if (r.set) group.setWord(0, r.lo, r.hi);
            else group.addWord(0, r.lo, r.hi);
            break;
          default:
            for (let i = 0; i < r.count; i++) group.observe(0, r.samples.readDoubleLE(r.from + 8 * i));
        }
      });
    } catch (err) {
      this.stats.errors += r.lines;
      this.log.error({ err, metric: r.name }, 'statsd record failed');
    }
  }

  /**
   * The one place a metric changes, for lines parsed here and the binding's records alike: finds or
   * creates the metric `name` of `kind`, runs `update` on its value group and counts the `lines` applied;
   * refused lines change nothing and are counted.
   */
  private change(kind: StatsdKind, name: string, parts: string[] | null, line: string, lines: number, update: (group: ValueGroup) => void): void {
    const m = this.target(kind, name, parts, line, lines);
    if (m === undefined) return;
    update(m.group);
    m.touched = this.now;
    this.stats.applied += lines;
    this.journalLater(name); // state (issue 15): every applied change passes here
  }

  /**
   * Finds the metric named `name`, created if new (its parts checked here when the caller has not);
   * undefined when the lines are refused, counted `lines` times.
   */
  private target(kind: StatsdKind, name: string, parts: string[] | null, line: string, lines: number): Metric | undefined {
    const m = this.tree.metrics.get(name);
    if (m !== undefined) {
      if (m.kind === kind) return m;
      this.refuse('conflict', `${name} is a ${m.kind}, not a ${kind}`, line, lines);
      return undefined;
    }
    const checked = parts ?? parseStatsdName(name);
    if (typeof checked === 'string') {
      this.refuse('name', checked, line, lines);
      return undefined;
    }
    const created = this.tree.create({ kind, name, parts: checked }, this.now);
    if (typeof created !== 'string') return created;
    if (created === 'metric-cap') this.refuse(created, `${this.maxMetrics} metrics are kept already (remove some, or let them expire)`, line, lines);
    else if (created === 'source-cap') this.refuse(created, `over a cap: ${this.maxSources} sources, or ${this.maxPerSource} entries in one source`, line, lines);
    else this.refuse('conflict', created, line, lines);
    return undefined;
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
    this.journalLater(null);
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

  /** With a journal, journals `name` (or, for null, a removal) at the end of this event-loop turn. */
  private journalLater(name: string | null): void {
    const journal = this.options.journal;
    if (journal === undefined) return;
    if (name === null) this.removedSome = true;
    else this.unjournaled.add(name);
    if (this.journalScheduled) return;
    this.journalScheduled = true;
    setImmediate(() => {
      this.journalScheduled = false;
      // after a removal, every metric (a replay replaces them all); else the values of those changed
      const data = this.removedSome ? { all: this.tree.save() } : { values: this.tree.save(this.unjournaled) };
      this.removedSome = false;
      this.unjournaled.clear();
      journal.append('statsd', data);
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
          this.journalLater(null);
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
    this.nativeUdp?.close();
    await this.listeners.close();
  }
}

function excerpt(line: string): string {
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
