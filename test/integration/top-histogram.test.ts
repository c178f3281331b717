/**
 * `statsfs top` over a histogram a producer in another process observes into: its p50 and p99 come from the
 * merged buckets of the capture, and its count's rate from two captures.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, sh, skipWithoutFuse, startDaemon, waitFor, type Daemon } from '../helpers/mount.js';

/** api/a and api/b observe 1…100 ms between them once, then a observes 1000 ms 200 times a second. */
const PRODUCER = `
import { connect } from ${JSON.stringify(join(ROOT, 'dist/src/client/index.js'))};
const client = await connect({ socket: process.argv[1] });
const schema = client.define([{ name: 'latency', type: 'histogram', aggr: 'sum', unit: 'milliseconds' }]);
client.source('api').aggregates(schema);
const a = client.source('api/a').values(schema);
const b = client.source('api/b').values(schema);
for (let v = 1; v <= 100; v++) (v % 2 ? a : b).observe('latency', v);
await client.flush();
process.stdout.write('ready\\n');
setInterval(() => a.observe('latency', 1000, 2), 10);
`;

describe.skipIf(skipWithoutFuse)('statsfs top shows histograms', { timeout: 60_000 }, () => {
  let d: Daemon;
  let m: string;
  let producer: ChildProcess;
  beforeAll(async () => {
    d = await startDaemon(['--no-collectors']);
    m = d.mountpoint;
    producer = spawn(process.execPath, ['--input-type=module', '-e', PRODUCER, join(m, '..', 'producers.sock')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    producer.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
    await waitFor('the producer', () => out.includes('ready'));
  });
  afterAll(() => {
    producer?.kill();
    d?.cleanup();
  });

  it('p50 and p99 of the merged samples, and observations per second', () => {
    const r = sh(`node ${BIN} top --mount ${m} --once api -d 1`);
    expect(r.stderr).toBe('');
    const line = r.stdout.split('\n').find((l) => l.startsWith('latency '));
    expect(line, r.stdout).toMatch(/^latency +Σ +\d+ \(p50 [\d.]+ (ms|s) · p99 [\d.]+ (ms|s)\) +[\d.]+k?\/s +milliseconds$/);
    // about 200 observations a second (the producer's timer on a shared machine: a wide margin)
    const rate = /([\d.]+)(k?)\/s/.exec(line!)!;
    const perSecond = Number(rate[1]) * (rate[2] === 'k' ? 1000 : 1);
    expect(perSecond).toBeGreaterThan(100);
    expect(perSecond).toBeLessThan(300);
    // the daemon's own files agree with what top shows for the tail: 1000 ms samples dominate by now
    expect(Number(sh(`cat ${m}/api/latency/p99`).stdout)).toBeGreaterThan(985);
    expect(line).toMatch(/p99 (9\d\d ms|1 s|1\.0\d s)/);
  });
});
