/**
 * Readers are served while a producer floods the real daemon, and a producer that sends faster than the daemon
 * applies is slowed down by the socket instead of piling up in the daemon's memory (issue 17, part 3). The
 * producer here is this test process talking the wire protocol (or the client library); the daemon is its own
 * process; the readers are ls and cat through the mount.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect } from '../../src/client/index.js';
import {
  FrameReader,
  HEADER_BYTES,
  Op,
  Reply,
  UPDATE_ENTRY_BYTES,
  UpdateOp,
  encodeDefine,
  encodeHello,
  encodeSource,
  encodeValues,
  writeHeader,
} from '../../src/protocol/protocol.js';
import { skipWithoutFuse, startDaemon, type Daemon } from '../helpers/mount.js';

const run = promisify(execFile);

/** Sources under fair/, each with one u64 counter c0; fair/ has its sum. */
const SOURCES = 100;
/** One-entry UPDATE frames in the flood: 16 MiB of them. */
const FLOOD_FRAMES = 1 << 19;
const FRAME_BYTES = HEADER_BYTES + 4 + UPDATE_ENTRY_BYTES;

/** A producer connection speaking the wire protocol: every reply is read, in order. */
class RawProducer {
  readonly socket: net.Socket;
  private readonly reader = new FrameReader();
  private nextId = 1;
  /** Replies so far: OK count, the errors, and whether ids came in the order sent. */
  ok = 0;
  readonly errors: string[] = [];
  inOrder = true;
  private lastId = 0;
  private waiting: { id: number; resolve: () => void } | null = null;

  constructor(path: string) {
    this.socket = net.createConnection(path);
    this.socket.on('data', (chunk: Buffer) =>
      this.reader.push(chunk, (frame) => {
        if (frame.id <= this.lastId) this.inOrder = false;
        this.lastId = frame.id;
        if (frame.op === Reply.OK) this.ok++;
        else this.errors.push(`${frame.id}: ${frame.buf.subarray(frame.start, frame.end).toString('latin1')}`);
        if (this.waiting !== null && frame.id >= this.waiting.id) this.waiting.resolve();
      }),
    );
  }

  id(): number {
    return this.nextId++;
  }

  /** Writes `frame` and waits for the socket to take more when it is backed up. */
  async send(frame: Buffer): Promise<void> {
    if (!this.socket.write(frame)) await new Promise((resolve) => this.socket.once('drain', resolve));
  }

  /** Resolves once the reply to the last frame sent has come. */
  replied(): Promise<void> {
    const id = this.nextId - 1;
    if (this.lastId >= id) return Promise.resolve();
    return new Promise((resolve) => (this.waiting = { id, resolve }));
  }
}

/** `count` one-entry UPDATE frames adding 1 to c0 of the sources in turn (group handle 2 + i), ids from `id()`. */
function floodFrames(count: number, id: () => number): Buffer {
  const buf = Buffer.alloc(count * FRAME_BYTES);
  for (let k = 0, at = 0; k < count; k++, at += FRAME_BYTES) {
    writeHeader(buf, at, Op.UPDATE, id(), 4 + UPDATE_ENTRY_BYTES);
    buf.writeUInt32LE(1, at + HEADER_BYTES);
    const entry = at + HEADER_BYTES + 4;
    buf.writeUInt32LE(2 + (k % SOURCES), entry);
    buf.writeUInt32LE(0 | (UpdateOp.ADD << 16), entry + 4);
    buf.writeUInt32LE(1, entry + 8);
  }
  return buf;
}

