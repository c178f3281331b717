/**
 * The snapshot formats: `.snapshot` text, `.snapshot.json` and `.snapshot.bin` with its reader. Exact output
 * for a small tree (escapes, signed extremes, show() texts, failures), sliced rendering equal to rendering
 * in one go, the fixed-offset re-read of the binary data block, and a million values through the binary
 * format and the text. Correctness only: speed is for `npm run bench`.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { collect } from '../../helpers/chunks.js';
import { captureSnapshot, Schema, Source, type CustomType, type Snapshot, type ValueGroup } from '../../../src/model/index.js';
import { renderText, renderTextChunks } from '../../../src/export/text.js';
import { renderJson, renderJsonChunks } from '../../../src/export/json.js';
import { renderBinary, renderBinaryStream, BINARY_CHUNK_SIZE, BINARY_LAYOUT, type BinaryOptions } from '../../../src/export/binary.js';
import { unescapeText } from '../../../src/export/common.js';
import { openBinarySnapshot, parseBinarySnapshot, parseHeader, readValues, BinarySnapshotFormatError } from '../../../src/client/snapshot-reader.js';

const HEADER_SIZE = BINARY_LAYOUT.headerSize;

const U64_MAX = 2n ** 64n - 1n;
const S64_MIN = -(2n ** 63n);

const netSchema = new Schema([
  { name: 'rx_bytes', type: 'u64', aggr: 'sum', unit: 'bytes', description: 'bytes received' },
  { name: 'offset', type: 's64', aggr: 'min', floating: true, unit: 'ns', description: 'clock "offset"' },
  { name: 'temp', type: 's8', aggr: 'max', floating: true, unit: 'celsius' },
  { name: 'state', type: 'u8', floating: true, show: (v) => ['down', 'up'][Number(v)] ?? `odd\n\\${v}` },
]);
const exploding: CustomType = { name: 'boom', signed: false, get: () => { throw new Error('getter exploded'); } };
const brokenSchema = new Schema([{ name: 'broken', type: exploding }]);
const moodSchema = new Schema([{ name: 'mood', type: 'u16', mode: 0o600, show: () => { throw new Error('no mood'); } }]);

/** root/net with aggregates over eth0 and "my lo", a getter that throws, a show() that throws. */
/** A .snapshot.bin stream filled into one Buffer, and the pieces it came in ([offset, length], in order). */
async function streamed(snapshot: Snapshot, options: BinaryOptions = {}): Promise<{ bytes: Buffer; pieces: [number, number][] }> {
  const stream = await renderBinaryStream(snapshot, { maxSliceMs: 0, ...options });
  const bytes = Buffer.alloc(stream.size);
  const pieces: [number, number][] = [];
  await stream.fill((at, piece) => {
    piece.copy(bytes, at);
    pieces.push([at, piece.length]);
    return true;
  });
  return { bytes, pieces };
}

function smallTree(): { net: Source; eth0: ValueGroup; lo: ValueGroup } {
  const root = Source.root();
  const net = new Source('net');
  root.addSubordinate(net);
  net.addAggregates(netSchema);
  const eth0Source = new Source('eth0');
  net.addSubordinate(eth0Source);
  const eth0 = eth0Source.addValues(netSchema);
  eth0.set('rx_bytes', U64_MAX);
  eth0.set('offset', S64_MIN);
  eth0.set('temp', -128);
  eth0.set('state', 1);
  eth0Source.addValues(brokenSchema, { base: {} });
  const loSource = new Source('my lo');
  net.addSubordinate(loSource);
  const lo = loSource.addValues(netSchema);
  lo.set('rx_bytes', 10);
  lo.set('offset', 5);
  lo.set('temp', 40);
  lo.set('state', 7);
  const weird = new Source('x\\y');
  net.addSubordinate(weird);
  weird.addValues(moodSchema).set('mood', 3);
  return { net, eth0, lo };
}

const SMALL_TEXT = [
  'rx_bytes 9',
  'offset -9223372036854775808',
  'temp 40',
  'state down',
  'eth0/rx_bytes 18446744073709551615',
  'eth0/offset -9223372036854775808',
  'eth0/temp -128',
  'eth0/state up',
  'my\\040lo/rx_bytes 10',
  'my\\040lo/offset 5',
  'my\\040lo/temp 40',
  'my\\040lo/state odd\\012\\1347',
  'x\\134y/mood 3',
  '',
].join('\n');


