#!/usr/bin/env node
// A Node program that builds a statsfs tree with the library API and mounts it in-process, as a user of the
// library would; the benchmarks run it as a separate process (never the driver: a process must not read
// its own mount).
//
//   node scripts/bench/tree.mjs --flat N [--mount <dir>]
//       ls/ holding N empty sources s0 .. s<N-1> (the shape of basefs's ls/)
//   node scripts/bench/tree.mjs --groups G --per P [--values V] [--mount <dir>] [--http]
//       G groups g<i> of P sources s<j>, each with V u64 values value_<k> (default 10), and sum aggregates
//       of the same schema at every group and at the root; --http also serves /metrics (MetricsServer)
//   node --expose-gc scripts/bench/tree.mjs --groups G --per P --memory
//       no mount: prints the memory the tree cost (heap, external, RSS deltas after full collections), with
//       the root aggregates read once (what incremental aggregation keeps is counted)
//   ... --control
//       reads commands on stdin, one a line, and answers each with a line "done <value_0 at the root> <ms>"
//       (the expected total, kept by this program, and how long the command's writes took): "touch <n>" sets every value of n sources picked at random
//       (in writes of at most 4,096 updates, as a producer's frames); "mode walk|incremental" chooses how aggregates are computed
//       (incremental aggregation, or the reference walk over every source: src/model/incremental.ts)
//
// Prints "ready <json>" on stdout when serving ({ values, snapshotValues, port }); SIGTERM unmounts, exits 0.
// With --loop-file <f>, SIGUSR2 writes "<seq> <ms>" to f: the longest the event loop was held since the
// previous SIGUSR2 (what issue #5's "no request blocks the loop over 50 ms" is about), then starts over.
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setImmediate as turn } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { captureSnapshot, MetricsServer, mount, Schema, Source, Writes } from '../../dist/src/index.js';
import { setIncrementalAggregation } from '../../dist/src/model/incremental.js';
import { valueOf } from './common.mjs';

const { values: opt } = parseArgs({
  options: {
    flat: { type: 'string' },
    groups: { type: 'string' },
    per: { type: 'string' },
    values: { type: 'string', default: '10' },
    mount: { type: 'string' },
    http: { type: 'boolean', default: false },
    memory: { type: 'boolean', default: false },
    'loop-file': { type: 'string' },
    control: { type: 'boolean', default: false },
  },
});

function flat(n) {
  const root = Source.root();
  const ls = new Source('ls');
  root.addSubordinate(ls);
  for (let i = 0; i < n; i++) ls.addSubordinate(new Source(`s${i}`));
  return { root, values: 0, leaves: [] };
}

function groups(g, per, v) {
  const schema = new Schema(Array.from({ length: v }, (_, k) => ({ name: `value_${k}`, type: 'u64', aggr: 'sum', description: `value ${k}` })));
  const root = Source.root();
  root.addAggregates(schema);
  let i = 0;
  const leaves = [];
  for (let a = 0; a < g; a++) {
    const group = new Source(`g${a}`);
    group.addAggregates(schema);
    root.addSubordinate(group);
    for (let b = 0; b < per; b++, i++) {
      const src = new Source(`s${b}`);
      group.addSubordinate(src);
      const values = src.addValues(schema);
      for (let k = 0; k < v; k++) values.set(k, valueOf(i, k));
      leaves.push(values);
    }
  }
  return { root, values: i * v, leaves };
}

const build = () => (opt.flat ? flat(Number(opt.flat)) : groups(Number(opt.groups), Number(opt.per), Number(opt.values)));

async function settle() {
  // two full collections with turns of the loop between them, so weak callbacks and finalizers have run
  for (let i = 0; i < 2; i++) {
    globalThis.gc();
    await turn();
  }
  return process.memoryUsage();
}

if (opt.memory) {
  if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');
  const before = await settle();
  const tree = build();
  const aggregates = tree.root.valueGroups[0];
  if (aggregates !== undefined) for (let k = 0; k < aggregates.schema.size; k++) aggregates.get(k);
  const after = await settle();
  const delta = (k) => after[k] - before[k];
  process.stdout.write(`${JSON.stringify({ values: tree.values, heapUsed: delta('heapUsed'), external: delta('external'), arrayBuffers: delta('arrayBuffers'), rss: delta('rss') })}\n`);
  // keep the tree reachable until the figures are taken
  if (tree.root.name === '\0') process.exitCode = 1;
} else {
  const { root, values, leaves } = build();
  const snapshotValues = captureSnapshot(root).count;
  const fs = opt.mount ? await mount(root, opt.mount, { allowOther: false, cacheSeconds: 1 }) : null;
  const metrics = opt.http ? new MetricsServer(root, { host: '127.0.0.1', port: 0 }) : null;
  const port = metrics ? (await metrics.listen()).port : null;
  const stop = async () => {
    await metrics?.close();
    await fs?.unmount();
    process.exit(0);
  };
  if (opt['loop-file']) {
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    let seq = 0;
    process.on('SIGUSR2', () => {
      writeFileSync(opt['loop-file'], `${++seq} ${loop.max / 1e6}\n`);
      loop.reset();
    });
  }
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  if (opt.control) control(root, leaves);
  process.stdout.write(`ready ${JSON.stringify({ values, snapshotValues, port })}\n`);
}

/** The --control commands (see the top of this file). */
function control(root, leaves) {
  let expected = 0n;
  for (const g of leaves) expected += g.get(0);
  const writes = Writes.of(root);
  let seed = 1;
  const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
  createInterface({ input: process.stdin }).on('line', async (line) => {
    const [cmd, arg] = line.trim().split(' ');
    let ms = 0;
    if (cmd === 'touch') {
      const t0 = performance.now();
      const n = Number(arg);
      // in writes of at most 4,096 updates, as a producer's frames come
      const per = Math.max(1, Math.floor(4096 / leaves[0].schema.size));
      for (let from = 0; from < n; from += per) {
        await writes.apply(() => {
          for (let j = from; j < Math.min(n, from + per); j++) {
            // all of them in order when n is all, else n picked at random
            const g = n === leaves.length ? leaves[j] : leaves[Math.floor(random() * leaves.length)];
            const before = g.get(0);
            for (let k = 0; k < g.schema.size; k++) g.set(k, Math.floor(random() * 4294967296));
            expected += g.get(0) - before;
          }
        });
      }
      ms = performance.now() - t0;
    } else if (cmd === 'mode') setIncrementalAggregation(arg !== 'walk');
    process.stdout.write(`done ${expected} ${ms}\n`);
  });
}
