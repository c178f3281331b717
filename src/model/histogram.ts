import { StatsError } from './errors.js';
import { TWO32 } from './word.js';

/**
 * Scale of a new histogram: bucket i holds the values in (2^(i/32), 2^((i+1)/32)], the OpenTelemetry
 * exponential histogram's scale 5 (Prometheus native histograms' schema 5). Reported at the bucket's
 * log-midpoint, an estimate is within (b-1)/(b+1) = 1.083 % of any value in the bucket (b = 2^(1/32)):
 * the finest scale within the 2 % the issue asks for, since scale 4 gives 2.17 %.
 */
export const HISTOGRAM_SCALE = 5;

/**
 * Widest bucket window a histogram keeps: 2,048 buckets of 8 bytes (16 KiB), at scale 5 a ratio of 2^64
 * between the smallest and largest non-zero value. A value beyond it halves the resolution (scale 4, 3 …)
 * by merging neighbouring buckets, as OpenTelemetry does, instead of growing without bound.
 */
export const HISTOGRAM_MAX_BUCKETS = 2048;

/** The quantiles the filesystem shows, by file name. */
export const HISTOGRAM_QUANTILES: readonly (readonly [string, number])[] = [
  ['p50', 0.5],
  ['p90', 0.9],
  ['p99', 0.99],
  ['p999', 0.999],
];

/** Relative error bound of an estimate at `scale`: (b-1)/(b+1) with b = 2^(2^-scale). */
export function relativeError(scale: number): number {
  const b = 2 ** (2 ** -scale);
  return (b - 1) / (b + 1);
}

/** Upper bound of bucket `index` at `scale`. */
export function bucketUpperBound(index: number, scale: number): number {
  return 2 ** ((index + 1) * 2 ** -scale);
}

const EMPTY = new Uint32Array(0);

/**
 * A distribution of non-negative observations in base-2 exponential buckets, mergeable by adding counts.
 *
 * Storage is one Uint32Array of (lo, hi) pairs, one u64 count per bucket, covering a window of bucket
 * indices that grows (by doubling) to take new values; no object per bucket. Counts are exact u64 words
 * (they wrap at 2^64, like every cumulative value); the sum is a double, exact while it is an integer
 * below 2^53, otherwise rounded as float64 addition rounds. Zero has a bucket of its own; min and max are
 * the exact extremes. Negative, NaN and infinite values are refused (EINVAL): histograms are for
 * durations and sizes.
 */
/** A histogram as plain data (Histogram.toState). */
export interface HistogramState {
  scale: number;
  offset: number;
  counts: number[];
  zero: [number, number];
  count: [number, number];
  sum: number;
  min: number | null;
  max: number | null;
}

export class Histogram {
  scale = HISTOGRAM_SCALE;
  /** Buckets per power of two, 2^scale (indexOf() without a power per observation). */
  private perOctave = 2 ** HISTOGRAM_SCALE;
  /** Bucket index of pair 0 of `counts`. */
  private start = 0;
  private counts: Uint32Array = EMPTY;
  /** Lowest and highest non-empty bucket index (lowest > highest when there is none). */
  private lowest = 1;
  private highest = 0;
  private zeroLo = 0;
  private zeroHi = 0;
  /** The observation count as a u64 word. @internal */
  countLo = 0;
  /** @internal */
  countHi = 0;
  sum = 0;
  /** Exact extremes; +Infinity / -Infinity while empty. */
  min = Infinity;
  max = -Infinity;

  /** Records `value` `count` times (count: a safe integer or a bigint below 2^64). */
  observe(value: number, count: number | bigint = 1): void {
    if (!(value >= 0) || value === Infinity) throw new StatsError('EINVAL', `a histogram takes finite values >= 0, not ${value}`);
    let wlo: number;
    let whi: number;
    if (typeof count === 'number') {
      if (!Number.isSafeInteger(count) || count < 0) throw new StatsError('EINVAL', `an observation's count must be a non-negative integer, not ${count}`);
      whi = Math.floor(count / TWO32);
      wlo = count - whi * TWO32;
    } else {
      if (count < 0n || count >= 1n << 64n) throw new StatsError('EINVAL', `an observation's count must be below 2^64, not ${count}`);
      wlo = Number(count & 0xffffffffn);
      whi = Number(count >> 32n);
    }
    this.observeWeighted(value, wlo, whi);
  }

