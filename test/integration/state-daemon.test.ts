/**
 * The state directory with the real daemon: what `statsfs set/add` kept, StatsD metrics, a producer's kept
 * values and the clears of all of them (a kernel counter's baseline included) are exact after SIGTERM and a
 * restart; a producer that reconnects follows the daemon; kill -9 at random moments during continuous updates
 * never corrupts the state nor loses what was acknowledged before the last durable point; a corrupt state
 * file is moved aside with one log line, and one of a newer format is refused.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { freeUdpPort } from '../helpers/ports.js';
import { BIN, ROOT, sh, skipWithoutFuse, startDaemon, tempDir, waitFor, type Daemon } from '../helpers/mount.js';

async function sendUdp(port: number, text: string): Promise<void> {
  const socket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => socket.send(text, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
  socket.close();
}

const cat = (path: string): string => readFileSync(path, 'utf8').trim();

/** lo's received bytes as the kernel counts them (/proc/net/dev). */
function loRxBytes(): bigint {
  const line = readFileSync('/proc/net/dev', 'utf8')
    .split('\n')
    .find((l) => l.trim().startsWith('lo:'))!;
  return BigInt(line.split(':')[1].trim().split(/\s+/)[0]);
}

/** A producer in another Node process (the client library), reading commands from stdin. */
function producer(socket: string, body: string): ChildProcess {
  return spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `import { connect } from 'statsfs/client';
       const socket = ${JSON.stringify(socket)};
       ${body}`,
    ],
    { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] },
  );
}

/**
 * The stdout lines of `child`, read once (a second reader would pause the stream when closed, and a child
 * blocked on a full pipe hangs): every line seen, and the first one to come that matches.
 */
function linesOf(child: ChildProcess): { seen: string[]; next(match: RegExp): Promise<string> } {
  const seen: string[] = [];
  const waiting: { match: RegExp; resolve: (line: string) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    seen.push(line);
    const i = waiting.findIndex((w) => w.match.test(line));
    if (i >= 0) waiting.splice(i, 1)[0].resolve(line);
  });
  return {
    seen,
    next: (match) =>
      new Promise((resolve, reject) => {
        waiting.push({ match, resolve });
        child.once('exit', (code) => reject(new Error(`producer exited (${code}) before printing ${match}`)));
      }),
  };
}

