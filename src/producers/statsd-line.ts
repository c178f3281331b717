/**
 * The StatsD line protocol, parsed into the integer effect each line has on the tree (no tree, no sockets):
 *
 *   a.b.c:1|c      counter   adds round(value / rate), which may not be negative (a counter only counts up)
 *   a.b.c:21|g     gauge     "+n" / "-n" adjust, a plain value sets
 *   a.b.t:5|ms     timing    a sample in milliseconds, kept as whole microseconds
 *   a.b.h:5|h (|d) histogram a sample in the value's own unit, decimals kept
 *                            Timing and histogram samples may not be negative, nor above 2^53; @rate
 *                            weighs a sample round(1 / rate).
 *
 * Every number is parsed as an exact decimal (BigInt), rounded once, half away from zero; nothing goes
 * through a double but a histogram's sample, which a histogram keeps as one.
 */
import { nameProblem } from '../model/index.js';

/** Longest metric name (all parts with their dots); each part is also a model name (≤ 99 characters). */
export const STATSD_NAME_MAX = 255;
/** Most '.'-separated parts in a name: bounds the sources one metric may create. */
export const STATSD_DEPTH_MAX = 16;
/** Longest value or rate text; with the exponent bound it keeps BigInt work per line small. */
const NUMBER_TEXT_MAX = 64;

/** Most samples one sampled timing line may stand for (1 / rate). */
const WEIGHT_MAX = 2n ** 32n;
const S64_MIN = -(2n ** 63n);
const S64_MAX = 2n ** 63n - 1n;
const U64_MAX = 2n ** 64n - 1n;
/** Largest timing or histogram sample: a histogram keeps samples as doubles, exact up to 2^53. */
const SAMPLE_MAX = 2n ** 53n;

export type StatsdKind = 'counter' | 'gauge' | 'timing' | 'histogram';

/** One line, parsed and converted to the integer effect it has on the tree. */
export type StatsdMetric =
  | { kind: 'counter'; name: string; parts: string[]; delta: bigint }
  | { kind: 'gauge'; name: string; parts: string[]; op: 'set' | 'add'; value: bigint }
  /** value in whole µs for timings, as sent (a double) for histograms; weight = round(1 / rate) samples */
  | { kind: 'timing' | 'histogram'; name: string; parts: string[]; value: number; weight: bigint };

export type StatsdBadReason = 'syntax' | 'name' | 'type' | 'value' | 'negative' | 'rate' | 'range' | 'unsupported';

export type StatsdParse = { ok: true; metric: StatsdMetric } | { ok: false; reason: StatsdBadReason; message: string };

/** A decimal as an exact fraction num / den (den > 0). */
interface Fraction {
  num: bigint;
  den: bigint;
}

const DECIMAL = /^(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d{1,3}))?$/;

/** Parses an unsigned decimal ("12", "1.5", ".5", "1e-7", "2.5E+3") exactly; null if it is not one. */
export function parseDecimal(text: string): Fraction | null {
  if (text.length === 0 || text.length > NUMBER_TEXT_MAX) return null;
  const m = DECIMAL.exec(text);
  if (m === null) return null;
  const int = m[1];
  const frac = m[2] ?? '';
  if (int.length === 0 && frac.length === 0) return null;
  let num = BigInt(int + frac);
  let den = 10n ** BigInt(frac.length);
  if (m[3] !== undefined) {
    const exp = Number(m[3]);
    if (exp > 0) num *= 10n ** BigInt(exp);
    else if (exp < 0) den *= 10n ** BigInt(-exp);
  }
  return { num, den };
}

/** num / den rounded to the nearest integer, halves away from zero (den > 0). */
export function roundHalfAway(num: bigint, den: bigint): bigint {
  const neg = num < 0n;
  const mag = neg ? -num : num;
  const q = (2n * mag + den) / (2n * den);
  return neg ? -q : q;
}

function bad(reason: StatsdBadReason, message: string): StatsdParse {
  return { ok: false, reason, message };
}

function inS64(v: bigint): boolean {
  return v >= S64_MIN && v <= S64_MAX;
}

/** Splits and checks a metric name; a string is the reason it is refused. */
export function parseStatsdName(name: string): string[] | string {
  if (name.length === 0) return 'empty name';
  if (name.length > STATSD_NAME_MAX) return `name longer than ${STATSD_NAME_MAX} characters`;
  if (name.includes('\uFFFD')) return 'name is not valid UTF-8';
  const parts = name.split('.');
  if (parts.length > STATSD_DEPTH_MAX) return `more than ${STATSD_DEPTH_MAX} parts`;
  for (const part of parts) {
    const problem = nameProblem(part, 'metric part');
    if (problem !== null) return problem;
  }
  return parts;
}

// DogStatsD fields after the type that carry nothing statsfs keeps: tags, timestamp, container, origin.
function ignoredField(field: string): boolean {
  const c = field.charCodeAt(0);
  return c === 0x23 /* # */ || c === 0x54 /* T */ || field.startsWith('c:') || field.startsWith('e:') || field.startsWith('card:');
}

