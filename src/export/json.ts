/**
 * `.snapshot.json`: the same instant as JSON, each value with what describes it (the metricfs annotations,
 * the KVM descriptors). One value per line, so the document is also easy to grep:
 *
 *   {"version":1,"taken_at":"2025-01-01T00:00:00.000Z","count":2,"values":[
 *   {"path":"net/rx_bytes","value":"1200","type":"u64","signed":false,"unit":"bytes","description":"…","kind":"cumulative","aggregation":"sum","aggregate":true,"mode":"0644"},
 *   {"path":"net/lo/state","value":"1","text":"up","type":"u8",…}
 *   ],"failures":[{"path":"net/eth0/rx_bytes","error":"…"}]}
 *
 * - `value` is always a JSON string of the decimal number ("-5", "18446744073709551615"): every parser
 *   keeps it exact, where a JSON number beyond 2^53 silently loses bits in JavaScript and many others.
 * - `text` is present only for values with show(): what reading the file shows, without the newline.
 * - `unit` and `description` are always present ("" when the definition has none).
 * - `kind` is "floating" for a level, else "cumulative"; `aggregation` is the definition's ("none" …
 *   "avg"); `aggregate` says whether this value is an aggregate computed over its subordinates; `mode` is
 *   the file's permission bits in octal ("0644").
 * - a histogram value (`"type":"histogram"`, its `value` the count) has a `histogram` object: `sum`, `min`,
 *   `max`, `avg` and the percentiles `p50` … `p999` as JSON numbers (full doubles: the files round the
 *   percentiles to six digits), `scale`, `zero_count` and `buckets`, `[upper_bound, "count"]` per non-empty
 *   bucket, not cumulative (counts are strings: u64).
 * - `failures` lists values whose getter threw (left out of `values`) and values whose show() threw (in
 *   `values` without `text`).
 */
import { bucketUpperBound, HISTOGRAM_QUANTILES, type Histogram } from '../model/histogram.js';
import type { Snapshot } from '../model/snapshot.js';
import type { ValueDef } from '../model/schema.js';
import {
  BATCH,
  encodeDirs,
  errorMessage,
  renderStream,
  renderSync,
  writeWord,
  type ByteWriter,
  type SliceOptions,
} from './common.js';

export const JSON_FORMAT_VERSION = 1;

/** The whole document in one go. */
export function renderJson(snapshot: Snapshot): Buffer {
  return renderSync((out) => jsonWork(snapshot, out));
}

/** The document in slices of at most maxSliceMs (default 10), yielding to the event loop between them. */
export function renderJsonChunks(snapshot: Snapshot, options: SliceOptions = {}): AsyncGenerator<Buffer, void> {
  return renderStream((out) => jsonWork(snapshot, out), options);
}

/** The constant part of a value's object after its value: everything its definition says. */
function describe(def: ValueDef, aggregate: boolean): Buffer {
  return Buffer.from(
    `,"type":${JSON.stringify(def.type.name)},"signed":${def.type.signed}` +
      `,"unit":${JSON.stringify(def.unit)},"description":${JSON.stringify(def.description)}` +
      `,"kind":"${def.floating ? 'floating' : 'cumulative'}","aggregation":"${def.aggr}","aggregate":${aggregate}` +
      `,"mode":"${def.mode.toString(8).padStart(4, '0')}"}`,
    'utf8',
  );
}

interface DefParts {
  /** `name","value":"` */
  name: Buffer;
  simple: Buffer;
  aggregate: Buffer;
}

const PATH_KEY = Buffer.from('{"path":"');
/** Characters JSON.stringify would escape (lone surrogates among them: any surrogate goes the slow way). */
const JSON_SPECIAL = /["\\\u0000-\u001f\ud800-\udfff]/;

/** A string as it is inside JSON quotes. */
function jsonInner(s: string): string {
  return JSON_SPECIAL.test(s) ? JSON.stringify(s).slice(1, -1) : s;
}

const COMMA = 44;
const NEWLINE = 10;
const QUOTE = 34;

/** Writes the document into `out`, yielding after every batch of values. */
export function* jsonWork(snapshot: Snapshot, out: ByteWriter): Generator<void, void> {
  const failures = snapshot.failures.map(({ path, error }) => ({ path, error: errorMessage(error) }));
  out.string(
    `{"version":${JSON_FORMAT_VERSION},"taken_at":"${new Date(snapshot.takenAtMs).toISOString()}","count":${snapshot.count},"values":[\n`,
  );
  // `dir/` once per directory (escaped name by name: JSON escapes each character on its own); `name","value":"`
  // and the description once per definition.
  const prefixes = yield* encodeDirs(snapshot, { trailingSlash: true, escape: jsonInner });
  const pool = prefixes.bytes;
  const starts = prefixes.starts;
  const parts = new Map<ValueDef, DefParts>();
  const count = snapshot.count;
  for (let from = 0; from < count; from += BATCH) {
    const to = Math.min(count, from + BATCH);
    for (let i = from; i < to; i++) {
      const def = snapshot.def(i);
      let p = parts.get(def);
      if (p === undefined) {
        p = { name: Buffer.from(JSON.stringify(def.name).slice(1) + ',"value":"', 'utf8'), simple: describe(def, false), aggregate: describe(def, true) };
        parts.set(def, p);
      }
      const dir = snapshot.dirNumber(i);
      out.ensure(2 + PATH_KEY.length + starts[dir + 1] - starts[dir] + p.name.length + 21);
      if (i !== 0) {
        out.buf[out.pos++] = COMMA;
        out.buf[out.pos++] = NEWLINE;
      }
      out.bytes(PATH_KEY);
      out.range(pool, starts[dir], starts[dir + 1]);
      out.bytes(p.name);
      writeWord(out, snapshot.lo(i), snapshot.hi(i), def.type.signed);
      out.buf[out.pos++] = QUOTE;
      if (def.show !== null) {
        try {
          out.string(',"text":' + JSON.stringify(snapshot.text(i)));
        } catch (error) {
          failures.push({ path: snapshot.path(i), error: `show(): ${errorMessage(error)}` });
        }
      }
      const histogram = snapshot.histogram(i);
      if (histogram !== null) out.string(',"histogram":' + histogramJson(histogram));
      const tail = snapshot.isAggregate(i) ? p.aggregate : p.simple;
      out.ensure(tail.length);
      out.bytes(tail);
    }
    yield;
  }
  out.string(`\n],"failures":[${failures.map((f) => JSON.stringify(f)).join(',')}]}\n`);
}

/** The `histogram` object of a histogram value (see the top of this file). */
export function histogramJson(h: Histogram): string {
  const empty = h.countLo === 0 && h.countHi === 0;
  const buckets: string[] = [];
  h.forEachBucket((i, lo, hi) => buckets.push(`[${bucketUpperBound(i, h.scale)},"${hi === 0 ? lo : (BigInt(hi) << 32n) | BigInt(lo)}"]`));
  const quantiles = HISTOGRAM_QUANTILES.map(([name, q]) => `"${name}":${h.quantile(q)}`).join(',');
  return (
    `{"sum":${h.sum},"min":${empty ? 0 : h.min},"max":${empty ? 0 : h.max},"avg":${h.mean},${quantiles}` +
    `,"scale":${h.scale},"zero_count":"${h.zeroCount}","buckets":[${buckets.join(',')}]}`
  );
}
