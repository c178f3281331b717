// 7. Histograms (issue 14): observations per second through the producer socket into the real daemon
// (batched, the client's default), against prom-client's Histogram.observe and hdr-histogram-js's
// recordValue in one process each, on the same seeded samples; memory per histogram of each; and the
// latency of reading `p99` of an aggregate over 10,000 sources × 1 histogram through the mount (the native
// reader), beside the same merge done in process by statsfs's Histogram and by hdr-histogram-js. The
// percentiles read through the mount are checked against the exact percentiles of every sample.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { alternate, CannotRun, fmtBytes, fmtMs, fmtRate, HERE, measured, median, mustRun, ratioRow, readerLatency, requireBuild, ROOT, startDaemon } from './common.mjs';

export const name = 'histogram';
export const title = 'histograms';

const RATE_TARGET = 2_000_000;
const P99_TARGET_MS = 50;
const ERROR_TARGET = 0.02;
const SOURCES = 10_000;
const PER_SOURCE = 100;

/** One line of JSON from histogram-lib.mjs in a process of its own. */
async function lib(args, { gc = false } = {}) {
  const r = await mustRun(process.execPath, [...(gc ? ['--expose-gc'] : []), join(HERE, 'histogram-lib.mjs'), ...args]);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

function exactQuantile(sorted, q) {
  const x = q * sorted.length;
  return sorted[Math.max(1, Math.ceil(x - x * 1e-12)) - 1];
}

export async function run({ full, scope }) {
  requireBuild();
  const { connect } = await import(pathToFileURL(join(ROOT, 'dist', 'src', 'client', 'index.js')).href);
  const { samples } = await import(pathToFileURL(join(HERE, 'histogram-lib.mjs')).href);
  const { mnt, socket } = await startDaemon(scope);

  // ---- observations per second through the socket ----
  const n = full ? 10_000_000 : 4_000_000;
  const values = samples(n);
  async function observeThroughSocket(label) {
    const client = await connect({ path: socket, reconnect: false });
    try {
      const schema = client.define([{ name: 'latency', type: 'histogram', unit: 'ms', aggr: 'sum' }]);
      const top = client.source(label);
      top.aggregates(schema);
      const groups = Array.from({ length: 10 }, (_, s) => top.source(`s${s}`).values(schema));
      await client.flush();
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; ) {
        const end = Math.min(n, i + 50_000);
        for (; i < end; i++) groups[i % 10].observe('latency', values[i]);
        await new Promise((r) => setImmediate(r)); // a real producer returns to its event loop now and then
      }
      await client.flush();
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      const count = Number(await readFile(join(mnt, label, 'latency', 'count'), 'latin1'));
      if (count !== n) throw new CannotRun(`${label}: the daemon counted ${count} of ${n} observations`);
      await client.close(); // its sources go with it
      return n / secs;
    } catch (err) {
      await client.close();
      throw err;
    }
  }
  await observeThroughSocket('warmup');
  const rounds = full ? 7 : 3;
  const rate = await alternate('histogram observe', rounds, [
    { name: 'socket', show: (x) => `${Math.round(x)}/s`, run: () => observeThroughSocket('observe') },
    { name: 'prom-client', show: (x) => `${Math.round(x)}/s`, run: async () => (await lib(['rate', 'prom-client', String(n)])).perSec },
    { name: 'hdr', show: (x) => `${Math.round(x)}/s`, run: async () => (await lib(['rate', 'hdr', String(n)])).perSec },
    { name: 'statsfs-model', show: (x) => `${Math.round(x)}/s`, run: async () => (await lib(['rate', 'statsfs', String(n)])).perSec },
  ]);

  // ---- memory per histogram ----
  const memory = {};
  for (const l of ['statsfs', 'prom-client', 'hdr']) memory[l] = (await lib(['memory', l, '10000'], { gc: true })).bytes;

  // ---- p99 of an aggregate over 10,000 sources ----
  const client = await connect({ path: socket, reconnect: false });
  const all = samples(SOURCES * PER_SOURCE, 15);
  try {
    const schema = client.define([{ name: 'latency', type: 'histogram', unit: 'ms', aggr: 'sum' }]);
    client.source('agg').aggregates(schema);
    for (let s = 0; s < SOURCES; s++) {
      const g = client.source(`agg/s${s}`).values(schema);
      for (let k = 0; k < PER_SOURCE; k++) g.observe('latency', all[s * PER_SOURCE + k]);
    }
    await client.flush();
    const p99Path = join(mnt, 'agg', 'latency', 'p99');
    const count = Number(await readFile(join(mnt, 'agg', 'latency', 'count'), 'latin1'));
    if (count !== all.length) throw new CannotRun(`the aggregate counts ${count} of ${all.length} observations`);
    const latency = await readerLatency([p99Path], full ? 31 : 11, 2);

    // every percentile file against the exact percentile of the million samples
    const sorted = Float64Array.from(all).sort();
    const errors = [];
    for (const [file, q] of [['p50', 0.5], ['p90', 0.9], ['p99', 0.99], ['p999', 0.999]]) {
      const shown = Number(await readFile(join(mnt, 'agg', 'latency', file), 'latin1'));
      const exact = exactQuantile(sorted, q);
      errors.push([file, Math.abs(shown - exact) / exact]);
    }
    const merges = {};
    for (const l of ['statsfs', 'hdr']) merges[l] = (await lib(['merge', l, String(SOURCES)])).ms;

    const fmt = fmtRate('observations');
    const socketRow = measured('observe through the socket, batched (client default), into the real daemon', rate.socket, fmt, { target: `≥ ${fmt(RATE_TARGET)}` });
    const p99Row = measured(`\`cat agg/latency/p99\` over ${SOURCES.toLocaleString('en-US')} sources × 1 histogram (native reader, open+read+close)`, latency.ms, fmtMs, { target: `≤ ${P99_TARGET_MS} ms` });
    const worstError = Math.max(...errors.map(([, e]) => e));
    const rows = [
      { ...socketRow, met: socketRow.value >= RATE_TARGET },
      measured('prom-client `Histogram.observe` in one process (11 default buckets)', rate['prom-client'], fmt),
      measured('hdr-histogram-js `recordValue` in one process (2 significant digits)', rate.hdr, fmt),
      measured('statsfs `Histogram.observe` in one process (the model alone)', rate['statsfs-model'], fmt),
      ratioRow('socket ÷ prom-client in process', rate.socket, rate['prom-client']),
      ratioRow('socket ÷ hdr-histogram-js in process', rate.socket, rate.hdr),
      measured('memory per histogram, statsfs (1,000 samples each, 10,000 histograms)', [memory.statsfs], fmtBytes),
      measured('memory per histogram, prom-client (same)', [memory['prom-client']], fmtBytes),
      measured('memory per histogram, hdr-histogram-js (same)', [memory.hdr], fmtBytes),
      { ...p99Row, met: p99Row.value <= P99_TARGET_MS },
      measured(`merge of ${SOURCES.toLocaleString('en-US')} histograms + p99 in process, statsfs \`Histogram.merge\``, merges.statsfs, fmtMs),
      measured(`merge of ${SOURCES.toLocaleString('en-US')} histograms + p99 in process, hdr-histogram-js \`add\``, merges.hdr, fmtMs),
      {
        ...measured('largest relative error of p50, p90, p99, p999 through the mount vs the exact percentiles', [worstError * 100], (x) => `${x.toFixed(3)} %`, {
          target: `≤ ${ERROR_TARGET * 100} %`,
        }),
        ratio: errors.map(([f, e]) => `${f} ${(e * 100).toFixed(3)} %`).join(', '),
        met: worstError <= ERROR_TARGET,
      },
    ];
    const notes = [
      `Samples: log-normal milliseconds (median 7.4 ms, σ 0.8), seeded, the same for every library (scripts/bench/histogram-lib.mjs). ${rounds} rounds, alternating: ${n.toLocaleString('en-US')} observations through the socket (the producer in the driver process, into 10 sources of one aggregate; checked by reading the aggregate's count through the mount), then the same number in process for each library in a process of its own.`,
      'prom-client keeps 11 fixed buckets chosen up front (its default): cheaper per observation and per histogram, but its quantiles are only as good as those buckets; hdr-histogram-js at 2 significant digits resolves 1 %, as statsfs (1.09 %) does, but cannot merge histograms of different ranges into a bounded one and has no aggregation across processes.',
      `Memory: heap and array buffers after a forced GC, divided by the histograms held (${(10_000).toLocaleString('en-US')}, 1,000 samples each); statsfs's figure is the model's Histogram (the daemon adds a value group per source).`,
      `The aggregate: ${SOURCES.toLocaleString('en-US')} sources × ${PER_SOURCE} samples below agg/, merged at each read of p99 (open computes it). Median of ${latency.ms.length} timed reads after 2 warm-up reads. Median merge in process over 7 rounds: statsfs ${fmtMs(median(merges.statsfs))}, hdr-histogram-js ${fmtMs(median(merges.hdr))}.`,
    ];
    return { rows, notes };
  } finally {
    await client.close();
  }
}
