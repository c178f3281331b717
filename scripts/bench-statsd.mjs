#!/usr/bin/env node
/**
 * StatsD producer benchmark: how many lines per second are parsed, and parsed and applied to the tree.
 *
 *   npx tsc -p tsconfig.json && node scripts/bench-statsd.mjs [--seconds 2] [--metrics 100000] [--json]
 *
 * Imports the built producer (dist/). Phases:
 *   parse    parseStatsdLine over a mix of counters, gauges, timings, sampled and tagged lines
 *   apply    StatsdServer.ingest of 20-line packets over 1,000 existing metrics (parse + apply, no socket)
 *   create   --metrics distinct new metrics (sources and values created), with the heap they cost
 *
 * UDP, received by the daemon's binding, is measured by `npm run bench -- --only statsd` (scripts/bench/statsd.mjs)
 * beside collectd and Etsy's statsd.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '2' }, metrics: { type: 'string', default: '100000' }, json: { type: 'boolean', default: false } },
});
const seconds = Number(values.seconds);
const metricCount = Number(values.metrics);
const { parseStatsdLine, StatsdServer } = await import(join(ROOT, 'dist/src/producers/statsd.js'));
const { Source } = await import(join(ROOT, 'dist/src/model/index.js'));

const results = {};
const timeLoop = (fn) => {
  const end = performance.now() + seconds * 1000;
  let n = 0;
  const start = performance.now();
  while (performance.now() < end) n += fn();
  return n / ((performance.now() - start) / 1000);
};

const mix = [];
for (let i = 0; i < 1000; i++) {
  switch (i % 5) {
    case 0: mix.push(`app.web${i % 50}.requests:1|c`); break;
    case 1: mix.push(`app.web${i % 50}.queue:${i}|g`); break;
    case 2: mix.push(`app.web${i % 50}.latency:${(i % 97) / 4}|ms`); break;
    case 3: mix.push(`app.web${i % 50}.sampled:1|c|@0.1`); break;
    default: mix.push(`app.web${i % 50}.bytes${i}:${i * 1000}|h|#env:prod,role:web`);
  }
}
results.parseLinesPerSec = Math.round(timeLoop(() => {
  for (const line of mix) parseStatsdLine(line);
  return mix.length;
}));

{
  const server = new StatsdServer(Source.root());
  const packets = [];
  for (let i = 0; i < mix.length; i += 20) packets.push(Buffer.from(mix.slice(i, i + 20).join('\n')));
  for (const p of packets) server.ingest(p); // create the metrics first
  results.applyLinesPerSec = Math.round(timeLoop(() => {
    for (const p of packets) server.ingest(p);
    return mix.length;
  }));
  results.applyErrors = server.stats.errors + server.stats.badLines + server.stats.conflicts;
}

{
  globalThis.gc?.();
  const heapBefore = process.memoryUsage().heapUsed;
  const server = new StatsdServer(Source.root(), { maxMetrics: metricCount });
  const start = performance.now();
  for (let i = 0; i < metricCount; i++) server.ingest(`svc${i % 100}.host${(i / 100) % 100 | 0}.m${i}:1|c`);
  const ms = performance.now() - start;
  globalThis.gc?.();
  results.createMetrics = server.metricCount;
  results.createMetricsPerSec = Math.round(metricCount / (ms / 1000));
  results.heapBytesPerMetric = Math.round((process.memoryUsage().heapUsed - heapBefore) / metricCount);
}

if (values.json) process.stdout.write(JSON.stringify(results) + '\n');
else for (const [k, v] of Object.entries(results)) process.stdout.write(`${k.padEnd(24)} ${v.toLocaleString('en-US')}\n`);
