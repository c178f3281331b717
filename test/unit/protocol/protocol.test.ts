import { describe, expect, it } from 'vitest';
import {
  FrameReader,
  HEADER_BYTES,
  Op,
  ProtocolError,
  Reply,
  UpdateOp,
  UpdateWriter,
  decodeHelloOk,
  decodeReply,
  decodeRequest,
  defaultSocketPath,
  encodeAttach,
  encodeDefine,
  encodeDetach,
  encodeError,
  encodeFrame,
  encodeHello,
  encodeHelloOk,
  encodeOk,
  encodePing,
  encodeRemove,
  encodeRemovePath,
  encodeSource,
  encodeUpdate,
  encodeValues,
  updateEntries,
  wordValue,
  writeInt64,
  type Frame,
  type Request,
  type UpdateRequest,
} from '../../../src/protocol/protocol.js';

function frames(buf: Buffer, max?: number): Frame[] {
  const out: Frame[] = [];
  new FrameReader(max).push(buf, (f) => out.push(f));
  return out;
}

function one(buf: Buffer): Request {
  const f = frames(buf);
  expect(f).toHaveLength(1);
  return decodeRequest(f[0]);
}

describe('framing', () => {
  it('lays out the header little-endian: length, version, opcode, flags, id', () => {
    const f = encodePing(0x01020304);
    expect(f.toString('hex')).toBe('08000000' + '03' + '0a' + '0000' + '04030201');
    const [frame] = frames(f);
    expect(frame).toMatchObject({ version: 3, op: Op.PING, flags: 0, id: 0x01020304, start: 12, end: 12 });
  });

  it('reassembles frames split at every byte and several frames in one chunk', () => {
    const stream = Buffer.concat([encodePing(1), encodeSource(2, 5, 0, 'a/b'), encodeRemovePath(3, 'x')]);
    for (let step = 1; step <= stream.length; step++) {
      const reader = new FrameReader();
      const ids: number[] = [];
      for (let at = 0; at < stream.length; at += step) reader.push(stream.subarray(at, at + step), (f) => ids.push(f.id));
      expect(ids).toEqual([1, 2, 3]);
      expect(reader.buffered).toBe(0);
    }
  });

  it('refuses lengths below the header and above the limit before buffering them', () => {
    const short = Buffer.alloc(4);
    short.writeUInt32LE(7);
    expect(() => frames(short)).toThrow(ProtocolError);
    const big = Buffer.alloc(4);
    big.writeUInt32LE(1 << 30);
    try {
      frames(big, 1 << 20);
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ code: 'EMSGSIZE', fatal: true });
    }
    expect(frames(encodeSource(1, 1, 0, 'x'.repeat(100)), 12 + 4 + 4 + 1 + 2 + 100)).toHaveLength(1);
    expect(() => frames(encodeSource(1, 1, 0, 'x'.repeat(100)), 12 + 4 + 4 + 1 + 2 + 99)).toThrow(/exceeds/);
  });
});

