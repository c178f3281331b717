/**
 * StatsD producer: a UDP listener (and optionally a Unix stream socket) for the StatsD line protocol that
 * keeps what it hears as sources and values of the model.
 *
 *   a.b.c:1|c      counter   source a/b, value c: u64, cumulative (0644, clearable); adds round(value / rate),
 *                            which may not be negative (a counter only counts up, as Prometheus requires)
 *   a.b.c:21|g     gauge     source a/b, value c: s64, floating (0444); "+n" / "-n" adjust, a plain value sets
 *   a.b.t:5|ms     timing    source a/b, histogram value t (a directory t/): count, sum_us, min_us, max_us,
 *                            avg_us, p50_us, p90_us, p99_us, p999_us, buckets (milliseconds kept as whole µs)
 *   a.b.h:5|h (|d) histogram source a/b, histogram value h: count, sum, min, max, avg, p50 … p999, buckets
 *                            (the value's own unit, decimals kept)
 *                            Timing and histogram samples may not be negative, nor above 2^53; @rate
 *                            weighs a sample round(1 / rate).
 *
 * Every number is parsed as an exact decimal (BigInt), rounded once, half away from zero; nothing goes
 * through a double but a histogram's sample, which a histogram keeps as one. Malformed lines, bad names, type conflicts and metrics beyond the cap are counted in
 * `stats` and never throw. Node has no Unix datagram sockets, so `unixPath` is a stream socket carrying
 * newline-terminated lines. A metric lives until it is removed (removePath, which the producer socket's
 * REMOVE_PATH reaches) or, with `expireSeconds`, until it has not been updated for that long.
 */
import { SILENT_LOG, type Log } from '../log.js';
import dgram from 'node:dgram';
import net from 'node:net';
import { Schema, Source, StatsError, validateName, Writes, type ValueGroup, type ValueSpec } from '../model/index.js';
import { whenListening } from '../net.js';
import { listenUnix } from './unix-socket.js';

/** Longest metric name (all parts with their dots); each part is also a model name (≤ 99 characters). */
export const STATSD_NAME_MAX = 255;
/** Most '.'-separated parts in a name: bounds the sources one metric may create. */
export const STATSD_DEPTH_MAX = 16;
/** Longest value or rate text; with the exponent bound it keeps BigInt work per line small. */
const NUMBER_TEXT_MAX = 64;
/** Longest line accepted on the Unix stream socket (a UDP datagram is bounded by the protocol). */
export const STATSD_LINE_MAX = 65536;
export const STATSD_DEFAULT_MAX_METRICS = 100_000;
/** Most simultaneous connections on the Unix socket; more are closed at once and counted. */
export const STATSD_MAX_CONNECTIONS = 256;
/**
 * Most entries (values and sources) this server puts in one source. The model finds a value and checks a
 * new group by scanning the source's groups, so a source of n values costs O(n) per lookup and O(n²) to
 * build: 10,000 take about 0.2 s to create and 0.1 ms per lookup, 30,000 took 1.2 s and 0.4 ms.
 */
export const STATSD_DEFAULT_MAX_PER_SOURCE = 10_000;

/** Most samples one sampled timing line may stand for (1 / rate). */
const WEIGHT_MAX = 2n ** 32n;
const S64_MIN = -(2n ** 63n);
const S64_MAX = 2n ** 63n - 1n;
const U64_MAX = 2n ** 64n - 1n;
/** Largest timing or histogram sample: a histogram keeps samples as doubles, exact up to 2^53. */
const SAMPLE_MAX = 2n ** 53n;

/**
 * The definition of each kind's value. A timing's histogram is in whole microseconds, its files named
 * with `_us` (count, sum_us, … p999_us, buckets), as timings were before they were histograms.
 */
const STATSD_SPECS: Readonly<Record<StatsdKind, (name: string) => ValueSpec>> = {
  counter: (name) => ({ name, type: 'u64', description: 'StatsD counter' }),
  gauge: (name) => ({ name, type: 's64', floating: true, description: 'StatsD gauge' }),
  timing: (name) => ({ name, type: 'histogram', unit: 'microseconds', suffix: '_us', description: 'StatsD timing (samples weighted by 1/rate)' }),
  histogram: (name) => ({ name, type: 'histogram', description: 'StatsD histogram (samples weighted by 1/rate)' }),
};
/** Metrics an expiry sweep removes per slice of the event loop: about 10 ms beside 10,000 siblings (each removal scans them). */
const EXPIRE_SLICE = 250;

