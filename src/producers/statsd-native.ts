/**
 * StatsD over UDP through the binding (native/statsd_recv.c): a thread of the binding receives datagrams
 * with recvmmsg and parses the plain lines into a table that coalesces them per (name, kind) until this
 * side drains it; other lines come as they are. Each drained record is handed to the server's apply path,
 * in slices of bounded work (one write each), so FUSE requests are served between slices however fast
 * datagrams come. Knows nothing of the tree.
 *
 * The daemon passes the binding (src/fs/native.ts loads it); this layer does not load it.
 */
import type { StatsdKind } from './statsd-line.js';

/** The binding's StatsD receiver functions. */
export interface StatsdNativeBinding {
  statsdOpen(host: string, port: number, rcvbuf: number, notify: () => void): { handle: object; port: number; rcvbuf: number };
  /** The records coalesced since the last drain, or null. */
  statsdDrain(handle: object): Buffer | null;
  /** Totals, in the order of statsdLayout.stats. */
  statsdStats(handle: object): Float64Array;
  statsdClose(handle: object): void;
  readonly statsdLayout: { kinds: Record<string, number>; stats: string[]; header: number; flagSet: number };
}

const KINDS = ['raw', 'counter', 'gauge', 'timing', 'histogram'] as const;
const STATS = ['packets', 'bytes', 'kernelDrops', 'stalls', 'errors'] as const;
const HEADER = 16;

/** Records applied per slice of the event loop, and samples (each one record's worth of work). */
const SLICE_RECORDS = 1024;

/** One coalesced record, as the server applies it (reused from one record to the next). */
export interface StatsdCoalesced {
  kind: StatsdKind;
  name: string;
  /** Lines it stands for. */
  lines: number;
  /** Counter: the sum of the deltas; gauge: the value set or added; as a 64-bit word's halves. */
  lo: number;
  hi: number;
  /** Gauge: set (else add). */
  set: boolean;
  /** Timing (µs) and histogram samples, in order, weight 1 each: samples[from … from + count). */
  samples: Buffer;
  from: number;
  count: number;
}

/** Where the receiver hands what it drains. */
export interface StatsdNativeSink {
  readonly stats: { packets: number; bytes: number };
  /** Runs change as one write behind the tree's write barrier. */
  write(change: () => void): void;
  /** A line the binding did not parse. */
  line(line: string): void;
  coalesced(record: StatsdCoalesced): void;
}

/**
 * The addon as a StatsD receiver binding, checked against this file: one built from other sources fails
 * here, loudly.
 */
export function statsdBinding(addon: unknown): StatsdNativeBinding {
  const b = addon as Partial<StatsdNativeBinding> | null;
  const l = b?.statsdLayout;
  const fns = ['statsdOpen', 'statsdDrain', 'statsdStats', 'statsdClose'] as const;
  const ok =
    b &&
    fns.every((f) => typeof b[f] === 'function') &&
    l &&
    l.header === HEADER && l.flagSet === 1 && KINDS.every((k, i) => l.kinds[k] === i) && STATS.every((s, i) => l.stats[i] === s) && l.stats.length === STATS.length;
  if (!ok) throw new Error(`the binding's StatsD receiver (statsdLayout ${JSON.stringify(l)}) does not match src/producers/statsd-native.ts: rebuild it with npm run build:native`);
  return b as StatsdNativeBinding;
}

export class StatsdNativeUdp {
  private handle: object | null = null;
  private buf: Buffer | null = null;
  private at = 0;
  private draining = false;
  /** The table taken at close, to apply. */
  private last: Buffer | null = null;
  private readonly seen = { packets: 0, bytes: 0 };
  private readonly record: StatsdCoalesced = { kind: 'counter', name: '', lines: 0, lo: 0, hi: 0, set: false, samples: Buffer.alloc(0), from: 0, count: 0 };

  constructor(
    private readonly binding: StatsdNativeBinding,
    private readonly sink: StatsdNativeSink,
  ) {}