describe.skipIf(skipWithoutFuse)('state across restarts in the real daemon', { timeout: 300_000 }, () => {
  const daemons: Daemon[] = [];
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) c.kill('SIGKILL');
  });
  afterAll(() => {
    for (const d of daemons) d.cleanup();
  });

  /** A daemon on `mnt` with its state in `state`; stopped ones are left for the next start on the same mountpoint. */
  async function start(mnt: string, state: string, args: string[] = []): Promise<Daemon> {
    const d = await startDaemon(['--no-collectors', '--state-dir', state, '--socket', join(state, '..', 'p.sock'), ...args], mnt);
    daemons.push(d);
    return d;
  }

  it('set/add, StatsD, a producer and clears (a kernel counter too) are exact after SIGTERM and a restart', async () => {
    const dir = tempDir();
    const mnt = join(dir, 'mnt');
    const state = join(dir, 'state');
    const sock = join(dir, 'p.sock');
    const port = await freeUdpPort();
    const args = ['--statsd', `127.0.0.1:${port}`, '--collectors', 'net'];
    let d = await start(mnt, state, args);
    const statsfs = (cmd: string) => sh(`node ${BIN} ${cmd} --socket ${sock}`);
    expect(statsfs('set app/x 18446744073709551615').status).toBe(0);
    expect(statsfs('set app/g -42 --type s64 --floating').status).toBe(0);
    expect(statsfs('add app/hits 5').status).toBe(0);
    expect(statsfs('add app/hits 5').status).toBe(0);
    expect(sh(`echo 0 > ${mnt}/app/hits`).status).toBe(0);
    expect(statsfs('add app/hits 3').status).toBe(0);
    await sendUdp(port, 'web.req:7|c\nweb.temp:-7|g\nweb.lat:12|ms\nweb.lat:30|ms\nweb.size:1.5|h');
    await waitFor('the StatsD lines', () => cat(`${mnt}/statsfs/statsd/applied`) === '5');
    expect(sh(`echo 0 > ${mnt}/web/req`).status).toBe(0);
    await sendUdp(port, 'web.req:2|c');
    await waitFor('the StatsD counter', () => cat(`${mnt}/web/req`) === '2');
    // a producer that keeps: its counter, cleared through the mount while it is connected
    const p = producer(
      sock,
      `const { createInterface } = await import('node:readline');
       const c = await connect({ socket, owner: 'prod', keep: true, reconnect: { minDelayMs: 20, maxDelayMs: 100 } });
       const n = c.counter('prod/c');
       n.add(10);
       await c.flush();
       console.log('added', n.value);
       createInterface({ input: process.stdin }).on('line', async () => {
         n.add(1);
         await c.flush();
         console.log('after', n.value);
       });`,
    );
    children.push(p);
    const out = linesOf(p);
    expect(await out.next(/^added /)).toBe('added 10');
    expect(sh(`echo 0 > ${mnt}/prod/c`).status).toBe(0);
    const lat = { count: cat(`${mnt}/web/lat/count`), p50: cat(`${mnt}/web/lat/p50_us`), sum: cat(`${mnt}/web/lat/sum_us`), buckets: cat(`${mnt}/web/lat/buckets`) };
    const size = cat(`${mnt}/web/size/sum`);
    const rawAtClear = loRxBytes();
    expect(sh(`echo 0 > ${mnt}/net/lo/rx_bytes`).status).toBe(0);

    expect(await d.stop()).toEqual({ code: 0, signal: null });
    d = await start(mnt, state, args);
    expect(cat(`${mnt}/app/x`)).toBe('18446744073709551615');
    expect(cat(`${mnt}/app/g`)).toBe('-42');
    expect(cat(`${mnt}/app/hits`)).toBe('3');
    expect(cat(`${mnt}/web/req`)).toBe('2');
    expect(cat(`${mnt}/web/temp`)).toBe('-7');
    expect({ count: cat(`${mnt}/web/lat/count`), p50: cat(`${mnt}/web/lat/p50_us`), sum: cat(`${mnt}/web/lat/sum_us`), buckets: cat(`${mnt}/web/lat/buckets`) }).toEqual(lat);
    expect(lat.count).toBe('2');
    expect(cat(`${mnt}/web/size/sum`)).toBe(size);
    // the clear of lo's counter outlived the restart: it counts from the clear, not from the boot
    const rx = BigInt(cat(`${mnt}/net/lo/rx_bytes`));
    expect(rx).toBeLessThanOrEqual(loRxBytes() - rawAtClear);
    // the producer reconnected and follows the daemon: the clear stays, its next add counts from it
    p.stdin!.write('add\n');
    expect(await out.next(/^after /)).toBe('after 1');
    expect(cat(`${mnt}/prod/c`)).toBe('1');
    // so does a shell command
    expect(statsfs('add app/hits 1').status).toBe(0);
    expect(cat(`${mnt}/app/hits`)).toBe('4');
    expect(Number(cat(`${mnt}/statsfs/state/checkpoints`))).toBeGreaterThanOrEqual(0);
    expect(cat(`${mnt}/statsfs/state/corrupt_moved_aside`)).toBe('0');
    // a clean stop writes the last checkpoint
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    d = await start(mnt, state, args);
    expect(cat(`${mnt}/app/hits`)).toBe('4');
    expect(cat(`${mnt}/prod/c`)).toBe('1');
    await d.stop();
  });

  it('kill -9 at random moments while a producer sets a counter: no corrupt state, nothing acknowledged before the durable point lost', async () => {
    const dir = tempDir();
    const mnt = join(dir, 'mnt');
    const state = join(dir, 'state');
    const sock = join(dir, 'p.sock');
    let last = 0; // the value the state holds after the previous round
    let replayed = 0; // journal records replayed by the restarts
    for (let round = 0; round < 50; round++) {
      const d = await start(mnt, state);
      expect(d.stderr()).not.toMatch(/corrupt/);
      if (last > 0) expect(cat(`${mnt}/k/c`)).toBe(String(last));
      // sets c to last+1, last+2, … one acknowledged frame at a time, printing each acknowledged value and when
      const p = producer(
        sock,
        `const c = await connect({ socket, owner: 'k', keep: true, reconnect: false, onError: () => {} });
         const g = c.source('k').values(c.define([{ name: 'c', type: 'u64' }]));
         await c.flush();
         console.log('ready');
         for (let i = ${last + 1}; ; i++) {
           g.set('c', i);
           try { await c.flush(); } catch { break; }
           console.log('ack', i, Date.now());
         }
         await c.close().catch(() => {}); // then it exits once stdout is written (process.exit() could drop lines)`,
      );
      children.push(p);
      const out = linesOf(p);
      await out.next(/^ready$/);
      await new Promise((r) => setTimeout(r, 50 + Math.random() * 1500));
      d.child.kill('SIGKILL');
      await d.exited;
      await new Promise<void>((r) => (p.exitCode !== null ? r() : p.once('exit', () => r())));
      const acks = out.seen.flatMap((line) => {
        const m = /^ack (\d+) (\d+)$/.exec(line);
        return m ? [[Number(m[1]), Number(m[2])] as const] : [];
      });
      expect(acks.length).toBeGreaterThan(0);
      // what the restart will find: read the state file as the next daemon will
      const next = await start(mnt, state);
      // no checkpoint since the previous round: the previous state (or none) is what must load
      const loadedNow = /"savedAt":"([^"]+)","msg":"state loaded"/.exec(next.stderr());
      const savedAt = loadedNow === null ? 0 : Date.parse(loadedNow[1]);
      const v = existsSync(`${mnt}/k/c`) ? Number(cat(`${mnt}/k/c`)) : 0;
      const sent = acks[acks.length - 1][0] + 1; // at most one set in flight, never acknowledged
      expect(v).toBeLessThanOrEqual(sent);
      expect(v).toBeGreaterThanOrEqual(last);
      // everything acknowledged before the durable point is there (the checkpoint)…
      const durable = acks.filter(([, at]) => at < savedAt).map(([i]) => i);
      if (durable.length > 0) expect(v).toBeGreaterThanOrEqual(durable[durable.length - 1]);
      // …and everything acknowledged at all (the journal): a kill -9 loses nothing acknowledged
      expect(v).toBeGreaterThanOrEqual(acks[acks.length - 1][0]);
      replayed += Number(cat(`${mnt}/statsfs/state/journal_replayed`));
      next.child.kill('SIGKILL');
      await next.exited;
      last = v;
    }
    // what came after the checkpoints was replayed from the journal
    expect(replayed).toBeGreaterThan(0);
    expect(readdirSync(state).filter((f) => f.includes('corrupt'))).toEqual([]);
  });

  it('kill -9 right after sources are created beside a large kept state: every acknowledged source is there after a restart', async () => {
    const dir = tempDir();
    const mnt = join(dir, 'mnt');
    const state = join(dir, 'state');
    const sock = join(dir, 'p.sock');
    const d = await start(mnt, state);
    // 30,000 kept sources (a record of the whole kept state takes well over 5 ms), then new sources one
    // acknowledged frame at a time, each printed once acknowledged
    const p = producer(
      sock,
      `const c = await connect({ socket, owner: 'big', keep: true, reconnect: false, onError: () => {} });
       const schema = c.define([{ name: 'n', type: 'u64' }]);
       for (let i = 0; i < 30000; i++) c.source('big/s' + i).values(schema).set('n', i);
       await c.flush();
       console.log('ready');
       for (let i = 0; ; i++) {
         c.source('fresh/s' + i).values(schema).set('n', 1000 + i);
         try { await c.flush(); } catch { break; }
         console.log('ack', i);
       }
       await c.close().catch(() => {});`,
    );
    children.push(p);
    const out = linesOf(p);
    await out.next(/^ready$/);
    await out.next(/^ack 20$/);
    d.child.kill('SIGKILL');
    await d.exited;
    await new Promise<void>((r) => (p.exitCode !== null ? r() : p.once('exit', () => r())));
    const acked = out.seen.flatMap((line) => /^ack (\d+)$/.exec(line)?.[1] ?? []).map(Number);
    expect(acked.length).toBeGreaterThan(20);
    const next = await start(mnt, state);
    expect(existsSync(`${mnt}/fresh`)).toBe(true);
    const fresh = readdirSync(`${mnt}/fresh`);
    for (const i of acked) expect(fresh).toContain(`s${i}`);
    expect(cat(`${mnt}/fresh/s${acked[acked.length - 1]}/n`)).toBe(String(1000 + acked[acked.length - 1]));
    expect(cat(`${mnt}/big/s29999/n`)).toBe('29999');
    expect(readdirSync(`${mnt}/big`)).toHaveLength(30000);
    await next.stop();
  });

  it('a truncated or garbage state file: one log line, moved aside, a clean start; a newer format is refused', async () => {
    const dir = tempDir();
    const mnt = join(dir, 'mnt');
    const state = join(dir, 'state');
    const sock = join(dir, 'p.sock');
    let d = await start(mnt, state);
    expect(sh(`node ${BIN} set app/x 5 --socket ${sock}`).status).toBe(0);
    await d.stop();
    const file = join(state, 'statsfs.state');
    const good = readFileSync(file);
    for (const bad of [good.subarray(0, good.length - 7), Buffer.from('garbage, not a state\n'), Buffer.concat([good.subarray(0, 30), Buffer.from('X'), good.subarray(31)])]) {
      writeFileSync(file, bad);
      d = await start(mnt, state);
      const lines = d.stderr().split('\n').filter((l) => l.includes('state file is corrupt'));
      expect(lines).toHaveLength(1);
      expect(readdirSync(state).filter((f) => f.startsWith('statsfs.state.corrupt-')).length).toBeGreaterThan(0);
      expect(readdirSync(mnt)).not.toContain('app');
      expect(cat(`${mnt}/statsfs/state/corrupt_moved_aside`)).toBe('1');
      expect(await d.stop()).toEqual({ code: 0, signal: null });
      await new Promise((r) => setTimeout(r, 5)); // a fresh moved-aside name
    }
    // a newer format: refused, the file left as it is
    const newer = Buffer.from(good);
    newer.writeUInt32LE(99, 8);
    writeFileSync(file, newer);
    const r = sh(`node ${BIN} mount ${mnt} --no-collectors --no-socket --state-dir ${state}`);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/written by a newer statsfs \(state format 99; this version reads format 1\)/);
    expect(readFileSync(file)).toEqual(newer);
  });

  it('a second daemon on the same state directory is refused while the first runs; the lock of a killed one is taken over', async () => {
    const dir = tempDir();
    const mnt = join(dir, 'mnt');
    const state = join(dir, 'state');
    const d = await start(mnt, state);
    const other = join(dir, 'other');
    mkdirSync(other);
    const r = sh(`node ${BIN} mount ${other} --no-collectors --no-socket --state-dir ${state}`);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`state directory ${state} is in use by another statsfs daemon (pid ${d.child.pid})`);
    expect(sh(`mountpoint -q ${other}`).status).not.toBe(0); // and it left nothing mounted
    // kill -9 leaves the lock behind, naming a process that is gone: the next daemon takes it over
    d.child.kill('SIGKILL');
    await d.exited;
    expect(readFileSync(join(state, 'statsfs.lock'), 'latin1')).toMatch(new RegExp(`^${d.child.pid} \\d+\n$`));
    const next = await start(mnt, state);
    expect(next.stderr()).toMatch(/taking over the lock of a daemon that is gone/);
    expect(readFileSync(join(state, 'statsfs.lock'), 'latin1')).toMatch(new RegExp(`^${next.child.pid} `));
    // a clean stop removes it
    expect(await next.stop()).toEqual({ code: 0, signal: null });
    expect(existsSync(join(state, 'statsfs.lock'))).toBe(false);
  });
});