export type StatsdKind = 'counter' | 'gauge' | 'timing' | 'histogram';

/** One line, parsed and converted to the integer effect it has on the tree. */
export type StatsdMetric =
  | { kind: 'counter'; name: string; parts: string[]; delta: bigint }
  | { kind: 'gauge'; name: string; parts: string[]; op: 'set' | 'add'; value: bigint }
  /** value in whole µs for timings, as sent (a double) for histograms; weight = round(1 / rate) samples */
  | { kind: 'timing' | 'histogram'; name: string; parts: string[]; value: number; weight: bigint };

export type StatsdBadReason = 'syntax' | 'name' | 'type' | 'value' | 'negative' | 'rate' | 'range' | 'unsupported';

export type StatsdParse = { ok: true; metric: StatsdMetric } | { ok: false; reason: StatsdBadReason; message: string };

/** A decimal as an exact fraction num / den (den > 0). */
interface Fraction {
  num: bigint;
  den: bigint;
}

const DECIMAL = /^(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,3}))?$/;

/** Parses an unsigned decimal ("12", "1.5", ".5", "1e-7", "2.5E+3") exactly; null if it is not one. */
export function parseDecimal(text: string): Fraction | null {
  if (text.length === 0 || text.length > NUMBER_TEXT_MAX) return null;
  const m = DECIMAL.exec(text);
  if (m === null) return null;
  const int = m[1];
  const frac = m[2] ?? '';
  if (int.length === 0 && frac.length === 0) return null;
  let num = BigInt(int + frac);
  let den = 10n ** BigInt(frac.length);
  if (m[3] !== undefined) {
    const exp = Number(m[3]);
    if (exp > 0) num *= 10n ** BigInt(exp);
    else if (exp < 0) den *= 10n ** BigInt(-exp);
  }
  return { num, den };
}

/** num / den rounded to the nearest integer, halves away from zero (den > 0). */
export function roundHalfAway(num: bigint, den: bigint): bigint {
  const neg = num < 0n;
  const mag = neg ? -num : num;
  const q = (2n * mag + den) / (2n * den);
  return neg ? -q : q;
}

function bad(reason: StatsdBadReason, message: string): StatsdParse {
  return { ok: false, reason, message };
}

function inS64(v: bigint): boolean {
  return v >= S64_MIN && v <= S64_MAX;
}

/** Splits and checks a metric name; a string is the reason it is refused. */
export function parseStatsdName(name: string): string[] | string {
  if (name.length === 0) return 'empty name';
  if (name.length > STATSD_NAME_MAX) return `name longer than ${STATSD_NAME_MAX} characters`;
  if (name.includes('\uFFFD')) return 'name is not valid UTF-8';
  const parts = name.split('.');
  if (parts.length > STATSD_DEPTH_MAX) return `more than ${STATSD_DEPTH_MAX} parts`;
  for (const part of parts) {
    try {
      validateName(part, 'metric part');
    } catch (err) {
      return err instanceof StatsError ? err.message : String(err);
    }
  }
  return parts;
}

// DogStatsD fields after the type that carry nothing statsfs keeps: tags, timestamp, container, origin.
function ignoredField(field: string): boolean {
  const c = field.charCodeAt(0);
  return c === 0x23 /* # */ || c === 0x54 /* T */ || field.startsWith('c:') || field.startsWith('e:') || field.startsWith('card:');
}

/**
 * Parses one line ("name:value|type[|@rate][|#tags]…", no newline) into its effect, or the reason it is
 * refused. Pure: no tree, no state.
 */
