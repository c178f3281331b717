#!/usr/bin/env node
// A producer in a process of its own for the fairness benchmark: publishes a tree of G × P sources
// (fair/g<a>/s<b>, each with V u64 counters, sum aggregates of the same schema at fair/ and at every g<a>),
// then, on command, pushes counter updates at full speed with the client's default batching.
//
//   node scripts/bench/flood.mjs <socket> [--groups G] [--per P] [--values V]
//
// Commands on stdin, one a line: "go" starts flooding; "stop" stops, waits until the daemon has applied
// everything sent and prints "stopped <updates applied> <seconds>". Prints "ready <json>" once the tree
// exists. Updates are confirmed by flush() every CHUNK updates, with at most WINDOW flushes outstanding:
// the pipe stays full, and what this process queues stays bounded whatever the daemon's pace.
import { createInterface } from 'node:readline';
import { setImmediate as turn } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connect } from '../../dist/src/client/index.js';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { unbatched: { type: 'boolean', default: false }, groups: { type: 'string', default: '10' }, per: { type: 'string', default: '100' }, values: { type: 'string', default: '16' } },
});
const [G, P, V] = [Number(opt.groups), Number(opt.per), Number(opt.values)];
const CHUNK = Number(process.env.FLOOD_CHUNK ?? 16_384);
const WINDOW = Number(process.env.FLOOD_WINDOW ?? 4);

const client = await connect({ path: positionals[0], reconnect: false, batch: !opt.unbatched });
const schema = client.define(Array.from({ length: V }, (_, k) => ({ name: `c${k}`, type: 'u64', aggr: 'sum' })));
const top = client.source('fair');
top.aggregates(schema);
const counters = [];
for (let a = 0; a < G; a++) {
  const group = top.source(`g${a}`);
  group.aggregates(schema);
  for (let b = 0; b < P; b++) {
    const values = group.source(`s${b}`).values(schema);
    for (let k = 0; k < V; k++) counters.push(values.counter(k));
  }
}
await client.flush();

let flooding = null;

async function flood(state) {
  const outstanding = [];
  let sent = 0;
  let i = 0;
  while (!state.stop) {
    for (let n = 0; n < CHUNK; n++) counters[i++ % counters.length].add(1);
    sent += CHUNK;
    outstanding.push(client.flush());
    if (outstanding.length >= WINDOW) await outstanding.shift();
    else await turn();
  }
  await Promise.all(outstanding);
  return sent;
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = line.trim();
  if (cmd === 'go' && flooding === null) {
    const state = { stop: false, t0: process.hrtime.bigint() };
    flooding = { state, done: flood(state) };
  } else if (cmd === 'stop' && flooding !== null) {
    const { state, done } = flooding;
    state.stop = true;
    void done.then((sent) => {
      flooding = null;
      process.stdout.write(`stopped ${sent} ${Number(process.hrtime.bigint() - state.t0) / 1e9}\n`);
    });
  }
});
process.stdout.write(`ready ${JSON.stringify({ sources: G * P, values: G * P * V })}\n`);
process.once('SIGTERM', () => void client.close().then(() => process.exit(0)));