describe('requests round-trip', () => {
  it('HELLO', () => {
    const buf = encodeHello(9, { owner: 'cron', keep: true, minVersion: 1, maxVersion: 3 });
    expect(one(buf)).toEqual({ op: Op.HELLO, minVersion: 1, maxVersion: 3, keep: true, owner: 'cron' });
    expect(one(encodeHello(1))).toEqual({ op: Op.HELLO, minVersion: 1, maxVersion: 3, keep: false, owner: '' });
  });

  it('DEFINE with every field', () => {
    const values = [
      { name: 'rx_bytes', type: 'u64' as const, aggr: 'sum' as const, unit: 'bytes', description: 'bytes received' },
      { name: 'temp', type: 's16' as const, aggr: 'max' as const, floating: true, mode: 0o440 },
      { name: 'state', type: 'u8' as const, aggr: 'none' as const, enum: ['down', 'up', 'ünïcode'] },
    ];
    expect(one(encodeDefine(1, 77, values))).toEqual({ op: Op.DEFINE, schema: 77, values });
  });

  it('SOURCE, ATTACH, DETACH, VALUES, REMOVE, REMOVE_PATH, PING', () => {
    expect(one(encodeSource(1, 5, 4, 'a/b', { hidden: true }))).toEqual({ op: Op.SOURCE, handle: 5, parent: 4, hidden: true, detached: false, path: 'a/b' });
    expect(one(encodeSource(1, 5, 0, 'x', { detached: true }))).toMatchObject({ detached: true, hidden: false });
    expect(one(encodeAttach(1, 2, 3))).toEqual({ op: Op.ATTACH, parent: 2, child: 3 });
    expect(one(encodeDetach(1, 3))).toEqual({ op: Op.DETACH, handle: 3 });
    expect(one(encodeValues(1, 8, 5, 7, { aggregate: true }))).toEqual({ op: Op.VALUES, group: 8, source: 5, schema: 7, hidden: false, aggregate: true });
    expect(one(encodeRemove(1, 1, 8))).toEqual({ op: Op.REMOVE, kind: 1, handle: 8 });
    expect(one(encodeRemovePath(1, 'a/b/c'))).toEqual({ op: Op.REMOVE_PATH, path: 'a/b/c' });
    expect(one(encodePing(1))).toEqual({ op: Op.PING });
  });

  it('UPDATE entries are 16 bytes: group, index, op, reserved, i64', () => {
    const entries = [
      { group: 3, index: 0, op: UpdateOp.SET, value: 2n ** 64n - 1n },
      { group: 3, index: 65535, op: UpdateOp.ADD, value: -1 },
      { group: 0xffffffff, index: 2, op: UpdateOp.SET, value: 2 ** 53 - 1 },
      { group: 1, index: 1, op: UpdateOp.ADD, value: -(2 ** 53 - 1) },
    ];
    const buf = encodeUpdate(4, entries);
    expect(buf.length).toBe(HEADER_BYTES + 4 + 16 * 4);
    expect(buf.subarray(16, 32).toString('hex')).toBe('03000000' + '0000' + '00' + '00' + 'ffffffffffffffff');
    const req = one(buf) as UpdateRequest;
    expect(req.count).toBe(4);
    expect(updateEntries(req)).toEqual([
      { group: 3, index: 0, op: 0, value: -1n },
      { group: 3, index: 65535, op: 1, value: -1n },
      { group: 0xffffffff, index: 2, op: 0, value: 2n ** 53n - 1n },
      { group: 1, index: 1, op: 1, value: -(2n ** 53n - 1n) },
    ]);
  });

  it('UpdateWriter builds the same frames as encodeUpdate and starts afresh after finish', () => {
    const w = new UpdateWriter(3);
    expect(w.finish(1)).toBeNull();
    w.push(3, 1, UpdateOp.ADD, 5);
    w.push(4, 0, UpdateOp.SET, 2n ** 63n);
    w.push(4, 2, UpdateOp.SET, -7);
    expect(w.full).toBe(true);
    expect(() => w.push(1, 1, 1, 1)).toThrow(RangeError);
    const a = w.finish(9)!;
    const b = encodeUpdate(9, [
      { group: 3, index: 1, op: UpdateOp.ADD, value: 5 },
      { group: 4, index: 0, op: UpdateOp.SET, value: 2n ** 63n },
      { group: 4, index: 2, op: UpdateOp.SET, value: -7 },
    ]);
    expect(a.equals(b)).toBe(true);
    w.push(1, 0, UpdateOp.SET, 1);
    expect(a.equals(b)).toBe(true); // the finished frame is not reused
    expect(w.finish(10)!.length).toBe(HEADER_BYTES + 4 + 16);
    w.resize(10);
    for (let i = 0; i < 10; i++) w.push(1, 0, 0, i);
    expect(w.full).toBe(true);
  });
});

describe('bad payloads', () => {
  const bad = (op: number, payload: Buffer, code = 'EINVAL'): void => {
    const [f] = frames(encodeFrame(op, 1, payload));
    try {
      decodeRequest(f);
      expect.unreachable(`opcode ${op} with ${payload.toString('hex')} was accepted`);
    } catch (err) {
      expect(err).toBeInstanceOf(ProtocolError);
      expect((err as ProtocolError).code).toBe(code);
      expect((err as ProtocolError).fatal).toBe(false);
    }
  };

  it('are EINVAL: short, long, bad UTF-8, unknown codes and flags; unknown opcodes are ENOSYS', () => {
    bad(Op.SOURCE, Buffer.from([1, 2, 3]));
    bad(Op.PING, Buffer.from([0]));
    bad(Op.ATTACH, Buffer.alloc(9));
    bad(Op.SOURCE, Buffer.from('0100000000000000' + '00' + '0200' + 'fffe', 'hex'));
    bad(Op.SOURCE, Buffer.from('0100000000000000' + '80' + '0100' + '61', 'hex'));
    bad(Op.REMOVE, Buffer.from('0301000000', 'hex'));
    bad(Op.VALUES, Buffer.from('01000000' + '01000000' + '01000000' + '04', 'hex'));
    bad(Op.HELLO, Buffer.from('010102' + '0000', 'hex'));
    bad(Op.UPDATE, Buffer.from('02000000' + '00'.repeat(16), 'hex'));
    bad(Op.UPDATE, Buffer.from('ffffffff', 'hex'));
    bad(Op.DEFINE, Buffer.from('01000000' + '0000', 'hex')); // no values
    bad(Op.DEFINE, Buffer.from('01000000' + 'ffff' + '00'.repeat(20), 'hex')); // claims 65535 values
    const def = encodeDefine(1, 1, [{ name: 'a', type: 'u64' }]);
    def[HEADER_BYTES + 6 + 3] = 42; // type code
    bad(Op.DEFINE, def.subarray(HEADER_BYTES));
    const mode = encodeDefine(1, 1, [{ name: 'a', type: 'u64' }]);
    mode[HEADER_BYTES + 6 + 3 + 3] = 1; // a mode without its flag
    bad(Op.DEFINE, mode.subarray(HEADER_BYTES));
    bad(0x42, Buffer.alloc(0), 'ENOSYS');
    bad(0, Buffer.alloc(0), 'ENOSYS');
  });

  it('encoders refuse what cannot be said', () => {
    expect(() => encodeSource(1, 1, 0, 'x'.repeat(70000))).toThrow(/65535/);
    expect(() => encodeUpdate(1, [{ group: 1, index: 0, op: 0, value: 2 ** 60 }])).toThrow(/safe integer/);
    expect(() => encodeDefine(1, 1, [{ name: 'a', type: 'u128' as 'u64' }])).toThrow(/type/);
  });
});

