/**
 * Rates of counters between two captures, and the short history each row draws. Pure: no files, no clock.
 */

/**
 * What a counter did between two readings, or null when it went down. A decrease is a reset (an `echo 0 >`,
 * a wrap of a narrow type, a producer that started again, a subordinate that left a sum): how much it
 * counted in between cannot be known, so that interval has no rate rather than a negative spike (or, were
 * the drop taken as a wrap, a positive one as large as the counter).
 */
export function counterStep(previous: bigint, current: bigint): bigint | null {
  return current >= previous ? current - previous : null;
}

/** Per second, from a step over `ms` milliseconds; null without a step or without time between the two. */
export function perSecond(step: bigint | null, ms: number): number | null {
  if (step === null || !(ms > 0)) return null;
  return (Number(step) * 1000) / ms;
}

/** The last `capacity` points of a row; NaN marks an interval with nothing to show (a reset, a gap). */
export class History {
  private readonly points: Float64Array;
  private next = 0;
  private size = 0;

  constructor(readonly capacity: number) {
    this.points = new Float64Array(capacity);
  }

  push(point: number): void {
    this.points[this.next] = point;
    this.next = (this.next + 1) % this.capacity;
    if (this.size < this.capacity) this.size++;
  }

  get length(): number {
    return this.size;
  }

  /** Oldest first. */
  toArray(): number[] {
    const out: number[] = new Array(this.size);
    const start = (this.next - this.size + this.capacity) % this.capacity;
    for (let k = 0; k < this.size; k++) out[k] = this.points[(start + k) % this.capacity];
    return out;
  }
}
