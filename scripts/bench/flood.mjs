#!/usr/bin/env node
// A producer in a process of its own for the fairness benchmark: publishes a tree of G × P sources
// (fair/g<a>/s<b>, each with V u64 counters, sum aggregates of the same schema at fair/ and at every g<a>),
// then, on command, pushes counter updates at full speed.
//
//   node scripts/bench/flood.mjs <socket> [--groups G] [--per P] [--values V]
//
// "go client": through the client library (its default batching: up to 4096 updates a frame), confirmed by
// flush() every CHUNK updates with at most WINDOW flushes outstanding, so the pipe stays full and what this
// process queues stays bounded. "go wire": the same UPDATE frames of 4096 entries, encoded once and written as
// fast as the socket takes them (a producer cheaper than the client, so that the daemon is the one that
// cannot keep up); the owner's sources are adopted on a second connection.
//
// Commands on stdin, one a line: "go client" or "go wire" starts flooding; "stop" stops, waits until the daemon has applied
// everything sent and prints "stopped <updates applied> <seconds>". Prints "ready <json>" once the tree exists.
import net from 'node:net';
import { createInterface } from 'node:readline';
import { setImmediate as turn } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connect } from '../../dist/src/client/index.js';
import {
  encodeDefine, encodeHello, encodeSource, encodeValues, FrameReader, Reply, UpdateOp, UpdateWriter,
} from '../../dist/src/protocol/protocol.js';

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: { groups: { type: 'string', default: '10' }, per: { type: 'string', default: '100' }, values: { type: 'string', default: '16' } },
});
const [G, P, V] = [Number(opt.groups), Number(opt.per), Number(opt.values)];
const CHUNK = 16_384;
const WINDOW = 4;
const FRAME_ENTRIES = 4096;
const OWNER = 'flood';

const spec = Array.from({ length: V }, (_, k) => ({ name: `c${k}`, type: 'u64', aggr: 'sum' }));
const paths = [];
for (let a = 0; a < G; a++) for (let b = 0; b < P; b++) paths.push(`fair/g${a}/s${b}`);

const client = await connect({ path: positionals[0], reconnect: false, owner: OWNER });
const schema = client.define(spec);
const top = client.source('fair');
top.aggregates(schema);
for (let a = 0; a < G; a++) top.source(`g${a}`).aggregates(schema);
const counters = paths.flatMap((path) => {
  const values = client.source(path).values(schema);
  return spec.map((_, k) => values.counter(k));
});
await client.flush();

/** Through the client: returns the updates sent once all are applied. */
async function floodClient(state) {
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

/** A second connection of the same owner, its handles bound by adopting the sources; UPDATE frames encoded once. */
async function wireConnection() {
  const socket = net.createConnection(positionals[0]);
  const reader = new FrameReader();
  const conn = { socket, replies: 0, waiting: null };
  socket.on('data', (chunk) =>
    reader.push(chunk, (frame) => {
      if (frame.op !== Reply.OK) throw new Error(`the daemon refused frame ${frame.id}: ${frame.buf.subarray(frame.start, frame.end).toString('latin1')}`);
      conn.replies++;
      if (conn.waiting !== null && conn.replies >= conn.waiting.count) conn.waiting.resolve();
    }),
  );
  conn.replied = (count) => (conn.replies >= count ? Promise.resolve() : new Promise((resolve) => (conn.waiting = { count, resolve })));
  let id = 0;
  const setup = [encodeHello(++id, { owner: OWNER }), encodeDefine(++id, 1, spec)];
  paths.forEach((path, i) => setup.push(encodeSource(++id, 1 + i, 0, path), encodeValues(++id, 1 + i, 1 + i, 1)));
  socket.write(Buffer.concat(setup));
  await conn.replied(setup.length);
  conn.replies = 0;
  // every value in turn, FRAME_ENTRIES a frame, until each has been added to once
  const writer = new UpdateWriter(FRAME_ENTRIES);
  const frames = [];
  for (let v = 0; v < paths.length * V; v++) {
    writer.push(1 + Math.floor(v / V), v % V, UpdateOp.ADD, 1);
    if (writer.full) frames.push(writer.finish(frames.length + 1));
  }
  conn.frames = frames;
  return conn;
}

const wire = await wireConnection();

async function floodWire(state) {
  const { socket, frames } = wire;
  let sent = 0;
  while (!state.stop) {
    for (const frame of frames) {
      sent++;
      if (!socket.write(frame)) await new Promise((resolve) => socket.once('drain', resolve));
    }
  }
  await wire.replied(sent);
  wire.replies = 0;
  return sent * FRAME_ENTRIES;
}

let flooding = null;
createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = line.trim();
  if ((cmd === 'go client' || cmd === 'go wire') && flooding === null) {
    const state = { stop: false, t0: process.hrtime.bigint() };
    flooding = { state, done: cmd === 'go wire' ? floodWire(state) : floodClient(state) };
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
process.once('SIGTERM', () => {
  wire.socket.destroy();
  void client.close().then(() => process.exit(0));
});