export function parseStatsdLine(line: string): StatsdParse {
  if (line.startsWith('_e{') || line.startsWith('_sc|')) return bad('unsupported', 'events and service checks are not kept');
  const colon = line.indexOf(':');
  if (colon < 0) return bad('syntax', 'no ":" after the name');
  const name = line.slice(0, colon);
  const fields = line.slice(colon + 1).split('|');
  if (fields.length < 2) return bad('syntax', 'no "|type" after the value');
  const parts = parseStatsdName(name);
  if (typeof parts === 'string') return bad('name', parts);

  const type = fields[1];
  let kind: StatsdKind;
  switch (type) {
    case 'c':
      kind = 'counter';
      break;
    case 'g':
      kind = 'gauge';
      break;
    case 'ms':
      kind = 'timing';
      break;
    case 'h':
    case 'd':
      kind = 'histogram';
      break;
    case 's':
      return bad('unsupported', 'sets (|s) are not kept');
    default:
      return bad('type', `unknown type ${JSON.stringify(type.slice(0, 20))}`);
  }

  let rate: Fraction | null = null;
  for (let i = 2; i < fields.length; i++) {
    const field = fields[i];
    if (field.startsWith('@')) {
      if (rate !== null) return bad('rate', 'two sample rates');
      rate = parseDecimal(field.slice(1));
      if (rate === null || rate.num === 0n || rate.num > rate.den) return bad('rate', `sample rate ${JSON.stringify(field.slice(0, 20))} is not in (0, 1]`);
    } else if (!ignoredField(field)) {
      return bad('syntax', `unknown field ${JSON.stringify(field.slice(0, 20))}`);
    }
  }

  const text = fields[0];
  const sign = text.charCodeAt(0);
  const signed = sign === 0x2b /* + */ || sign === 0x2d; /* - */
  const abs = parseDecimal(signed ? text.slice(1) : text);
  if (abs === null) return bad('value', `value ${JSON.stringify(text.slice(0, 20))} is not a decimal number`);
  const num = sign === 0x2d ? -abs.num : abs.num;

  switch (kind) {
    case 'counter': {
      const delta = rate === null ? roundHalfAway(num, abs.den) : roundHalfAway(num * rate.den, abs.den * rate.num);
      // as Prometheus' statsd_exporter does: a counter that went down would read as a reset
      if (delta < 0n) return bad('negative', 'a counter only counts up: send a level that goes down as a gauge (name:-n|g)');
      if (delta > U64_MAX) return bad('range', 'counter delta outside the u64 range');
      return { ok: true, metric: { kind, name, parts, delta } };
    }
    case 'gauge': {
      // as in etsy statsd, a sign always means "adjust" and the sample rate does not apply to gauges
      const value = roundHalfAway(num, abs.den);
      if (!inS64(value)) return bad('range', 'gauge value outside the s64 range');
      return { ok: true, metric: { kind, name, parts, op: signed ? 'add' : 'set', value } };
    }
    default: {
      const rounded = kind === 'timing' ? roundHalfAway(num * 1000n, abs.den) : num;
      if (rounded < 0n) return bad('negative', `a ${kind} sample cannot be negative: its histogram holds durations and sizes`);
      if (kind === 'timing' ? rounded > SAMPLE_MAX : rounded > SAMPLE_MAX * abs.den) return bad('range', `${kind} value above 2^53`);
      // a histogram keeps its samples as doubles: a |h or |d sample keeps its decimals
      const value = kind === 'timing' ? Number(rounded) : Number(rounded) / Number(abs.den);
      const weight = rate === null ? 1n : roundHalfAway(rate.den, rate.num);
      if (weight > WEIGHT_MAX) return bad('rate', 'sample rate below 1/2^32');
      return { ok: true, metric: { kind, name, parts, value, weight } };
    }
  }
}

/** Every line of a packet or chunk ('\n' or "\r\n" separated; empty lines skipped). */
export function parsePacket(data: string | Buffer): StatsdParse[] {
  const out: StatsdParse[] = [];
  forEachLine(typeof data === 'string' ? data : data.toString('utf8'), (line) => out.push(parseStatsdLine(line)));
  return out;
}

function forEachLine(text: string, fn: (line: string) => void): void {
  let start = 0;
  const n = text.length;
  while (start < n) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = n;
    let stop = end;
    if (stop > start && text.charCodeAt(stop - 1) === 13) stop--;
    if (stop > start) fn(text.slice(start, stop));
    start = end + 1;
  }
}

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
  log?: Log;
}