describe.skipIf(skipWithoutFuse)('fairness: readers and a flooding producer on the real daemon', { timeout: 120_000 }, () => {
  let d: Daemon | undefined;
  beforeAll(async () => void (d = await startDaemon(['--no-collectors'])));
  afterAll(() => d?.cleanup());
  /** The mount and the producer socket beside it. */
  const where = () => ({ m: d!.mountpoint, socket: join(d!.mountpoint, '..', 'producers.sock') });

  const stat = async (name: string) => Number(await readFile(join(where().m, 'statsfs/producers', name), 'utf8'));

  it('ls and cat complete and are right while a producer floods; the producer is throttled, the backlog stays bounded; every frame is applied, in order', async () => {
    const { m, socket } = where();
    const p = new RawProducer(socket);
    await p.send(encodeHello(p.id()));
    await p.send(encodeDefine(p.id(), 1, [{ name: 'c0', type: 'u64', aggr: 'sum' }]));
    await p.send(encodeSource(p.id(), 1, 0, 'fair'));
    await p.send(encodeValues(p.id(), 1, 1, 1, { aggregate: true }));
    for (let i = 0; i < SOURCES; i++) {
      await p.send(encodeSource(p.id(), 2 + i, 1, `s${i}`));
      await p.send(encodeValues(p.id(), 2 + i, 2 + i, 1));
    }
    await p.replied();
    expect(p.errors).toEqual([]);
    const throttledBefore = await stat('throttled');

    const flood = floodFrames(FLOOD_FRAMES, () => p.id());
    let sent = false;
    const sending = (async () => {
      // in pieces, as a program writing in a loop would, waiting whenever the socket pushes back
      for (let at = 0; at < flood.length; at += 1 << 16) await p.send(flood.subarray(at, at + (1 << 16)));
      sent = true;
    })();
    // while the frames go in: the backlog the daemon holds, and readers through the mount
    let maxBacklog = 0;
    const sampling = (async () => {
      while (!sent) {
        maxBacklog = Math.max(maxBacklog, await stat('backlog'));
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const ls = await run('ls', ['-R', join(m, 'fair')], { maxBuffer: 1 << 20 });
    const cat = await run('cat', [join(m, 'fair/c0')]);
    expect(ls.stdout.split('\n').filter((l) => /\/s\d+:$/.test(l))).toHaveLength(SOURCES);
    expect(ls.stdout).toContain('\nc0\n');
    expect(cat.stdout).toMatch(/^\d+\n$/);
    expect(Number(cat.stdout)).toBeLessThanOrEqual(FLOOD_FRAMES);

    await sending;
    await sampling;
    await p.replied();
    expect(p.errors).toEqual([]);
    expect(p.inOrder).toBe(true);
    expect(p.ok).toBe(4 + 2 * SOURCES + FLOOD_FRAMES);
    expect((await run('cat', [join(m, 'fair/c0')])).stdout).toBe(`${FLOOD_FRAMES}\n`);
    // frame k added 1 to source k % SOURCES
    expect((await run('cat', [join(m, 'fair/s7/c0')])).stdout).toBe(`${Math.floor((FLOOD_FRAMES - 1 - 7) / SOURCES) + 1}\n`);
    // the daemon stopped reading rather than hold what it could not apply yet: far less than was sent
    expect(await stat('throttled')).toBeGreaterThan(throttledBefore);
    expect(maxBacklog).toBeLessThan(1 << 20);
    expect(await stat('backlog')).toBe(0);
    p.socket.destroy();
  });

  it('a client flooding in batches: flush() resolves once every update it sent is applied', async () => {
    const { m, socket } = where();
    const client = await connect({ path: socket, reconnect: false });
    try {
      const schema = client.define([{ name: 'n', type: 'u64', aggr: 'sum' }]);
      const counters = Array.from({ length: 50 }, (_, i) => client.source(`batched/s${i}`).values(schema).counter('n'));
      client.source('batched').aggregates(schema);
      // the creations leave at the end of this turn (one write): ls must not look before the daemon has them
      await client.flush();
      const rounds = 40;
      const perRound = 20_000;
      const reading = run('ls', ['-lR', join(m, 'batched')]);
      for (let r = 0; r < rounds; r++) {
        for (let k = 0; k < perRound; k++) counters[k % counters.length].add(1);
        await new Promise((resolve) => setImmediate(resolve));
      }
      await client.flush();
      expect((await run('cat', [join(m, 'batched/n')])).stdout).toBe(`${rounds * perRound}\n`);
      expect((await reading).stdout).toContain('s49:');
    } finally {
      await client.close();
    }
  });
});
