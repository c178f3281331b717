/**
 * StatsD producer: the pure parser's edge cases, the mapping onto the model, caps and conflicts, and the
 * real thing: hot-shots (a StatsD client from npm) sending over UDP on 127.0.0.1 and over the Unix socket
 * to an in-process StatsdServer, checked through the model.
 */
import type { Log } from '../../../src/log.js';
import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import StatsD from 'hot-shots';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { captureSnapshot, histogramFileOf, histogramFileText, Source, StatsError, type ValueDef, type ValueGroup } from '../../../src/model/index.js';
import { renderPrometheusText } from '../../../src/export/prometheus.js';
import { createLogger } from '../../../src/daemon/logger.js';
import { parseDecimal, parsePacket, parseStatsdLine, roundHalfAway, STATSD_NAME_MAX, type StatsdMetric, type StatsdParse } from '../../../src/producers/statsd-line.js';
import { StatsdServer } from '../../../src/producers/statsd.js';

function ok(line: string): StatsdMetric {
  const r = parseStatsdLine(line);
  if (!r.ok) throw new Error(`expected ${JSON.stringify(line)} to parse, got ${r.reason}: ${r.message}`);
  return r.metric;
}

function reason(line: string): string {
  const r = parseStatsdLine(line);
  return r.ok ? 'ok' : r.reason;
}

/** The source at a dotted path under root, or throws. */
function at(root: Source, path: string): Source {
  let s = root;
  for (const part of path.split('.')) {
    const next = s.subordinate(part);
    if (!next) throw new Error(`no source ${path} (missing ${part})`);
    s = next;
  }
  return s;
}

/** The value at a dotted path; a file of a timing or histogram ("a.b.t.sum_us") when it holds an integer. */
function value(root: Source, name: string): bigint {
  const i = name.lastIndexOf('.');
  if (i > 0 && histogramAt(root, name.slice(0, i)) !== null) return BigInt(file(root, name.slice(0, i), name.slice(i + 1)));
  return (i < 0 ? root : at(root, name.slice(0, i))).getValue(name.slice(i + 1));
}

/** The histogram value (a timing or histogram) at a dotted path, or null. */
function histogramAt(root: Source, path: string): { group: ValueGroup; def: ValueDef } | null {
  const i = path.lastIndexOf('.');
  let parent: Source;
  try {
    parent = i < 0 ? root : at(root, path.slice(0, i));
  } catch {
    return null;
  }
  const found = parent.findValue(path.slice(i + 1));
  return found?.def.histogram ? found : null;
}

/** What `cat` shows (without the newline) of one file of the timing or histogram at a dotted path. */
function file(root: Source, path: string, name: string): string {
  const found = histogramAt(root, path);
  if (found === null) throw new Error(`no timing or histogram ${path}`);
  const part = histogramFileOf(name, found.def.suffix);
  if (part === null) throw new Error(`${path} has no file ${name}`);
  return histogramFileText(found.group.histogram(found.def.index), part);
}