  /** observe() without checks, the weight as a u64 word (the producer protocol has validated both). @internal */
  observeWeighted(value: number, wlo: number, whi: number): void {
    if (wlo === 0 && whi === 0) return; // observed no times: not even min and max change
    const weight = whi === 0 ? wlo : whi * TWO32 + wlo;
    this.sum += value * weight;
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
    let lo = this.countLo + wlo;
    this.countHi = (this.countHi + whi + (lo >= TWO32 ? 1 : 0)) >>> 0;
    this.countLo = lo >>> 0;
    if (value === 0) {
      lo = this.zeroLo + wlo;
      this.zeroHi = (this.zeroHi + whi + (lo >= TWO32 ? 1 : 0)) >>> 0;
      this.zeroLo = lo >>> 0;
      return;
    }
    const at = this.slotFor(Math.ceil(Math.log2(value) * this.perOctave) - 1) * 2;
    const counts = this.counts;
    lo = counts[at] + wlo;
    counts[at + 1] = counts[at + 1] + whi + (lo >= TWO32 ? 1 : 0);
    counts[at] = lo;
  }

  /** Adds every observation of `other` (same or other scale): merging is adding counts bucket by bucket. */
  merge(other: Histogram): void {
    let lo = this.countLo + other.countLo;
    this.countHi = (this.countHi + other.countHi + (lo >= TWO32 ? 1 : 0)) >>> 0;
    this.countLo = lo >>> 0;
    lo = this.zeroLo + other.zeroLo;
    this.zeroHi = (this.zeroHi + other.zeroHi + (lo >= TWO32 ? 1 : 0)) >>> 0;
    this.zeroLo = lo >>> 0;
    this.sum += other.sum;
    if (other.min < this.min) this.min = other.min;
    if (other.max > this.max) this.max = other.max;
    if (other.lowest > other.highest) return;
    if (other.scale < this.scale) this.downscale(this.scale - other.scale);
    // room for the whole of other's range first, so that no downscale happens in the middle of the loop
    let shift: number;
    do {
      shift = other.scale - this.scale;
      this.slotFor(other.lowest >> shift);
      this.slotFor(other.highest >> shift);
    } while (shift !== other.scale - this.scale);
    const src = other.counts;
    const dst = this.counts;
    for (let i = other.lowest; i <= other.highest; i++) {
      const from = (i - other.start) * 2;
      const clo = src[from];
      const chi = src[from + 1];
      if (clo === 0 && chi === 0) continue;
      const to = ((i >> shift) - this.start) * 2;
      lo = dst[to] + clo;
      dst[to + 1] = dst[to + 1] + chi + (lo >= TWO32 ? 1 : 0);
      dst[to] = lo;
    }
  }

  /** An independent copy (snapshots keep one per histogram). */
  copy(): Histogram {
    const h = new Histogram();
    h.merge(this);
    return h;
  }

  clear(): void {
    this.scale = HISTOGRAM_SCALE;
    this.perOctave = 2 ** HISTOGRAM_SCALE;
    this.start = 0;
    this.counts = EMPTY;
    this.lowest = 1;
    this.highest = 0;
    this.zeroLo = this.zeroHi = this.countLo = this.countHi = 0;
    this.sum = 0;
    this.min = Infinity;
    this.max = -Infinity;
  }

  /** Observations, exact. */
  get count(): bigint {
    return (BigInt(this.countHi) << 32n) | BigInt(this.countLo);
  }

  /** Observations of exactly 0, exact. */
  get zeroCount(): bigint {
    return (BigInt(this.zeroHi) << 32n) | BigInt(this.zeroLo);
  }

  /** Bytes of bucket storage held (what the memory benchmark reports beside the object). */
  get bucketBytes(): number {
    return this.counts.byteLength;
  }

  /**
   * Calls fn(index, lo, hi) for each non-empty bucket in increasing order of index; bucket `index` holds
   * the values in (2^(index/2^scale), 2^((index+1)/2^scale)]. The zero bucket is not included.
   */
  forEachBucket(fn: (index: number, lo: number, hi: number) => void): void {
    const counts = this.counts;
    for (let i = this.lowest; i <= this.highest; i++) {
      const at = (i - this.start) * 2;
      if (counts[at] !== 0 || counts[at + 1] !== 0) fn(i, counts[at], counts[at + 1]);
    }
  }

  /** Index of the lowest and highest non-empty bucket, and the counts between them (zeros included). */
  bucketRange(): { offset: number; counts: Uint32Array } {
    if (this.lowest > this.highest) return { offset: 0, counts: EMPTY };
    return { offset: this.lowest, counts: this.counts.subarray((this.lowest - this.start) * 2, (this.highest - this.start + 1) * 2) };
  }

