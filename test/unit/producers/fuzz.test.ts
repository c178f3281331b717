/**
 * Fuzz: more than 100,000 random and mutated frames from one connection (and a few hundred connections that
 * send raw garbage) while a well-behaved producer keeps publishing. Afterwards the server must still serve,
 * the good producer's values must be exactly what it published, and nothing of the fuzzer may remain.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { connect } from '../../../src/client/index.js';
import { Source } from '../../../src/model/index.js';
import {
  FrameReader,
  HEADER_BYTES,
  RemoveKind,
  decodeReply,
  encodeAttach,
  encodeDefine,
  encodeDetach,
  encodeFrame,
  encodeHello,
  encodePing,
  encodeRemove,
  encodeRemovePath,
  encodeSource,
  encodeUpdate,
  encodeValues,
  type WireValueSpec,
} from '../../../src/protocol/protocol.js';
import { ProducerServer } from '../../../src/producers/socket-server.js';
import { rng as prng } from '../../helpers/rng.js';

const FRAMES = 110_000;
const GARBAGE_CONNECTIONS = 300;
const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed1234);

const rand = prng(SEED);
const int = (n: number): number => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];

const NAMES = ['good', 'a', 'b', 'c', 'x', 'y', '..', '.', '', 'a/b', 'good/a', 'good/a/b', 'n'.repeat(99), 'n'.repeat(100), 'ü', 'a\u0001', 'sp ace', 'requests'];
const TYPES = ['u8', 's8', 'u16', 's16', 'u32', 's32', 'u64', 's64', 'bool'] as const;
const AGGRS = ['none', 'sum', 'min', 'max', 'count_zero', 'avg'] as const;
const handle = (): number => (rand() < 0.9 ? int(24) : int(2 ** 32));

function randomSpecs(): WireValueSpec[] {
  const n = 1 + int(4);
  const out: WireValueSpec[] = [];
  for (let i = 0; i < n; i++) {
    const spec: WireValueSpec = { name: rand() < 0.8 ? `v${int(6)}` : pick(NAMES), type: pick(TYPES), aggr: pick(AGGRS) };
    if (rand() < 0.3) spec.floating = true;
    if (rand() < 0.2) spec.mode = int(0o1000);
    if (rand() < 0.2) spec.unit = pick(['bytes', 'x\ny', '']);
    if (rand() < 0.2) spec.enum = ['off', 'on', pick(NAMES)].filter(Boolean);
    out.push(spec);
  }
  return out;
}

function randomValue(): number | bigint {
  switch (int(4)) {
    case 0:
      return int(1000);
    case 1:
      return -int(1000);
    case 2:
      return BigInt.asIntN(64, BigInt(int(2 ** 32)) << 32n | BigInt(int(2 ** 32)));
    default:
      return pick([0, -1, 2 ** 53 - 1, -(2 ** 53) + 1, 2n ** 63n, -(2n ** 63n), 2n ** 53n, -(2n ** 53n)]);
  }
}

/** A well-formed request of any kind, aimed at handles and paths likely to exist. */
function validFrame(id: number): Buffer {
  switch (int(10)) {
    case 0:
      return encodeDefine(id, handle(), randomSpecs());
    case 1:
    case 2:
      return encodeSource(id, handle(), rand() < 0.5 ? 0 : handle(), Array.from({ length: 1 + int(3) }, () => pick(NAMES)).join('/'), { hidden: rand() < 0.2, detached: rand() < 0.1 });
    case 3:
      return encodeValues(id, handle(), handle(), handle(), { hidden: rand() < 0.2, aggregate: rand() < 0.3 });
    case 4:
    case 5: {
      const entries = Array.from({ length: int(20) }, () => ({ group: handle(), index: int(5), op: int(3), value: randomValue() }));
      return encodeUpdate(id, entries);
    }
    case 6:
      return rand() < 0.5 ? encodeAttach(id, handle(), handle()) : encodeDetach(id, handle());
    case 7:
      return encodeRemove(id, int(4) === 3 ? RemoveKind.SOURCE : int(3), handle());
    case 8:
      return encodeRemovePath(id, Array.from({ length: 1 + int(3) }, () => pick(NAMES)).join('/'));
    default:
      return rand() < 0.5 ? encodePing(id) : encodeHello(id, { owner: 'good', keep: true });
  }
}

