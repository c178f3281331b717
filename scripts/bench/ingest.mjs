// 5. Ingest: counter updates per second from one producer over the Unix socket into the real daemon (a
// separate process: bin/statsfs.js mount --socket), batched (the client's default: up to 4096 updates per
// frame) and unbatched (every update its own frame and reply), alternating. A run is timed from the first
// update until flush() resolves, i.e. until the daemon has applied them all; the totals are then read back
// through the mount (sum aggregates) to check that every update landed. The same runs go to a second daemon
// with a state directory (--state-dir: what keeping producers own is journaled and checkpointed), alternating
// with the first (--no-state), so the cost of the state is a ratio of the same run. The batched runs also
// alternate with a third daemon that aggregates by the reference walk (STATSFS_AGGREGATION=walk: no change
// tracking), and a producer builds a tree of 100,000 sources × 10 values (1,000,000 sources with --full)
// into a fourth.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CannotRun, fmtMs, fmtRate, measured, ratioRow, requireBuild, ROOT, say, startDaemon, threadCpuMs } from './common.mjs';

export const name = 'ingest';
export const title = 'producer ingest';

const TARGET = 1_000_000;
/** Issue 18: change tracking costs batched ingest at most 10%. */
const TRACKING_MIN_RATIO = 0.9;
/** Issue 18: a producer builds 1,000,000 sources × 10 values in at most 30 s. */
const BUILD_TARGET_S = 30;

export async function run({ full, scope }) {
  requireBuild();
  const { connect } = await import(pathToFileURL(join(ROOT, 'dist', 'src', 'client', 'index.js')).href);
  const plain = await startDaemon(scope);
  const stateful = await startDaemon(scope, { state: true });
  const walking = await startDaemon(scope, { env: { ...process.env, STATSFS_AGGREGATION: 'walk' } });
  let runs = 0;

  // 10 sources × 10 counters under one aggregating parent: the updates cycle over the 100 values. The
  // producer keeps them (a named owner with keep), so the daemon with state journals and checkpoints them;
  // each run has a label of its own (what earlier runs kept stays, as it would).
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
  for (const d of [plain, stateful, walking]) {
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
  const samples = { batched: [], batchedState: [], untracked: [], unbatched: [], unbatchedState: [] };
  const untracked = { name: 'untracked', show, run: () => once(walking, 'batched', batchedN, {}, 50_000) };
  for (let r = 0; r < rounds; r++) {
    const got = [];
    for (const c of [...pair(r, plain, stateful).map(batchedRun), untracked, ...pair(r, plain, stateful).map(unbatchedRun)]) {
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
    measured('batched into a daemon without change tracking (aggregates by the reference walk)', samples.untracked, fmtRate('updates')),
    ratioRow('batched: with change tracking ÷ without', samples.batched, samples.untracked, { min: TRACKING_MIN_RATIO }),
  ];
  const build = await buildTree(connect, await startDaemon(scope), full);
  const buildRow = measured(`a producer builds ${build.sources.toLocaleString('en-US')} sources × 10 values (${build.connections} connections)`, [build.seconds * 1000], fmtMs, { target: full ? `≤ ${BUILD_TARGET_S} s` : '' });
  rows.push(full ? { ...buildRow, met: build.seconds <= BUILD_TARGET_S } : buildRow);
  const notes = [
    `${rounds} rounds, alternating: ${batchedN.toLocaleString('en-US')} batched updates into the daemon with --no-state and the one with --state-dir (taking turns going first), the same into the daemon without change tracking, then ${unbatchedN.toLocaleString('en-US')} unbatched into the first two, each from a fresh connection (the producer runs in the driver process, the daemons in their own). Each round is checked by reading the ten sum aggregates through the mount, which is also what makes the tracking daemons track (they note changes once an aggregate has been read).`,
    `State on vs off: the producer keeps its values (owner with keep) in both; the daemon with --state-dir journals every chunk of frames before its replies leave and checkpoints every 10 s while the kept values change (${checkpoints} checkpoints were written).`,
    `The build: ${build.connections} connections, each its own owner (an owner may have 100,000 sources), each create ${(build.sources / build.connections).toLocaleString('en-US')} sources of 10 u64 values in groups of 1,000 under sum aggregates, below a top source of sum aggregates; timed from the first connect until every connection's flush() resolved; every top's sum is then checked through the mount. CPU meanwhile: the daemon ${build.cpu.daemon.toFixed(1)} s, the producer (the driver) ${build.cpu.producer.toFixed(1)} s: on a busy machine the time is theirs plus waiting.`,
  ];
  return { rows, notes };
}

/**
 * Builds groups of 1,000 sources × 10 values through several connections, each its own owner with a top
 * source of sum aggregates (an owner may have 100,000 sources); checks every top's sum through the mount.
 */
async function buildTree(connect, daemon, full) {
  const groups = full ? 1000 : 100;
  const perConnection = 50; // groups: 50,051 sources per owner
  const connections = groups / perConnection;
  const daemonCpuMs = () => [...threadCpuMs(daemon.child.pid).values()].reduce((a, b) => a + b, 0);
  const cpu0 = daemonCpuMs();
  const driver0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const clients = await Promise.all(Array.from({ length: connections }, (_, ci) => connect({ path: daemon.socket, reconnect: false, owner: `build${ci}` })));
  try {
    await Promise.all(
      clients.map(async (c, ci) => {
        const schema = c.define(Array.from({ length: 10 }, (_, k) => ({ name: `v${k}`, aggr: 'sum' })));
        const top = c.source(`build${ci}`);
        top.aggregates(schema);
        for (let g = ci * perConnection; g < (ci + 1) * perConnection; g++) {
          const group = top.source(`g${g}`);
          group.aggregates(schema);
          for (let i = 0; i < 1000; i++) {
            const values = group.source(`s${i}`).values(schema);
            for (let k = 0; k < 10; k++) values.set(k, g * 1000 + i + k);
          }
          await new Promise((r) => setImmediate(r)); // let the socket drain, as a real producer's loop would
        }
        await c.flush();
      }),
    );
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const driver = process.cpuUsage(driver0);
    const cpu = { daemon: (daemonCpuMs() - cpu0) / 1000, producer: (driver.user + driver.system) / 1e6 };
    for (let ci = 0; ci < connections; ci++) {
      // v0 of source i of group g is g * 1000 + i: the top sums the numbers of its groups' sources
      const from = BigInt(ci * perConnection * 1000);
      const n = BigInt(perConnection * 1000);
      const expected = n * from + (n * (n - 1n)) / 2n;
      const got = (await readFile(join(daemon.mnt, `build${ci}`, 'v0'), 'latin1')).trim();
      if (got !== String(expected)) throw new CannotRun(`build: build${ci}/v0 read ${got}, expected ${expected}`);
    }
    say(`ingest build: ${groups * 1000} sources × 10 values in ${seconds.toFixed(1)} s (CPU: daemon ${cpu.daemon.toFixed(1)} s, producer ${cpu.producer.toFixed(1)} s)`);
    return { sources: groups * 1000, connections, seconds, cpu };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}