/** UDP is asynchronous: poll until the condition holds (a value not there yet throws ENOENT: not yet, unlike helpers/wait.ts). */
async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (cond()) return;
    } catch {
      // not there yet (ENOENT from the model)
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function tryValue(root: Source, name: string): bigint | undefined {
  try {
    return value(root, name);
  } catch {
    return undefined;
  }
}

describe('parseDecimal and rounding', () => {
  it('parses exact decimals, exponents included', () => {
    expect(parseDecimal('12')).toEqual({ num: 12n, den: 1n });
    expect(parseDecimal('1.5')).toEqual({ num: 15n, den: 10n });
    expect(parseDecimal('.5')).toEqual({ num: 5n, den: 10n });
    expect(parseDecimal('3.')).toEqual({ num: 3n, den: 1n });
    expect(parseDecimal('1e-7')).toEqual({ num: 1n, den: 10000000n });
    expect(parseDecimal('2.5E+3')).toEqual({ num: 25000n, den: 10n });
    for (const bad of ['', '.', 'e5', '1e', '1.2.3', 'NaN', 'Infinity', '0x10', '1_000', ' 1', '1 ', '--1', '1e1000', '9'.repeat(65)]) {
      expect(parseDecimal(bad), bad).toBeNull();
    }
  });

  it('rounds halves away from zero', () => {
    expect(roundHalfAway(5n, 2n)).toBe(3n);
    expect(roundHalfAway(-5n, 2n)).toBe(-3n);
    expect(roundHalfAway(7n, 5n)).toBe(1n);
    expect(roundHalfAway(-7n, 5n)).toBe(-1n);
    expect(roundHalfAway(1n, 3n)).toBe(0n);
    expect(roundHalfAway(0n, 7n)).toBe(0n);
  });
});

describe('parseStatsdLine', () => {
  it('maps counters, gauges, timings and histograms', () => {
    expect(ok('a.b.c:1|c')).toEqual({ kind: 'counter', name: 'a.b.c', parts: ['a', 'b', 'c'], delta: 1n });
    expect(ok('a.b.c:21|g')).toEqual({ kind: 'gauge', name: 'a.b.c', parts: ['a', 'b', 'c'], op: 'set', value: 21n });
    expect(ok('g:+3|g')).toMatchObject({ op: 'add', value: 3n });
    expect(ok('g:-3|g')).toMatchObject({ op: 'add', value: -3n });
    expect(ok('a.b.t:5|ms')).toEqual({ kind: 'timing', name: 'a.b.t', parts: ['a', 'b', 't'], value: 5000, weight: 1n });
    expect(ok('h:5|h')).toEqual({ kind: 'histogram', name: 'h', parts: ['h'], value: 5, weight: 1n });
    expect(ok('d:7|d')).toMatchObject({ kind: 'histogram', value: 7 });
  });

  it('honours @rate: counters add round(value / rate), timings weigh a sample round(1 / rate)', () => {
    expect(ok('c:1|c|@0.1')).toMatchObject({ delta: 10n });
    expect(ok('c:1|c|@0.3')).toMatchObject({ delta: 3n }); // 3.33
    expect(ok('c:1|c|@0.4')).toMatchObject({ delta: 3n }); // 2.5 -> 3
    expect(reason('c:-1|c|@0.4')).toBe('negative');
    expect(ok('c:5|c|@1')).toMatchObject({ delta: 5n });
    expect(ok('c:1|c|@1e-3')).toMatchObject({ delta: 1000n });
    expect(ok('t:2|ms|@0.25')).toMatchObject({ value: 2000, weight: 4n });
    expect(ok('g:9|g|@0.5')).toMatchObject({ op: 'set', value: 9n }); // rate does not apply to gauges
    expect(reason('c:1|c|@0')).toBe('rate');
    expect(reason('c:1|c|@1.5')).toBe('rate');
    expect(reason('c:1|c|@-0.5')).toBe('rate');
    expect(reason('c:1|c|@')).toBe('rate');
    expect(reason('c:1|c|@abc')).toBe('rate');
    expect(reason('c:1|c|@0.5|@0.5')).toBe('rate');
    expect(reason('t:1|ms|@1e-12')).toBe('rate'); // one line may stand for at most 2^32 samples
  });

  it('rounds decimal values once, exactly: ms to whole µs, counters and gauges to integers; |h keeps decimals', () => {
    expect(ok('t:1.5|ms')).toMatchObject({ value: 1500 });
    expect(ok('t:0.0004|ms')).toMatchObject({ value: 0 });
    expect(ok('t:0.0005|ms')).toMatchObject({ value: 1 });
    expect(ok('t:1.2345e-1|ms')).toMatchObject({ value: 123 });
    expect(reason('t:-2|ms')).toBe('negative'); // a histogram holds durations and sizes
    expect(ok('t:-0.0004|ms')).toMatchObject({ value: 0 });
    expect(ok('d:0.25|d')).toMatchObject({ value: 0.25 });
    expect(ok('c:1.5|c')).toMatchObject({ delta: 2n });
    expect(ok('c:2.5|c')).toMatchObject({ delta: 3n });
    expect(reason('h:-2.5|h')).toBe('negative');
    expect(ok('c:-0.4|c')).toMatchObject({ delta: 0n }); // rounds to 0: not a decrement
    expect(ok('g:0.49|g')).toMatchObject({ value: 0n });
    expect(ok('g:-0.5|g')).toMatchObject({ op: 'add', value: -1n });
    expect(ok('h:1e3|h')).toMatchObject({ value: 1000 });
  });

  it('keeps numbers beyond 2^53 exact and refuses what does not fit s64 (u64 for a counter delta)', () => {
    expect(ok('c:9007199254740993|c')).toMatchObject({ delta: 9007199254740993n });
    expect(ok('g:9223372036854775807|g')).toMatchObject({ value: 2n ** 63n - 1n });
    expect(ok('g:-9223372036854775808|g')).toMatchObject({ value: -(2n ** 63n) });
    expect(ok('c:123456789012345678.4|c')).toMatchObject({ delta: 123456789012345678n });
    expect(ok('c:1e18|c')).toMatchObject({ delta: 10n ** 18n });
    expect(reason('g:9223372036854775808|g')).toBe('range');
    expect(ok('c:18446744073709551615|c')).toMatchObject({ delta: 2n ** 64n - 1n });
    expect(ok('c:9223372036854775807|c|@0.5')).toMatchObject({ delta: 2n ** 64n - 2n });
    expect(reason('c:2e19|c')).toBe('range');
    expect(reason('c:9223372036854775808|c|@0.5')).toBe('range');
    expect(reason('t:9223372036854775807|ms')).toBe('range');
    expect(ok('h:9007199254740992|h')).toMatchObject({ value: 2 ** 53 });
    expect(reason('h:9007199254740993|h')).toBe('range'); // a histogram sample is a double
    expect(reason('c:1e999|c')).toBe('range');
  });

  it('accepts unicode names and ignores DogStatsD tags, timestamps and container fields', () => {
    expect(ok('café.température:3|g')).toMatchObject({ parts: ['café', 'température'], value: 3n });
    expect(ok('日本.요청:1|c')).toMatchObject({ parts: ['日本', '요청'] });
    expect(ok('a b.c d:1|c')).toMatchObject({ parts: ['a b', 'c d'] });
    expect(ok('x:1|c|#env:prod,role:web')).toMatchObject({ delta: 1n });
    expect(ok('x:2|c|@0.5|#a:b|T1700000000|c:ci-123|e:ext|card:low')).toMatchObject({ delta: 4n });
    expect(reason('x:1|c|zzz')).toBe('syntax');
  });

  it('refuses names the model cannot hold', () => {
    const badNames = [
      ':1|c',
      '.a:1|c',
      'a.:1|c',
      'a..b:1|c',
      'a/b:1|c',
      'a.../b:1|c',
      'a\u0000b:1|c',
      'a\u0007b:1|c',
      'a\u007fb:1|c',
      'a\tb:1|c',
      'bad\uFFFDutf8:1|c',
      `${'x'.repeat(100)}:1|c`,
      `${'a.'.repeat(16)}z:1|c`,
      `${'abcd.'.repeat(60)}z:1|c`,
    ];
    for (const line of badNames) expect(reason(line), JSON.stringify(line)).toBe('name');
    expect(ok(`${'x'.repeat(99)}:1|c`).parts[0]).toHaveLength(99);
    expect(ok(`${'a.'.repeat(15)}z:1|c`).parts).toHaveLength(16);
    const longest = `${'x'.repeat(99)}.${'y'.repeat(99)}.${'z'.repeat(55)}`;
    expect(longest).toHaveLength(STATSD_NAME_MAX);
    expect(reason(`${longest}:1|c`)).toBe('ok');
    expect(reason(`${longest}d:1|c`)).toBe('name');
  });

  it('refuses malformed lines with a reason, never throwing', () => {
    const cases: [string, string][] = [
      ['abc', 'syntax'],
      ['abc:', 'syntax'],
      ['abc:1', 'syntax'],
      ['abc:1|', 'type'],
      ['abc:1|x', 'type'],
      ['abc:1|C', 'type'],
      ['abc:1|cc', 'type'],
      ['abc:|c', 'value'],
      ['abc:+|g', 'value'],
      ['abc:-|c', 'value'],
      ['abc:1.2.3|c', 'value'],
      ['abc:NaN|g', 'value'],
      ['abc:Infinity|ms', 'value'],
      ['abc:0x1f|c', 'value'],
      ['abc:1:2|c', 'value'],
      ['abc: 1|c', 'value'],
      ['abc:++1|g', 'value'],
      ['abc:1|c:2|c', 'type'], // etsy's several values per line are not supported
      ['abc:a|s', 'unsupported'],
      ['_e{5,4}:title|text', 'unsupported'],
      ['_sc|check|0', 'unsupported'],
      ['|||:::', 'syntax'],
      ['a|b:1|c', 'ok'], // '|' in a name is a valid model name
      [':', 'syntax'],
    ];
    for (const [line, why] of cases) expect(reason(line), JSON.stringify(line)).toBe(why);
  });

  it('survives random bytes', () => {
    let seed = 12345;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const alphabet = 'ab.:|@#-+1.5e9cgmsh\u0000\n\r/\uFFFD é';
    for (let i = 0; i < 5000; i++) {
      let line = '';
      const n = Math.floor(rnd() * 30);
      for (let j = 0; j < n; j++) line += alphabet[Math.floor(rnd() * alphabet.length)];
      const results: StatsdParse[] = parsePacket(line);
      for (const r of results) expect(typeof r.ok).toBe('boolean');
    }
  });
});

describe('parsePacket', () => {
  it('splits lines on \\n and \\r\\n, skipping empty ones and accepting a trailing newline', () => {
    const r = parsePacket('a:1|c\nb:2|g\r\n\n\nc:3|ms\n');
    expect(r.map((x) => (x.ok ? x.metric.name : x.reason))).toEqual(['a', 'b', 'c']);
    expect(parsePacket('')).toEqual([]);
    expect(parsePacket('\n\n')).toEqual([]);
    expect(parsePacket(Buffer.from('x:1|c'))).toHaveLength(1);
  });

  it('keeps good lines around bad ones', () => {
    const r = parsePacket('a:1|c\ngarbage\nb:2|c');
    expect(r.map((x) => x.ok)).toEqual([true, false, true]);
  });

  it('decodes UTF-8 split by the packet as invalid, not as another name', () => {
    const bytes = Buffer.from('é:1|c');
    const r = parsePacket(bytes.subarray(1)); // a lone continuation byte
    expect(r[0]).toMatchObject({ ok: false, reason: 'name' });
  });
});

describe('StatsdServer mapping onto the model (ingest, no sockets)', () => {
  let root: Source;
  let server: StatsdServer;
  beforeEach(() => {
    root = Source.root();
    server = new StatsdServer(root);
  });

  it('counters are u64 cumulative values of the parent source, clearable (0644); a negative delta is refused', () => {
    server.ingest('a.b.c:1|c\na.b.c:2|c\na.b.c:-1|c');
    const b = at(root, 'a.b');
    expect(b.getValue('c')).toBe(3n);
    const found = b.findValue('c')!;
    expect(found.def.mode).toBe(0o644);
    expect(found.def.type.name).toBe('u64');
    b.clear('c');
    expect(b.getValue('c')).toBe(0n);
    server.ingest('a.b.c:-5|c\na.b.c:4|c');
    expect(b.getValue('c')).toBe(4n);
    expect(server.stats).toMatchObject({ lines: 5, applied: 3, badLines: 2 });
  });

  it('counters are exported to Prometheus as counters (_total), gauges as gauges', () => {
    server.ingest('a.b.c:3|c\nq.depth:-2|g');
    const text = renderPrometheusText(captureSnapshot(root), { openMetrics: false });
    expect(text).toContain('# TYPE statsfs_a_b_c_total counter\nstatsfs_a_b_c_total 3\n');
    expect(text).toContain('# TYPE statsfs_q_depth gauge\nstatsfs_q_depth -2\n');
  });

  it('counters add beyond 2^53 exactly and wrap like a u64', () => {
    server.ingest('big:9007199254740993|c\nbig:9007199254740993|c');
    expect(root.getValue('big')).toBe(2n * 9007199254740993n);
    server.ingest('w:18446744073709551615|c\nw:2|c');
    expect(root.getValue('w')).toBe(1n);
  });

  it('gauges set and adjust, read-only (0444)', () => {
    server.ingest('x.g:21|g');
    expect(value(root, 'x.g')).toBe(21n);
    server.ingest('x.g:+4|g\nx.g:-30|g');
    expect(value(root, 'x.g')).toBe(-5n);
    server.ingest('x.g:7|g');
    expect(value(root, 'x.g')).toBe(7n);
    const found = at(root, 'x').findValue('g')!;
    expect(found.def.mode).toBe(0o444);
    expect(() => at(root, 'x').clear('g')).toThrow(StatsError);
    server.ingest('x.g:9007199254740993|g');
    expect(value(root, 'x.g')).toBe(9007199254740993n);
  });

  it('a timing is a histogram value of the parent source: count, sum_us … avg_us, the percentiles, buckets', () => {
    server.ingest('a.b.t:5|ms\na.b.t:1.5|ms\na.b.t:10|ms|@0.5');
    const f = (name: string) => file(root, 'a.b.t', name);
    expect([f('count'), f('sum_us'), f('min_us'), f('max_us'), f('avg_us')]).toEqual(['4', String(5000 + 1500 + 2 * 10000), '1500', '10000', '6625']);
    const { group, def } = histogramAt(root, 'a.b.t')!;
    expect(group.source).toBe(at(root, 'a.b'));
    expect([def.type.name, def.unit, def.suffix, def.mode]).toEqual(['histogram', 'microseconds', '_us', 0o644]);
    // samples 1500, 5000, 10000 (twice): nearest ranks 2 (p50) and 4 (the rest: the max itself)
    expect(f('p50_us')).toBe('5031.56'); // 5000 within 1.09 %
    for (const p of ['p90_us', 'p99_us', 'p999_us']) expect(f(p), p).toBe('10000');
    expect(f('buckets').split('\n').map((l) => l.split(' ')[1])).toEqual(['1', '1', '2']);
    // clearing the histogram (echo 0 > t/count) starts a new window
    group.clear(def.index);
    for (const n of ['count', 'sum_us', 'min_us', 'max_us', 'avg_us', 'p50_us', 'p99_us']) expect(f(n), n).toBe('0');
    server.ingest('a.b.t:3|ms');
    expect([f('count'), f('min_us'), f('max_us')]).toEqual(['1', '3000', '3000']);
  });

  it('histograms keep their own unit and decimals; negative samples are refused', () => {
    server.ingest('h:1|h\nh:2|h\nh:2.5|d\nneg:-1|h');
    const f = (name: string) => file(root, 'h', name);
    expect([f('count'), f('sum'), f('min'), f('max'), f('avg'), f('p999')]).toEqual(['3', '5.5', '1', '2.5', '1.8333333333333333', '2.5']);
    expect(histogramAt(root, 'neg')).toBeNull();
    expect(server.stats.badLines).toBe(1);
  });

  it('a name keeps its first type; the second is refused and counted', () => {
    server.ingest('m:1|c\nm:5|g\nm:1|ms\nm:2|c');
    expect(root.getValue('m')).toBe(3n);
    expect(server.stats.conflicts).toBe(2);
    server.ingest('t:1|ms\nt:1|h');
    expect(server.stats.conflicts).toBe(3);
  });

  it('a value and a source may not share a name; refused lines leave no empty source', () => {
    server.ingest('a.b:1|c\na.b.c:1|c'); // b is a value of a, cannot become a source
    expect(server.stats.conflicts).toBe(1);
    server.ingest('x.y.z:1|c\nx.y:1|c\nx.y:1|g\nx.y:1|ms'); // x/y is a source
    expect(server.stats.conflicts).toBe(4);
    server.ingest('t:1|ms\nt.u:1|c\nt.u.v:1|c'); // t is a timing: a value of the root, not a source
    expect(server.stats.conflicts).toBe(6);
    expect(root.subordinate('t')).toBeUndefined();
    expect(at(root, 'a').visibleSubordinates()).toEqual([]);
    expect(server.metricCount).toBe(3);
  });

  it('never takes a name that something else already has in the tree', () => {
    const net = new Source('net');
    root.addSubordinate(net);
    server.ingest('net:1|c\nnet.eth0:1|c\nnet.x.y:1|ms\nfree.x:1|c');
    expect(server.stats.conflicts).toBe(3);
    expect(net.visibleSubordinates()).toEqual([]);
    expect(net.valueGroups).toEqual([]);
    expect(value(root, 'free.x')).toBe(1n);
  });

  it('caps the number of metrics; existing ones keep counting', () => {
    const capped = new StatsdServer(root, { maxMetrics: 3 });
    capped.ingest('m1:1|c\nm2:1|g\nm3:1|ms\nm4:1|c\nm5.x:1|c\nm1:1|c');
    expect(capped.metricCount).toBe(3);
    expect(capped.stats.dropped).toBe(2);
    expect(root.getValue('m1')).toBe(2n);
    expect(root.subordinate('m5')).toBeUndefined();
  });

  it('caps the entries one source gets', () => {
    const capped = new StatsdServer(root, { maxPerSource: 2 });
    capped.ingest('s.a:1|c\ns.b:1|ms\ns.c:1|g\ns.d.e:1|c\nt.x:1|c\nt.y.z:1|c\nu:1|c');
    expect(capped.stats.dropped).toBe(3); // s.c, s.d.e (s is full), u (the root holds s and t)
    expect(capped.metricCount).toBe(4);
    expect(at(root, 's').visibleValues().map((x) => x.def.name)).toEqual(['b', 'a']); // the timing b, the counter a
    capped.ingest('s.a:1|c');
    expect(value(root, 's.a')).toBe(2n);
  });

  it('caps the sources created', () => {
    const capped = new StatsdServer(root, { maxSources: 3 });
    capped.ingest('a.b.c:1|c\na.t:1|ms\na.x:1|c\nd:1|h\ne.f:1|c\ng.h:1|c\ni.j:1|ms');
    expect(capped.stats.dropped).toBe(2); // g.h and i.j need a fourth source (timings and histograms are values)
    expect(capped.metricCount).toBe(5);
  });

  it('counts every kind of refusal and logs the first of each at warn', () => {
    const log = { info: vi.fn(), warn: vi.fn(), error: vi.fn(), debug: vi.fn() };
    const s = new StatsdServer(root, { log });
    s.ingest('ok:1|c\nbad\nbad\na..b:1|c\nu:1|s\n_e{1,1}:a|b\nok:1|g\n\n');
    expect(s.stats).toMatchObject({ lines: 7, applied: 1, badLines: 2, badNames: 1, unsupported: 2, conflicts: 1, errors: 0 });
    expect(log.warn).toHaveBeenCalledTimes(4); // syntax, name, unsupported, conflict
    expect(log.debug).toHaveBeenCalledTimes(2);
    expect(log.error).not.toHaveBeenCalled();
  });

  it('the daemon logger fits the Log every server takes', () => {
    const log: Log = createLogger('silent');
    expect(new StatsdServer(root, { log }).metricCount).toBe(0);
  });

  it('shares one schema per value name across sources', () => {
    server.ingest('web.h1.requests:1|c\nweb.h2.requests:2|c');
    const s1 = at(root, 'web.h1').findValue('requests')!.group.schema;
    const s2 = at(root, 'web.h2').findValue('requests')!.group.schema;
    expect(s1).toBe(s2);
  });
});

describe('StatsdServer: removal and idle expiry', () => {
  let root: Source;
  beforeEach(() => {
    root = Source.root();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('removePath removes a metric, and the prefix sources it leaves empty; the slot is free again', () => {
    const server = new StatsdServer(root, { maxMetrics: 3 });
    server.ingest('a.b.c:1|c\na.b.t:5|ms\nx:2|g\nfull:1|c');
    expect(server.stats.dropped).toBe(1);
    expect(server.removePath('a/b/c')).toBe(true);
    expect(at(root, 'a.b').findValue('c')).toBeUndefined();
    expect(server.removePath('a/b/t')).toBe(true);
    expect(root.subordinate('a')).toBeUndefined(); // a/b held nothing else: gone with its last metric
    expect(server.removePath('x')).toBe(true);
    expect(root.findValue('x')).toBeUndefined();
    expect(server.metricCount).toBe(0);
    expect(server.stats.removed).toBe(3);
    server.ingest('a.b.c:7|c\nn1:1|c\nn2:1|c');
    expect(value(root, 'a.b.c')).toBe(7n); // a new metric: counting from 0
    expect(server.metricCount).toBe(3);
    expect(server.stats.dropped).toBe(1);
  });

  it('removePath of a prefix source removes every metric below it; other owners\' paths are not its own', () => {
    const server = new StatsdServer(root);
    const net = new Source('net');
    root.addSubordinate(net);
    server.ingest('web.h1.hits:1|c\nweb.h1.lat:1|ms\nweb.h2.hits:1|c\nweb.level:3|g\nother.x:1|c');
    expect(server.removePath('web/h1')).toBe(true);
    expect(at(root, 'web').subordinate('h1')).toBeUndefined();
    expect(value(root, 'web.h2.hits')).toBe(1n);
    expect(server.stats.removed).toBe(2);
    expect(server.removePath('web')).toBe(true);
    expect(root.subordinate('web')).toBeUndefined();
    expect(server.stats.removed).toBe(4);
    expect(server.metricCount).toBe(1);
    // not StatsD's: left to the caller (the producer server then answers ENOENT or EPERM)
    expect(server.removePath('net')).toBe(false);
    expect(server.removePath('nothing/here')).toBe(false);
    expect(server.removePath('other.x')).toBe(false); // a path part with a dot is never a StatsD name
    expect(root.subordinate('net')).toBe(net);
    // one value of a timing is not a metric of its own
    server.ingest('t:1|ms');
    expect(() => server.removePath('t/count')).toThrow(/t as a whole/);
    expect(file(root, 't', 'count')).toBe('1');
    // the sources it freed count again
    const capped = new StatsdServer(Source.root(), { maxSources: 2 });
    capped.ingest('p.q.r:1|c\ns.t:1|c');
    expect(capped.stats.dropped).toBe(1);
    expect(capped.removePath('p')).toBe(true);
    capped.ingest('s.t:1|c');
    expect(capped.stats.dropped).toBe(1);
  });

  it('expires metrics not updated within expireSeconds, and counts them', async () => {
    vi.useFakeTimers();
    const server = new StatsdServer(root, { expireSeconds: 10 });
    server.ingest('old.c:1|c\nold.t:1|ms\nkept.g:1|g');
    await vi.advanceTimersByTimeAsync(6000);
    server.ingest('kept.g:2|g');
    await vi.advanceTimersByTimeAsync(6000);
    expect(root.subordinate('old')).toBeUndefined();
    expect(value(root, 'kept.g')).toBe(2n);
    expect(server.stats.expired).toBe(2);
    expect(server.metricCount).toBe(1);
    await vi.advanceTimersByTimeAsync(20_000);
    expect(root.subordinate('kept')).toBeUndefined();
    expect(server.stats.expired).toBe(3);
    await server.close();
  });

  it('without expireSeconds, metrics stay', async () => {
    vi.useFakeTimers();
    const server = new StatsdServer(root);
    server.ingest('a:1|c');
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(root.getValue('a')).toBe(1n);
    expect(server.stats.expired).toBe(0);
  });

  it('the Unix socket is 0600 whatever the umask', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'statsd-'));
    try {
      for (const mask of [0o000, 0o077]) {
        const path = join(dir, `s${mask}`);
        const old = process.umask(mask);
        const server = new StatsdServer(root, { unixPath: path });
        try {
          await server.listen();
        } finally {
          process.umask(old);
        }
        expect((statSync(path).mode & 0o777).toString(8), `umask ${mask.toString(8)}`).toBe('600');
        await server.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('StatsdServer over sockets with hot-shots', () => {
  let root: Source;
  let server: StatsdServer;
  let port: number;
  let client: StatsD;
  const tmp: string[] = [];

  beforeEach(async () => {
    root = Source.root();
    server = new StatsdServer(root, { udp: { host: '127.0.0.1', port: 0 } });
    const addr = await server.listen();
    expect(addr.address).toBe('127.0.0.1');
    port = addr.port;
    expect(port).toBeGreaterThan(0);
    client = new StatsD({ host: '127.0.0.1', port, errorHandler: (err) => { throw err; } });
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await new Promise<void>((resolve) => client.close(() => resolve()));
    await server.close();
    for (const dir of tmp.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('counters: increment, decrement and explicit values', async () => {
    client.increment('app.requests');
    client.increment('app.requests', 41);
    client.decrement('app.inflight'); // a counter only counts up: refused, as Prometheus' statsd_exporter does
    await until(() => tryValue(root, 'app.requests') === 42n && server.stats.packets === 3, 'counters');
    expect(server.stats.badLines).toBe(1);
    expect(tryValue(root, 'app.inflight')).toBeUndefined();
  });

  it('gauges: set, then adjust with gaugeDelta', async () => {
    client.gauge('app.queue.depth', 21);
    await until(() => tryValue(root, 'app.queue.depth') === 21n, 'gauge set');
    client.gaugeDelta('app.queue.depth', 5);
    await until(() => tryValue(root, 'app.queue.depth') === 26n, 'gauge +5');
    client.gaugeDelta('app.queue.depth', -30);
    await until(() => tryValue(root, 'app.queue.depth') === -4n, 'gauge -30');
    client.gauge('app.queue.depth', 2.5);
    await until(() => tryValue(root, 'app.queue.depth') === 3n, 'gauge 2.5 rounds to 3');
  });

  it('timings and histograms', async () => {
    client.timing('app.db.query', 5);
    client.timing('app.db.query', 1.25);
    client.timing('app.db.query', 12);
    client.histogram('app.payload', 100);
    client.histogram('app.payload', 300);
    client.distribution('app.payload', 200);
    await until(() => tryValue(root, 'app.db.query.count') === 3n && tryValue(root, 'app.payload.count') === 3n, 'timings');
    expect(['sum_us', 'min_us', 'max_us', 'avg_us'].map((n) => file(root, 'app.db.query', n))).toEqual(['18250', '1250', '12000', '6083.333333333333']);
    expect(['sum', 'min', 'max', 'avg'].map((n) => file(root, 'app.payload', n))).toEqual(['600', '100', '300', '200']);
  });

  it('a timer wrapped by the client reports sub-millisecond durations as µs', async () => {
    const timed = client.timer(() => 7, 'app.fn');
    expect(timed()).toBe(7);
    await until(() => tryValue(root, 'app.fn.count') === 1n, 'timer');
    expect(value(root, 'app.fn.sum_us')).toBeGreaterThanOrEqual(0n);
    expect(value(root, 'app.fn.sum_us')).toBeLessThan(1_000_000n);
  });

  it('sampled metrics are scaled by 1 / rate', async () => {
    vi.spyOn(Math, 'random').mockReturnValue(0); // the client sends every sampled metric
    client.increment('app.sampled', 1, 0.25);
    client.increment('app.sampled', 3, 0.1);
    client.timing('app.sampled_t', 2, 0.5);
    await until(() => tryValue(root, 'app.sampled') === 34n && tryValue(root, 'app.sampled_t.count') === 2n, 'sampled');
    expect(value(root, 'app.sampled_t.sum_us')).toBe(4000n);
    expect(value(root, 'app.sampled_t.max_us')).toBe(2000n);
  });

  it('tags are ignored, the metric is kept', async () => {
    client.increment('app.tagged', 2, ['env:test', 'role:web']);
    await until(() => tryValue(root, 'app.tagged') === 2n, 'tagged');
  });

  it('several lines per packet (a buffering client)', async () => {
    const buffered = new StatsD({ host: '127.0.0.1', port, maxBufferSize: 1000, bufferFlushInterval: 60_000 });
    for (let i = 0; i < 20; i++) buffered.increment('bulk.count');
    buffered.gauge('bulk.level', 7);
    buffered.timing('bulk.t', 3);
    await new Promise<void>((resolve, reject) => buffered.flush((err) => (err ? reject(err) : resolve())));
    await until(() => tryValue(root, 'bulk.count') === 20n && tryValue(root, 'bulk.t.count') === 1n, 'bulk');
    expect(value(root, 'bulk.level')).toBe(7n);
    expect(server.stats.packets).toBeLessThan(22);
    expect(server.stats.lines).toBe(22);
    await new Promise<void>((resolve) => buffered.close(() => resolve()));
  });

  it('malformed datagrams are counted, never crash, and good lines around them are kept', async () => {
    const sock = dgram.createSocket('udp4');
    const send = (data: Buffer | string): Promise<void> =>
      new Promise((resolve, reject) => sock.send(data, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())));
    await send(Buffer.from([0xff, 0xfe, 0x00, 0x0a, 0x80, 0x3a, 0x7c]));
    await send('');
    await send('no colon\n:1|c\na/b:1|c\nx:1|q\nok.raw:5|c\n');
    await send(`${'z'.repeat(60000)}:1|c`);
    let seed = 7;
    for (let i = 0; i < 200; i++) {
      const bytes = Buffer.alloc(1 + (i % 50));
      for (let j = 0; j < bytes.length; j++) bytes[j] = (seed = (seed * 1103515245 + 12345) % 2147483648) & 0xff;
      await send(bytes);
    }
    await send('last:1|c');
    await until(() => tryValue(root, 'last') === 1n, 'the last datagram');
    expect(value(root, 'ok.raw')).toBe(5n);
    expect(server.stats.errors).toBe(0);
    expect(server.stats.packets).toBe(205);
    expect(server.stats.badLines + server.stats.badNames).toBeGreaterThanOrEqual(5);
    sock.close();
  });

  it('a Unix stream socket carries newline-framed lines (hot-shots stream transport)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'statsd-'));
    tmp.push(dir);
    const path = join(dir, 'statsd.sock');
    writeFileSync(path, ''); // a regular file is never removed
    const blocked = new StatsdServer(root, { unixPath: path });
    await expect(blocked.listen()).rejects.toThrow();
    rmSync(path);

    // a live socket is left alone; one left by a process killed with SIGKILL is replaced
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => console.log('up'))`]);
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    const unixServer = new StatsdServer(root, { unixPath: path });
    await expect(unixServer.listen()).rejects.toThrow(/EADDRINUSE/);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(statSync(path).isSocket()).toBe(true);
    await unixServer.listen();

    const stream = net.createConnection(path);
    await new Promise<void>((resolve) => stream.once('connect', () => resolve()));
    const unixClient = new StatsD({ protocol: 'stream', stream });
    unixClient.increment('unix.count', 3);
    unixClient.gauge('unix.level', 9);
    unixClient.timing('unix.t', 4);
    // a line split across writes, and a multi-byte character split across chunks
    const bytes = Buffer.from('unix.é:5|c\n');
    stream.write(bytes.subarray(0, 6));
    await new Promise((r) => setTimeout(r, 20));
    stream.write(bytes.subarray(6));
    await until(
      () => tryValue(root, 'unix.count') === 3n && tryValue(root, 'unix.level') === 9n && tryValue(root, 'unix.t.count') === 1n && tryValue(root, 'unix.é') === 5n,
      'unix metrics',
    );
    expect(unixServer.stats.connections).toBe(1);
    unixClient.close();
    await unixServer.close();
    expect(existsSync(path)).toBe(false);
  });

  it('an over-long line on the Unix socket is dropped; the next line is kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'statsd-'));
    tmp.push(dir);
    const path = join(dir, 's');
    const unixServer = new StatsdServer(root, { unixPath: path });
    expect(await unixServer.listen()).toEqual({ address: path, port: 0 });
    const conn = net.createConnection(path);
    await new Promise<void>((resolve) => conn.once('connect', () => resolve()));
    conn.write('x'.repeat(70_000));
    await until(() => unixServer.stats.dropped === 1, 'the cap');
    conn.write('y'.repeat(10_000));
    conn.write(':1|c\nafter:1|c\nend:1|c');
    conn.end();
    await until(() => tryValue(root, 'end') === 1n, 'the final unterminated line');
    expect(value(root, 'after')).toBe(1n);
    expect(unixServer.stats.dropped).toBe(1);
    await unixServer.close();
  });

  it('connections beyond the Unix socket\'s 256 are refused and counted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'statsd-'));
    tmp.push(dir);
    const path = join(dir, 's');
    const unixServer = new StatsdServer(root, { unixPath: path });
    await unixServer.listen();
    const conns: net.Socket[] = [];
    try {
      for (let i = 0; i < 260; i++) {
        const conn = net.createConnection(path);
        conn.on('error', () => undefined);
        conns.push(conn);
        await new Promise<void>((resolve) => conn.once('connect', () => resolve()));
      }
      await until(() => unixServer.stats.connections + unixServer.stats.refusedConnections === 260, 'every connection seen');
      expect(unixServer.stats.connections).toBe(256);
      expect(unixServer.stats.refusedConnections).toBe(4);
    } finally {
      for (const conn of conns) conn.destroy();
      await unixServer.close();
    }
  });

  it('listen fails cleanly on a port in use', async () => {
    const other = new StatsdServer(Source.root(), { udp: { host: '127.0.0.1', port } });
    await expect(other.listen()).rejects.toThrow(/EADDRINUSE/);
    await other.close();
  });
});
