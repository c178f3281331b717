/**
 * The `le` ladder of an exported histogram family (src/export/prometheus-histogram.ts): one set of bounds
 * for every series, at most PROMETHEUS_MAX_LE of them, each a bound of the native buckets so that the
 * cumulative counts are exact.
 */
import { describe, expect, it } from 'vitest';
import { histogramLines, leLadder, PROMETHEUS_MAX_LE } from '../../../src/export/prometheus-histogram.js';
import { Histogram } from '../../../src/model/index.js';

function filled(values: number[]): Histogram {
  const h = new Histogram();
  for (const v of values) h.observe(v);
  return h;
}

const buckets = (text: string) =>
  text
    .split('\n')
    .filter((l) => l.includes('_bucket'))
    .map((l) => [/le="([^"]+)"/.exec(l)![1], Number(l.split(' ')[1])] as const);

describe('Prometheus histogram export', () => {
  it('one bounded ladder for the family; exact cumulative counts per series', () => {
    const a = filled(Array.from({ length: 1000 }, (_, i) => 0.1 + i * 0.05)); // 0.1 … 50
    const b = filled([0, 0, 3, 700, 2000]);
    const ladder = leLadder([a, b])!;
    expect(ladder.high - ladder.low + 1).toBeLessThanOrEqual(PROMETHEUS_MAX_LE);
    const la = buckets(histogramLines('x', 'src="a"', a, ladder));
    const lb = buckets(histogramLines('x', 'src="b"', b, ladder));
    expect(la.map(([le]) => le)).toEqual(lb.map(([le]) => le)); // the same bounds
    expect(la.at(-1)).toEqual(['+Inf', 1000]);
    expect(lb[0][1]).toBe(2); // the zeros are below every bound
    expect(lb.at(-1)).toEqual(['+Inf', 5]);
    // every count is exactly the observations <= le
    const values = Array.from({ length: 1000 }, (_, i) => 0.1 + i * 0.05);
    for (const [le, n] of la.slice(0, -1)) expect(n, le).toBe(values.filter((v) => v <= Number(le) * (1 + 1e-12)).length);
    expect(la.every(([, n], k) => k === 0 || n >= la[k - 1][1])).toBe(true);
    expect(Number(la[0][0])).toBeGreaterThanOrEqual(0.1);
    expect(Number(lb.at(-2)![0])).toBeGreaterThanOrEqual(2000);
  });

  it('bounds stay put from scrape to scrape: a growing range only adds bounds at its ends', () => {
    const h = filled([5, 6, 7]);
    const before = buckets(histogramLines('x', '', h, leLadder([h]))).map(([le]) => le);
    h.observe(0.5);
    h.observe(400); // a range of 2^9.6: still scale 2
    const after = buckets(histogramLines('x', '', h, leLadder([h]))).map(([le]) => le);
    for (const le of before) expect(after).toContain(le);
    expect(after.length).toBeLessThanOrEqual(PROMETHEUS_MAX_LE + 1);
    h.observe(1e6); // past 2^10: coarser, still bounded
    expect(leLadder([h])!.scale).toBeLessThan(2);
    expect(buckets(histogramLines('x', '', h, leLadder([h]))).length).toBeLessThanOrEqual(PROMETHEUS_MAX_LE + 1);
  });

  it('sum and count lines; an empty family has only +Inf', () => {
    const h = filled([1.5, 2.5]);
    expect(histogramLines('m', '', h, leLadder([h])).split('\n').slice(-3)).toEqual(['m_sum 4', 'm_count 2', '']);
    const empty = new Histogram();
    expect(leLadder([empty])).toBeNull();
    expect(histogramLines('m', 'a="1"', empty, null)).toBe('m_bucket{a="1",le="+Inf"} 0\nm_sum{a="1"} 0\nm_count{a="1"} 0\n');
  });
});
