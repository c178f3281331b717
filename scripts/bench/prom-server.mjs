#!/usr/bin/env node
// The export benchmark's baseline: prom-client holding the same series as the statsfs tree of tree.mjs
// --groups G --per P (V counters statsfs_value_<k>_total, one label source="g<a>/s<b>" per source, the
// same numbers), served over HTTP the way prom-client is normally served: GET /metrics answers
// `await registry.metrics()`. The time registry.metrics() took is sent in the X-Render-Ms header, so one
// request measures both the rendering alone and the whole scrape.
//
//   node scripts/bench/prom-server.mjs --groups G --per P [--values V]
//
// Prints "ready <json>" ({ series, port, version }) on stdout; SIGTERM exits.
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import client from 'prom-client';
import { valueOf } from './common.mjs';

const { values: opt } = parseArgs({
  options: { groups: { type: 'string' }, per: { type: 'string' }, values: { type: 'string', default: '10' } },
});
const [groups, per, count] = [Number(opt.groups), Number(opt.per), Number(opt.values)];

const registry = new client.Registry();
for (let k = 0; k < count; k++) {
  const counter = new client.Counter({ name: `statsfs_value_${k}_total`, help: `value ${k}`, labelNames: ['source'], registers: [registry] });
  let i = 0;
  for (let a = 0; a < groups; a++) for (let b = 0; b < per; b++, i++) counter.inc({ source: `g${a}/s${b}` }, valueOf(i, k));
}

const server = createServer(async (req, res) => {
  const t = performance.now();
  const text = await registry.metrics();
  res.setHeader('Content-Type', registry.contentType);
  res.setHeader('X-Render-Ms', String(performance.now() - t));
  res.end(text);
});
server.listen(0, '127.0.0.1', () => {
  const { version } = createRequire(import.meta.url)('prom-client/package.json');
  process.stdout.write(`ready ${JSON.stringify({ series: groups * per * count, port: server.address().port, version })}\n`);
});
process.once('SIGTERM', () => process.exit(0));
process.once('SIGINT', () => process.exit(0));
