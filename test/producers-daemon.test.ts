/**
 * Producers feeding the real daemon from other processes, checked through the mount with real tools.
 */
import { spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sh, skipWithoutFuse, startDaemon, waitFor, type Daemon } from './helpers/mount.js';

async function freeUdpPort(): Promise<number> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(() => resolve()));
  return port;
}

describe.skipIf(skipWithoutFuse)('StatsD into the real daemon', { timeout: 60_000 }, () => {
  let d: Daemon;
  let m: string;
  let port: number;
  beforeAll(async () => {
    port = await freeUdpPort();
    d = await startDaemon(['--no-collectors', '--statsd', `127.0.0.1:${port}`]);
    m = d.mountpoint;
  });
  afterAll(() => d?.cleanup());

  /** Sends lines from a separate Node process using a real StatsD client library. */
  const send = (code: string) => {
    const r = spawnSync(
      process.execPath,
      ['--input-type=module', '-e', `import StatsD from 'hot-shots'; const c = new StatsD({ host: '127.0.0.1', port: ${port} }); ${code}; c.close();`],
      { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname },
    );
    expect(r.stderr).toBe('');
  };

  it('counters, gauges and timings appear as files and directories', async () => {
    send(`c.increment('app.requests', 3); c.increment('app.requests', 2); c.gauge('app.queue', 21); c.timing('app.latency', 12)`);
    await waitFor('the StatsD lines', () => sh(`cat ${m}/app/requests`).stdout === '5\n');
    expect(sh(`cat ${m}/app/queue`).stdout).toBe('21\n');
    expect(sh(`stat -c %a ${m}/app/requests ${m}/app/queue`).stdout).toBe('644\n444\n');
    expect(sh(`cat ${m}/app/latency/count ${m}/app/latency/sum_us`).stdout).toBe('1\n12000\n');
  });

  it('a gauge adjusts with +n/-n; echo 0 > clears a counter', async () => {
    send(`c.gaugeDelta('app.queue', -4)`);
    await waitFor('the gauge', () => sh(`cat ${m}/app/queue`).stdout === '17\n');
    expect(sh(`echo 0 > ${m}/app/requests`).status).toBe(0);
    send(`c.increment('app.requests')`);
    await waitFor('the counter', () => sh(`cat ${m}/app/requests`).stdout === '1\n');
    expect(sh(`echo 0 > ${m}/app/queue`).stderr).toMatch(/Permission denied/);
  });
});