describe('text (.snapshot)', () => {
  it('one "relative/path value" line per value, aggregates included, in capture order', () => {
    expect(renderText(captureSnapshot(smallTree().net)).toString()).toBe(SMALL_TEXT);
  });

  it('escapes space and backslash in paths, backslash and newlines in values; a line splits at its first space', () => {
    const lines = renderText(captureSnapshot(smallTree().net)).toString().split('\n').slice(0, -1);
    const parsed = lines.map((line) => {
      const space = line.indexOf(' ');
      return [unescapeText(line.slice(0, space)), unescapeText(line.slice(space + 1))];
    });
    expect(parsed).toContainEqual(['my lo/state', 'odd\n\\7']);
    expect(parsed).toContainEqual(['x\\y/mood', '3']);
    expect(parsed).toContainEqual(['eth0/state', 'up']);
  });

  it('a value whose getter throws is left out; a show() that throws gives the number', () => {
    const snapshot = captureSnapshot(smallTree().net);
    expect(snapshot.failures.map((f) => f.path)).toEqual(['eth0/broken']);
    expect(renderText(snapshot).toString()).not.toContain('broken');
  });

  it('the sliced rendering is byte for byte the same', async () => {
    const snapshot = captureSnapshot(smallTree().net);
    expect(Buffer.concat(await collect(renderTextChunks(snapshot))).toString()).toBe(SMALL_TEXT);
    expect(Buffer.concat(await collect(renderTextChunks(snapshot, { maxSliceMs: 0 }))).toString()).toBe(SMALL_TEXT);
  });

  it('numbers are exact at every width and sign boundary', () => {
    const edges = [0n, 1n, 9n, 10n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 32n + 1n, 99_999_999n, 100_000_000n, 4_294_967_296_00000000n,
      2n ** 53n - 1n, 2n ** 53n, 2n ** 53n + 1n, 10n ** 19n, U64_MAX - 1n, U64_MAX];
    const signedEdges = [-1n, -9n, -(2n ** 31n), -(2n ** 32n), -(2n ** 32n) - 1n, -(2n ** 53n) + 1n, -(2n ** 53n), -(2n ** 53n) - 1n,
      S64_MIN + 1n, S64_MIN, 2n ** 63n - 1n, 2n ** 53n + 7n];
    const top = new Source('top');
    edges.forEach((v, k) => top.addValues(new Schema([{ name: `u${k}`, type: 'u64' }])).set(0, v));
    signedEdges.forEach((v, k) => top.addValues(new Schema([{ name: `s${k}`, type: 's64' }])).set(0, v));
    const lines = renderText(captureSnapshot(top)).toString().split('\n');
    const want = [...edges.map((v, k) => `u${k} ${v}`), ...signedEdges.map((v, k) => `s${k} ${v}`)].reverse(); // newest group first
    expect(lines.slice(0, -1)).toEqual(want);
  });

  it('a show() text longer than a chunk is written whole', () => {
    const top = new Source('top');
    top.addValues(new Schema([{ name: 'long', type: 'u8', show: () => 'x'.repeat(3 << 20) }]));
    top.addValues(new Schema([{ name: 'after', type: 'u8' }])).set(0, 7);
    expect(renderText(captureSnapshot(top)).toString()).toBe(`after 7\nlong ${'x'.repeat(3 << 20)}\n`);
  });

  it('an empty directory gives an empty file', async () => {
    const empty = captureSnapshot(new Source('empty'));
    expect(renderText(empty).length).toBe(0);
    expect(Buffer.concat(await collect(renderTextChunks(empty))).length).toBe(0);
  });
});