export interface StatsdStats {
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

interface Metric {
  kind: StatsdKind;
  /** The source that holds its value. */
  parent: Source;
  /** Its dotted parent prefix ('' for the root), the key of `parent` in `dirs`. */
  prefix: string;
  /** Its value group: one value (a histogram for timings and histograms). */
  group: ValueGroup;
  /** When a line last updated it (ms since the epoch). */
  touched: number;
}

interface Conn {
  pending: Buffer | null;
  discarding: boolean;
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
  private sourcesCreated = 0;
  /** Entries (values and sources) this server added to each source it added to. */
  private readonly entries = new Map<Source, number>();
  private readonly log: Log;
  private readonly metrics = new Map<string, Metric>();
  /** Sources this server created for name prefixes, by dotted prefix ('' is the root). */
  private readonly dirs = new Map<string, Source>();
  /** One schema per (kind, value name), shared by every source holding a metric of that kind and name. */
  private readonly schemas = new Map<string, Schema>();
  private readonly warned = new Set<string>();
  /** Value groups this server added to the root. */
  private rootGroups = 0;
  private udp: dgram.Socket | null = null;
  private unix: net.Server | null = null;
  private readonly conns = new Set<net.Socket>();
  private readonly expireMs: number;
  private expiryTimer: NodeJS.Timeout | null = null;
  private sweeping = false;
  /** Date.now() of the lines being applied: read once per datagram or chunk. */
  private now = 0;

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
    this.dirs.set('', root);
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
    return this.metrics.size;
  }

