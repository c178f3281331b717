/**
 * The binding's StatsD receiver (native/statsd_recv.c, src/producers/statsd-native.ts): whatever it
 * coalesces, the tree and the statistics end as the JS receiver leaves them, line by line. Seeded random
 * datagrams (plain lines it parses, and every other form it hands over as they are: decimals, rates, tags,
 * bad lines, conflicts, names the model refuses, numbers at the edges of u64 and s64) go over real UDP to
 * a server with the binding and, as the Node dgram path would hand them, to one without.
 */
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { renderPrometheusText } from '../../../src/export/prometheus.js';
import { loadAddon } from '../../../src/fs/mount.js';
import { captureSnapshot, Source } from '../../../src/model/index.js';
import { StatsdServer, type StatsdOptions } from '../../../src/producers/statsd.js';
import { statsdBinding } from '../../../src/producers/statsd-native.js';

const native = statsdBinding(loadAddon());

function random(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return Math.floor((s / 2147483648) * n);
  };
}

const NAMES = ['app.req', 'app.err', 'app.db.q', 'app.level', 'lat', 'size.h', 'x', 'app', 'app.req.sub', 'héllo.wörld', 'n'.repeat(300), 'a..b', 'bad/name', '_e{x'];
const U64_MAX = 2n ** 64n - 1n;

function randomLine(r: (n: number) => number): string {
  // mostly the plain lines the binding coalesces, on the names that make metrics
  if (r(10) < 6) return `${NAMES[r(6)]}:${[r(1000), 2n ** 53n + 1n][r(2)]}|${['c', 'g', 'ms', 'h'][r(4)]}`;
  const name = NAMES[r(NAMES.length)];
  const big = [0n, 1n, 2n ** 53n + 1n, 2n ** 63n - 1n, 2n ** 63n, U64_MAX, U64_MAX + 1n, 9007199254740n, 9007199254741n][r(9)];
  const value = [String(r(1000)), String(big), `${r(100)}.${r(1000)}`, `-${r(50)}`, `+${r(50)}`, `-${big}`, '', 'abc', '1e3'][r(9)];
  const type = ['c', 'c', 'c', 'g', 'g', 'ms', 'h', 'd', 's', 'q', ''][r(11)];
  const tail = ['', '', '', '', '|@0.5', '|#env:x', '|@0', '|T123'][r(8)];
  return [`${name}:${value}|${type}${tail}`, `${name}:${value}|${type}`, `${name}:${value}`, ''][r(4)];
}

function randomDatagrams(seed: number, count: number): string[] {
  const r = random(seed);
  return Array.from({ length: count }, () => {
    const lines = Array.from({ length: 1 + r(20) }, () => randomLine(r));
    return lines.join(r(3) === 0 ? '\r\n' : '\n') + (r(2) ? '\n' : '');
  });
}

const STAT_KEYS = ['packets', 'bytes', 'lines', 'applied', 'badLines', 'badNames', 'conflicts', 'unsupported', 'dropped', 'droppedMetricCap', 'droppedSourceCap', 'errors'] as const;
const statsOf = (s: StatsdServer, keys: readonly string[] = STAT_KEYS) => Object.fromEntries(keys.map((k) => [k, s.stats[k as (typeof STAT_KEYS)[number]]]));
const treeOf = (root: Source) => renderPrometheusText(captureSnapshot(root), { openMetrics: false });

async function sendAll(port: number, datagrams: string[]): Promise<void> {
  const sock = dgram.createSocket('udp4');
  for (const d of datagrams) await new Promise<void>((resolve, reject) => sock.send(d, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  sock.close();
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('StatsD through the binding: the same effect as line by line in JS', () => {
  const servers: StatsdServer[] = [];
  afterEach(async () => {
    for (const s of servers.splice(0)) await s.close();
  });

  /** The same datagrams to a server with the binding (over UDP) and one without (ingest, as its dgram socket does). */
  async function compare(datagrams: string[], options: StatsdOptions = {}, keys: readonly string[] = STAT_KEYS): Promise<{ viaBinding: StatsdServer; viaJs: StatsdServer }> {
    const viaBinding = new StatsdServer(Source.root(), { ...options, udp: { host: '127.0.0.1', port: 0 }, native });
    const viaJs = new StatsdServer(Source.root(), options);
    servers.push(viaBinding, viaJs);
    const { port } = await viaBinding.listen();
    await sendAll(port, datagrams);
    for (const d of datagrams) {
      viaJs.stats.packets++;
      viaJs.ingest(Buffer.from(d));
    }
    await until(() => viaBinding.stats.packets === datagrams.length && viaBinding.stats.lines === viaJs.stats.lines, 'every line applied');
    expect(statsOf(viaBinding, keys)).toEqual(statsOf(viaJs, keys));
    expect(treeOf(viaBinding.root)).toEqual(treeOf(viaJs.root));
    return { viaBinding, viaJs };
  }

  it.each([1, 2, 3, 4, 5])('random datagrams, seed %i', async (seed) => {
    const { viaBinding } = await compare(randomDatagrams(seed, 300));
    // the test exercises every path: lines applied, coalesced and not, and lines refused
    expect(viaBinding.stats.applied).toBeGreaterThan(300);
    expect(viaBinding.stats.conflicts).toBeGreaterThan(0);
    expect(viaBinding.stats.badLines + viaBinding.stats.badNames).toBeGreaterThan(0);
    expect(viaBinding.receiver.kernelDrops).toBe(0);
  });

  it('caps: the lines beyond maxMetrics and maxPerSource are refused and counted alike', async () => {
    const datagrams = Array.from({ length: 50 }, (_, i) => Array.from({ length: 10 }, (_, j) => `cap.m${(i * 7 + j) % 40}:1|c\nflat${i}:2|g`).join('\n'));
    // the lines of a name coalesced and refused at once count under the cap that refused the first of
    // them; line by line, a later one may meet the other cap first: the totals are the same
    const keys = STAT_KEYS.filter((k) => k !== 'droppedMetricCap' && k !== 'droppedSourceCap');
    const { viaBinding } = await compare(datagrams, { maxMetrics: 25, maxPerSource: 20 }, keys);
    expect(viaBinding.stats.droppedMetricCap).toBeGreaterThan(0);
    expect(viaBinding.stats.droppedSourceCap).toBeGreaterThan(0);
    expect(viaBinding.stats.droppedMetricCap + viaBinding.stats.droppedSourceCap).toBe(viaBinding.stats.dropped);
  });

  it('a gauge set, adjusted, set again in one datagram ends at the last set plus what came after', async () => {
    const { viaBinding } = await compare(['g:5|g\ng:+3|g\ng:1.5|g\ng:-4|g\ng:10|g\ng:-9223372036854775808|g\ng:+1|g', 'g:+2|g']);
    expect(viaBinding.root.getValue('g')).toBe(10n - 9223372036854775808n + 3n);
  });

  it('counter deltas sum as u64, exactly beyond 2^53, wrapping as the value does', async () => {
    const { viaBinding } = await compare([`c:${2n ** 53n + 1n}|c\nc:${2n ** 53n + 1n}|c\nc:1|c`, `w:${U64_MAX}|c\nw:2|c`]);
    expect(viaBinding.root.getValue('c')).toBe(2n ** 54n + 3n);
    expect(viaBinding.root.getValue('w')).toBe(1n);
  });
});
