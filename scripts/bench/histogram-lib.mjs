#!/usr/bin/env node
// Histogram libraries measured in a process of their own, for the histogram benchmark (histogram.mjs):
//
//   node scripts/bench/histogram-lib.mjs rate <statsfs|prom-client|hdr> <n>      observations per second
//   node scripts/bench/histogram-lib.mjs memory <statsfs|prom-client|hdr> <k>    bytes per histogram (k of them)
//   node scripts/bench/histogram-lib.mjs merge <statsfs|hdr> <k>                 ms to merge k histograms and read p99
//
// Every one records the same seeded samples (samples() below, log-normal milliseconds around 7 ms) and prints
// one line of JSON. Run with --expose-gc for memory.
import { pathToFileURL } from 'node:url';
import { Histogram as PromHistogram, Registry } from 'prom-client';
import hdr from 'hdr-histogram-js';
import { Histogram } from '../../dist/src/model/index.js';

/** n log-normal samples in milliseconds (median e^2 ≈ 7.4 ms), the same for every library and run. */
export function samples(n, seed = 14) {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.exp(2 + 0.8 * Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()));
  return out;
}

/** HdrHistogram at 2 significant digits (1 % resolution, as close to statsfs's 1.09 % as it goes), in µs up to an hour. */
const hdrHistogram = () => hdr.build({ numberOfSignificantValueDigits: 2, highestTrackableValue: 3_600_000_000, useWebAssembly: false });

/** One histogram of each library, and how to record a sample (ms) in it. */
const LIBS = {
  statsfs: () => {
    const h = new Histogram();
    return { h, record: (ms) => h.observe(ms) };
  },
  'prom-client': (registry, i = 0) => {
    // buckets at the same resolution would be 700 of them: prom-client's default 11 (in seconds) are its usual use
    const h = new PromHistogram({ name: `latency_seconds_${i}`, help: 'latency', registers: [registry] });
    return { h, record: (ms) => h.observe(ms / 1000) };
  },
  hdr: () => {
    const h = hdrHistogram();
    return { h, record: (ms) => h.recordValue(Math.round(ms * 1000)) };
  },
};

// run as a program (the benchmark driver only imports samples())
if (import.meta.url === pathToFileURL(process.argv[1]).href) main(...process.argv.slice(2));

function main(mode, lib, count) {
  const n = Number(count);
  if (!LIBS[lib] || !(n > 0)) {
    process.stderr.write('usage: histogram-lib.mjs rate|memory|merge statsfs|prom-client|hdr <n>\n');
    process.exit(2);
  }
  if (mode === 'rate') rate(lib, n);
  else if (mode === 'memory') memory(lib, n);
  else if (mode === 'merge') merge(lib, n);
  else {
    process.stderr.write(`unknown mode ${mode}\n`);
    process.exit(2);
  }
}

function rate(lib, n) {
  const values = samples(n);
  const { record } = LIBS[lib](new Registry());
  for (let i = 0; i < Math.min(n, 200_000); i++) record(values[i]); // warm-up: compiled code paths
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) record(values[i]);
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(JSON.stringify({ perSec: n / secs }) + '\n');
}

function memory(lib, n) {
  const values = samples(1000);
  const registry = new Registry();
  const used = () => {
    globalThis.gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const before = used();
  const kept = [];
  for (let i = 0; i < n; i++) {
    const { h, record } = LIBS[lib](registry, i);
    for (let k = 0; k < values.length; k++) record(values[k]);
    kept.push(h);
  }
  const after = used();
  process.stdout.write(JSON.stringify({ bytes: (after - before) / kept.length }) + '\n');
}

function merge(lib, n) {
  // k histograms of 100 samples each, merged into one, then its p99: what an aggregate read does
  const values = samples(n * 100, 15);
  const parts = [];
  for (let i = 0; i < n; i++) {
    const { h, record } = LIBS[lib](new Registry());
    for (let k = 0; k < 100; k++) record(values[i * 100 + k]);
    parts.push(h);
  }
  const ms = [];
  for (let round = 0; round < 7; round++) {
    const t0 = process.hrtime.bigint();
    let p99;
    if (lib === 'statsfs') {
      const merged = new Histogram();
      for (const h of parts) merged.merge(h);
      p99 = merged.quantile(0.99);
    } else {
      const merged = hdrHistogram();
      for (const h of parts) merged.add(h);
      p99 = merged.getValueAtPercentile(99) / 1000;
    }
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    if (!(p99 > 0)) throw new Error('no p99');
  }
  process.stdout.write(JSON.stringify({ ms }) + '\n');
}