describe('JSON (.snapshot.json)', () => {
  it('each value with its type, unit, description, kind, aggregation and mode; exact 64-bit values as strings', () => {
    const snapshot = captureSnapshot(smallTree().net);
    const doc = JSON.parse(renderJson(snapshot).toString());
    expect(doc.version).toBe(1);
    expect(doc.taken_at).toBe(new Date(snapshot.takenAtMs).toISOString());
    expect(doc.count).toBe(13);
    expect(doc.values).toHaveLength(13);
    expect(doc.values[0]).toEqual({
      path: 'rx_bytes', value: '9', type: 'u64', signed: false, unit: 'bytes', description: 'bytes received',
      kind: 'cumulative', aggregation: 'sum', aggregate: true, mode: '0644',
    });
    expect(doc.values[5]).toEqual({
      path: 'eth0/offset', value: '-9223372036854775808', type: 's64', signed: true, unit: 'ns', description: 'clock "offset"',
      kind: 'floating', aggregation: 'min', aggregate: false, mode: '0444',
    });
    expect(doc.values[4].value).toBe('18446744073709551615');
    expect(doc.values[6]).toMatchObject({ path: 'eth0/temp', value: '-128', type: 's8', signed: true });
    expect(doc.values[7]).toMatchObject({ path: 'eth0/state', value: '1', text: 'up', type: 'u8', unit: '', description: '', mode: '0444' });
    expect(doc.values[3]).toMatchObject({ path: 'state', value: '0', text: 'down', aggregate: true, aggregation: 'none' });
    expect(doc.values[11]).toMatchObject({ path: 'my lo/state', value: '7', text: 'odd\n\\7' });
    expect(doc.values[12]).toEqual({
      path: 'x\\y/mood', value: '3', type: 'u16', signed: false, unit: '', description: '',
      kind: 'cumulative', aggregation: 'none', aggregate: false, mode: '0600',
    });
    expect(doc.values.map((v: { path: string }) => v.path)).toEqual(SMALL_TEXT.split('\n').slice(0, -1).map((l) => unescapeText(l.split(' ')[0])));
    expect(doc.failures).toEqual([
      { path: 'eth0/broken', error: 'getter exploded' },
      { path: 'x\\y/mood', error: 'show(): no mood' },
    ]);
  });

  it('one value per line between a header line and a closing line', () => {
    const lines = renderJson(captureSnapshot(smallTree().net)).toString().split('\n');
    expect(lines[0]).toMatch(/^\{"version":1,"taken_at":"[^"]+","count":13,"values":\[$/);
    expect(lines[1]).toBe(
      '{"path":"rx_bytes","value":"9","type":"u64","signed":false,"unit":"bytes","description":"bytes received",' +
        '"kind":"cumulative","aggregation":"sum","aggregate":true,"mode":"0644"},',
    );
    expect(lines).toHaveLength(13 + 3);
    expect(lines[14]).toMatch(/^\],"failures":\[.*\]\}$/);
    expect(lines[15]).toBe('');
  });

  it('the sliced rendering is byte for byte the same; an empty snapshot is valid JSON', async () => {
    const snapshot = captureSnapshot(smallTree().net);
    const whole = renderJson(snapshot);
    expect(Buffer.concat(await collect(renderJsonChunks(snapshot))).equals(whole)).toBe(true);
    expect(Buffer.concat(await collect(renderJsonChunks(snapshot, { maxSliceMs: 0 }))).equals(whole)).toBe(true);
    const empty = JSON.parse(Buffer.concat(await collect(renderJsonChunks(captureSnapshot(new Source('empty'))))).toString());
    expect(empty).toMatchObject({ version: 1, count: 0, values: [], failures: [] });
  });
});

