/**
 * Histogram values in the snapshot formats: one line per file in `.snapshot`, a `histogram` object in
 * `.snapshot.json`, and the histograms section of `.snapshot.bin` read back by the reader (a fixed-offset
 * refresh included).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { renderBinary, BINARY_LAYOUT } from '../../../src/export/binary.js';
import { renderJson } from '../../../src/export/json.js';
import { renderText } from '../../../src/export/text.js';
import { BinarySnapshotFormatError, histogramQuantile, openBinarySnapshot, parseBinarySnapshot } from '../../../src/client/snapshot-reader.js';
import { captureSnapshot, HISTOGRAM_QUANTILES, Schema, Source } from '../../../src/model/index.js';

const { header: HEADER_FIELDS, headerFlagHistograms: HEADER_FLAG_HISTOGRAMS } = BINARY_LAYOUT;

function tree() {
  const root = Source.root();
  const schema = new Schema([
    { name: 'requests', type: 'u64', aggr: 'sum' },
    { name: 'latency', type: 'histogram', unit: 'ms', aggr: 'sum', description: 'request latency' },
  ]);
  root.addAggregates(schema);
  const a = new Source('a');
  const b = new Source('b');
  root.addSubordinate(a);
  root.addSubordinate(b);
  const ga = a.addValues(schema);
  const gb = b.addValues(schema);
  for (let i = 1; i <= 200; i++) ga.observe('latency', i * 0.5);
  ga.observe('latency', 0, 3);
  gb.observe('latency', 1e6, 2n ** 40n);
  ga.add('requests', 7);
  return { root, ga, gb };
}

describe('histograms in snapshots', () => {
  it('.snapshot: one line per file, as cat shows them', () => {
    const { root, ga } = tree();
    const snap = captureSnapshot(root);
    const lines = renderText(snap).toString().split('\n');
    expect(lines.slice(0, 3)).toEqual(['requests 7', 'latency/count ' + (203n + 2n ** 40n), 'latency/sum ' + (10050 + 1e6 * 2 ** 40)]);
    expect(lines).toContain('a/latency/count 203');
    expect(lines).toContain('a/latency/min 0');
    expect(lines).toContain('a/latency/max 100');
    const h = ga.histogram('latency');
    expect(lines).toContain(`a/latency/p99 ${Number(h.quantile(0.99).toPrecision(6))}`);
    const buckets = lines.find((l) => l.startsWith('a/latency/buckets '))!;
    expect(buckets.startsWith('a/latency/buckets 0 3\\0120.5 1\\012')).toBe(true); // 0.5 is a bucket's upper bound
    expect(lines.filter((l) => l.startsWith('b/latency/')).length).toBe(10);
  });

  it('.snapshot.json: the count as value, and a histogram object with percentiles and buckets', () => {
    const { root, ga } = tree();
    const doc = JSON.parse(renderJson(captureSnapshot(root)).toString()) as { values: Record<string, unknown>[] };
    const a = doc.values.find((v) => v.path === 'a/latency')!;
    expect(a).toMatchObject({ value: '203', type: 'histogram', unit: 'ms', aggregate: false, mode: '0644' });
    const h = ga.histogram('latency');
    const hist = a.histogram as Record<string, unknown>;
    expect(hist).toMatchObject({ sum: 10050, min: 0, max: 100, scale: 5, zero_count: '3' });
    for (const [name, q] of HISTOGRAM_QUANTILES) expect(hist[name]).toBe(h.quantile(q));
    expect((hist.buckets as [number, string][])[0]).toEqual([0.5, '1']);
    const top = doc.values.find((v) => v.path === 'latency')!;
    expect(top).toMatchObject({ value: String(203n + 2n ** 40n), aggregate: true });
    expect((top.histogram as { buckets: [number, string][] }).buckets.at(-1)![1]).toBe(String(2n ** 40n));
  });

  it('.snapshot.bin: the histograms section, read back exactly, refreshed at fixed offsets', async () => {
    const { root, ga, gb } = tree();
    const snapshot = captureSnapshot(root);
    const file = renderBinary(snapshot);
    expect(file.readUInt32LE(HEADER_FIELDS.flags) & HEADER_FLAG_HISTOGRAMS).toBe(HEADER_FLAG_HISTOGRAMS);
    // the same bytes from pieces of 160 bytes, which split the histograms section's records
    expect(renderBinary(snapshot, { chunkSize: 160 }).equals(file)).toBe(true);
    const snap = parseBinarySnapshot(file);
    const at = (path: string) => [...Array(snap.length).keys()].find((i) => snap.path(i) === path)!;
    const i = at('a/latency');
    expect(snap.descriptor(i)).toMatchObject({ type: 'histogram', bits: 64, signed: false, aggregation: 'sum', unit: 'ms' });
    expect(snap.value(i)).toBe(203n);
    const h = snap.histogram(i)!;
    const model = ga.histogram('latency');
    expect([h.scale, h.count, h.zeroCount, h.sum, h.min, h.max]).toEqual([5, 203n, 3n, 10050, 0, 100]);
    const { offset, counts } = model.bucketRange();
    expect(h.offset).toBe(offset);
    expect(Array.from(h.buckets)).toEqual(Array.from({ length: counts.length / 2 }, (_, k) => (BigInt(counts[2 * k + 1]) << 32n) | BigInt(counts[2 * k])));
    for (const [, q] of HISTOGRAM_QUANTILES) expect(histogramQuantile(h, q)).toBe(model.quantile(q));
    expect(snap.histogram(at('latency'))!.count).toBe(203n + 2n ** 40n);
    expect(snap.histogram(at('requests'))).toBeNull();
    // a section cut short, or claiming more than the file holds, is refused
    expect(() => parseBinarySnapshot(file.subarray(0, file.length - 8))).toThrow(BinarySnapshotFormatError);
    const lying = Buffer.from(file);
    const section = Number(lying.readBigUInt64LE(HEADER_FIELDS.histogramsOffset));
    lying.writeBigUInt64LE(BigInt(lying.length), section + 8);
    expect(() => parseBinarySnapshot(lying)).toThrow(BinarySnapshotFormatError);

    // a later rendering of the same shape: the refresh reads the data block and the histograms again
    const dir = mkdtempSync(join(tmpdir(), 'statsfs-hbin-'));
    try {
      const path = join(dir, 'snap.bin');
      writeFileSync(path, file);
      const followed = await openBinarySnapshot(path);
      gb.observe('latency', 3);
      writeFileSync(path, renderBinary(captureSnapshot(root)));
      expect(await followed.refresh()).toBe(false);
      expect(followed.snapshot.histogram(at('b/latency'))!.count).toBe(2n ** 40n + 1n);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
