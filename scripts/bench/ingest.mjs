// 5. Ingest: counter updates per second from one producer over the Unix socket into the real daemon (a
// separate process: bin/statsfs.js mount --socket), batched (the client's default: up to 4096 updates per
// frame) and unbatched (every update its own frame and reply), alternating. A run is timed from the first
// update until flush() resolves, i.e. until the daemon has applied them all; the totals are then read back
// through the mount (sum aggregates) to check that every update landed. The same runs go to a second daemon
// with a state directory (--state-dir: what keeping producers own is checkpointed every second), alternating
// with the first (--no-state), so the cost of the state is a ratio of the same run.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CannotRun, fmtRate, measured, ratioRow, requireBuild, ROOT, say, startDaemon } from './common.mjs';

export const name = 'ingest';
export const title = 'producer ingest';

const TARGET = 1_000_000;

export async function run({ full, scope }) {
  requireBuild();
  const { connect } = await import(pathToFileURL(join(ROOT, 'dist', 'src', 'client', 'index.js')).href);
  const plain = await startDaemon(scope);
  const stateful = await startDaemon(scope, { state: true });
  let runs = 0;

  // 10 sources × 10 counters under one aggregating parent: the updates cycle over the 100 values. The
  // producer keeps them (a named owner with keep), so the daemon with state checkpoints them; each run has a
  // label of its own (what earlier runs kept stays, as it would).
  async function once(daemon, name, n, options, yieldEvery) {
    const { mnt, socket: sock } = daemon;
    const label = `${name}${runs++}`;
    const client = await connect({ path: sock, reconnect: false, owner: 'bench', keep: true, ...options });
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
  for (const d of [plain, stateful]) {
    await once(d, 'warmup', 500_000, {}, 50_000);
    await once(d, 'warmup', 20_000, { batch: false }, 1_000);
  }
  const rounds = full ? 9 : 5;
  const show = (x) => `${Math.round(x)}/s`;
  // state on and off take turns going first (the producer shares the driver's process: the second run of a
  // pair would otherwise always pay for the first one's garbage)
  const pair = (r, off, on) => (r % 2 === 0 ? [off, on] : [on, off]);
  const batchedRun = (d) => ({ name: d === plain ? 'batched' : 'batchedState', show, run: () => once(d, 'batched', batchedN, {}, 50_000) });
  const unbatchedRun = (d) => ({ name: d === plain ? 'unbatched' : 'unbatchedState', show, run: () => once(d, 'unbatched', unbatchedN, { batch: false }, 1_000) });
  const samples = { batched: [], batchedState: [], unbatched: [], unbatchedState: [] };
  for (let r = 0; r < rounds; r++) {
    const got = [];
    for (const c of [...pair(r, plain, stateful).map(batchedRun), ...pair(r, plain, stateful).map(unbatchedRun)]) {
      const x = await c.run();
      samples[c.name].push(x);
      got.push(`${c.name} ${c.show(x)}`);
    }
    say(`ingest round ${r + 1}/${rounds}: ${got.join(', ')}`);
  }
  const checkpoints = Number(await readFile(join(stateful.mnt, 'statsfs', 'state', 'checkpoints'), 'latin1'));
  if (!(checkpoints > 0)) throw new CannotRun('the daemon with a state directory wrote no checkpoint');
  const batched = measured('batched (client default, ≤ 4096 updates per frame)', samples.batched, fmtRate('updates'), { target: `≥ ${fmtRate('updates')(TARGET)}` });
  const rows = [
    { ...batched, met: batched.value >= TARGET },
    measured('unbatched (one frame and one reply per update)', samples.unbatched, fmtRate('updates')),
    ratioRow('batched ÷ unbatched', samples.batched, samples.unbatched),
    measured('batched, state on (--state-dir)', samples.batchedState, fmtRate('updates')),
    measured('unbatched, state on (--state-dir)', samples.unbatchedState, fmtRate('updates')),
    ratioRow('ingest with state ÷ without, batched', samples.batchedState, samples.batched, { min: 0.9 }),
    ratioRow('ingest with state ÷ without, unbatched', samples.unbatchedState, samples.unbatched, { min: 0.9 }),
  ];
  const notes = [
    `${rounds} rounds, alternating: ${batchedN.toLocaleString('en-US')} batched updates, then ${unbatchedN.toLocaleString('en-US')} unbatched, each from a fresh connection (the producer runs in the driver process, the daemon in its own). Each round is checked by reading the ten sum aggregates through the mount.`,
    `State on vs off: the same runs into a second daemon with --state-dir (checkpoints every second while the kept values change: ${checkpoints} were written), alternating with the daemon with --no-state; the producer keeps its values (owner with keep) in both.`,
  ];
  return { rows, notes };
}
