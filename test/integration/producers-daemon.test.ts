/**
 * Producers feeding the real daemon from other processes, checked through the mount with real tools.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeUdpPort } from '../helpers/ports.js';
import { connect, type StatsClientError } from '../../src/client/index.js';
import { BIN, ROOT, sh, skipWithoutFuse, startDaemon, waitFor, type Daemon } from '../helpers/mount.js';

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
      { encoding: 'utf8', cwd: new URL('../..', import.meta.url).pathname },
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

describe.skipIf(skipWithoutFuse)('producer socket of the real daemon: shell commands and the client library', { timeout: 60_000 }, () => {
  let d: Daemon;
  let m: string;
  let socket: string;
  beforeAll(async () => {
    d = await startDaemon(['--no-collectors']);
    m = d.mountpoint;
    socket = `${m}/../producers.sock`;
  });
  afterAll(() => d?.cleanup());

  const statsfs = (args: string) => sh(`node ${BIN} ${args} --socket ${socket}`);

  it('the socket is private to its owner (0600)', () => {
    expect(sh(`stat -c %a ${socket}`).stdout).toBe('600\n');
  });

  it('statsfs set, add and rm publish from a shell script', () => {
    expect(statsfs('set jobs/backup/bytes 18446744073709551615').status).toBe(0);
    expect(sh(`cat ${m}/jobs/backup/bytes`).stdout).toBe('18446744073709551615\n');
    expect(statsfs('add jobs/backup/runs 2').status).toBe(0);
    expect(statsfs('add jobs/backup/runs 3').status).toBe(0);
    expect(sh(`cat ${m}/jobs/backup/runs`).stdout).toBe('5\n');
    expect(statsfs('set jobs/backup/temperature -5 --type s64 --floating').status).toBe(0);
    expect(sh(`cat ${m}/jobs/backup/temperature`).stdout).toBe('-5\n');
    expect(sh(`stat -c %a ${m}/jobs/backup/temperature`).stdout).toBe('444\n');
    const bad = statsfs('set jobs/../x 1');
    expect(bad.status).not.toBe(0);
    expect(statsfs('rm jobs/backup').status).toBe(0);
    expect(sh(`ls ${m}/jobs`).stdout).toBe('');
  });

  /**
   * Starts a producer in another Node process: `body` runs with `c` connected to the daemon's socket and
   * must end by printing "ready"; the producer closes its connection and exits at any line on stdin.
   */
  async function startProducer(body: string): Promise<ChildProcess> {
    const producer = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { connect } from 'statsfs/client';
         const c = await connect({ socket: ${JSON.stringify(socket)} });
         ${body}
         process.stdin.once('data', async () => { await c.close(); process.exit(0); });`,
      ],
      { cwd: ROOT },
    );
    let stderr = '';
    producer.stderr!.on('data', (x) => (stderr += x));
    await new Promise<void>((resolve, reject) => {
      producer.stdout!.once('data', () => resolve());
      producer.once('exit', () => reject(new Error(`producer exited: ${stderr}`)));
    });
    return producer;
  }

  it('a producer keeps first/v + last/v at 1000 while snapshots of 300,000 values, taken in slices, read them', async () => {
    // first/ and last/ sit at the two ends of the walk with 300,000 values between them, so a capture of the
    // root spans several slices; the producer moves 1 between them every millisecond in one UPDATE frame.
    const producer = await startProducer(`
      const edge = c.define([{ name: 'v', type: 'u64' }]);
      const fill = c.define(Array.from({ length: 10 }, (_, k) => ({ name: 'f' + k, type: 'u64', aggr: 'sum' })));
      const first = c.source('first').values(edge);
      first.set('v', 1000);
      const filler = c.source('filler');
      filler.aggregates(fill);
      for (let i = 0; i < 30000; i++) c.source('filler/s' + i).values(fill).set('f0', i);
      const last = c.source('last').values(edge);
      await c.flush();
      let v = 1000;
      setInterval(() => { v = v === 0 ? 1000 : v - 1; first.set('v', v); last.set('v', 1000 - v); }, 1);
      process.stdout.write('ready\\n');`);
    try {
      const file = `${m}/../root.snapshot`;
      const seen = new Set<string>();
      for (let i = 0; i < 10; i++) {
        const r = sh(`cat ${m}/.snapshot > ${file} && wc -l < ${file} && grep -E '^(first|last)/v ' ${file}`);
        const [lines, first, last] = r.stdout.trimEnd().split('\n');
        expect(Number(lines), r.stderr).toBeGreaterThan(300_000);
        expect(first).toMatch(/^first\/v \d+$/);
        expect(last).toMatch(/^last\/v \d+$/);
        expect(BigInt(first.split(' ')[1]) + BigInt(last.split(' ')[1])).toBe(1000n);
        seen.add(first);
      }
      expect(seen.size).toBeGreaterThan(1); // the producer was moving amounts all along
    } finally {
      producer.kill('SIGKILL'); // also when an expectation failed: never leave it running
    }
  });

  it('a clear through the mount survives the producer\'s reconnect (KEEP: the daemon\'s values are adopted)', async () => {
    const errors: StatsClientError[] = [];
    const c = await connect({ socket, owner: 'svc', keep: true, reconnect: { minDelayMs: 10, maxDelayMs: 100 }, onError: (e) => errors.push(e) });
    try {
      const requests = c.counter('svc/requests');
      requests.add(5);
      await c.flush();
      expect(sh(`cat ${m}/svc/requests`).stdout).toBe('5\n');
      expect(sh(`echo 0 > ${m}/svc/requests`).status).toBe(0);
      expect(sh(`cat ${m}/svc/requests`).stdout).toBe('0\n');
      // the daemon closes the connection (a frame shorter than its header is fatal); the client reconnects
      const reconnected = new Promise((r) => c.once('connect', r));
      (c as unknown as { socket: Socket }).socket.write(Buffer.from([1, 0, 0, 0]));
      await reconnected;
      await expect(c.flush()).rejects.toMatchObject({ code: 'EPROTO' }); // what the daemon said as it closed
      requests.add(2);
      await c.flush();
      expect(sh(`cat ${m}/svc/requests`).stdout).toBe('2\n'); // not 7
      expect(requests.value).toBe(2);
      expect(errors.map((e) => e.code)).toEqual(['EPROTO']);
      await c.removePath('svc');
    } finally {
      await c.close();
    }
  });

  it('a client-library producer in another process publishes; its values leave with it', async () => {
    const producer = await startProducer(`
      const schema = c.define([{ name: 'hits', type: 'u64', aggr: 'sum' }]);
      const web = c.source('web');
      web.aggregates(schema);
      for (const name of ['a', 'b']) c.source('web/' + name).values(schema).add('hits', name === 'a' ? 40 : 2);
      await c.flush();
      process.stdout.write('ready\\n');`);
    expect(sh(`cat ${m}/web/hits ${m}/web/a/hits ${m}/web/b/hits`).stdout).toBe('42\n40\n2\n');
    producer.stdin.write('bye\n');
    await new Promise((resolve) => producer.once('exit', resolve));
    await waitFor('the producer\'s sources to go', () => !sh(`ls ${m}`).stdout.includes('web'));
  });

  it('creations made in one turn: each refusal is reported for its own source, in order; values are mirrored once acknowledged', async () => {
    const errors: StatsClientError[] = [];
    const c = await connect({ socket, reconnect: false, onError: (e) => errors.push(e) });
    try {
      // one turn: 300 sources with their values, two of them with a name the daemon refuses, all sent together
      const schema = c.define([{ name: 'n', type: 'u64', aggr: 'sum' }]);
      const top = c.source('turn');
      top.aggregates(schema);
      const bad = new Set([100, 200]);
      const sources = Array.from({ length: 300 }, (_, i) => top.source(bad.has(i) ? `s${i}/.snapshot` : `s${i}`));
      const groups = sources.map((src) => src.values(schema));
      // a source below one created in the same turn: the order of the requests is kept
      const deep = sources[7].source('deep').values(schema);
      for (const [i, g] of groups.entries()) if (!bad.has(i)) g.set('n', i);
      deep.add('n', 1000);
      expect(groups[5].get('n')).toBe(0); // nothing acknowledged yet
      await expect(sources[100].ready).rejects.toMatchObject({ code: 'EINVAL', request: 'SOURCE turn/s100/.snapshot' });
      await expect(groups[200].ready).rejects.toMatchObject({ code: 'ENOENT', request: 'VALUES turn/s200/.snapshot' });
      await expect(groups[299].ready).resolves.toBeUndefined();
      await expect(c.flush()).rejects.toMatchObject({ code: 'EINVAL', request: 'SOURCE turn/s100/.snapshot' });
      // in the order of the requests: every source, then every group
      expect(errors.map((e) => `${e.code} ${e.request}`)).toEqual([
        'EINVAL SOURCE turn/s100/.snapshot',
        'EINVAL SOURCE turn/s200/.snapshot',
        'ENOENT VALUES turn/s100/.snapshot',
        'ENOENT VALUES turn/s200/.snapshot',
      ]);
      // the refused groups' values throw instead of spoiling a batch; the others were applied, and mirrored
      expect(() => groups[100].add('n', 1)).toThrow(/refused/);
      expect(groups[5].get('n')).toBe(5);
      expect(deep.get('n')).toBe(1000);
      const sum = (299 * 300) / 2 - 100 - 200 + 1000;
      expect(sh(`cat ${m}/turn/n ${m}/turn/s5/n ${m}/turn/s7/deep/n`).stdout).toBe(`${sum}\n5\n1000\n`);
      expect(sh(`ls ${m}/turn | grep -c '^s'`).stdout).toBe('298\n');
      // updates made after the acknowledgements: mirrored only once the daemon applied them
      groups[5].add('n', 2);
      expect(groups[5].get('n')).toBe(5);
      await c.flush();
      expect(groups[5].get('n')).toBe(7);
      expect(sh(`cat ${m}/turn/s5/n`).stdout).toBe('7\n');
    } finally {
      await c.close();
    }
  });

  // hardening item 11: the snapshot files' names are refused wherever a name is made (they would shadow them)
  it('a producer cannot name a source or a value .snapshot, .snapshot.json or .snapshot.bin', () => {
    expect(statsfs('set app/hits 7').status).toBe(0);
    for (const name of ['.snapshot', '.snapshot.json', '.snapshot.bin']) {
      const asSource = statsfs(`set app/${name}/x 1`);
      expect(asSource.status).not.toBe(0);
      expect(asSource.stderr).toMatch(/EINVAL/);
      const asValue = statsfs(`set app/${name} 1`);
      expect(asValue.status).not.toBe(0);
      expect(asValue.stderr).toMatch(/EINVAL/);
    }
    // the snapshot files are still the snapshots
    expect(sh(`cat ${m}/app/.snapshot`).stdout).toBe('hits 7\n');
    expect(JSON.parse(sh(`cat ${m}/app/.snapshot.json`).stdout).count).toBe(1);
    expect(sh(`ls -A ${m}/app`).stdout).toBe('hits\n');
  });
});
