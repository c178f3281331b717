import type { Aggregation } from './schema.js';
import { joinSigned, joinUnsigned, TWO32, wordLess } from './word.js';

/** Halves are folded back into range this often, long before a double could lose a carry (2^53 / 2^32). */
const FOLD_EVERY = 1 << 20;
const TWO64 = 1n << 64n;

/**
 * Accumulates contributing values of one definition with the original's rules: sum wraps at 2^64, min/max
 * compare as s64 or u64 by the type's signedness, avg is the truncating integer quotient of the exact (unwrapped)
 * sum, and an empty
 * aggregate yields the original's sentinels (min U64_MAX / S64_MAX, max 0 / S64_MIN, others 0).
 */
export class Accumulator {
  private sumLo = 0;
  private sumHi = 0;
  /** Carries out of bit 63, and (signed) how many values were negative: avg's exact sum (sum wraps). */
  private sumTop = 0;
  private negatives = 0;
  private pending = 0;
  count = 0;
  private countZero = 0;
  private minLo: number;
  private minHi: number;
  private maxLo: number;
  private maxHi: number;

  constructor(
    private readonly signed: boolean,
    /** Only what this aggregation needs is tracked: adding is the hot loop of every aggregate read. */
    private readonly aggr: Aggregation,
  ) {
    this.minLo = 0xffffffff;
    this.minHi = signed ? 0x7fffffff : 0xffffffff;
    this.maxLo = 0;
    this.maxHi = signed ? 0x80000000 : 0;
  }

  add(lo: number, hi: number): void {
    this.count++;
    switch (this.aggr) {
      case 'sum':
      case 'avg':
        if (this.signed && hi >= 0x80000000) this.negatives++;
        this.sumLo += lo;
        this.sumHi += hi;
        if (++this.pending === FOLD_EVERY) this.fold();
        return;
      case 'count_zero':
        if (lo === 0 && hi === 0) this.countZero++;
        return;
      // the original keeps the newer value on ties; equal words are indistinguishable, so strict compares do
      case 'min':
        if (wordLess(lo, hi, this.minLo, this.minHi, this.signed)) {
          this.minLo = lo;
          this.minHi = hi;
        }
        return;
      case 'max':
        if (wordLess(this.maxLo, this.maxHi, lo, hi, this.signed)) {
          this.maxLo = lo;
          this.maxHi = hi;
        }
        return;
    }
  }

  /**
   * Adds a partial result of the same definition (a subtree's, kept by incremental.ts) as if its values
   * had been added one by one.
   */
  merge(other: Accumulator): void {
    other.fold();
    this.count += other.count;
    this.countZero += other.countZero;
    this.sumLo += other.sumLo;
    this.sumHi += other.sumHi;
    this.sumTop += other.sumTop;
    this.negatives += other.negatives;
    if (++this.pending === FOLD_EVERY) this.fold();
    if (wordLess(other.minLo, other.minHi, this.minLo, this.minHi, this.signed)) {
      this.minLo = other.minLo;
      this.minHi = other.minHi;
    }
    if (wordLess(this.maxLo, this.maxHi, other.maxLo, other.maxHi, this.signed)) {
      this.maxLo = other.maxLo;
      this.maxHi = other.maxHi;
    }
  }

  /**
   * One contributor went from (oldLo, oldHi) to (lo, hi): the result becomes what adding every value anew
   * would give. false when that cannot be known without the other contributors (min or max: the old value
   * may have been the extreme and the new one is worse); the caller then recomputes.
   */
  replace(oldLo: number, oldHi: number, lo: number, hi: number): boolean {
    if (lo === oldLo && hi === oldHi) return true;
    switch (this.aggr) {
      case 'sum':
      case 'avg':
        if (this.signed) this.negatives += (hi >= 0x80000000 ? 1 : 0) - (oldHi >= 0x80000000 ? 1 : 0);
        // each step moves a half by less than 2^32, so FOLD_EVERY steps stay exact in a double
        this.sumLo += lo - oldLo;
        this.sumHi += hi - oldHi;
        if (++this.pending === FOLD_EVERY) this.fold();
        return true;
      case 'count_zero':
        this.countZero += (lo === 0 && hi === 0 ? 1 : 0) - (oldLo === 0 && oldHi === 0 ? 1 : 0);
        return true;
      case 'min':
        if (wordLess(lo, hi, this.minLo, this.minHi, this.signed)) {
          this.minLo = lo;
          this.minHi = hi;
          return true;
        }
        return oldLo !== this.minLo || oldHi !== this.minHi;
      case 'max':
        if (wordLess(this.maxLo, this.maxHi, lo, hi, this.signed)) {
          this.maxLo = lo;
          this.maxHi = hi;
          return true;
        }
        return oldLo !== this.maxLo || oldHi !== this.maxHi;
      case 'none':
        return true;
    }
  }

  private fold(): void {
    const carry = Math.floor(this.sumLo / TWO32);
    this.sumLo -= carry * TWO32;
    const hi = this.sumHi + carry;
    const top = Math.floor(hi / TWO32);
    this.sumHi = hi - top * TWO32;
    this.sumTop += top;
    this.pending = 0;
  }

  /** The aggregate as the type reads it: a signed bigint for signed types, unsigned otherwise. */
  result(): bigint {
    const join = this.signed ? joinSigned : joinUnsigned;
    switch (this.aggr) {
      case 'sum':
        this.fold();
        return join(this.sumLo, this.sumHi);
      case 'avg': {
        if (this.count === 0) return 0n;
        this.fold();
        // The exact sum: the words as unsigned, plus the carries, less 2^64 per negative (two's complement).
        // The original divided the sum wrapped at 2^64; the mean of any values fits their type, so this is exact.
        const exact = joinUnsigned(this.sumLo, this.sumHi) + (BigInt(this.sumTop) - BigInt(this.negatives)) * TWO64;
        return exact / BigInt(this.count); // BigInt division truncates toward zero, like C
      }
      case 'min':
        return join(this.minLo, this.minHi);
      case 'max':
        return join(this.maxLo, this.maxHi);
      case 'count_zero':
        return BigInt(this.countZero);
      case 'none':
        return 0n;
    }
  }
}
