/**
 * Prometheus naming rules shared by the planner and the writer: sanitising, escaping, types, base units and
 * the exact decimal scaling of 64-bit values (ticks and milliseconds to seconds, sectors to bytes).
 */
import type { Scale } from '../model/exposure.js';
import type { ValueDef } from '../model/schema.js';
import { joinSigned, joinUnsigned } from '../model/word.js';

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** Label added to aggregates (with includeAggregates). */
export const AGGREGATION_LABEL = 'aggregation';
/** Label added to directories whose name and labels would repeat another's. */
export const DIR_LABEL = 'statsfs_dir';
/** Label name for instances directly below the exported top, which has no name of its own. */
export const TOP_FAMILY_LABEL = 'source';

/** Characters outside [a-zA-Z0-9_] become '_' (colons are reserved for recording rules); no leading digit. */
export function sanitizeMetricName(name: string): string {
  const s = name.replace(/[^a-zA-Z0-9_]/g, '_');
  return /^[0-9]/.test(s) ? '_' + s : s;
}

/** As metric names, and a leading "__" (reserved by Prometheus) is reduced to one '_'. */
export function sanitizeLabelName(name: string): string {
  return sanitizeMetricName(name).replace(/^__+/, '_');
}

/** Label values: backslash, double quote and line feed escaped (the same in both formats). */
export function escapeLabelValue(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : value;
}

/** HELP text: backslash and line feed escaped; OpenMetrics also escapes the double quote. */
export function escapeHelp(text: string, openMetrics: boolean): string {
  let s = text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  if (openMetrics) s = s.replace(/"/g, '\\"');
  return s;
}

/** `a="x",b="y"` for a label record, in its key order. */
export function labelText(labels: Readonly<Record<string, string>>): string {
  let text = '';
  for (const [name, value] of Object.entries(labels)) text += `${text === '' ? '' : ','}${sanitizeLabelName(name)}="${escapeLabelValue(value)}"`;
  return text;
}

/** A name that says it holds an extreme, not a count: `delay_max_us`, `min_free`, `peak`. */
const EXTREME = /(^|[_.])(max|min|maximum|minimum|peak|high|low)([_.]|$)/i;

/**
 * The type of a value whose definition does not declare one: levels (floating), flags (bool) and extremes
 * (a maximum is no count) are gauges; every other cumulative value is a counter, signed ones included
 * (a StatsD counter is an s64 that only grows in practice; Prometheus treats a decrease as a reset).
 */
export function metricType(def: ValueDef): MetricType {
  if (def.histogram) return 'histogram';
  if (def.expose && def.expose.type) return def.expose.type;
  if (def.floating || def.type.bits === 1 || EXTREME.test(def.name)) return 'gauge';
  return 'counter';
}

/** The type an exported aggregate has: a sum of counters is a counter, anything else a gauge. */
export function aggregateType(def: ValueDef): MetricType {
  if (def.histogram) return 'histogram'; // a merge of histograms
  return def.aggr === 'sum' && metricType(def) === 'counter' ? 'counter' : 'gauge';
}

interface BaseUnit {
  /** Unit texts (a definition's `unit`, lower case) that mean this. */
  readonly units: readonly string[];
  /** Name endings that spell the unit (replaced by the base unit's suffix). */
  readonly endings: readonly string[];
  readonly suffix: 'seconds' | 'bytes';
  readonly exp10: number;
}

const BASE_UNITS: readonly BaseUnit[] = [
  { units: ['seconds', 'second', 's', 'sec'], endings: ['seconds', 'secs', 'sec'], suffix: 'seconds', exp10: 0 },
  { units: ['milliseconds', 'millisecond', 'ms', 'msec'], endings: ['milliseconds', 'millis', 'msec', 'ms'], suffix: 'seconds', exp10: -3 },
  { units: ['microseconds', 'microsecond', 'us', 'µs', 'usec'], endings: ['microseconds', 'micros', 'usec', 'us'], suffix: 'seconds', exp10: -6 },
  { units: ['nanoseconds', 'nanosecond', 'ns', 'nsec'], endings: ['nanoseconds', 'nanos', 'nsec', 'ns'], suffix: 'seconds', exp10: -9 },
  { units: ['bytes', 'byte', 'b'], endings: ['bytes'], suffix: 'bytes', exp10: 0 },
];

/** The base unit a definition's unit converts to (ms and µs to seconds), or null for other units. */
function baseUnitOf(unit: string): BaseUnit | null {
  const u = unit.trim().toLowerCase();
  return BASE_UNITS.find((b) => b.units.includes(u)) ?? null;
}

/**
 * An inferred name with its unit as a base-unit suffix: `event_loop_delay_max_us` (µs) becomes
 * `event_loop_delay_max_seconds`, scaled by 10^-6; `rx_bytes` and `bytes_read` (bytes) stay, `rss` (bytes)
 * becomes `rss_bytes`. `_total` stays last.
 */
export function withUnit(name: string, unit: string): { name: string; unit: string; scale: Scale | null } {
  const base = baseUnitOf(unit);
  if (base === null) return { name, unit: '', scale: null };
  let stem = name;
  const total = stem.endsWith('_total');
  if (total) stem = stem.slice(0, -'_total'.length);
  const ending = base.endings.find((e) => stem.toLowerCase().endsWith('_' + e));
  if (ending !== undefined) stem = stem.slice(0, -(ending.length + 1)) + '_' + base.suffix;
  // the unit already named as a word of its own (bytes_read) stays where it is
  else if (!stem.split('_').includes(base.suffix)) stem += '_' + base.suffix;
  return { name: total ? stem + '_total' : stem, unit: base.suffix, scale: base.exp10 === 0 ? null : { exp10: base.exp10 } };
}

/** The OpenMetrics UNIT of a family: seconds or bytes when its name says so, else none. */
export function unitOfName(family: string): string {
  return /_seconds$/.test(family) ? 'seconds' : /_bytes$/.test(family) ? 'bytes' : '';
}

/**
 * value × times × 10^exp10 as an exact decimal ("1234.56", "0.005", "-3"), from a 64-bit word: no double
 * is involved, so a u64 of ticks beyond 2^53 still converts to the right number of seconds.
 */
export function scaledDecimal(lo: number, hi: number, signed: boolean, scale: Scale): string {
  let v = signed ? joinSigned(lo, hi) : joinUnsigned(lo, hi);
  if (scale.times !== undefined && scale.times !== 1) v *= BigInt(scale.times);
  const exp = scale.exp10 ?? 0;
  if (exp > 0) v *= 10n ** BigInt(exp);
  const negative = v < 0n;
  let digits = (negative ? -v : v).toString();
  if (exp < 0) {
    const places = -exp;
    digits = digits.padStart(places + 1, '0');
    let int = digits.slice(0, digits.length - places);
    const frac = digits.slice(digits.length - places).replace(/0+$/, '');
    if (int === '') int = '0';
    digits = frac === '' ? int : `${int}.${frac}`;
  }
  return negative && digits !== '0' ? '-' + digits : digits;
}
