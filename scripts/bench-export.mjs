#!/usr/bin/env node
// Benchmark (not a test) of the snapshot formats: capture and render .snapshot (text), .snapshot.json and
// .snapshot.bin for a tree of about a million values, and the binary reader. Uses the compiled output:
//
//   npx tsc -p tsconfig.json && node scripts/bench-export.mjs [sources=100000]
//
// Each figure is the best of a few runs (after a warm-up), in values per second. The sliced (async) runs
// also report the longest time the event loop was held, measured by a setImmediate loop running alongside.
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { Schema, Source, captureSnapshot } from '../dist/src/model/index.js';
import { renderText, renderTextAsync } from '../dist/src/export/text.js';
import { renderJson, renderJsonAsync } from '../dist/src/export/json.js';
import { renderBinary, renderBinaryAsync } from '../dist/src/export/binary.js';
import { parseBinarySnapshot, readValues } from '../dist/src/client/snapshot-reader.js';

const SOURCES = Number(process.argv[2] ?? 100_000);
const GROUPS = 100;
const RUNS = 3;

const schema = new Schema([
  { name: 'rx_bytes', type: 'u64', aggr: 'sum', unit: 'bytes', description: 'bytes received' },
  { name: 'tx_bytes', type: 'u64', aggr: 'sum', unit: 'bytes', description: 'bytes sent' },
  { name: 'rx_packets', type: 'u64', aggr: 'sum', unit: 'packets' },
  { name: 'tx_packets', type: 'u64', aggr: 'sum', unit: 'packets' },
  { name: 'errors', type: 'u32', aggr: 'sum' },
  { name: 'drops', type: 'u32', aggr: 'sum' },
  { name: 'offset', type: 's64', aggr: 'min', floating: true, unit: 'ns' },
  { name: 'temperature', type: 's16', aggr: 'max', floating: true, unit: 'celsius' },
  { name: 'queue', type: 'u16', aggr: 'avg', floating: true },
  { name: 'up', type: 'bool', aggr: 'count_zero', floating: true },
]);

function build() {
  const root = Source.root();
  root.addAggregates(schema);
  const perGroup = Math.ceil(SOURCES / GROUPS);
  let k = 0;
  for (let g = 0; g < GROUPS && k < SOURCES; g++) {
    const group = new Source(`group${g}`);
    group.addAggregates(schema);
    root.addSubordinate(group);
    for (let s = 0; s < perGroup && k < SOURCES; s++, k++) {
      const src = new Source(`dev${k}`);
      group.addSubordinate(src);
      const v = src.addValues(schema);
      v.set(0, BigInt(k) * 987_654_321n);
      v.set(1, BigInt(k) * 123_456_789n);
      v.set(2, k * 1000);
      v.set(3, k * 700);
      v.set(4, k % 17);
      v.set(5, k % 3);
      v.set(6, -k * 1_000_003);
      v.set(7, (k % 90) - 20);
      v.set(8, k % 1000);
      v.set(9, k % 2 === 0);
    }
  }
  return root;
}

function best(fn) {
  fn(); // warm-up
  let min = Infinity;
  let result;
  for (let r = 0; r < RUNS; r++) {
    const t = performance.now();
    result = fn();
    min = Math.min(min, performance.now() - t);
  }
  return { ms: min, result };
}

// Garbage-collection pauses hold the event loop too; report the longest one next to the longest hold.
let gcMax = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcMax = Math.max(gcMax, entry.duration);
}).observe({ entryTypes: ['gc'] });

async function bestAsync(fn) {
  await fn();
  gcMax = 0;
  let min = Infinity;
  let maxGap = 0;
  let result;
  for (let r = 0; r < RUNS; r++) {
    let running = true;
    let last = performance.now();
    const tick = () => {
      if (!running) return;
      const now = performance.now();
      maxGap = Math.max(maxGap, now - last);
      last = now;
      setImmediate(tick);
    };
    setImmediate(tick);
    const t = performance.now();
    result = await fn();
    const end = performance.now();
    running = false;
    maxGap = Math.max(maxGap, end - last);
    min = Math.min(min, end - t);
  }
  await new Promise((resolve) => setImmediate(resolve)); // let the gc observer report
  return { ms: min, result, maxGap, gcMax };
}

const rate = (n, ms) => `${(n / (ms / 1000) / 1e6).toFixed(2)} M values/s`;
const mib = (bytes) => `${(bytes / 1048576).toFixed(1)} MiB`;

const t0 = performance.now();
const root = build();
console.log(`tree: ${SOURCES} sources x 10 values + aggregates, built in ${(performance.now() - t0).toFixed(0)} ms`);

const capture = best(() => captureSnapshot(root));
const snapshot = capture.result;
const n = snapshot.count;
console.log(`values: ${n}`);
console.log(`capture            ${capture.ms.toFixed(1).padStart(8)} ms  ${rate(n, capture.ms)}`);

for (const [name, sync, sliced] of [
  ['text', renderText, renderTextAsync],
  ['json', renderJson, renderJsonAsync],
  ['binary', renderBinary, renderBinaryAsync],
]) {
  const one = best(() => sync(snapshot));
  console.log(`${(name + ' (one go)').padEnd(18)} ${one.ms.toFixed(1).padStart(8)} ms  ${rate(n, one.ms)}  ${mib(one.result.length)}`);
  const slices = await bestAsync(() => sliced(snapshot));
  if (!slices.result.equals(one.result) && name !== 'binary') throw new Error(`${name}: sliced output differs`);
  console.log(`${(name + ' (sliced)').padEnd(18)} ${slices.ms.toFixed(1).padStart(8)} ms  ${rate(n, slices.ms)}  longest event-loop hold ${slices.maxGap.toFixed(1)} ms (longest GC pause ${slices.gcMax.toFixed(1)} ms)`);
}

const bin = renderBinary(snapshot);
const parse = best(() => parseBinarySnapshot(bin));
console.log(`parse binary       ${parse.ms.toFixed(1).padStart(8)} ms  ${rate(n, parse.ms)}`);
const layout = parse.result.layout;
const block = bin.subarray(layout.dataOffset, layout.dataOffset + layout.dataSize);
// what a refresh costs on our side once the bytes are in: copy the block (as pread would) and view it
const reread = best(() => readValues(Buffer.from(block), layout));
console.log(`re-read data block ${reread.ms.toFixed(1).padStart(8)} ms  ${rate(n, reread.ms)}  (copy of ${mib(block.length)} + view)`);