describe('binary (.snapshot.bin) and its reader', () => {
  it('round-trips every value, descriptor, show() text and failure', () => {
    const snapshot = captureSnapshot(smallTree().net);
    const bin = renderBinary(snapshot);
    expect(bin.subarray(0, 4).toString('latin1')).toBe('STFS');
    const parsed = parseBinarySnapshot(bin);
    expect(parsed.length).toBe(13);
    expect(parsed.header).toMatchObject({ version: 1, headerSize: HEADER_SIZE, numDesc: 13, numDirs: 4, numDefs: 5, numTexts: 4, numFailures: 2 });
    expect(parsed.header.takenAtNs).toBe(BigInt(snapshot.takenAtMs) * 1_000_000n);
    expect(parsed.takenAt.getTime()).toBe(snapshot.takenAtMs);
    expect(parsed.header.dataOffset % 8).toBe(0);
    expect(parsed.header.dataSize).toBe(13 * 8);
    for (let i = 0; i < 13; i++) {
      expect(parsed.path(i)).toBe(snapshot.path(i));
      expect(parsed.value(i)).toBe(snapshot.value(i));
      expect(parsed.text(i)).toBe(i === 12 ? '3' : snapshot.text(i));
    }
    expect(parsed.value(4)).toBe(U64_MAX);
    expect(parsed.value(5)).toBe(S64_MIN);
    expect(parsed.value(6)).toBe(-128n);
    expect(parsed.values()[6]).toBe(2n ** 64n - 128n); // raw words are two's complement
    expect(parsed.text(11)).toBe('odd\n\\7');
    expect(parsed.descriptors[0]).toEqual({
      path: 'rx_bytes', dir: '', name: 'rx_bytes', type: 'u64', signed: false, bits: 64, kind: 'cumulative', aggregation: 'sum',
      aggregate: true, show: false, mode: 0o644, unit: 'bytes', description: 'bytes received', offset: 0, flags: parsed.descriptors[0].flags,
    });
    expect(parsed.descriptors[5]).toMatchObject({
      path: 'eth0/offset', dir: 'eth0', type: 's64', signed: true, bits: 64, kind: 'floating', aggregation: 'min', aggregate: false,
      mode: 0o444, unit: 'ns', description: 'clock "offset"', offset: 40,
    });
    expect(parsed.descriptors[6]).toMatchObject({ type: 's8', bits: 8, signed: true, aggregation: 'max' });
    expect(parsed.descriptors[7]).toMatchObject({ path: 'eth0/state', show: true, type: 'u8' });
    expect(parsed.descriptors[12]).toMatchObject({ path: 'x\\y/mood', dir: 'x\\y', show: true, mode: 0o600, kind: 'cumulative' });
    expect(parsed.failures).toEqual([
      { path: 'eth0/broken', error: 'getter exploded' },
      { path: 'x\\y/mood', error: 'show(): no mood' },
    ]);
  });

  it('custom types, bool and a UTF-8 path round-trip', () => {
    const gauge: CustomType<{ v: bigint }> = { name: 'gauge', signed: true, get: (base) => base.v };
    const top = new Source('top');
    const dir = new Source('zürich ✓');
    top.addSubordinate(dir);
    dir.addValues(new Schema([{ name: 'g', type: gauge, unit: '°C' }]), { base: { v: -7n } });
    dir.addValues(new Schema([{ name: 'flag', type: 'bool' }])).set('flag', true);
    const snapshot = captureSnapshot(top);
    const parsed = parseBinarySnapshot(renderBinary(snapshot));
    expect(parsed.descriptors.map((d) => [d.path, d.type, d.bits, d.signed, d.unit])).toEqual([
      ['zürich ✓/flag', 'bool', 1, false, ''],
      ['zürich ✓/g', 'gauge', 64, true, '°C'],
    ]);
    expect([parsed.value(0), parsed.value(1)]).toEqual([1n, -7n]);
    expect(renderText(snapshot).toString()).toBe('zürich\\040✓/flag 1\nzürich\\040✓/g -7\n');
  });

  it('same shape, same layout: the data block of a new rendering is read at the same offset', () => {
    const { net, eth0, lo } = smallTree();
    const first = parseBinarySnapshot(renderBinary(captureSnapshot(net)));
    eth0.set('rx_bytes', 1);
    lo.set('offset', -1);
    lo.set('state', 0);
    const second = renderBinary(captureSnapshot(net));
    const head = parseHeader(second);
    expect(head.layoutId).toBe(first.layout.layoutId);
    expect(head.dataOffset).toBe(first.layout.dataOffset);
    const data = Buffer.from(second.subarray(first.layout.dataOffset, first.layout.dataOffset + first.layout.dataSize));
    const values = readValues(data, first.layout);
    expect(values[4]).toBe(1n); // eth0/rx_bytes
    expect(BigInt.asIntN(64, values[9])).toBe(-1n); // my lo/offset
    expect(values[0]).toBe(11n); // the aggregate followed
  });

  it('a change of shape changes the layout id', () => {
    const { net } = smallTree();
    const before = parseHeader(renderBinary(captureSnapshot(net)));
    net.addSubordinate(new Source('eth1'));
    const empty = parseHeader(renderBinary(captureSnapshot(net)));
    expect(empty.layoutId).not.toBe(before.layoutId); // a new directory, even without values
    net.subordinates[3].addValues(netSchema);
    const after = parseHeader(renderBinary(captureSnapshot(net)));
    expect(after.layoutId).not.toBe(empty.layoutId);
    expect(after.numDesc).toBe(before.numDesc + 4);
  });

  it('renderBinaryStream gives the same bytes, in one piece when it fits', async () => {
    const snapshot = captureSnapshot(smallTree().net);
    const { bytes, pieces } = await streamed(snapshot);
    expect(pieces).toEqual([[0, bytes.length]]);
    expect(bytes.equals(renderBinary(snapshot))).toBe(true);
  });

  it('streams pieces of any multiple of 16 bytes: each piece once, front to back, the header last, the bytes of a render in one piece', async () => {
    // show() texts, a failure, aggregates, a name to escape: every section
    const snapshot = captureSnapshot(smallTree().net);
    const whole = renderBinary(snapshot, { chunkSize: BINARY_CHUNK_SIZE });
    for (const chunkSize of [160, 176, 256, 1024]) {
      const { bytes, pieces } = await streamed(snapshot, { chunkSize });
      const n = Math.ceil(whole.length / chunkSize);
      const expected = Array.from({ length: n }, (_, k): [number, number] => [k * chunkSize, Math.min(chunkSize, whole.length - k * chunkSize)]);
      expect(pieces).toEqual([...expected.slice(1), expected[0]]);
      expect(bytes.equals(whole)).toBe(true);
      expect(renderBinary(snapshot, { chunkSize }).equals(whole)).toBe(true);
    }
    expect(() => renderBinary(snapshot, { chunkSize: 168 })).toThrow(/multiple of 16/);
    expect(() => renderBinary(snapshot, { chunkSize: 144 })).toThrow(/at least 160/);
  });

  it('a stream whose reader is gone stops at the piece it refused', async () => {
    const snapshot = captureSnapshot(smallTree().net);
    const stream = await renderBinaryStream(snapshot, { maxSliceMs: 0, chunkSize: 160 });
    let calls = 0;
    await stream.fill(() => ++calls < 2);
    expect(stream.size).toBeGreaterThan(3 * 160);
    expect(calls).toBe(2);
  });

  it('an empty snapshot is a valid file with no descriptors', () => {
    const parsed = parseBinarySnapshot(renderBinary(captureSnapshot(new Source('empty'))));
    expect(parsed.length).toBe(0);
    expect(parsed.values()).toHaveLength(0);
    expect(parsed.dirs).toEqual(['']);
  });

  it('the reader refuses what is not a snapshot, another version, or a truncated file', () => {
    const bin = renderBinary(captureSnapshot(smallTree().net));
    expect(() => parseBinarySnapshot(Buffer.from('hello'))).toThrow(BinarySnapshotFormatError);
    expect(() => parseBinarySnapshot(Buffer.alloc(HEADER_SIZE))).toThrow(/not a statsfs binary snapshot/);
    const v2 = Buffer.from(bin);
    v2.writeUInt32LE(2, 4);
    expect(() => parseBinarySnapshot(v2)).toThrow(/version 2/);
    expect(() => parseBinarySnapshot(bin.subarray(0, bin.length - 1))).toThrow(/header describes/);
  });

  it('reads from an unaligned buffer', () => {
    const bin = renderBinary(captureSnapshot(smallTree().net));
    const shifted = Buffer.alloc(bin.length + 3);
    bin.copy(shifted, 3);
    const parsed = parseBinarySnapshot(shifted.subarray(3));
    expect(parsed.value(4)).toBe(U64_MAX);
    expect(parsed.value(5)).toBe(S64_MIN);
  });

  describe('openBinarySnapshot', () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'statsfs-snapshot-'));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it('parses once; refresh() re-reads only the data block while the layout holds, and re-parses when it changes', async () => {
      const { net, eth0 } = smallTree();
      const file = join(dir, '.snapshot.bin');
      writeFileSync(file, renderBinary(captureSnapshot(net)));
      const snap = await openBinarySnapshot(file);
      expect(snap.snapshot.value(4)).toBe(U64_MAX);
      const parsed = snap.snapshot;

      eth0.set('rx_bytes', 42);
      eth0.set('state', 0);
      writeFileSync(file, renderBinary(captureSnapshot(net)));
      expect(await snap.refresh()).toBe(false);
      expect(snap.snapshot).toBe(parsed); // the descriptors were kept
      expect(snap.snapshot.value(4)).toBe(42n);
      expect(snap.snapshot.text(7)).toBe('down');

      const eth1 = new Source('eth1');
      net.addSubordinate(eth1);
      eth1.addValues(netSchema).set('rx_bytes', 5);
      writeFileSync(file, renderBinary(captureSnapshot(net)));
      expect(await snap.refresh()).toBe(true);
      expect(snap.snapshot.length).toBe(17);
      expect(snap.snapshot.path(13)).toBe('eth1/rx_bytes');
      expect(snap.snapshot.value(0)).toBe(57n); // 42 + 10 + 5
    });
  });
});


