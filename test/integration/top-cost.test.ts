/**
 * What a refresh of `statsfs top` costs the daemon over a subtree of 10,000 values: one open of its
 * `.snapshot.bin`, counted by the daemon itself in statsfs/fuse/open/requests.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TopModel } from '../../src/top/model.js';
import { BIN, ROOT, sh, skipWithoutFuse, startDaemon, waitFor, type Daemon } from '../helpers/mount.js';

const SOURCES = 1000;
const PER_SOURCE = 10;

/** big/s0 … big/s999, ten u64 counters each, summed in big/; then s0's first counter counts on. */
const PRODUCER = `
import { connect } from ${JSON.stringify(join(ROOT, 'dist/src/client/index.js'))};
const client = await connect({ path: process.argv[1] });
const schema = client.define(Array.from({ length: ${PER_SOURCE} }, (_, k) => ({ name: 'v' + k, type: 'u64', aggr: 'sum' })));
client.source('big').aggregates(schema);
const groups = [];
for (let i = 0; i < ${SOURCES}; i++) {
  const g = client.source('big/s' + i).values(schema);
  for (let k = 0; k < ${PER_SOURCE}; k++) g.set('v' + k, i * ${PER_SOURCE} + k);
  groups.push(g);
}
await client.flush();
setInterval(() => groups[0].add('v0', 1), 10);
process.stdout.write('ready\\n');
`;

describe.skipIf(skipWithoutFuse)('statsfs top over 10,000 values', { timeout: 120_000 }, () => {
  let d: Daemon;
  let m: string;
  let producer: ChildProcess;
  const opens = (): number => Number(readFileSync(join(m, 'statsfs/fuse/open/requests'), 'utf8'));

  beforeAll(async () => {
    d = await startDaemon(['--no-collectors']);
    m = d.mountpoint;
    producer = spawn(process.execPath, ['--input-type=module', '-e', PRODUCER, join(m, '..', 'producers.sock')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    producer.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
    await waitFor('the producer', () => out.includes('ready'), 60_000);
  });
  afterAll(() => {
    producer?.kill();
    d?.cleanup();
  });

  it('each refresh is one open of the subtree\'s .snapshot.bin, and sees the values move', async () => {
    const model = new TopModel(m, 'big');
    const before = opens();
    await model.refresh();
    expect(model.valueCount).toBe(SOURCES * PER_SOURCE + PER_SOURCE); // and big/'s aggregates
    const s0 = (): number => model.rows().find((r) => r.name === 'v0')!.value;
    const first = s0();
    for (let k = 0; k < 5; k++) {
      await new Promise((r) => setTimeout(r, 50));
      await model.refresh();
    }
    expect(opens() - before).toBe(6 + 1); // six captures, and this read of the counter
    expect(s0()).toBeGreaterThan(first); // big/v0 sums s0's counter, which counts on
    expect(model.rows().find((r) => r.name === 'v0')!.rate).toBeGreaterThan(0);
    expect(model.rows().filter((r) => r.kind === 'source')).toHaveLength(SOURCES);
  });

  it('--once lists all of them from two captures', () => {
    const before = opens();
    const r = sh(`node ${BIN} top --mount ${m} --once big -d 0.2`);
    expect(opens() - before).toBe(2 + 1);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1 + SOURCES * PER_SOURCE + PER_SOURCE);
    expect(lines.find((l) => l.startsWith('s999/v9 '))).toMatch(/^s999\/v9 +9999 +0\/s$/);
  });
});