  /**
   * Binds host:port and starts receiving; returns the port bound and the receive buffer the kernel gave.
   * Errors carry code and syscall 'bind', as a dgram socket's do.
   */
  listen(host: string, port: number, rcvbuf: number): { port: number; rcvbuf: number } {
    try {
      const opened = this.binding.statsdOpen(host, port, rcvbuf, () => this.drain());
      this.handle = opened.handle;
      return { port: opened.port, rcvbuf: opened.rcvbuf };
    } catch (err) {
      (err as NodeJS.ErrnoException).syscall = 'bind';
      throw err;
    }
  }

  /** The binding's totals (packets, bytes, kernelDrops, stalls, errors), zeros once closed. */
  totals(): Record<(typeof STATS)[number], number> {
    const t = this.handle === null ? new Float64Array(STATS.length) : this.binding.statsdStats(this.handle);
    return { packets: t[0], bytes: t[1], kernelDrops: t[2], stalls: t[3], errors: t[4] };
  }

  /**
   * Stops the thread and closes the socket. What the binding holds is taken first and applied like the
   * rest (behind the write barrier, after what is being applied).
   */
  close(): void {
    if (this.handle === null) return;
    this.last = this.binding.statsdDrain(this.handle);
    this.count();
    this.binding.statsdClose(this.handle);
    this.handle = null;
    this.drain();
  }

  /** The binding has records: take them, unless they are being applied (the loop takes them next). */
  private drain(): void {
    if (this.draining || !this.take()) return;
    this.draining = true;
    // one slice per turn, one write each; the next table is taken once this one is applied
    const slice = (): void =>
      this.sink.write(() => {
        this.applySome(SLICE_RECORDS);
        if (this.buf === null && !this.take()) this.draining = false;
        else setImmediate(slice);
      });
    slice();
  }

  /** Takes the binding's table (or the last one, once closed); false when empty. */
  private take(): boolean {
    if (this.handle !== null) {
      this.buf = this.binding.statsdDrain(this.handle);
      this.count();
    } else {
      this.buf = this.last;
      this.last = null;
    }
    this.at = 0;
    return this.buf !== null;
  }

  /** Adds the datagrams and bytes received since the last call to the server's statistics. */
  private count(): void {
    const t = this.totals();
    this.sink.stats.packets += t.packets - this.seen.packets;
    this.sink.stats.bytes += t.bytes - this.seen.bytes;
    this.seen.packets = t.packets;
    this.seen.bytes = t.bytes;
  }

  /** Applies records until `budget` is spent (a record costs 1, a sample 1/16) or the buffer ends. */
  private applySome(budget: number): void {
    const buf = this.buf;
    if (buf === null) return;
    const r = this.record;
    let at = this.at;
    while (at < buf.length && budget > 0) {
      const kind = buf[at];
      const nameLen = buf.readUInt16LE(at + 2);
      const lines = buf.readUInt32LE(at + 4);
      const body = at + HEADER + ((nameLen + 7) & ~7);
      budget--;
      if (kind === 0) {
        // a line the binding left to JS: any bytes, decoded as the JS receiver decodes a datagram
        this.sink.line(buf.toString('utf8', at + HEADER, at + HEADER + nameLen));
        at = body;
        continue;
      }
      r.kind = KINDS[kind] as StatsdKind;
      r.name = buf.toString('latin1', at + HEADER, at + HEADER + nameLen); // the binding coalesces ASCII names only
      r.lines = lines;
      r.set = (buf[at + 1] & 1) !== 0;
      r.lo = buf.readUInt32LE(at + 8);
      r.hi = buf.readUInt32LE(at + 12);
      r.count = kind >= 3 ? r.lo + r.hi * 2 ** 32 : 0;
      r.samples = buf;
      r.from = body;
      budget -= r.count / 16;
      this.sink.coalesced(r);
      at = body + r.count * 8;
    }
    this.at = at;
    if (at >= buf.length) this.buf = null;
  }
}
