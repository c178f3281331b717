/**
 * Scale: a million values through every snapshot format, sliced and whole, byte for byte.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { collect } from '../helpers/chunks.js';
import { parseBinarySnapshot } from '../../src/client/snapshot-reader.js';
import { renderBinaryStream } from '../../src/export/binary.js';
import { renderJsonChunks } from '../../src/export/json.js';
import { renderText, renderTextChunks } from '../../src/export/text.js';
import { captureSnapshot, Schema, Source, type Snapshot } from '../../src/model/index.js';

const U64_MAX = 2n ** 64n - 1n;
const S64_MIN = -(2n ** 63n);


describe('a million values', () => {
  const SOURCES = 100_000;
  const GROUPS = 100;
  const show = ['zero', 'one', 'two', 'three'];
  const schema = new Schema([
    { name: 'v0', type: 'u64', aggr: 'sum', unit: 'bytes' },
    { name: 'v1', type: 's64', aggr: 'min', floating: true },
    { name: 'v2', type: 'u32', aggr: 'max' },
    { name: 'v3', type: 's32', aggr: 'sum' },
    { name: 'v4', type: 'u16', aggr: 'avg' },
    { name: 'v5', type: 's16', aggr: 'max' },
    { name: 'v6', type: 'u8', aggr: 'count_zero' },
    { name: 'w7', type: 's8' },
    { name: 'b8', type: 'bool', aggr: 'count_zero' },
    { name: 'e9', type: 'u64', show: (v) => show[Number(v)] },
  ]);
  /** Value j of source k, as its type reads it. */
  const expected = (k: number, j: number): bigint => {
    const K = BigInt(k);
    switch (j) {
      case 0: return k === 0 ? U64_MAX : K * 184_467_440_737_095n;
      case 1: return k === 1 ? S64_MIN : -K * 92_233_720_368_547n;
      case 2: return K * 42_949n;
      case 3: return -K * 21_474n;
      case 4: return BigInt(k % 65_536);
      case 5: return BigInt((k % 65_536) - 32_768);
      case 6: return BigInt(k % 256);
      case 7: return BigInt((k % 256) - 128);
      case 8: return k % 3 === 0 ? 1n : 0n;
      default: return BigInt(k % 4);
    }
  };
  let snapshot: Snapshot;

  beforeAll(() => {
    const root = Source.root();
    root.addAggregates(schema);
    let k = 0;
    for (let g = 0; g < GROUPS; g++) {
      const group = new Source(`g${g}`);
      root.addSubordinate(group);
      group.addAggregates(schema);
      for (let s = 0; s < SOURCES / GROUPS; s++, k++) {
        const source = new Source(`s${k}`);
        group.addSubordinate(source);
        const values = source.addValues(schema);
        for (let j = 0; j < 10; j++) values.set(j, expected(k, j));
      }
    }
    snapshot = captureSnapshot(root);
  });

  it('the binary format round-trips every one of them exactly', async () => {
    expect(snapshot.failures).toEqual([]);
    const aggregates = (GROUPS + 1) * 10;
    expect(snapshot.count).toBe(SOURCES * 10 + aggregates);
    const stream = await renderBinaryStream(snapshot);
    const file = Buffer.alloc(stream.size);
    await stream.fill((at, piece) => (piece.copy(file, at), true));
    const parsed = parseBinarySnapshot(file);
    expect(parsed.length).toBe(snapshot.count);
    const raw = parsed.values();
    let simple = 0;
    let mismatches = 0;
    for (let i = 0; i < parsed.length; i++) {
      const path = parsed.path(i);
      if (path !== snapshot.path(i)) mismatches++;
      const value = parsed.value(i);
      if (value !== snapshot.value(i)) mismatches++;
      if (raw[i] !== BigInt.asUintN(64, value)) mismatches++;
      const m = /^g\d+\/s(\d+)\/\w(\d)$/.exec(path);
      if (m !== null) {
        simple++;
        if (value !== expected(Number(m[1]), Number(m[2]))) mismatches++;
        if (m[2] === '9' && parsed.text(i) !== show[Number(value)]) mismatches++;
      }
    }
    expect(mismatches).toBe(0);
    expect(simple).toBe(SOURCES * 10);
    expect(parsed.value(0)).toBe(snapshot.value(0)); // the root's sum, wrapped at 2^64
  });

  it('the text is complete: one line per value, the last one included', async () => {
    const chunks = await collect(renderTextChunks(snapshot, { maxSliceMs: 5 }));
    expect(chunks.length).toBeGreaterThan(1); // streamed, not rendered in one piece
    const text = Buffer.concat(chunks);
    let lines = 0;
    for (let at = text.indexOf(10); at !== -1; at = text.indexOf(10, at + 1)) lines++;
    expect(lines).toBe(snapshot.count);
    expect(text[text.length - 1]).toBe(10);
    expect(text.subarray(text.lastIndexOf(10, text.length - 2) + 1).toString()).toBe(`g99/s99999/e9 three\n`);
    expect(text.equals(renderText(snapshot))).toBe(true);
    const all = text.toString().split('\n');
    let mismatches = 0;
    for (let i = 0; i < snapshot.count; i++) if (all[i] !== `${snapshot.path(i)} ${snapshot.text(i)}`) mismatches++;
    expect(mismatches).toBe(0);
  });

  it('the JSON is complete and valid', async () => {
    const json = Buffer.concat(await collect(renderJsonChunks(snapshot, { maxSliceMs: 5 })));
    const doc = JSON.parse(json.toString());
    expect(doc.count).toBe(snapshot.count);
    expect(doc.values).toHaveLength(snapshot.count);
    const last = doc.values[snapshot.count - 1];
    expect(last).toMatchObject({ path: 'g99/s99999/e9', value: '3', text: 'three' });
    expect(doc.values[snapshot.count - 2]).toMatchObject({ path: 'g99/s99999/b8', value: '1', type: 'bool' });
  });
});