describe('sliced rendering of many directories', () => {
  // 20,000 directories (some with names to escape), few values: what per-directory work there is shows in the yields
  const GROUPS = 20;
  const PER = 1000;
  function manyDirs(): Source {
    const root = Source.root();
    const schema = new Schema([{ name: 'n', type: 'u64' }]);
    for (let g = 0; g < GROUPS; g++) {
      const group = new Source(g % 2 === 0 ? `g${g}` : `g ${g}\\é"`);
      root.addSubordinate(group);
      for (let s = 0; s < PER; s++) group.addSubordinate(new Source(s % 7 === 0 ? `s ${s}😀` : `s${s}`));
      group.subordinates[0].addValues(schema).set('n', BigInt(g));
    }
    return root;
  }

  /** Turns of the event loop (setImmediate callbacks that ran) while `render` was under way. */
  async function turnsDuring(render: () => Promise<unknown>): Promise<number> {
    let turns = 0;
    let done = false;
    const tick = (): void => {
      if (done) return;
      turns++;
      setImmediate(tick);
    };
    setImmediate(tick);
    await render();
    done = true;
    return turns;
  }

  const root = manyDirs();
  const snapshot = captureSnapshot(root);
  // each renderer has at least one pass over the directories in batches of 1,024 that yield
  const batches = Math.ceil(snapshot.dirCount / 1024);

  it('.snapshot.bin yields in every pass over the directories and gives the bytes of an unsliced render', async () => {
    let bin: Buffer | null = null;
    const turns = await turnsDuring(async () => (bin = (await streamed(snapshot)).bytes));
    // measuring the paths, writing the directory table, writing the paths: three passes
    expect(turns).toBeGreaterThanOrEqual(3 * batches);
    expect(bin!.equals(renderBinary(snapshot))).toBe(true);
    const parsed = parseBinarySnapshot(bin!);
    const textPaths = renderText(snapshot).toString().split('\n').filter((line) => line !== '').map((line) => unescapeText(line.slice(0, line.indexOf(' '))));
    expect(parsed.dirs).toEqual(snapshot.dirs); // every directory's path, as the snapshot joins them
    expect(parsed.descriptors.map((d) => d.path)).toEqual(textPaths);
    expect(textPaths).toContain('g 1\\é"/s 0😀/n');
  });

  it('.snapshot and .snapshot.json yield while encoding the directories and give the bytes of an unsliced render', async () => {
    for (const [chunks, whole] of [
      [() => renderTextChunks(snapshot, { maxSliceMs: 0 }), renderText(snapshot)],
      [() => renderJsonChunks(snapshot, { maxSliceMs: 0 }), renderJson(snapshot)],
    ] as const) {
      let out: Buffer[] = [];
      const turns = await turnsDuring(async () => (out = await collect(chunks())));
      expect(turns).toBeGreaterThanOrEqual(2 * batches); // measuring and writing the prefixes
      expect(Buffer.concat(out).equals(whole)).toBe(true);
    }
    const paths = (JSON.parse(renderJson(snapshot).toString()) as { values: { path: string }[] }).values.map((v) => v.path);
    expect(paths).toContain('g 1\\é"/s 0😀/n');
  });
});
