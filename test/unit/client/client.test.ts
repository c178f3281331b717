import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { waitFor } from '../../helpers/wait.js';
import { connect, StatsClientError, type StatsClient } from '../../../src/client/index.js';
import { Source } from '../../../src/model/index.js';
import { SHELL_COMMANDS, parseInteger, shellCommand } from '../../../src/client/shell.js';
import { ProducerServer } from '../../../src/producers/socket-server.js';

let dir: string;
let sock: string;
let root: Source;
let server: ProducerServer;
const clients: StatsClient[] = [];

async function client(options: Parameters<typeof connect>[0] = {}): Promise<StatsClient> {
  const c = await connect({ socket: sock, ...options });
  clients.push(c);
  return c;
}

function at(path: string): Source | undefined {
  let s: Source | undefined = root;
  for (const p of path.split('/')) s = s?.subordinate(p);
  return s;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'statsfs-client-'));
  sock = join(dir, 'p.sock');
  root = Source.root();
  server = new ProducerServer(root, { path: sock });
  await server.listen();
});

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('client library', () => {
  it('defines, creates sources and publishes counters and gauges', async () => {
    const c = await client();
    const schema = c.define([
      { name: 'requests', aggr: 'sum' },
      { name: 'queue', type: 'u32', floating: true },
      { name: 'state', type: 'u8', floating: true, enum: ['idle', 'busy'] },
    ]);
    const app = c.source('myapp');
    app.aggregates(schema);
    const a = app.source('web/a').values(schema);
    const b = app.source('web/b').values(schema);
    const requests = a.counter('requests');
    requests.add();
    requests.add(41);
    b.add('requests', 2n ** 60n);
    a.gauge('queue').set(17);
    a.set('state', 1);
    await c.flush();
    await expect(schema.ready).resolves.toBeUndefined();
    expect(at('myapp/web/a')!.getValue('requests')).toBe(42n);
    expect(at('myapp')!.getValue('requests')).toBe(2n ** 60n + 42n);
    expect(at('myapp/web/a')!.getValue('queue')).toBe(17n);
    expect(at('myapp/web/a')!.findValue('state')!.group.render('state')).toBe('busy\n');
    expect(requests.value).toBe(42);
    // one-value conveniences
    const hits = c.counter('other/hits', { unit: 'requests' });
    const temp = c.gauge('other/temp', { type: 's16' });
    hits.add(3);
    temp.set(-5);
    await c.flush();
    expect(at('other')!.getValue('hits')).toBe(3n);
    expect(at('other')!.getValue('temp')).toBe(-5n);
    expect(at('other')!.findValue('temp')!.def.mode).toBe(0o444);
    expect(at('other')!.findValue('hits')!.def.unit).toBe('requests');
  });

  it('batches updates: many adds travel in few frames, sent on the interval without a flush', async () => {
    const c = await client({ flushIntervalMs: 20 });
    const values = c.source('batched').values(c.define([{ name: 'n' }]));
    await c.flush();
    const before = server.stats.frames;
    for (let i = 0; i < 10_000; i++) values.add('n', 1);
    await sleep(100); // no flush(): the interval sends it
    expect(at('batched')!.getValue('n')).toBe(10_000n);
    expect(server.stats.frames - before).toBeLessThanOrEqual(4); // 4096 per frame
    expect(server.stats.updates).toBeGreaterThanOrEqual(10_000);
  });

  it('sends every update in its own frame with batch: false', async () => {
    const c = await client({ batch: false });
    const values = c.source('unbatched').values(c.define([{ name: 'n' }]));
    await c.flush();
    const before = server.stats.frames;
    for (let i = 0; i < 100; i++) values.add('n', 1);
    await c.flush();
    expect(server.stats.frames - before).toBe(101); // and the PING of flush()
    expect(at('unbatched')!.getValue('n')).toBe(100n);
  });

  it('builds a tree in full UPDATE frames: creations go ahead of the batch, which is not cut at each group', async () => {
    const c = await client();
    const schema = c.define(Array.from({ length: 10 }, (_, k) => ({ name: `v${k}` })));
    await c.flush();
    const before = server.stats.frames;
    const groups = [];
    for (let i = 0; i < 1000; i++) {
      const g = c.source(`t/s${i}`).values(schema);
      for (let k = 0; k < 10; k++) g.set(k, i + k);
      groups.push(g);
    }
    const refused = c.source('t/s0/.snapshot'); // its answer comes before anyone asks for it
    await expect(c.flush()).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(refused.ready).rejects.toMatchObject({ code: 'EINVAL', request: 'SOURCE t/s0/.snapshot' });
    await expect(groups[999].ready).resolves.toBeUndefined();
    // 1,000 SOURCE, 1,000 VALUES, the refused SOURCE, 10,000 updates in frames of 4,096, and the PING of flush()
    expect(server.stats.frames - before).toBe(2001 + 3 + 1);
    expect(at('t/s999')!.getValue('v9')).toBe(1008n);
    expect(at('t')!.subordinates).toHaveLength(1000);
  });

  it('reports refused requests through ready, flush() and onError', async () => {
    const other = await client({ owner: 'other' });
    other.source('taken');
    await other.flush();
    const errors: StatsClientError[] = [];
    const c = await client({ onError: (e) => errors.push(e) });
    const src = c.source('taken');
    await expect(src.ready).rejects.toMatchObject({ code: 'EPERM' });
    await expect(c.flush()).rejects.toMatchObject({ code: 'EPERM', request: 'SOURCE taken' });
    expect(errors.map((e) => e.code)).toEqual(['EPERM']);
    await expect(c.flush()).resolves.toBeUndefined(); // reported once
    expect(() => c.define([])).toThrow(StatsClientError);
    const v = c.source('mine').values(c.define([{ name: 'x', type: 'u8' }]));
    expect(() => v.add('nope')).toThrow(/no value/);
    expect(() => v.set('x', 2 ** 60)).toThrow(/safe integer/);
  });

  it('removes what it created on close, unless it keeps it', async () => {
    const a = await client();
    a.counter('temp/n').add(1);
    await a.flush();
    expect(at('temp')).toBeDefined();
    await a.close();
    await waitFor('temp to be gone from the mirror', () => at('temp') === undefined, 5000);

    const b = await client({ owner: 'keeper', keep: true });
    b.counter('kept/n').add(1);
    await b.close();
    await sleep(30);
    expect(at('kept')!.getValue('n')).toBe(1n);
  });

  it('attaches, detaches and removes', async () => {
    const c = await client();
    const schema = c.define([{ name: 'v', aggr: 'sum' }]);
    const top = c.source('top');
    top.aggregates(schema);
    const loose = c.source('loose', { detached: true });
    loose.values(schema).set('v', 5);
    await c.flush();
    expect(at('loose')).toBeUndefined();
    await top.attach(loose);
    expect(at('top/loose')!.getValue('v')).toBe(5n);
    await loose.detach();
    expect(at('top/loose')).toBeUndefined();
    await top.attach(loose);
    await loose.remove();
    expect(at('top/loose')).toBeUndefined();
    expect(at('top')!.getValue('v')).toBe(0n);
    c.counter('top/x/y').add(1);
    await c.removePath('top/x');
    expect(at('top/x')).toBeUndefined();
  });

  it('reconnects after the daemon restarts and re-creates everything with its last values', async () => {
    const c = await client({ reconnect: { minDelayMs: 10, maxDelayMs: 50 } });
    const schema = c.define([{ name: 'requests', aggr: 'sum' }, { name: 'level', type: 's32', floating: true }]);
    const app = c.source('app');
    app.aggregates(schema);
    const web = app.source('web').values(schema);
    const hidden = app.source('shadow', { hidden: true }).values(schema);
    const loose = c.source('late', { detached: true });
    const lateValues = loose.values(schema);
    const later = c.source('zlater');
    await later.attach(loose).catch(() => undefined); // loose attached under a source created after it
    web.add('requests', 10);
    web.set('level', -3);
    hidden.add('requests', 5);
    lateValues.add('requests', 1);
    await c.flush();
    expect(at('app')!.getValue('requests')).toBe(15n);

    const disconnected = new Promise((r) => c.once('disconnect', r));
    await server.close(); // the daemon goes: everything of this client goes with it
    await disconnected;
    expect(c.connected).toBe(false);
    web.add('requests', 1); // while away: kept in the mirror
    root = Source.root();
    server = new ProducerServer(root, { path: sock });
    await server.listen();
    await new Promise((r) => c.once('connect', r));
    web.add('requests', 1);
    await c.flush();
    expect(at('app/web')!.getValue('requests')).toBe(12n);
    expect(at('app/web')!.getValue('level')).toBe(-3n);
    expect(at('app/shadow')).toBeUndefined();
    expect(at('app')!.getValue('requests')).toBe(17n); // hidden source re-created hidden
    expect(at('zlater/late')!.getValue('requests')).toBe(1n);
  });

  it('flush() waits for a reconnection; close() stops reconnecting', async () => {
    const c = await client({ reconnect: { minDelayMs: 10, maxDelayMs: 20 } });
    const n = c.counter('w/n');
    n.add(1);
    await c.flush();
    await server.close();
    await waitFor('the connection to drop', () => !c.connected, 5000);
    n.add(1);
    const flushed = c.flush();
    await sleep(50);
    server = new ProducerServer((root = Source.root()), { path: sock });
    await server.listen();
    await flushed;
    expect(at('w')!.getValue('n')).toBe(2n);
    await server.close();
    await waitFor('the connection to drop', () => !c.connected, 5000);
    const pending = c.flush();
    await c.close();
    await expect(pending).rejects.toMatchObject({ code: 'ENOTCONN' });
    server = new ProducerServer((root = Source.root()), { path: sock });
    await server.listen();
  });

  it('fails to connect with the socket path in the message', async () => {
    await expect(connect({ socket: join(dir, 'none.sock') })).rejects.toMatchObject({ code: 'ENOENT', message: expect.stringContaining('none.sock') });
  });

  it('takes the socket as `socket` (`path` is a deprecated alias) and refuses unknown options', async () => {
    const c = await client({ socket: sock });
    c.counter('opt/n').add(1);
    await c.flush();
    expect(at('opt')!.getValue('n')).toBe(1n);
    const old = await client({ path: sock, owner: 'old' });
    await old.flush();
    await expect(connect({ sokcet: sock } as never)).rejects.toThrow(TypeError);
    await expect(connect({ sokcet: sock } as never)).rejects.toThrow(/unknown option "sokcet"/);
    await expect(connect({ socket: sock, path: join(dir, 'other.sock') })).rejects.toThrow(TypeError);
  });

  it('says EBUSY, naming the cap, when the daemon refuses the connection', async () => {
    await server.close();
    server = new ProducerServer((root = Source.root()), { path: sock, maxConnections: 1 });
    await server.listen();
    await client();
    const refused = connect({ socket: sock, reconnect: false });
    await expect(refused).rejects.toMatchObject({ code: 'EBUSY' });
    await expect(refused).rejects.toThrow(/too many producer connections.*cap is 1/);
    await expect(refused).rejects.not.toThrow(/lost/);
  });

  it('keeps working while far more sources than the handles cap are created and removed', async () => {
    await server.close();
    server = new ProducerServer((root = Source.root()), { path: sock, maxHandlesPerConnection: 20 });
    await server.listen();
    const errors: StatsClientError[] = [];
    const c = await client({ onError: (e) => errors.push(e) });
    const schema = c.define([{ name: 'n' }]);
    for (let i = 0; i < 400; i++) {
      const src = c.source(`churn/s${i}`);
      src.source('below').values(schema).add('n', 1);
      src.values(schema).add('n', i);
      await c.flush();
      expect(at(`churn/s${i}`)!.getValue('n')).toBe(BigInt(i));
      if (i % 2 === 0) await src.remove();
      else await c.removePath(`churn/s${i}`);
    }
    await c.flush();
    expect(errors).toEqual([]);
    expect(at('churn')!.subordinates).toHaveLength(0);
  });

  it('reports a batch the daemon refused, and its mirror holds only what the daemon applied', async () => {
    const other = await client({ owner: 'other' });
    other.source('taken');
    await other.flush();
    const errors: StatsClientError[] = [];
    const c = await client({ onError: (e) => errors.push(e) });
    const schema = c.define([{ name: 'n', type: 'u8' }]);
    const good = c.source('mine').values(schema);
    const bad = c.source('taken').values(schema); // refused: the source is another producer's
    good.add('n', 5);
    bad.add('n', 1); // in the same batch: the daemon refuses the whole batch
    await expect(c.flush()).rejects.toMatchObject({ code: 'EPERM' });
    expect(at('mine')!.getValue('n')).toBe(0n);
    expect(good.get('n')).toBe(0); // not 5: the daemon did not apply it
    expect(errors.map((e) => e.request.split(' ')[0])).toEqual(['SOURCE', 'VALUES', 'UPDATE']);
    expect(errors[2].message).toMatch(/none applied/);
    expect(() => bad.add('n', 1)).toThrow(StatsClientError); // its values were refused: no more batches spoilt
    good.add('n', 300); // u8: the mirror wraps like the daemon's value
    good.add('n', 1);
    await c.flush();
    expect(at('mine')!.getValue('n')).toBe(45n);
    expect(good.get('n')).toBe(45);
  });

  it('adopts what the daemon kept on reconnect, so a clear made meanwhile stays cleared', async () => {
    const c = await client({ owner: 'app', keep: true, reconnect: { minDelayMs: 10, maxDelayMs: 50 } });
    const requests = c.counter('svc/requests');
    const level = c.gauge('svc/level', { type: 's32' });
    requests.add(5);
    level.set(-7);
    await c.flush();
    at('svc')!.findValue('requests')!.group.clear('requests'); // as `echo 0 > svc/requests` does
    const reconnected = new Promise((r) => c.once('connect', r));
    (c as unknown as { socket: import('node:net').Socket }).socket.destroy(); // the connection is lost
    await reconnected;
    requests.add(2);
    await c.flush();
    expect(at('svc')!.getValue('requests')).toBe(2n); // not 7: the clear survived
    expect(requests.value).toBe(2);
    expect(at('svc')!.getValue('level')).toBe(-7n);
  });
});