describe('replies', () => {
  it('OK, OK with the HELLO parameters, ERROR with code and message', () => {
    const [ok] = frames(encodeOk(7));
    expect(ok.op).toBe(Reply.OK);
    expect(decodeReply(ok)).toMatchObject({ id: 7, ok: true });
    const [hello] = frames(encodeHelloOk(1, { version: 1, maxFrameBytes: 1 << 20, maxSources: 5, maxHandles: 6, connection: 99 }));
    expect(decodeHelloOk(decodeReply(hello).payload)).toEqual({ version: 1, maxFrameBytes: 1 << 20, maxSources: 5, maxHandles: 6, connection: 99 });
    const [err] = frames(encodeError(3, 'EPERM', '"x" belongs to producer "a"'));
    expect(decodeReply(err)).toMatchObject({ id: 3, ok: false, code: 'EPERM', message: '"x" belongs to producer "a"' });
    const [long] = frames(encodeError(3, 'EIO', 'x'.repeat(5000)));
    expect(decodeReply(long).message.length).toBeLessThan(1100);
    expect(() => decodeReply(frames(encodePing(1))[0])).toThrow(/unexpected reply/);
  });
});

describe('64-bit values', () => {
  it('wordValue gives numbers while exact and bigints beyond, two\'s complement', () => {
    const check = (v: bigint): void => {
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(BigInt.asIntN(64, v));
      const w = wordValue(b.readUInt32LE(0), b.readUInt32LE(4));
      expect(BigInt(w)).toBe(BigInt.asIntN(64, v));
      if (typeof w === 'bigint') expect(w > BigInt(Number.MAX_SAFE_INTEGER) || w < BigInt(Number.MIN_SAFE_INTEGER)).toBe(true);
    };
    for (const v of [0n, 1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n - 1n, 2n ** 53n, 2n ** 63n - 1n, -1n, -(2n ** 32n), -(2n ** 32n) - 1n, -(2n ** 53n) + 1n, -(2n ** 53n), -(2n ** 63n)]) check(v);
    expect(typeof wordValue(5, 0)).toBe('number');
    expect(typeof wordValue(0xffffffff, 0xffffffff)).toBe('number');
  });

  it('writeInt64 wraps bigints modulo 2^64', () => {
    const b = Buffer.alloc(8);
    writeInt64(b, 0, 2n ** 64n + 5n);
    expect(b.readBigUInt64LE()).toBe(5n);
    writeInt64(b, 0, -2);
    expect(b.readBigInt64LE()).toBe(-2n);
    writeInt64(b, 0, 2 ** 40 + 3);
    expect(b.readBigUInt64LE()).toBe(2n ** 40n + 3n);
  });
});

describe('default socket path', () => {
  it('is /run/statsfs.sock for root and per user in XDG_RUNTIME_DIR otherwise', () => {
    expect(defaultSocketPath({}, 0)).toBe('/run/statsfs.sock');
    expect(defaultSocketPath({ XDG_RUNTIME_DIR: '/run/user/1000/' }, 1000)).toBe('/run/user/1000/statsfs-1000.sock');
    expect(defaultSocketPath({}, 1000)).toBe('/tmp/statsfs-1000.sock');
  });
});
