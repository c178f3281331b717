#!/usr/bin/env node
// Producer ingest benchmark (not a test): one producer publishing counter updates over the Unix socket,
// batched (the client's default: up to 4096 updates per frame) and unbatched (every update its own frame
// and reply). The daemon side runs in a separate process (or, with --in-process, in this one); a run is
// timed from the first update to the moment flush() resolves, i.e. until the server has applied them all.
//
//   npx tsc -p tsconfig.json && node scripts/bench-ingest.mjs [--updates 5000000] [--unbatched 300000] [--in-process]
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = new URL('../dist/src/', import.meta.url);
const load = async (path) => {
  try {
    return await import(new URL(path, dist).href);
  } catch (err) {
    console.error(`cannot load dist/src/${path}: run 'npx tsc -p tsconfig.json' first (${err.message})`);
    process.exit(1);
  }
};

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};

async function serve(sock) {
  const { Source } = await load('model/index.js');
  const { ProducerServer } = await load('producers/socket-server.js');
  const root = Source.root();
  const server = new ProducerServer(root, { path: sock });
  await server.listen();
  return {
    root,
    server,
    stats: () => ({ ...server.stats }),
    close: () => server.close(),
  };
}

if (args[0] === '--serve') {
  // the daemon side, in its own process
  const s = await serve(args[1]);
  process.send({ ready: true });
  process.on('message', async (msg) => {
    if (msg === 'stats') process.send({ stats: s.stats(), rss: process.memoryUsage().rss });
    if (msg === 'exit') {
      await s.close();
      process.exit(0);
    }
  });
} else {
  const { connect } = await load('client/index.js');
  const updates = Number(opt('--updates', 5_000_000));
  const unbatchedUpdates = Number(opt('--unbatched', 300_000));
  const inProcess = args.includes('--in-process');
  const dir = mkdtempSync(join(tmpdir(), 'statsfs-bench-'));
  const sock = join(dir, 'bench.sock');

  let child = null;
  let local = null;
  if (inProcess) local = await serve(sock);
  else {
    child = fork(fileURLToPath(import.meta.url), ['--serve', sock], { stdio: 'inherit' });
    await new Promise((resolve) => child.once('message', resolve));
  }
  const serverStats = () =>
    inProcess ? Promise.resolve({ stats: local.stats(), rss: process.memoryUsage().rss }) : new Promise((resolve) => {
      child.once('message', resolve);
      child.send('stats');
    });

  // 10 sources x 10 counters: the updates cycle over 100 values
  async function run(label, n, options, yieldEvery) {
    const client = await connect({ path: sock, ...options });
    const schema = client.define(Array.from({ length: 10 }, (_, i) => ({ name: `c${i}`, aggr: 'sum' })));
    const groups = Array.from({ length: 10 }, (_, i) => client.source(`bench-${label}/s${i}`).values(schema));
    const counters = groups.flatMap((g) => Array.from({ length: 10 }, (_, i) => g.counter(i)));
    await client.flush();
    const before = (await serverStats()).stats;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; ) {
      const end = Math.min(n, i + yieldEvery);
      for (; i < end; i++) counters[i % 100].add(1);
      // a real producer returns to its event loop now and then; this lets the socket drain
      await new Promise((r) => setImmediate(r));
    }
    await client.flush();
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    const after = await serverStats();
    const applied = after.stats.updates - before.updates;
    const frames = after.stats.frames - before.frames;
    await client.close();
    const rate = n / secs;
    console.log(
      `${label.padEnd(9)} ${String(n).padStart(9)} updates in ${secs.toFixed(3)} s = ${Math.round(rate).toLocaleString('en-US').padStart(11)} updates/s` +
        `  (${frames} frames, ${applied} applied, server RSS ${Math.round(after.rss / 1048576)} MB)`,
    );
    if (applied !== n) console.log(`  !! the server applied ${applied} updates, expected ${n}`);
    return rate;
  }

  console.log(`producer ingest, server ${inProcess ? 'in this process' : 'in a separate process'}, node ${process.version}`);
  // warm-up, then the measured runs
  await run('warmup', Math.min(updates, 500_000), {}, 50_000);
  const batched = [];
  for (let r = 0; r < 3; r++) batched.push(await run('batched', updates, {}, 50_000));
  const unbatched = [];
  for (let r = 0; r < 3; r++) unbatched.push(await run('unbatched', unbatchedUpdates, { batch: false }, 1_000));
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`median: batched ${Math.round(median(batched)).toLocaleString('en-US')} updates/s, unbatched ${Math.round(median(unbatched)).toLocaleString('en-US')} updates/s`);

  if (child) child.send('exit');
  else await local.close();
  rmSync(dir, { recursive: true, force: true });
}