/** Mutates the body of a frame but keeps its length field true, so the framing survives. */
function mutate(frame: Buffer, id: number): Buffer {
  let body = Buffer.from(frame.subarray(4));
  const kind = int(7);
  if (kind === 0) {
    for (let i = 1 + int(4); i > 0; i--) body[int(body.length)] ^= 1 << int(8);
  } else if (kind === 1) {
    for (let i = 1 + int(4); i > 0; i--) body[int(body.length)] = int(256);
  } else if (kind === 2 && body.length > 8) {
    body = body.subarray(0, 8 + int(body.length - 8)); // truncated payload
  } else if (kind === 3) {
    body = Buffer.concat([body, Buffer.from(Array.from({ length: 1 + int(40) }, () => int(256)))]);
  } else if (kind === 4) {
    body[1] = int(256); // opcode
  } else if (kind === 5) {
    body[0] = int(4); // version
    body[2] = int(2) ? 0 : int(256); // flags
  } else {
    body = Buffer.concat([body.subarray(0, 8), Buffer.from(Array.from({ length: int(64) }, () => int(256)))]); // random payload
  }
  const out = Buffer.allocUnsafe(4 + body.length);
  out.writeUInt32LE(body.length, 0);
  body.copy(out, 4);
  out.writeUInt32LE(id, 8); // the id stays ours, to match replies
  return out;
}

