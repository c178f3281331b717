/**
 * StatsD and the producer socket in the real daemon, seen through the mount with real tools: the counters
 * under statsfs/statsd/ and statsfs/producers/ that show why data is missing, `statsfs rm` of a StatsD
 * metric, idle expiry, the StatsD socket's mode under any umask, and the Prometheus type of a StatsD counter.
 */
import { createSocket } from 'node:dgram';
import { get } from 'node:http';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeTcpPort, freeUdpPort } from '../helpers/ports.js';
import { BIN, sh, skipWithoutFuse, startDaemon, tempDir, waitFor, type Daemon } from '../helpers/mount.js';

async function sendUdp(port: number, text: string): Promise<void> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => socket.send(text, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  socket.close();
}

/** Writes `text` on a fresh connection to the StatsD Unix socket and closes it. */
async function sendUnix(path: string, text: string | Buffer): Promise<void> {
  const conn = createConnection(path);
  await new Promise<void>((resolve, reject) => {
    conn.once('error', reject);
    conn.once('connect', () => conn.end(text, () => resolve()));
  });
}

/** Starts the daemon with the given umask, which its sockets must not depend on. */
async function startWithUmask(mask: number, args: string[]): Promise<Daemon> {
  const old = process.umask(mask);
  try {
    return await startDaemon(args, join(args[args.indexOf('--statsd-socket') + 1], '..', 'mnt'));
  } finally {
    process.umask(old);
  }
}

const cat = (path: string): string => sh(`cat ${path}`).stdout;

