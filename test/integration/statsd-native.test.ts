/**
 * StatsD over UDP in the real daemon, whose binding receives and parses the datagrams on a thread of its
 * own (native/statsd_recv.c), read back through the mount with cat: counters exact beyond 2^53, gauges,
 * timings' percentiles as the model computes them line by line, bad lines counted, and a flood into a tiny
 * receive buffer where every datagram is either counted as received or as dropped by the kernel.
 */
import { createSocket } from 'node:dgram';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { histogramFileOf, histogramFileText, Source } from '../../src/model/index.js';
import { StatsdServer } from '../../src/producers/statsd.js';
import { freeUdpPort } from '../helpers/ports.js';
import { sh, skipWithoutFuse, startDaemon, waitFor, type Daemon } from '../helpers/mount.js';

/** Sends each datagram in turn from a fresh socket; resolves once the kernel took them all. */
async function sendUdp(port: number, datagrams: string[]): Promise<void> {
  const socket = createSocket('udp4');
  for (const d of datagrams) await new Promise<void>((resolve, reject) => socket.send(d, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  socket.close();
}

const cat = (path: string): string => sh(`cat ${path}`).stdout.trim();
const catOr = (path: string): string | null => {
  const r = sh(`cat ${path} 2>/dev/null`);
  return r.status === 0 ? r.stdout.trim() : null;
};

describe.skipIf(skipWithoutFuse)('StatsD over UDP through the binding, in the real daemon', { timeout: 120_000 }, () => {
  let d: Daemon;
  let m: string;
  let udp: number;
  beforeAll(async () => {
    udp = await freeUdpPort();
    d = await startDaemon(['--no-collectors', '--no-socket', '--statsd', `127.0.0.1:${udp}`]);
    m = d.mountpoint;
  });
  afterAll(() => d?.cleanup());

  it('counters add exactly beyond 2^53 (u64), across lines of one datagram and across datagrams', async () => {
    const big = 2n ** 53n + 1n;
    await sendUdp(udp, [`big.c:${big}|c\nbig.c:${big}|c\nbig.c:${big}|c`, `big.c:${big}|c\nbig.c:7|c`]);
    await waitFor('big/c', () => catOr(join(m, 'big/c')) === String(4n * big + 7n));
  });

  it('gauges set and adjust in order, within a datagram and across', async () => {
    await sendUdp(udp, ['lvl.g:10|g\nlvl.g:+5|g\nlvl.g:-20|g', 'lvl.g:-3|g\nlvl.g:2.5|g\nlvl.g:+1|g']);
    await waitFor('lvl/g', () => catOr(join(m, 'lvl/g')) === '4'); // 10 + 5 - 20 - 3 = -8, then set 3 (2.5 rounded), + 1
  });

  it("a timing's count, sum and percentiles are what the model gives line by line", async () => {
    const lines = Array.from({ length: 500 }, (_, i) => `svc.t:${(i * 37) % 251}|ms`);
    const datagrams = Array.from({ length: 25 }, (_, i) => lines.slice(i * 20, i * 20 + 20).join('\n'));
    await sendUdp(udp, datagrams);
    await waitFor('svc/t/count', () => catOr(join(m, 'svc/t/count')) === '500');
    const expected = new StatsdServer(Source.root());
    for (const dgram of datagrams) expected.ingest(dgram);
    const found = expected.root.subordinate('svc')!.findValue('t')!;
    for (const name of ['count', 'sum_us', 'min_us', 'max_us', 'avg_us', 'p50_us', 'p90_us', 'p99_us', 'p999_us', 'buckets']) {
      const want = histogramFileText(found.group.histogram(found.def.index), histogramFileOf(name, found.def.suffix)!).trim();
      expect(cat(join(m, 'svc/t', name)), name).toBe(want);
    }
  });

  it('bad lines and names are counted; the good lines around them are kept', async () => {
    const before = Number(cat(join(m, 'statsfs/statsd/bad_lines')));
    const namesBefore = Number(cat(join(m, 'statsfs/statsd/bad_names')));
    await sendUdp(udp, ['ok.a:1|c\nno colon\nok.a:x|c\nok.a:-1|c\nbad/name:1|c\nok.a:2|c']);
    await waitFor('ok/a', () => catOr(join(m, 'ok/a')) === '3');
    expect(Number(cat(join(m, 'statsfs/statsd/bad_lines'))) - before).toBe(3);
    expect(Number(cat(join(m, 'statsfs/statsd/bad_names'))) - namesBefore).toBe(1);
    expect(cat(join(m, 'statsfs/statsd/kernel_drops'))).toBe('0');
  });
});

describe.skipIf(skipWithoutFuse)('StatsD kernel drops are counted, never silent', { timeout: 120_000 }, () => {
  let d: Daemon;
  let udp: number;
  beforeAll(async () => {
    udp = await freeUdpPort();
    // the smallest buffer the kernel allows: a burst overflows it
    d = await startDaemon(['--no-collectors', '--no-socket', '--statsd', `127.0.0.1:${udp}`, '--statsd-rcvbuf', '1']);
  });
  afterAll(() => d?.cleanup());

  it('every datagram of a flood is either received or counted in statsfs/statsd/kernel_drops', async () => {
    const m = d.mountpoint;
    const sent = 20_000;
    const socket = createSocket('udp4');
    // a burst without waiting for each send: the daemon's tiny buffer cannot keep up
    await Promise.all(
      Array.from({ length: sent }, () => new Promise<void>((resolve, reject) => socket.send('flood.c:1|c\nflood.d:2|c', udp, '127.0.0.1', (err) => (err ? reject(err) : resolve())))),
    );
    socket.close();
    const stat = (name: string): number => Number(cat(join(m, 'statsfs/statsd', name)));
    await waitFor('every datagram accounted for', () => stat('packets') + stat('kernel_drops') === sent);
    const received = stat('packets');
    expect(stat('kernel_drops')).toBeGreaterThan(0);
    await waitFor('the datagrams received applied', () => catOr(join(m, 'flood/c')) === String(received));
    expect(cat(join(m, 'flood/d'))).toBe(String(2 * received));
    expect(stat('lines')).toBe(2 * received);
  });
});