  /**
   * Everything the distribution holds, as plain data (a state file keeps it): counts as u32 (lo, hi) pairs
   * from bucket `offset`, so fromState() gives back the same histogram, bucket for bucket.
   */
  toState(): HistogramState {
    const { offset, counts } = this.bucketRange();
    return { scale: this.scale, offset, counts: Array.from(counts), zero: [this.zeroLo, this.zeroHi], count: [this.countLo, this.countHi], sum: this.sum, min: this.min, max: this.max };
  }

  /** The histogram toState() described (EINVAL when the data cannot be one). */
  static fromState(s: HistogramState): Histogram {
    const h = new Histogram();
    const words = [...s.counts, ...s.zero, ...s.count];
    if (!Number.isInteger(s.scale) || s.scale > HISTOGRAM_SCALE || s.scale < -10 || !Number.isInteger(s.offset) || s.counts.length % 2 !== 0 || s.counts.length > HISTOGRAM_MAX_BUCKETS * 2 || words.some((w) => !Number.isInteger(w) || w < 0 || w >= TWO32)) {
      throw new StatsError('EINVAL', 'not a histogram state');
    }
    h.scale = s.scale;
    h.perOctave = 2 ** s.scale;
    if (s.counts.length > 0) {
      h.counts = Uint32Array.from(s.counts);
      h.start = h.lowest = s.offset;
      h.highest = s.offset + s.counts.length / 2 - 1;
    }
    [h.zeroLo, h.zeroHi] = s.zero;
    [h.countLo, h.countHi] = s.count;
    h.sum = s.sum;
    h.min = s.min ?? Infinity; // JSON writes ±Infinity as null
    h.max = s.max ?? -Infinity;
    return h;
  }

  /** sum / count; 0 when empty. */
  get mean(): number {
    const n = this.countHi * TWO32 + this.countLo;
    return n === 0 ? 0 : this.sum / n;
  }

  /**
   * An estimate of the q-quantile (0 < q <= 1) by nearest rank: the smallest observed value v such that at
   * least ceil(q × count) observations are <= v. It lies in the bucket holding that rank, so the bucket's
   * log-midpoint is within relativeError(scale) of it; clamped to [min, max], which only brings it closer.
   * The first and last ranks are min and max, exact. 0 when empty. Ranks beyond 2^53 observations are rounded as doubles.
   */
  quantile(q: number): number {
    const n = this.countHi * TWO32 + this.countLo;
    if (n === 0) return 0;
    // q × n rounded up, forgiving the double's error (0.99 × 100 is 99.00000000000001)
    const exact = q * n;
    const rank = Math.max(1, Math.ceil(exact - exact * 1e-12));
    // the extreme ranks are the extremes, which are kept exactly
    if (rank >= n) return this.max;
    if (rank === 1) return this.min;
    let seen = this.zeroHi * TWO32 + this.zeroLo;
    if (seen >= rank) return 0;
    const counts = this.counts;
    for (let i = this.lowest; i <= this.highest; i++) {
      const at = (i - this.start) * 2;
      seen += counts[at + 1] * TWO32 + counts[at];
      if (seen >= rank) {
        const b = 2 ** (2 ** -this.scale);
        const estimate = (2 * bucketUpperBound(i, this.scale)) / (1 + b);
        return Math.min(this.max, Math.max(this.min, estimate));
      }
    }
    return this.max; // counts wrapped at 2^64: the buckets hold fewer than the count says
  }

  /** The pair number in `counts` of bucket `index`, growing or downscaling the window to take it. */
  private slotFor(index: number): number {
    if (index >= this.start && index < this.start + this.counts.length / 2) {
      this.include(index);
      return index - this.start;
    }
    let low = this.lowest > this.highest ? index : Math.min(index, this.lowest);
    let high = this.lowest > this.highest ? index : Math.max(index, this.highest);
    let shift = 0;
    while ((high >> shift) - (low >> shift) + 1 > HISTOGRAM_MAX_BUCKETS) shift++;
    if (shift > 0) {
      this.downscale(shift);
      index >>= shift;
      low >>= shift;
      high >>= shift;
      if (index >= this.start && index < this.start + this.counts.length / 2) return this.slotFor(index);
    }
    // room for half as much again as the span (at least 32 buckets), centred on what is used, within the
    // maximum: growth stays geometric while a typical latency histogram (~300 buckets) holds ~3.5 KiB
    const span = high - low + 1;
    const width = Math.min(HISTOGRAM_MAX_BUCKETS, Math.max(32, Math.ceil(span * 1.5)));
    const start = low - Math.floor((width - span) / 2);
    this.relocate(start, width);
    this.include(index);
    return index - this.start;
  }