describe.skipIf(skipWithoutFuse)('StatsD and producer statistics in the real daemon', { timeout: 120_000 }, () => {
  let d: Daemon;
  let m: string;
  let udp: number;
  let http: number;
  let statsdSocket: string;
  let producerSocket: string;
  beforeAll(async () => {
    udp = await freeUdpPort();
    http = await freeTcpPort();
    statsdSocket = join(tempDir(), 'statsd.sock');
    d = await startWithUmask(0o000, ['--no-collectors', '--statsd', `127.0.0.1:${udp}`, '--statsd-socket', statsdSocket, '--http', `127.0.0.1:${http}`]);
    m = d.mountpoint;
    producerSocket = join(m, '..', 'producers.sock');
  });
  afterAll(() => d?.cleanup());

  const statsfs = (args: string) => sh(`node ${BIN} ${args} --socket ${producerSocket}`);

  it('the StatsD socket is 0600 though the daemon started with umask 000', () => {
    expect(sh(`stat -c %a ${statsdSocket} ${producerSocket}`).stdout).toBe('600\n600\n');
  });

  it('statsfs/statsd/ counts bad lines and over-long lines; counters clear to a baseline, levels are read-only', async () => {
    await sendUdp(udp, 'no colon here\nok.x:1|c\n');
    await waitFor('the good line', () => cat(`${m}/ok/x`) === '1\n');
    expect(cat(`${m}/statsfs/statsd/bad_lines`)).toBe('1\n');
    expect(cat(`${m}/statsfs/statsd/packets`)).toBe('1\n');
    expect(cat(`${m}/statsfs/statsd/lines`)).toBe('2\n');
    await sendUnix(statsdSocket, `${'x'.repeat(150_000)}\nafter:1|c\n`); // more than 64 KiB before any newline
    await waitFor('the line after the over-long one', () => cat(`${m}/after`) === '1\n');
    expect(cat(`${m}/statsfs/statsd/dropped_long_lines`)).toBe('1\n');
    expect(cat(`${m}/statsfs/statsd/dropped`)).toBe('1\n');
    expect(cat(`${m}/statsfs/statsd/metrics`)).toBe('2\n');
    expect(sh(`stat -c %a ${m}/statsfs/statsd/bad_lines ${m}/statsfs/statsd/metrics`).stdout).toBe('644\n444\n');
    expect(sh(`echo 0 > ${m}/statsfs/statsd/bad_lines`).status).toBe(0);
    expect(cat(`${m}/statsfs/statsd/bad_lines`)).toBe('0\n');
    await sendUdp(udp, 'bad|again\n');
    await waitFor('the second bad line', () => cat(`${m}/statsfs/statsd/bad_lines`) === '1\n');
    expect(sh(`echo 0 > ${m}/statsfs/statsd/metrics`).stderr).toMatch(/Permission denied/);
  });

  it('statsfs/producers/ shows the producer server\'s connections, frames, updates and errors', () => {
    const before = (name: string) => BigInt(cat(`${m}/statsfs/producers/${name}`));
    const accepted = before('accepted');
    const updates = before('updates');
    const errors = before('errors');
    expect(statsfs('set jobs/a/bytes 5').status).toBe(0);
    expect(statsfs('rm no/such/path').status).not.toBe(0);
    expect(before('accepted')).toBe(accepted + 2n);
    expect(before('updates')).toBe(updates + 1n);
    expect(before('errors')).toBe(errors + 1n);
    expect(before('frames')).toBeGreaterThan(0n);
    for (const name of ['connections', 'refused', 'timed_out', 'closed_for_protocol_errors']) expect(cat(`${m}/statsfs/producers/${name}`), name).toBe('0\n');
    expect(sh(`stat -c %a ${m}/statsfs/producers/connections ${m}/statsfs/producers/accepted`).stdout).toBe('444\n644\n');
  });

  it('a StatsD counter is a Prometheus counter (_total) in /metrics', async () => {
    await sendUdp(udp, 'app.hits:3|c\napp.level:-2|g\n');
    await waitFor('the counter', () => cat(`${m}/app/hits`) === '3\n');
    const text = await new Promise<string>((resolve, reject) => {
      get(`http://127.0.0.1:${http}/metrics`, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
    expect(text).toContain('# TYPE statsfs_app_hits_total counter\nstatsfs_app_hits_total 3\n');
    expect(text).toContain('# TYPE statsfs_app_level gauge\nstatsfs_app_level -2\n');
    expect(text).toMatch(/^statsfs_statsd_bad_lines_total \d+$/m);
    expect(text).toMatch(/^statsfs_producers_accepted_total \d+$/m);
  });

  it('statsfs rm removes a StatsD metric or prefix and frees its place under the 100,000-metric cap', async () => {
    expect(statsfs('rm ok/x').status).toBe(0);
    expect(sh(`ls ${m}/ok`).status).not.toBe(0); // its prefix source went with its last metric
    expect(cat(`${m}/statsfs/statsd/removed`)).toBe('1\n');

    const lines0 = BigInt(cat(`${m}/statsfs/statsd/lines`));
    const fill = Array.from({ length: 100_000 }, (_, i) => `fill${i % 20}.m${Math.floor(i / 20)}:1|c\n`).join('');
    await sendUnix(statsdSocket, fill);
    await waitFor('100,000 lines', () => BigInt(cat(`${m}/statsfs/statsd/lines`) || '0') === lines0 + 100_000n, 60_000);
    expect(cat(`${m}/statsfs/statsd/metrics`)).toBe('100000\n');
    const capped = BigInt(cat(`${m}/statsfs/statsd/dropped_metric_cap`));
    expect(capped).toBeGreaterThan(0n);
    await sendUdp(udp, 'late.one:1|c\n');
    await waitFor('the cap hit', () => BigInt(cat(`${m}/statsfs/statsd/dropped_metric_cap`)) === capped + 1n);
    expect(sh(`ls ${m}/late`).status).not.toBe(0);

    const rm = statsfs('rm fill0');
    expect(rm.stderr).toBe('');
    expect(rm.status).toBe(0);
    expect(sh(`ls ${m}/fill0`).status).not.toBe(0);
    expect(cat(`${m}/statsfs/statsd/removed`)).toBe('5001\n');
    await sendUdp(udp, 'late.one:1|c\n');
    await waitFor('the new metric', () => cat(`${m}/late/one`) === '1\n');
    // the daemon's own statistics are not StatsD's to remove
    expect(statsfs('rm statsfs/statsd').status).not.toBe(0);
  });
});

describe.skipIf(skipWithoutFuse)('StatsD idle expiry in the real daemon', { timeout: 60_000 }, () => {
  let d: Daemon;
  let m: string;
  let udp: number;
  let statsdSocket: string;
  beforeAll(async () => {
    udp = await freeUdpPort();
    statsdSocket = join(tempDir(), 'statsd.sock');
    d = await startWithUmask(0o077, ['--no-collectors', '--statsd', `127.0.0.1:${udp}`, '--statsd-socket', statsdSocket, '--statsd-expire', '1']);
    m = d.mountpoint;
  });
  afterAll(() => d?.cleanup());

  it('the StatsD socket is 0600 though the daemon started with umask 077', () => {
    expect(sh(`stat -c %a ${statsdSocket}`).stdout).toBe('600\n');
  });

  it('a metric not updated within --statsd-expire is removed and counted in statsfs/statsd/expired', async () => {
    await sendUnix(statsdSocket, 'idle.c:1|c\nidle.t:4|ms\n');
    await waitFor('the metric', () => cat(`${m}/idle/c`) === '1\n');
    await waitFor('the expiry', () => sh(`test -e ${m}/idle`).status === 1);
    expect(cat(`${m}/statsfs/statsd/expired`)).toBe('2\n');
    expect(cat(`${m}/statsfs/statsd/metrics`)).toBe('0\n');
  });
});