describe('shell commands', () => {
  let stderr: string[];
  beforeEach(() => {
    stderr = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      stderr.push(String(chunk));
      return true;
    });
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });

  it('set, add and rm publish values that outlive the command', async () => {
    expect(await shellCommand(['set', 'jobs/backup/bytes', '1500'], sock)).toBe(0);
    expect(await shellCommand(['add', 'jobs/backup/bytes', '500'], sock)).toBe(0);
    expect(await shellCommand(['add', '/jobs/backup/bytes/', '-1'], sock)).toBe(0);
    expect(at('jobs/backup')!.getValue('bytes')).toBe(1999n);
    expect(await shellCommand(['set', 'jobs/backup/temp', '-12', '--type', 's16', '--floating', '--unit', 'celsius'], sock)).toBe(0);
    expect(at('jobs/backup')!.getValue('temp')).toBe(-12n);
    expect(at('jobs/backup')!.findValue('temp')!.def.mode).toBe(0o444);
    expect(await shellCommand(['set', 'jobs/big', '0xffffffffffffffff'], sock)).toBe(0);
    expect(at('jobs')!.getValue('big')).toBe(2n ** 64n - 1n);
    // a different definition for an existing value
    expect(await shellCommand(['add', 'jobs/backup/temp', '1'], sock)).toBe(1);
    expect(stderr.join('')).toMatch(/EEXIST.*--type/);
    expect(await shellCommand(['rm', 'jobs/backup/temp'], sock)).toBe(0);
    expect(at('jobs/backup')!.findValue('temp')).toBeUndefined();
    expect(await shellCommand(['rm', 'jobs'], sock)).toBe(0);
    expect(at('jobs')).toBeUndefined();
    expect(stderr.filter((l) => !l.includes('EEXIST'))).toEqual([]);
  });

  it('cannot touch what another producer owns', async () => {
    const c = await client({ owner: 'app' });
    c.counter('app/n').add(1);
    await c.flush();
    expect(await shellCommand(['add', 'app/n', '1'], sock)).toBe(1);
    expect(await shellCommand(['rm', 'app'], sock)).toBe(1);
    expect(stderr.join('')).toMatch(/EPERM/);
    expect(at('app')!.getValue('n')).toBe(1n);
    // and a producer cannot touch what the shell made
    expect(await shellCommand(['set', 'fromshell/v', '1'], sock)).toBe(0);
    await expect(c.removePath('fromshell')).rejects.toMatchObject({ code: 'EPERM' });
  });

  it('exits 2 on usage errors and 1 when the daemon is not there', async () => {
    expect(await shellCommand(['set', 'a/b'], sock)).toBe(2);
    expect(await shellCommand(['set', 'a/b', 'x1'], sock)).toBe(2);
    expect(await shellCommand(['set', 'a/b', '1', '--type', 'u128'], sock)).toBe(2);
    expect(await shellCommand(['set', 'toplevel', '1'], sock)).toBe(2);
    expect(await shellCommand(['frob'], sock)).toBe(2);
    expect(await shellCommand(['set', 'a/b', '1', '--bogus'], sock)).toBe(2);
    expect(await shellCommand(['set', 'a/../b', '1'], sock)).toBe(1);
    expect(await shellCommand(['set', 'a/b', '1'], join(dir, 'none.sock'))).toBe(1);
    expect(stderr.join('')).toMatch(/is the daemon running/);
    expect(parseInteger('-0x10')).toBe(-16n);
    expect(parseInteger('18446744073709551615')).toBe(2n ** 64n - 1n);
    expect(SHELL_COMMANDS.map((c) => c.name)).toEqual(['set', 'add', 'rm']);
  });
});