it(`survives ${FRAMES} random and mutated frames while another producer works (seed ${SEED})`, { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'statsfs-fuzz-'));
  const sock = join(dir, 'fuzz.sock');
  const root = Source.root();
  const server = new ProducerServer(root, { path: sock, maxFrameBytes: 64 * 1024, maxSourcesPerConnection: 2000, maxHandlesPerConnection: 10_000, maxValuesPerConnection: 100_000 });
  await server.listen();
  try {
    // --- the good producer: publishes continuously, the test keeps its own account
    const goodErrors: Error[] = [];
    const good = await connect({ socket: sock, owner: 'good', flushIntervalMs: 1, onError: (e) => goodErrors.push(e) });
    const schema = good.define([{ name: 'requests', aggr: 'sum' }, { name: 'level', type: 's64', floating: true }, { name: 'small', type: 'u8' }]);
    const top = good.source('good');
    top.aggregates(schema);
    const groups = ['a', 'b', 'c'].map((n) => top.source(n).values(schema));
    const expected = groups.map(() => ({ requests: 0n, level: 0n, small: 0 }));
    let running = true;
    let rounds = 0;
    const work = (): void => {
      for (let k = 0; k < 50; k++) {
        const i = rounds % 3;
        groups[i].add('requests', 3);
        expected[i].requests += 3n;
        const level = BigInt(rounds) * 1_000_000_007n - 5n;
        groups[i].set('level', level);
        expected[i].level = level;
        groups[i].add('small', 7);
        expected[i].small = (expected[i].small + 7) % 256;
        rounds++;
      }
      if (running) setImmediate(work);
    };
    await good.flush();
    setImmediate(work);

    // --- the fuzzer: valid HELLO, then frames whose framing holds; every one must be answered
    const fz = net.connect(sock);
    await new Promise<void>((resolve, reject) => fz.once('connect', resolve).once('error', reject));
    let replies = 0;
    let errors = 0;
    let lastId = 0;
    let outOfOrder = 0;
    const reader = new FrameReader(1 << 20);
    fz.on('data', (chunk: Buffer) =>
      reader.push(chunk, (f) => {
        const r = decodeReply(f);
        if (r.id !== lastId + 1) outOfOrder++;
        lastId = r.id;
        replies++;
        if (!r.ok) errors++;
      }),
    );
    let fuzzClosed = false;
    fz.on('close', () => (fuzzClosed = true));
    fz.write(encodeHello(1, {}));
    let id = 1;
    const seeds: Buffer[] = [];
    while (id <= FRAMES) {
      const chunk: Buffer[] = [];
      for (let i = 0; i < 1000 && id <= FRAMES; i++) {
        id++;
        let frame: Buffer;
        const r = rand();
        if (r < 0.3 || seeds.length < 50) frame = validFrame(id);
        else if (r < 0.95) frame = mutate(pick(seeds), id);
        else frame = encodeFrame(int(256), id, Buffer.from(Array.from({ length: int(100) }, () => int(256))), 1);
        if (seeds.length < 500) seeds.push(frame);
        else if (rand() < 0.01) seeds[int(seeds.length)] = frame;
        chunk.push(frame);
      }
      fz.write(Buffer.concat(chunk));
      // keep at most a few chunks in flight, so the good producer gets its turns
      while (replies < id - 1 - 3000 && !fuzzClosed) await new Promise((r) => setTimeout(r, 1));
    }
    await (async () => {
      const end = Date.now() + 20_000;
      while (replies < id && !fuzzClosed && Date.now() < end) await new Promise((r) => setTimeout(r, 2));
    })();
    expect(fuzzClosed).toBe(false);
    expect(replies).toBe(id); // HELLO + every frame, each answered once
    expect(outOfOrder).toBe(0);
    expect(errors).toBeGreaterThan(FRAMES / 2);
    expect(errors).toBeLessThan(FRAMES); // some requests did something

    // --- garbage on fresh connections: random lengths (huge, tiny) and bytes; closed or answered, never a crash
    for (let c = 0; c < GARBAGE_CONNECTIONS; c++) {
      const g = net.connect(sock);
      g.on('error', () => undefined);
      const bytes = Buffer.from(Array.from({ length: 4 + int(200) }, () => int(256)));
      if (c % 3 === 0) bytes.writeUInt32LE(int(2 ** 32), 0);
      if (c % 3 === 1 && bytes.length >= HEADER_BYTES) Buffer.concat([encodeHello(1), bytes]).copy(bytes);
      g.end(rand() < 0.5 ? bytes : Buffer.concat([encodeHello(1), bytes]));
      g.resume(); // read the server's replies and its end
      await new Promise<void>((resolve) => {
        g.once('close', () => resolve());
        setTimeout(() => {
          g.destroy();
          resolve();
        }, 2000).unref();
      });
    }

    // --- afterwards: the good producer's values are exact, the server serves, the fuzzer leaves nothing
    running = false;
    await new Promise((r) => setImmediate(r)); // the last round already scheduled
    await good.flush();
    expect(rounds).toBeGreaterThan(1000);
    expect(goodErrors).toEqual([]);
    for (const [i, n] of ['a', 'b', 'c'].entries()) {
      const src = root.subordinate('good')!.subordinate(n)!;
      expect(src.getValue('requests')).toBe(expected[i].requests);
      expect(src.getValue('level')).toBe(expected[i].level);
      expect(src.getValue('small')).toBe(BigInt(expected[i].small));
    }
    expect(root.subordinate('good')!.getValue('requests')).toBe(expected.reduce((s, e) => s + e.requests, 0n));
    fz.end();
    await new Promise<void>((resolve) => (fuzzClosed ? resolve() : fz.once('close', () => resolve())));
    const late = await connect({ socket: sock });
    late.counter('late/n').add(1);
    await late.flush();
    await late.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(root.subordinates.map((s) => s.name)).toEqual(['good']);
    expect(root.subordinate('good')!.subordinates.map((s) => s.name)).toEqual(['a', 'b', 'c']);
    expect(server.stats.connections).toBe(1);
    await good.close();
  } finally {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
