/**
 * Exact 64-bit words as two unsigned 32-bit halves held in JS numbers.
 *
 * Every stored value is the 64-bit pattern the original's get_simple_value() would produce (narrow signed
 * types sign-extended). Keeping the halves apart lets the aggregation loop add, compare and count without a
 * BigInt per value, and without ever passing a 64-bit quantity through a double, where it would lose bits.
 */

export const TWO32 = 4294967296;

/** Result registers: functions that produce a word write it here instead of allocating a pair. */
export const word = { lo: 0, hi: 0 };

/** Splits a bigint into `word`, wrapping modulo 2^64 like a C assignment to a u64. */
export function splitBigInt(v: bigint): void {
  const u = BigInt.asUintN(64, v);
  word.lo = Number(u & 0xffffffffn);
  word.hi = Number(u >> 32n);
}

/** Splits a safe integer into `word` as its two's complement pattern. Larger magnitudes must be bigints. */
export function splitNumber(v: number): void {
  if (!Number.isSafeInteger(v)) {
    throw new RangeError(`${v} is not a safe integer: pass 64-bit quantities as bigint`);
  }
  if (v >= 0) {
    const hi = Math.floor(v / TWO32);
    word.lo = v - hi * TWO32;
    word.hi = hi;
    return;
  }
  const m = -v;
  const mhi = Math.floor(m / TWO32);
  const mlo = m - mhi * TWO32;
  // two's complement negation: ~m + 1, carrying into the high half only when the low half is zero
  word.lo = mlo === 0 ? 0 : TWO32 - mlo;
  word.hi = (mlo === 0 ? (~mhi + 1) : ~mhi) >>> 0;
}

/** Splits any accepted JS input (number, bigint, boolean) into `word`. */
export function splitValue(v: number | bigint | boolean): void {
  if (typeof v === 'bigint') splitBigInt(v);
  else if (typeof v === 'boolean') {
    word.lo = v ? 1 : 0;
    word.hi = 0;
  } else splitNumber(v);
}

export function joinUnsigned(lo: number, hi: number): bigint {
  return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

export function joinSigned(lo: number, hi: number): bigint {
  if (hi === 0) return BigInt(lo);
  return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
}

/** Decimal text of a word, as "%llu" or "%lld" would print it; no BigInt for values below 2^32. */
export function formatWord(lo: number, hi: number, signed: boolean): string {
  if (hi === 0) return String(lo);
  if (signed && hi === 0xffffffff && lo >= 0x80000000) return String(lo - TWO32);
  return (signed ? joinSigned(lo, hi) : joinUnsigned(lo, hi)).toString();
}

/** a < b on words, comparing as s64 when signed and as u64 otherwise. */
export function wordLess(alo: number, ahi: number, blo: number, bhi: number, signed: boolean): boolean {
  if (ahi !== bhi) return signed ? (ahi | 0) < (bhi | 0) : ahi < bhi;
  return alo < blo;
}