  /**
   * Starts listening. Resolves with the UDP address and port (the port chosen when 0 was asked), or with
   * the Unix path and port 0 when there is no UDP listener.
   */
  async listen(): Promise<{ address: string; port: number }> {
    try {
      let result = { address: this.options.unixPath ?? '', port: 0 };
      if (this.options.udp) result = await this.listenUdp(this.options.udp.host, this.options.udp.port);
      if (this.options.unixPath !== undefined) await this.listenUnix(this.options.unixPath);
      return result;
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  private async listenUdp(host: string, port: number): Promise<{ address: string; port: number }> {
    const socket = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4' });
    this.udp = socket;
    await whenListening(socket, (onListening) => socket.bind(port, host, onListening));
    socket.on('error', (err) => this.log.error({ err }, 'statsd UDP socket error'));
    socket.on('message', (msg) => {
      this.stats.packets++;
      this.ingest(msg);
    });
    try {
      socket.setRecvBufferSize(4 * 1024 * 1024); // bursts of datagrams while the loop is busy
    } catch {
      // the kernel's limit (net.core.rmem_max) is lower: keep its default
    }
    const a = socket.address();
    this.log.info({ address: a.address, port: a.port }, 'statsd listening on UDP');
    return { address: a.address, port: a.port };
  }

  private async listenUnix(path: string): Promise<void> {
    const server = net.createServer((conn) => this.accept(conn));
    server.maxConnections = STATSD_MAX_CONNECTIONS;
    server.on('drop', () => {
      this.stats.refusedConnections++;
      this.warnOnce('connection-cap', { max: STATSD_MAX_CONNECTIONS }, 'statsd Unix connection refused: too many open');
    });
    await listenUnix(server, path, { option: '--statsd-socket' });
    server.on('error', (err) => this.log.error({ err }, 'statsd Unix socket error'));
    this.unix = server;
    this.log.info({ path }, 'statsd listening on a Unix stream socket');
  }

  private accept(conn: net.Socket): void {
    this.stats.connections++;
    this.conns.add(conn);
    const state: Conn = { pending: null, discarding: false };
    conn.on('data', (chunk: Buffer) => this.streamChunk(state, chunk));
    conn.on('end', () => {
      if (state.pending !== null && !state.discarding) this.ingestLines(state.pending);
      state.pending = null;
    });
    conn.on('error', (err) => this.log.debug({ err }, 'statsd Unix connection error'));
    conn.on('close', () => this.conns.delete(conn));
  }

  /** Newline framing: whole lines are ingested, the tail waits for the next chunk. */
  private streamChunk(state: Conn, chunk: Buffer): void {
    this.stats.bytes += chunk.length;
    let buf = chunk;
    if (state.discarding) {
      const nl = buf.indexOf(10);
      if (nl < 0) return;
      state.discarding = false;
      buf = buf.subarray(nl + 1);
    }
    if (state.pending !== null) {
      buf = Buffer.concat([state.pending, buf]);
      state.pending = null;
    }
    const last = buf.lastIndexOf(10);
    if (last >= 0) {
      this.ingestLines(buf.subarray(0, last + 1));
      buf = buf.subarray(last + 1);
    }
    if (buf.length > STATSD_LINE_MAX) {
      this.stats.dropped++;
      this.stats.droppedLongLines++;
      this.warnOnce('line-cap', { bytes: buf.length }, `statsd line over ${STATSD_LINE_MAX} bytes dropped`);
      state.discarding = true;
    } else if (buf.length > 0) {
      state.pending = Buffer.from(buf); // a copy: the chunk's memory is not held
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
    let m = this.metrics.get(metric.name);
    if (m === undefined) {
      const created = this.create(metric);
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
  }

  /** Creates the metric's sources and values, or says why not (a cap or a conflict) without creating any. */
  private create(metric: StatsdMetric): Metric | string {
    if (this.metrics.size >= this.maxMetrics) return 'metric-cap';
    const parts = metric.parts;
    const leaf = parts[parts.length - 1];
    // Check everything first, so a refused line leaves no empty source behind.
    let prefix = '';
    let parent: Source = this.root;
    let firstMissing = -1;
    for (let i = 0; i < parts.length - 1; i++) {
      prefix = i === 0 ? parts[0] : `${prefix}.${parts[i]}`;
      if (this.metrics.has(prefix)) return `${prefix} is a ${this.metrics.get(prefix)!.kind}, not a source`;
      const dir = this.dirs.get(prefix);
      if (dir !== undefined) parent = dir;
      else {
        firstMissing = i;
        const clash = this.clashIn(parent, parts[i]);
        if (clash !== null) return clash;
        break;
      }
    }
    if (firstMissing < 0) {
      if (this.dirs.has(metric.name)) return `${metric.name} is a source`;
      const clash = this.clashIn(parent, leaf);
      if (clash !== null) return clash;
    }
    // only the deepest existing source gains an entry; the sources below it are new
    if ((this.entries.get(parent) ?? 0) >= this.maxPerSource) return 'source-cap';
    const newSources = firstMissing < 0 ? 0 : parts.length - 1 - firstMissing;
    if (this.sourcesCreated + newSources > this.maxSources) return 'source-cap';
    this.sourcesCreated += newSources;

    if (firstMissing >= 0) {
      for (let i = firstMissing; i < parts.length - 1; i++) {
        const sub = new Source(parts[i]);
        parent.addSubordinate(sub);
        this.counted(parent);
        this.dirs.set(parts.slice(0, i + 1).join('.'), sub);
        parent = sub;
      }
    }
    const m: Metric = { kind: metric.kind, parent, prefix: parts.slice(0, -1).join('.'), group: parent.addValues(this.schemaFor(metric.kind, leaf)), touched: this.now };
    if (parent === this.root) this.rootGroups++;
    this.counted(parent);
    this.metrics.set(metric.name, m);
    return m;
  }

  /**
   * Something not ours already has this name under `parent` (a source, or a value a reader would see).
   * Our own names are in `metrics` and `dirs`; only the root can hold someone else's, and its values are
   * searched only when someone else added some (findValue is linear: a flat namespace of 100,000 counters
   * at the root must not cost 100,000² lookups).
   */
  private clashIn(parent: Source, name: string): string | null {
    if (parent.subordinate(name) !== undefined) return `${pathOf(parent, name)} is already a source`;
    if (parent === this.root && this.root.valueGroups.length > this.rootGroups && parent.findValue(name) !== undefined) {
      return `${pathOf(parent, name)} is already a value`;
    }
    return null;
  }

  private counted(parent: Source): void {
    this.entries.set(parent, (this.entries.get(parent) ?? 0) + 1);
  }

  // --- removal and expiry ----------------------------------------------------------------------------------

  /**
   * Removes the metric, or the prefix source with every metric below it, at `path` ('/'-separated, relative
   * to the root), as `statsfs rm` asks through the producer socket. False when nothing there is this
   * server's (the caller answers for it); EPERM for one value of a timing or histogram, which goes only
   * with its metric. Prefix sources left empty go too: they exist only for the metrics below them.
   */
  removePath(path: string): boolean {
    const parts = path.split('/');
    if (parts.some((p) => p === '' || p.includes('.'))) return false;
    const name = parts.join('.');
    const m = this.metrics.get(name);
    if (m !== undefined) {
      this.removeMetric(name, m);
      this.stats.removed++;
      this.prune(m.parent, m.prefix);
      return true;
    }
    const dir = this.dirs.get(name);
    if (dir !== undefined && name !== '') {
      this.stats.removed += this.removeDir(name, dir);
      return true;
    }
    const owner = this.metrics.get(parts.slice(0, -1).join('.'));
    if (owner !== undefined && (owner.kind === 'timing' || owner.kind === 'histogram')) {
      throw new StatsError('EPERM', `"${path}" is one value of the StatsD ${owner.kind} ${parts.slice(0, -1).join('.')}: remove ${parts.slice(0, -1).join('/')} as a whole`);
    }
    return false;
  }

  /** Takes one metric out of the tree and of the caps' counts (its prefix sources stay: see prune). */
  private removeMetric(name: string, m: Metric): void {
    this.metrics.delete(name);
    m.parent.removeValues(m.group);
    if (m.parent === this.root) this.rootGroups--;
    this.uncounted(m.parent);
  }

  /** Removes a prefix source and every metric and source below it; returns how many metrics went. */
  private removeDir(prefix: string, dir: Source): number {
    const below = `${prefix}.`;
    // detached first, so the mount sees the whole subtree go at once
    const parent = dir.parent!;
    parent.removeSubordinate(dir);
    let count = 0;
    for (const [name, m] of this.metrics) {
      if (!name.startsWith(below)) continue;
      this.metrics.delete(name);
      m.parent.removeValues(m.group); // frees its storage
      count++;
    }
    for (const [key, src] of this.dirs) {
      if (key !== prefix && !key.startsWith(below)) continue;
      this.dirs.delete(key);
      this.entries.delete(src);
      this.sourcesCreated--;
    }
    this.uncounted(parent);
    const dot = prefix.lastIndexOf('.');
    this.prune(parent, dot < 0 ? '' : prefix.slice(0, dot));
    return count;
  }

  /** Removes `dir` (a prefix source at `prefix`) and its parents while they hold nothing of ours. */
  private prune(dir: Source, prefix: string): void {
    while (dir !== this.root && (this.entries.get(dir) ?? 0) === 0) {
      const parent = dir.parent!;
      parent.removeSubordinate(dir);
      this.dirs.delete(prefix);
      this.entries.delete(dir);
      this.sourcesCreated--;
      this.uncounted(parent);
      dir = parent;
      const dot = prefix.lastIndexOf('.');
      prefix = dot < 0 ? '' : prefix.slice(0, dot);
    }
  }

  private uncounted(parent: Source): void {
    this.entries.set(parent, (this.entries.get(parent) ?? 1) - 1);
  }

  /**
   * Removes the metrics not updated within expireMs. The scan only reads; the removals are writes, so they
   * wait behind the write barrier like lines, in slices so that a mass expiry does not hold the event loop.
   */
  private sweep(): void {
    if (this.sweeping) return;
    const cutoff = Date.now() - this.expireMs;
    const stale: string[] = [];
    for (const [name, m] of this.metrics) if (m.touched <= cutoff) stale.push(name);
    if (stale.length === 0) return;
    this.sweeping = true;
    let next = 0;
    const slice = (): void => {
      const end = Math.min(next + EXPIRE_SLICE, stale.length);
      for (; next < end; next++) {
        const name = stale[next];
        const m = this.metrics.get(name);
        if (m === undefined || m.touched > cutoff) continue; // removed meanwhile, or a line came
        try {
          this.removeMetric(name, m);
          this.prune(m.parent, m.prefix);
          this.stats.expired++;
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

  private schemaFor(kind: StatsdKind, name: string): Schema {
    const key = `${kind}:${name}`;
    let schema = this.schemas.get(key);
    if (schema === undefined) {
      schema = new Schema([STATSD_SPECS[kind](name)]);
      this.schemas.set(key, schema);
    }
    return schema;
  }

  /** Stops listening (UDP and Unix, whose socket file is removed); the tree keeps what was received. */
  async close(): Promise<void> {
    if (this.expiryTimer !== null) clearInterval(this.expiryTimer);
    this.expiryTimer = null;
    const udp = this.udp;
    const unix = this.unix;
    this.udp = null;
    this.unix = null;
    const waits: Promise<void>[] = [];
    if (udp !== null) {
      waits.push(
        new Promise((resolve) => {
          try {
            udp.close(() => resolve());
          } catch {
            resolve(); // never bound, or already closed
          }
        }),
      );
    }
    if (unix !== null) {
      for (const conn of this.conns) conn.destroy();
      waits.push(new Promise((resolve) => unix.close(() => resolve())));
    }
    await Promise.all(waits);
  }
}


function pathOf(parent: Source, name: string): string {
  return parent.path ? `${parent.path}/${name}` : name;
}

function excerpt(line: string): string {
  return line.length > 200 ? `${line.slice(0, 200)}…` : line;
}
