/**
 * A histogram value as a Prometheus histogram: `_bucket{le=…}` (cumulative), `_sum` and `_count`.
 *
 * Prometheus classic histograms need one set of `le` bounds per family, the same for every series, or
 * `sum by (le)` and `histogram_quantile` across series mean nothing; the bounds should not move from one
 * scrape to the next, or every series is new; and every bound is a series, so there must be few. The
 * bounds are therefore the exponential buckets' own bounds at a coarse scale, PROMETHEUS_SCALE (2: four
 * per power of two, 2^(1/4) = 1.19 apart), over the family's observed range, at most PROMETHEUS_MAX_LE of
 * them: a family whose range grows only gains bounds at its ends, until it spans more than 2^10 and halves
 * the scale (2^(1/2) apart) to stay within the limit. Each `le` is a bound of the native buckets, so the
 * cumulative counts are exact (every native bucket falls wholly below or above it), and histogram_quantile's
 * estimate stays within the `le` bucket that holds the true quantile.
 */
import type { Histogram } from '../model/histogram.js';
import { TWO32 } from '../model/word.js';

/** Most finite `le` bounds a histogram family is exported with (plus `+Inf`). */
export const PROMETHEUS_MAX_LE = 40;
/** Scale of the `le` bounds while the family's range fits (see the top of this file). */
export const PROMETHEUS_SCALE = 2;

/** The `le` bounds of one family: bucket indices low … high at `scale` (the bounds are their upper bounds). */
export interface LeLadder {
  scale: number;
  low: number;
  high: number;
}

/** The ladder for a family's histograms; null when none has a non-zero observation (only `+Inf`). */
export function leLadder(histograms: Iterable<Histogram>, maxLe = PROMETHEUS_MAX_LE): LeLadder | null {
  let scale = PROMETHEUS_SCALE;
  const ranges: [number, number, number][] = [];
  for (const h of histograms) {
    const { offset, counts } = h.bucketRange();
    if (counts.length === 0) continue;
    ranges.push([h.scale, offset, offset + counts.length / 2 - 1]);
    scale = Math.min(scale, h.scale);
  }
  if (ranges.length === 0) return null;
  let low = Infinity;
  let high = -Infinity;
  for (const [s, from, to] of ranges) {
    low = Math.min(low, from >> (s - scale));
    high = Math.max(high, to >> (s - scale));
  }
  while (high - low + 1 > maxLe) {
    scale--;
    low >>= 1;
    high >>= 1;
  }
  return { scale, low, high };
}

/** The text of an `le` label value: the bound (times `factor`) as the shortest decimal that reads back as it. */
export function leText(index: number, scale: number, factor = 1): string {
  return String(2 ** ((index + 1) * 2 ** -scale) * factor);
}

/**
 * The sample lines of one histogram series: `name_bucket{labels,le="…"} n` for every bound of the ladder
 * and `+Inf`, then `name_sum` and `name_count`. `labels` is the label text without braces ('' for none);
 * `factor` converts the bounds and the sum to the base unit (10^-3 for milliseconds to seconds).
 */
export function histogramLines(name: string, labels: string, h: Histogram, ladder: LeLadder | null, factor = 1): string {
  const sep = labels === '' ? '' : ',';
  const out: string[] = [];
  const count = h.count.toString();
  if (ladder !== null) {
    const cumulative = new Float64Array(ladder.high - ladder.low + 1);
    const shift = h.scale - ladder.scale;
    h.forEachBucket((i, lo, hi) => {
      cumulative[(i >> shift) - ladder.low] += hi * TWO32 + lo;
    });
    let running = Number(h.zeroCount); // 0 is below every bound
    for (let k = 0; k < cumulative.length; k++) {
      running += cumulative[k];
      out.push(`${name}_bucket{${labels}${sep}le="${leText(ladder.low + k, ladder.scale, factor)}"} ${running}`);
    }
  }
  out.push(`${name}_bucket{${labels}${sep}le="+Inf"} ${count}`);
  const braced = labels === '' ? '' : `{${labels}}`;
  out.push(`${name}_sum${braced} ${h.sum * factor}`, `${name}_count${braced} ${count}`);
  return out.join('\n') + '\n';
}
