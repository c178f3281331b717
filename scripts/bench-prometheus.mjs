#!/usr/bin/env node
// Benchmark (not a test): renders 1,000,000 values (100,000 sources x 10 u64 values under one aggregated
// parent) in the Prometheus text format and in OpenMetrics, and has prom-client 15 render the same number
// of series (10 gauges x 100,000 label values) in the same run. Prints values/s and the ratios.
//
//   npx tsc -p tsconfig.json && node scripts/bench-prometheus.mjs [--sources 100000] [--rounds 5]
//
// "render" is snapshot -> UTF-8 bytes (what the server streams); "capture" is the atomic walk of the tree
// that precedes it. prom-client's registry.metrics() is timed from its stored values to the string.
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import client from 'prom-client';
import { renderPrometheus } from '../dist/src/export/prometheus.js';
import { captureSnapshot, Schema, Source } from '../dist/src/model/index.js';

const { values: args } = parseArgs({
  options: { sources: { type: 'string', default: '100000' }, rounds: { type: 'string', default: '5' } },
});
const SOURCES = Number(args.sources);
const PER_SOURCE = 10;
const ROUNDS = Number(args.rounds);
const N = SOURCES * PER_SOURCE;

/** Values of realistic size: counters past 2^32 (bytes), so both halves of the 64-bit words are in use. */
const valueOf = (i, k) => i * 1_000_003 + k * 4_294_967_311;

function buildTree() {
  const specs = [];
  for (let k = 0; k < PER_SOURCE; k++) specs.push({ name: `value_${k}`, type: 'u64', aggr: 'sum', description: `value ${k}` });
  const schema = new Schema(specs);
  const root = Source.root();
  const dev = new Source('dev');
  root.addSubordinate(dev);
  dev.addAggregates(schema);
  for (let i = 0; i < SOURCES; i++) {
    const s = new Source(`d${i}`);
    dev.addSubordinate(s);
    const g = s.addValues(schema);
    for (let k = 0; k < PER_SOURCE; k++) g.set(k, valueOf(i, k));
  }
  return root;
}

function buildPromClient() {
  const registry = new client.Registry();
  for (let k = 0; k < PER_SOURCE; k++) {
    const gauge = new client.Gauge({ name: `statsfs_dev_value_${k}`, help: `value ${k}`, labelNames: ['dev'], registers: [registry] });
    for (let i = 0; i < SOURCES; i++) gauge.set({ dev: `d${i}` }, valueOf(i, k));
  }
  return registry;
}

function ours(snapshot, openMetrics) {
  const t = performance.now();
  let bytes = 0;
  for (const chunk of renderPrometheus(snapshot, { openMetrics })) bytes += chunk.length;
  return { ms: performance.now() - t, bytes };
}

async function theirs(registry) {
  const t = performance.now();
  const text = await registry.metrics();
  const ms = performance.now() - t;
  return { ms, bytes: Buffer.byteLength(text) };
}

// A full collection before each timed phase, so that none pays for the garbage of the one before it.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rate = (ms) => (N / (ms / 1000) / 1e6).toFixed(2) + ' M values/s';

console.log(`node ${process.version}, prom-client ${(await import('prom-client/package.json', { with: { type: 'json' } })).default.version}, ${N.toLocaleString('en')} values, ${ROUNDS} rounds`);
let t = performance.now();
const root = buildTree();
console.log(`tree built in ${(performance.now() - t).toFixed(0)} ms`);
t = performance.now();
const registry = buildPromClient();
console.log(`prom-client registry filled in ${(performance.now() - t).toFixed(0)} ms`);

const results = { capture: [], text: [], openMetrics: [], promClient: [] };
let sizes = {};
for (let r = 0; r < ROUNDS; r++) {
  gc();
  t = performance.now();
  const snapshot = captureSnapshot(root);
  results.capture.push(performance.now() - t);
  if (snapshot.count !== N + PER_SOURCE) throw new Error(`captured ${snapshot.count} values`);
  gc();
  const text = ours(snapshot, false);
  gc();
  const om = ours(snapshot, true);
  gc();
  const pc = await theirs(registry);
  results.text.push(text.ms);
  results.openMetrics.push(om.ms);
  results.promClient.push(pc.ms);
  sizes = { text: text.bytes, openMetrics: om.bytes, promClient: pc.bytes };
  console.log(
    `round ${r + 1}: capture ${results.capture[r].toFixed(0)} ms, text ${text.ms.toFixed(0)} ms, ` +
      `OpenMetrics ${om.ms.toFixed(0)} ms, prom-client ${pc.ms.toFixed(0)} ms`,
  );
}

console.log('\nmedian of the rounds (best in brackets):');
for (const [name, xs] of Object.entries(results)) {
  console.log(`  ${name.padEnd(12)} ${median(xs).toFixed(0).padStart(6)} ms  ${rate(median(xs)).padStart(18)}  [${Math.min(...xs).toFixed(0)} ms, ${rate(Math.min(...xs))}]`);
}
console.log(`  output: text ${(sizes.text / 1e6).toFixed(1)} MB, OpenMetrics ${(sizes.openMetrics / 1e6).toFixed(1)} MB, prom-client ${(sizes.promClient / 1e6).toFixed(1)} MB`);
const pc = median(results.promClient);
console.log(`\nspeed-up over prom-client (median): text ${(pc / median(results.text)).toFixed(2)}x, OpenMetrics ${(pc / median(results.openMetrics)).toFixed(2)}x`);
console.log(`including the capture: text ${(pc / (median(results.text) + median(results.capture))).toFixed(2)}x`);
console.log(`targets: >= 2 M values/s rendered as text: ${N / (median(results.text) / 1000) >= 2e6 ? 'met' : 'NOT met'}; >= 2x prom-client: ${pc / median(results.text) >= 2 ? 'met' : 'NOT met'}`);
