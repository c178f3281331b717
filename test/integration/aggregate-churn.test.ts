/**
 * Incremental aggregation through the mount: a producer in another process updates, removes and adds
 * sources (hidden ones too) under nested aggregates of the real daemon while `cat` reads the aggregates;
 * whenever it pauses, every aggregate read equals what the producer computes from its own copy of the values.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, sh, skipWithoutFuse, startDaemon, type Daemon } from '../helpers/mount.js';

/** The producer: churns for a while at each "go", then prints the expected aggregates as JSON and waits. */
const PRODUCER = String.raw`
import { connect } from 'statsfs/client';
const c = await connect({ socket: process.argv[1] });
const defs = [
  { name: 'total', type: 'u64', aggr: 'sum' },
  { name: 'low', type: 's64', aggr: 'min' },
  { name: 'high', type: 'u32', aggr: 'max' },
  { name: 'idle', type: 'u16', aggr: 'count_zero' },
  { name: 'mean', type: 's32', aggr: 'avg' },
];
const schema = c.define(defs);
let seed = 18;
const random = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
const top = c.source('agg');
top.aggregates(schema);
const groups = [];
for (let g = 0; g < 8; g++) {
  const src = top.source('g' + g);
  src.aggregates(schema);
  groups.push({ src, members: new Map() });
}
let n = 0;
const word = (d) => {
  const r = random();
  if (d.type === 'u64') return r < 0.1 ? 2n ** 64n - 1n - BigInt(Math.floor(random() * 1000)) : BigInt(Math.floor(random() * 2 ** 32)) * 65537n;
  if (d.type === 's64') return BigInt(Math.floor(random() * 2 ** 40)) - 2n ** 39n;
  if (d.type === 'u32') return BigInt(Math.floor(random() * 2 ** 32));
  if (d.type === 'u16') return r < 0.3 ? 0n : BigInt(Math.floor(random() * 65536));
  return BigInt(Math.floor(random() * 2 ** 32) - 2 ** 31);
};
const add = (grp) => {
  const hidden = random() < 0.2;
  const name = (hidden ? 'h' : 's') + n++;
  const src = grp.src.source(name, { hidden });
  const values = src.values(schema);
  const mine = defs.map((d) => word(d));
  defs.forEach((d, k) => values.set(d.name, mine[k]));
  grp.members.set(name, { src, values, mine });
};
for (const grp of groups) for (let i = 0; i < 40; i++) add(grp);
const wrap = (v, d) => (d.type === 'u64' ? BigInt.asUintN(64, v) : d.type === 's64' ? BigInt.asIntN(64, v) : d.type === 'u32' ? BigInt.asUintN(32, v) : d.type === 'u16' ? BigInt.asUintN(16, v) : BigInt.asIntN(32, v));
// shape: whether sources are also removed and added (else only values change, which the kept results follow)
function churn(steps, shape) {
  for (let i = 0; i < steps; i++) {
    const grp = groups[Math.floor(random() * groups.length)];
    const names = [...grp.members.keys()];
    const r = shape ? random() : 1;
    if (r < 0.06 && names.length > 0) {
      const name = names[Math.floor(random() * names.length)];
      grp.members.get(name).src.remove();
      grp.members.delete(name);
    } else if (r < 0.12) add(grp);
    else if (names.length > 0) {
      const m = grp.members.get(names[Math.floor(random() * names.length)]);
      const k = Math.floor(random() * defs.length);
      if (random() < 0.5) m.mine[k] = wrap(word(defs[k]), defs[k]);
      else {
        const delta = BigInt(Math.floor(random() * 2000) - 1000);
        m.mine[k] = wrap(m.mine[k] + delta, defs[k]);
        m.values.add(defs[k].name, delta);
        continue;
      }
      m.values.set(defs[k].name, m.mine[k]);
    }
  }
}
function expected(members) {
  const out = {};
  defs.forEach((d, k) => {
    const xs = members.map((m) => m.mine[k]);
    let v;
    if (d.aggr === 'sum') v = BigInt.asUintN(64, xs.reduce((a, b) => a + b, 0n));
    else if (d.aggr === 'min') v = xs.reduce((a, b) => (b < a ? b : a), 2n ** 63n - 1n);
    else if (d.aggr === 'max') v = xs.reduce((a, b) => (b > a ? b : a), 0n);
    else if (d.aggr === 'count_zero') v = BigInt(xs.filter((x) => x === 0n).length);
    else v = xs.length === 0 ? 0n : xs.reduce((a, b) => a + b, 0n) / BigInt(xs.length);
    out[d.name] = String(v);
  });
  return out;
}
await c.flush();
const lines = (await import('node:readline')).createInterface({ input: process.stdin });
process.stdout.write('ready\n');
for await (const line of lines) {
  if (line === 'quit') break;
  const [ms, shape] = line.split(' ');
  const until = Date.now() + Number(ms);
  while (Date.now() < until) {
    churn(200, shape === 'shape');
    await new Promise((r) => setImmediate(r));
  }
  await c.flush();
  const all = groups.flatMap((g) => [...g.members.values()]);
  const result = { agg: expected(all) };
  groups.forEach((g, i) => (result['agg/g' + i] = expected([...g.members.values()])));
  process.stdout.write(JSON.stringify(result) + '\n');
}
await c.close();
process.exit(0);
`;

describe.skipIf(skipWithoutFuse)('aggregates of the real daemon stay exact while a producer churns', { timeout: 120_000 }, () => {
  let d: Daemon;
  let producer: ChildProcess;
  let answers: AsyncIterator<string>;
  beforeAll(async () => {
    d = await startDaemon(['--no-collectors']);
    producer = spawn(process.execPath, ['--input-type=module', '-e', PRODUCER, `${d.mountpoint}/../producers.sock`], { cwd: ROOT });
    let stderr = '';
    producer.stderr!.on('data', (x) => (stderr += x));
    answers = createInterface({ input: producer.stdout! })[Symbol.asyncIterator]();
    const first = await answers.next();
    expect(first.value, stderr).toBe('ready');
  });
  afterAll(async () => {
    producer?.stdin?.end('quit\n');
    await d?.cleanup();
  });

  it('sum, min, max, count_zero and avg at the top and in every group equal the producer\'s own totals', async () => {
    const m = d.mountpoint;
    const files = ['total', 'low', 'high', 'idle', 'mean'];
    let checked = 0;
    for (let round = 0; round < 12; round++) {
      // odd rounds change the shape too (sources removed and added), even rounds only values
      producer.stdin!.write(round % 2 === 1 ? '300 shape\n' : '300 values\n');
      // reads while the producer churns: they succeed (what they show is checked once it pauses)
      const during = sh(`for i in 1 2 3 4 5 6 7 8 9 10; do cat ${m}/agg/total ${m}/agg/g0/low > /dev/null || exit 1; done`);
      expect(during.status, during.stderr).toBe(0);
      const answer = await answers.next();
      const want = JSON.parse(answer.value as string) as Record<string, Record<string, string>>;
      for (const [dir, values] of Object.entries(want)) {
        const got = sh(`cd ${m}/${dir} && cat ${files.join(' ')}`).stdout.trimEnd().split('\n');
        expect(got, `${dir} in round ${round}`).toEqual(files.map((f) => values[f]));
        checked += files.length;
      }
    }
    expect(checked).toBe(12 * 9 * files.length);
  });
});
