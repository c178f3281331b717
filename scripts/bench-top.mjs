#!/usr/bin/env node
// What a refresh of `statsfs top` costs over 10,000 values (by default 1,000 sources × 10 u64 values under
// big/, with big/'s 10 sum aggregates), against the real daemon on a temporary mount, fed by the client library:
//   open   the first capture (open, read and parse the whole file)
//   refresh  a later capture while the layout holds (open, header and data block, rates for every value)
//   frame  the rows of big/ sorted and drawn as an 80×24 and a 200×60 frame
// and the daemon's own figures for the same refreshes (opens counted, longest event loop hold).
// Run: npm run build && node scripts/bench-top.mjs [rounds] [sources] [values per source]
// (10000 sources of 1 value: big/ as one directory of 10,000 rows)
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const root = new URL('..', import.meta.url).pathname;
const { TopModel } = await import(join(root, 'dist/src/top/model.js'));
const { renderFrame } = await import(join(root, 'dist/src/top/render.js'));
const { initialView, visibleRows, selectedIndex } = await import(join(root, 'dist/src/top/view.js'));
const { connect } = await import(join(root, 'dist/src/client/index.js'));

const rounds = Number(process.argv[2] ?? 50);
const sources = Number(process.argv[3] ?? 1000);
const perSource = Number(process.argv[4] ?? 10);
const dir = mkdtempSync(join(tmpdir(), 'bench-top-'));
const mnt = join(dir, 'mnt');
mkdirSync(mnt);
const sock = join(dir, 'producers.sock');
const daemon = spawn(process.execPath, [join(root, 'bin/statsfs.js'), 'mount', mnt, '--no-collectors', '--no-state', '--socket', sock, '--log-level', 'warn'], { stdio: 'inherit' });
const read = (p) => readFileSync(join(mnt, p), 'utf8').trim();
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x) => `${x.toFixed(2)} ms`;
try {
  for (let t = 0; ; t++) {
    try {
      read('statsfs/fuse/open/requests');
      break;
    } catch {
      if (t > 200) throw new Error('the daemon did not mount');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  const client = await connect({ path: sock });
  const schema = client.define(Array.from({ length: perSource }, (_, k) => ({ name: `v${k}`, type: 'u64', aggr: 'sum' })));
  client.source('big').aggregates(schema);
  const groups = [];
  for (let i = 0; i < sources; i++) {
    const g = client.source(`big/s${i}`).values(schema);
    for (let k = 0; k < perSource; k++) g.set(`v${k}`, i * perSource + k);
    groups.push(g);
  }
  await client.flush();
  const ticker = setInterval(() => groups.forEach((g, i) => g.add('v0', i)), 100); // values move between refreshes

  const model = new TopModel(mnt, 'big');
  let t0 = performance.now();
  await model.refresh();
  const open = performance.now() - t0;
  const refreshes = [];
  const frames80 = [];
  const frames200 = [];
  writeFileSync(join(mnt, 'statsfs/process/event_loop_delay_max_us'), '0\n');
  const opensBefore = Number(read('statsfs/fuse/open/requests'));
  for (let k = 0; k < rounds; k++) {
    await new Promise((r) => setTimeout(r, 20));
    t0 = performance.now();
    await model.refresh();
    refreshes.push(performance.now() - t0);
    for (const [size, out] of [[{ columns: 80, rows: 24 }, frames80], [{ columns: 200, rows: 60 }, frames200]]) {
      t0 = performance.now();
      const view = { ...initialView('rate') };
      const rows = visibleRows(model.rows(), view);
      renderFrame(view, rows, selectedIndex(rows, view), { mount: mnt, path: 'big', intervalSeconds: 1, takenAt: model.takenAt, values: model.valueCount, error: null }, size);
      out.push(performance.now() - t0);
    }
  }
  const opens = Number(read('statsfs/fuse/open/requests')) - opensBefore - 1; // less this read
  const hold = read('statsfs/process/event_loop_delay_max_us');
  clearInterval(ticker);
  await client.close();
  console.log(`values in big/: ${model.valueCount}; ${rounds} refreshes`);
  console.log(`first open (whole file parsed): ${ms(open)}`);
  console.log(`refresh, median (min–max): ${ms(median(refreshes))} (${ms(Math.min(...refreshes))}–${ms(Math.max(...refreshes))})`);
  console.log(`frame 80×24, median: ${ms(median(frames80))}; 200×60: ${ms(median(frames200))}`);
  console.log(`daemon: ${opens} opens for ${rounds} refreshes; longest event loop hold ${hold} µs`);
} finally {
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
  spawnSync('fusermount3', ['-u', '-z', mnt]);
  rmSync(dir, { recursive: true, force: true });
}