  /** Widens [lowest, highest] to take `index`. */
  private include(index: number): void {
    if (this.lowest > this.highest) this.lowest = this.highest = index;
    else if (index < this.lowest) this.lowest = index;
    else if (index > this.highest) this.highest = index;
  }

  /** Moves the counts into a window of `width` buckets from index `start`. */
  private relocate(start: number, width: number): void {
    const next = new Uint32Array(width * 2);
    if (this.lowest <= this.highest) {
      next.set(this.counts.subarray((this.lowest - this.start) * 2, (this.highest - this.start + 1) * 2), (this.lowest - start) * 2);
    }
    this.counts = next;
    this.start = start;
  }

  /** Halves the resolution `shift` times: bucket i becomes bucket i >> shift, counts added. */
  private downscale(shift: number): void {
    this.scale -= shift;
    this.perOctave = 2 ** this.scale;
    if (this.lowest > this.highest) return;
    const low = this.lowest >> shift;
    const high = this.highest >> shift;
    const width = this.counts.length / 2;
    const next = new Uint32Array(width * 2);
    const start = low - Math.floor((width - (high - low + 1)) / 2);
    const counts = this.counts;
    for (let i = this.lowest; i <= this.highest; i++) {
      const from = (i - this.start) * 2;
      const to = ((i >> shift) - start) * 2;
      const lo = next[to] + counts[from];
      next[to + 1] = next[to + 1] + counts[from + 1] + (lo >= TWO32 ? 1 : 0);
      next[to] = lo;
    }
    this.counts = next;
    this.start = start;
    this.lowest = low;
    this.highest = high;
  }
}

/** Bucket index of a positive value: the i with 2^(i/2^scale) < value <= 2^((i+1)/2^scale). */
export function indexOf(value: number, scale: number): number {
  return Math.ceil(Math.log2(value) * 2 ** scale) - 1;
}

/**
 * The files a histogram value shows as a directory, in listing order: `count` (writable to clear, with
 * the definition's mode), the rest read-only.
 */
export const HISTOGRAM_FILES = ['count', 'sum', 'min', 'max', 'avg', 'p50', 'p90', 'p99', 'p999', 'buckets'] as const;
export type HistogramFile = (typeof HISTOGRAM_FILES)[number];

const QUANTILE_OF: Readonly<Record<string, number>> = Object.fromEntries(HISTOGRAM_QUANTILES);

/** The name `file` has in the directory of a histogram with this suffix (ValueSpec.suffix): `sum_us`. */
export function histogramFileName(file: HistogramFile, suffix: string): string {
  return suffix === '' || file === 'count' || file === 'buckets' ? file : file + suffix;
}

/** The file a name stands for in the directory of a histogram with this suffix, or null. */
export function histogramFileOf(name: string, suffix: string): HistogramFile | null {
  return HISTOGRAM_FILES.find((file) => histogramFileName(file, suffix) === name) ?? null;
}

/**
 * A number as the histogram files show it: the shortest decimal that reads back as the same double
 * (sum, min, max, avg are exact as stored). Percentiles are estimates within about 1 %: six significant
 * digits, not seventeen that would pretend otherwise.
 */
export function formatHistogramNumber(v: number, estimate = false): string {
  return String(estimate ? Number(v.toPrecision(6)) : v);
}

/**
 * What reading one file of a histogram shows, without the trailing newline. An empty histogram reads 0
 * everywhere (count says it is empty). `buckets` is one `upper_bound count` line per non-empty bucket,
 * in increasing order, each bucket's own count (not cumulative); the zero bucket, when it has
 * observations, is the line `0 count`. Bucket `upper_bound` holds (upper_bound / 2^(2^-scale), upper_bound].
 */
export function histogramFileText(h: Histogram, file: HistogramFile): string {
  const empty = h.countLo === 0 && h.countHi === 0;
  switch (file) {
    case 'count':
      return h.count.toString();
    case 'sum':
      return formatHistogramNumber(h.sum);
    case 'min':
      return empty ? '0' : formatHistogramNumber(h.min);
    case 'max':
      return empty ? '0' : formatHistogramNumber(h.max);
    case 'avg':
      return formatHistogramNumber(h.mean);
    case 'buckets': {
      const lines: string[] = [];
      const zero = h.zeroCount;
      if (zero !== 0n) lines.push(`0 ${zero}`);
      h.forEachBucket((i, lo, hi) => lines.push(`${bucketUpperBound(i, h.scale)} ${hi === 0 ? lo : (BigInt(hi) << 32n) | BigInt(lo)}`));
      return lines.join('\n');
    }
    default:
      return formatHistogramNumber(h.quantile(QUANTILE_OF[file]), true);
  }
}
