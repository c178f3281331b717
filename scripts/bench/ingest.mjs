// 5. Ingest: counter updates per second from one producer over the Unix socket into the real daemon (a
// separate process: bin/statsfs.js mount --socket), batched (the client's default: up to 4096 updates per
// frame) and unbatched (every update its own frame and reply), alternating. A run is timed from the first
// update until flush() resolves, i.e. until the daemon has applied them all; the totals are then read back
// through the mount (sum aggregates) to check that every update landed.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { alternate, CannotRun, fmtRate, measured, ratioRow, requireBuild, ROOT, startDaemon } from './common.mjs';

export const name = 'ingest';
export const title = 'producer ingest';

const TARGET = 1_000_000;

export async function run({ full, scope }) {
  requireBuild();
  const { connect } = await import(pathToFileURL(join(ROOT, 'dist', 'src', 'client', 'index.js')).href);
  const { mnt, socket: sock } = await startDaemon(scope);

  // 10 sources × 10 counters under one aggregating parent: the updates cycle over the 100 values
  async function once(label, n, options, yieldEvery) {
    const client = await connect({ path: sock, reconnect: false, ...options });
    try {
      const schema = client.define(Array.from({ length: 10 }, (_, i) => ({ name: `c${i}`, aggr: 'sum' })));
      const top = client.source(label);
      top.aggregates(schema);
      const counters = Array.from({ length: 10 }, (_, s) => top.source(`s${s}`).values(schema)).flatMap((g) => Array.from({ length: 10 }, (_, i) => g.counter(i)));
      await client.flush();
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; ) {
        const end = Math.min(n, i + yieldEvery);
        for (; i < end; i++) counters[i % 100].add(1);
        // a real producer returns to its event loop now and then; this lets the socket drain
        await new Promise((r) => setImmediate(r));
      }
      await client.flush();
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      let applied = 0;
      for (let i = 0; i < 10; i++) applied += Number(await readFile(join(mnt, label, `c${i}`), 'latin1'));
      if (applied !== n) throw new CannotRun(`${label}: the daemon applied ${applied} of ${n} updates`);
      return n / secs;
    } finally {
      await client.close();
    }
  }

  const batchedN = full ? 10_000_000 : 5_000_000;
  const unbatchedN = full ? 1_000_000 : 300_000;
  await once('warmup', 500_000, {}, 50_000);
  await once('warmup', 20_000, { batch: false }, 1_000);
  const rounds = full ? 9 : 5;
  const samples = await alternate('ingest', rounds, [
    { name: 'batched', show: (x) => `${Math.round(x)}/s`, run: () => once('batched', batchedN, {}, 50_000) },
    { name: 'unbatched', show: (x) => `${Math.round(x)}/s`, run: () => once('unbatched', unbatchedN, { batch: false }, 1_000) },
  ]);
  const batched = measured('batched (client default, ≤ 4096 updates per frame)', samples.batched, fmtRate('updates'), { target: `≥ ${fmtRate('updates')(TARGET)}` });
  const rows = [
    { ...batched, met: batched.value >= TARGET },
    measured('unbatched (one frame and one reply per update)', samples.unbatched, fmtRate('updates')),
    ratioRow('batched ÷ unbatched', samples.batched, samples.unbatched),
  ];
  const notes = [
    `${rounds} rounds, alternating: ${batchedN.toLocaleString('en-US')} batched updates, then ${unbatchedN.toLocaleString('en-US')} unbatched, each from a fresh connection (the producer runs in the driver process, the daemon in its own). Each round is checked by reading the ten sum aggregates through the mount.`,
  ];
  return { rows, notes };
}
