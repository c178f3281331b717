/**
 * Histograms over the producer protocol (version 3): the client's observe(), OBSERVE and WEIGHT entries in
 * UPDATE (atomic with the rest of the frame), and the errors of each misuse.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connect, type StatsClient } from '../../../src/client/index.js';
import { Source } from '../../../src/model/index.js';
import {
  decodeReply,
  encodeDefine,
  encodeHello,
  encodeSource,
  encodeUpdate,
  encodeValues,
  FrameReader,
  UpdateOp,
  type DecodedReply,
} from '../../../src/protocol/protocol.js';
import { ProducerServer } from '../../../src/producers/socket-server.js';

let dir: string;
let sock: string;
let root: Source;
let server: ProducerServer;
const clients: StatsClient[] = [];

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'statsfs-hist-'));
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

/** Sends raw frames on a fresh connection and returns the replies, in order. */
async function raw(frames: Buffer[]): Promise<DecodedReply[]> {
  const socket = net.connect(sock);
  const reader = new FrameReader();
  const replies: DecodedReply[] = [];
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (chunk) => {
      reader.push(chunk, (f) => replies.push(decodeReply(f)));
      if (replies.length === frames.length) resolve();
    });
    socket.on('error', reject);
    socket.write(Buffer.concat(frames));
  });
  socket.destroy();
  return replies;
}

const f64 = (v: number): bigint => {
  const b = Buffer.alloc(8);
  b.writeDoubleLE(v);
  return b.readBigInt64LE();
};

describe('histograms over the producer socket', () => {
  it('the client observes, with counts; a parent aggregate merges both producers', async () => {
    const a = await connect({ socket: sock, owner: 'a' });
    const b = await connect({ socket: sock, owner: 'b' });
    clients.push(a, b);
    const specs = [
      { name: 'requests', aggr: 'sum' as const },
      { name: 'latency', type: 'histogram' as const, unit: 'ms', aggr: 'sum' as const },
    ];
    const sa = a.define(specs);
    a.source('api').aggregates(sa);
    const va = a.source('api/a').values(sa);
    const vb = b.source('b').values(b.define(specs));
    for (let i = 1; i <= 1000; i++) va.observe('latency', i / 10);
    va.observe('latency', 0, 5);
    va.observe('latency', 7, 2n ** 40n);
    va.add('requests', 3);
    vb.observe('latency', 1e6);
    await a.flush();
    await b.flush();
    const h = root.subordinate('api')!.subordinate('a')!.findValue('latency')!;
    const hist = h.group.histogram('latency');
    expect(hist.count).toBe(1005n + 2n ** 40n);
    expect(hist.zeroCount).toBe(5n);
    expect(hist.max).toBe(100);
    expect(va.get('latency')).toBe(1005 + 2 ** 40); // the mirror of a histogram is its count
    expect(root.subordinate('api')!.getValue('latency')).toBe(1005n + 2n ** 40n);
    expect(root.subordinate('api')!.getValue('requests')).toBe(3n);
    expect(() => va.set('latency', 1)).toThrow(/observe/);
    expect(() => va.observe('requests', 1)).toThrow(/not a histogram/);
    expect(() => va.observe('latency', -1)).toThrow(RangeError);
    expect(() => va.observe('latency', NaN)).toThrow(RangeError);
  });

  it('refuses misuse with EINVAL and applies nothing of the frame', async () => {
    const def = [{ name: 'n', type: 'u64' as const }, { name: 'h', type: 'histogram' as const, aggr: 'sum' as const }];
    const setup = [encodeHello(1, { owner: 'p' }), encodeDefine(2, 1, def), encodeSource(3, 1, 0, 'p'), encodeValues(4, 1, 1, 1)];
    const entry = (op: number, value: bigint, index = 1) => ({ group: 1, index, op, value });
    const replies = await raw([
      ...setup,
      encodeUpdate(5, [entry(UpdateOp.ADD, 1n, 0), entry(UpdateOp.OBSERVE, f64(-1))]),
      encodeUpdate(6, [entry(UpdateOp.ADD, 1n, 0), entry(UpdateOp.OBSERVE, f64(NaN))]),
      encodeUpdate(7, [entry(UpdateOp.WEIGHT, 3n)]),
      encodeUpdate(8, [entry(UpdateOp.WEIGHT, 3n), entry(UpdateOp.OBSERVE, f64(1), 0)]),
      encodeUpdate(9, [entry(UpdateOp.ADD, 1n)]),
      encodeUpdate(10, [entry(UpdateOp.OBSERVE, f64(1), 0)]),
      encodeUpdate(11, [
        entry(UpdateOp.ADD, 2n, 0),
        entry(UpdateOp.WEIGHT, 3n),
        entry(UpdateOp.OBSERVE, f64(2.5)),
        entry(UpdateOp.OBSERVE, f64(0)),
        entry(UpdateOp.WEIGHT, 0n), // observed no times: changes nothing, max included
        entry(UpdateOp.OBSERVE, f64(1e9)),
      ]),
    ]);
    expect(replies.slice(0, 4).every((r) => r.ok)).toBe(true);
    expect(replies.slice(4, 10).map((r) => r.code)).toEqual(['EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'EINVAL']);
    expect(replies[6].message).toMatch(/WEIGHT must be followed by an OBSERVE/);
    expect(replies[10].ok).toBe(true);
    const g = root.subordinate('p')!.findValue('h')!.group;
    expect(g.get('n')).toBe(2n);
    const h = g.histogram('h');
    expect([h.count, h.zeroCount, h.sum, h.max]).toEqual([4n, 1n, 7.5, 2.5]);
  });

  it('a histogram counts as 64 values against the values cap', async () => {
    const small = new ProducerServer(Source.root(), { path: join(dir, 'small.sock'), maxValuesPerConnection: 130 });
    await small.listen();
    try {
      const c = await connect({ socket: join(dir, 'small.sock'), reconnect: false });
      clients.push(c);
      const schema = c.define([{ name: 'n' }, { name: 'h', type: 'histogram' }]); // 1 + 64
      c.source('x').values(schema);
      c.source('y').values(schema);
      const third = c.source('z').values(schema);
      await expect(third.ready).rejects.toMatchObject({ code: 'EDQUOT' });
    } finally {
      for (const c of clients.splice(0)) await c.close();
      await small.close();
    }
  });

  it('a version 2 connection cannot define histograms', async () => {
    const define = encodeDefine(2, 1, [{ name: 'h', type: 'histogram' }]);
    define[4] = 2; // the header's version: what this connection negotiated
    const replies = await raw([encodeHello(1, { owner: 'old', minVersion: 1, maxVersion: 2 }), define]);
    expect(replies[1].code).toBe('EINVAL');
    expect(replies[1].message).toMatch(/version 3/);
  });
});