/**
 * Parses one line ("name:value|type[|@rate][|#tags]…", no newline) into its effect, or the reason it is
 * refused. Pure: no tree, no state.
 */
export function parseStatsdLine(line: string): StatsdParse {
  if (line.startsWith('_e{') || line.startsWith('_sc|')) return bad('unsupported', 'events and service checks are not kept');
  const colon = line.indexOf(':');
  if (colon < 0) return bad('syntax', 'no ":" after the name');
  const name = line.slice(0, colon);
  const fields = line.slice(colon + 1).split('|');
  if (fields.length < 2) return bad('syntax', 'no "|type" after the value');
  const parts = parseStatsdName(name);
  if (typeof parts === 'string') return bad('name', parts);

  const type = fields[1];
  let kind: StatsdKind;
  switch (type) {
    case 'c':
      kind = 'counter';
      break;
    case 'g':
      kind = 'gauge';
      break;
    case 'ms':
      kind = 'timing';
      break;
    case 'h':
    case 'd':
      kind = 'histogram';
      break;
    case 's':
      return bad('unsupported', 'sets (|s) are not kept');
    default:
      return bad('type', `unknown type ${JSON.stringify(type.slice(0, 20))}`);
  }

  let rate: Fraction | null = null;
  for (let i = 2; i < fields.length; i++) {
    const field = fields[i];
    if (field.startsWith('@')) {
      if (rate !== null) return bad('rate', 'two sample rates');
      rate = parseDecimal(field.slice(1));
      if (rate === null || rate.num === 0n || rate.num > rate.den) return bad('rate', `sample rate ${JSON.stringify(field.slice(0, 20))} is not in (0, 1]`);
    } else if (!ignoredField(field)) {
      return bad('syntax', `unknown field ${JSON.stringify(field.slice(0, 20))}`);
    }
  }

  const text = fields[0];
  const sign = text.charCodeAt(0);
  const signed = sign === 0x2b /* + */ || sign === 0x2d; /* - */
  const abs = parseDecimal(signed ? text.slice(1) : text);
  if (abs === null) return bad('value', `value ${JSON.stringify(text.slice(0, 20))} is not a decimal number`);
  const num = sign === 0x2d ? -abs.num : abs.num;

  switch (kind) {
    case 'counter': {
      const delta = rate === null ? roundHalfAway(num, abs.den) : roundHalfAway(num * rate.den, abs.den * rate.num);
      // as Prometheus' statsd_exporter does: a counter that went down would read as a reset
      if (delta < 0n) return bad('negative', 'a counter only counts up: send a level that goes down as a gauge (name:-n|g)');
      if (delta > U64_MAX) return bad('range', 'counter delta outside the u64 range');
      return { ok: true, metric: { kind, name, parts, delta } };
    }
    case 'gauge': {
      // as in etsy statsd, a sign always means "adjust" and the sample rate does not apply to gauges
      const value = roundHalfAway(num, abs.den);
      if (!inS64(value)) return bad('range', 'gauge value outside the s64 range');
      return { ok: true, metric: { kind, name, parts, op: signed ? 'add' : 'set', value } };
    }
    default: {
      const rounded = kind === 'timing' ? roundHalfAway(num * 1000n, abs.den) : num;
      if (rounded < 0n) return bad('negative', `a ${kind} sample cannot be negative: its histogram holds durations and sizes`);
      if (kind === 'timing' ? rounded > SAMPLE_MAX : rounded > SAMPLE_MAX * abs.den) return bad('range', `${kind} value above 2^53`);
      // a histogram keeps its samples as doubles: a |h or |d sample keeps its decimals
      const value = kind === 'timing' ? Number(rounded) : Number(rounded) / Number(abs.den);
      const weight = rate === null ? 1n : roundHalfAway(rate.den, rate.num);
      if (weight > WEIGHT_MAX) return bad('rate', 'sample rate below 1/2^32');
      return { ok: true, metric: { kind, name, parts, value, weight } };
    }
  }
}

/** Every line of a packet or chunk ('\n' or "\r\n" separated; empty lines skipped). */
export function parsePacket(data: string | Buffer): StatsdParse[] {
  const out: StatsdParse[] = [];
  forEachLine(typeof data === 'string' ? data : data.toString('utf8'), (line) => out.push(parseStatsdLine(line)));
  return out;
}

/** Calls `fn` with every non-empty line of `text` ('\n' or "\r\n" separated). */
export function forEachLine(text: string, fn: (line: string) => void): void {
  let start = 0;
  const n = text.length;
  while (start < n) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = n;
    let stop = end;
    if (stop > start && text.charCodeAt(stop - 1) === 13) stop--;
    if (stop > start) fn(text.slice(start, stop));
    start = end + 1;
  }
}
