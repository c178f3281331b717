import { describe, expect, it } from 'vitest';
import { crc32, decodeState, encodeState, HEADER_BYTES, STATE_FORMAT } from '../../../src/state/codec.js';
import { Histogram } from '../../../src/model/index.js';

describe('state codec', () => {
  it('CRC-32 is the IEEE one (the check value of "123456789")', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
  });

  it('a document goes through whole, 64-bit words as decimal strings', () => {
    const doc = { parts: { a: ['18446744073709551615', '-9223372036854775808'] }, savedAt: 'x' };
    const buf = encodeState(doc);
    expect(buf.subarray(0, 8).toString('latin1')).toBe('SFSSTATE');
    expect(buf.readUInt32LE(8)).toBe(STATE_FORMAT);
    expect(decodeState(buf)).toEqual({ ok: true, doc });
  });

  it('a file cut short at any length, or with any one byte changed, is corrupt', () => {
    const buf = encodeState({ parts: { statsd: [['a.b', 'counter', '12345']] } });
    for (let n = 0; n < buf.length; n++) expect(decodeState(buf.subarray(0, n))).toMatchObject({ ok: false, problem: 'corrupt' });
    for (let i = 0; i < buf.length; i++) {
      if (i >= 8 && i < 12) continue; // the format version: see below
      const bad = Buffer.from(buf);
      bad[i] ^= 0x20;
      expect(decodeState(bad), `byte ${i}`).toMatchObject({ ok: false, problem: 'corrupt' });
    }
    expect(decodeState(Buffer.concat([buf, Buffer.from('x')]))).toMatchObject({ ok: false, problem: 'corrupt' });
    expect(decodeState(Buffer.from('garbage'))).toMatchObject({ ok: false, message: expect.stringMatching(/not a statsfs state file/) });
  });

  it('a later format is refused as newer, not as corrupt', () => {
    const buf = encodeState({ parts: {} });
    buf.writeUInt32LE(STATE_FORMAT + 1, 8);
    expect(decodeState(buf)).toEqual({ ok: false, problem: 'newer', message: `written by a newer statsfs (state format ${STATE_FORMAT + 1}; this version reads format ${STATE_FORMAT})` });
    expect(HEADER_BYTES).toBe(20);
  });

  it('a histogram goes through a state document bucket for bucket, downscaled ones and empty ones too', () => {
    const wide = new Histogram();
    for (let i = 0; i < 5000; i++) wide.observe(1e-6 * 1.01 ** (i * 10), i + 1); // a range that downscales
    wide.observe(0, 3);
    const one = new Histogram();
    one.observe(12, 2n ** 40n);
    for (const h of [wide, one, new Histogram()]) {
      const back = Histogram.fromState(JSON.parse(JSON.stringify(h.toState())));
      expect(back.toState()).toEqual(h.toState());
      expect([back.count, back.zeroCount, back.sum, back.min, back.max, back.quantile(0.5), back.scale]).toEqual([h.count, h.zeroCount, h.sum, h.min, h.max, h.quantile(0.5), h.scale]);
    }
    expect(wide.scale).toBeLessThan(5);
    expect(() => Histogram.fromState({ ...one.toState(), counts: [1] })).toThrow(/not a histogram state/);
  });
});
