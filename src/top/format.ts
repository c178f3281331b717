/**
 * Numbers for people: units from the schema scaled to something readable (KiB/MiB, µs/ms/s, k/M), and the
 * block-character sparklines and graphs of a value's history. Pure functions, no terminal.
 */

const BINARY = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
const SI = ['', 'k', 'M', 'G', 'T', 'P', 'E'];
const BYTE_UNITS = new Set(['bytes', 'byte', 'b']);
/** Seconds per unit, and its symbol, for the time units producers are seen to use. */
const TIME_UNITS: Record<string, [number, string]> = {
  nanoseconds: [1e-9, 'ns'], ns: [1e-9, 'ns'],
  microseconds: [1e-6, 'µs'], us: [1e-6, 'µs'], µs: [1e-6, 'µs'],
  milliseconds: [1e-3, 'ms'], ms: [1e-3, 'ms'],
  seconds: [1, 's'], second: [1, 's'], s: [1, 's'], sec: [1, 's'],
};
/** Larger time steps for levels such as an uptime. */
const LONG_TIMES: [number, string][] = [
  [86_400, 'd'],
  [3_600, 'h'],
  [60, 'min'],
];

/** Three significant digits; `exact` integers below 1000 as they are (a count of 7 is "7", not "7.00"). */
function digits(n: number, exact = true): string {
  const a = Math.abs(n);
  if (exact && Number.isInteger(n) && a < 1000) return String(n);
  if (a >= 100) return n.toFixed(0);
  if (a >= 10) return n.toFixed(1);
  if (a >= 1) return n.toFixed(2);
  if (a === 0) return '0';
  return n.toPrecision(2);
}

function scaled(n: number, base: number, prefixes: string[]): [number, string] {
  let i = 0;
  while (Math.abs(n) >= base * 0.9995 && i < prefixes.length - 1) {
    n /= base;
    i++;
  }
  return [n, prefixes[i]];
}

/** Whether `unit` is one that quantity() scales with symbols of its own (so the table need not name it). */
export function hasScaledUnit(unit: string): boolean {
  const u = unit.toLowerCase();
  return BYTE_UNITS.has(u) || TIME_UNITS[u] !== undefined;
}

/**
 * A value (or, with perSecond, a rate) in its unit, scaled: 1536 bytes -> "1.50 KiB", 2500 ms -> "2.50 s",
 * 12345 requests -> "12.3k" (the name of a unit without symbols is left to the caller to show once).
 */
export function quantity(n: number, unit: string, perSecond = false): string {
  const suffix = perSecond ? '/s' : '';
  if (!Number.isFinite(n)) return '–';
  const u = unit.toLowerCase();
  if (BYTE_UNITS.has(u)) {
    const [v, p] = scaled(n, 1024, BINARY);
    return `${digits(v, p === 'B')} ${p}${suffix}`;
  }
  const time = TIME_UNITS[u];
  if (time !== undefined) {
    const s = n * time[0];
    if (!perSecond) for (const [step, name] of LONG_TIMES) if (Math.abs(s) >= step * 1.5) return `${digits(s / step, false)} ${name}`;
    const a = Math.abs(s);
    if (a === 0) return `0 ${time[1]}${suffix}`;
    if (a < 1e-6) return `${digits(s * 1e9)} ns${suffix}`;
    if (a < 1e-3) return `${digits(s * 1e6)} µs${suffix}`;
    if (a < 1) return `${digits(s * 1e3)} ms${suffix}`;
    return `${digits(s)} s${suffix}`;
  }
  const [v, p] = scaled(n, 1000, SI);
  return `${digits(v, p === '')}${p}${suffix}`;
}

const BLOCKS = ' ▁▂▃▄▅▆▇█';

/** The range a history is drawn against: from 0 (or the lowest value when negative) to the highest. */
function range(points: readonly number[]): [number, number] {
  let lo = 0;
  let hi = 0;
  for (const p of points) {
    if (Number.isNaN(p)) continue;
    if (p < lo) lo = p;
    if (p > hi) hi = p;
  }
  return [lo, hi];
}

/**
 * One character per point, eighth-blocks from the range's low to its high; a gap (NaN: no rate for that
 * interval, e.g. across a reset) is a space. The newest point is on the right; short histories are
 * right-aligned and padded with spaces to `width`.
 */
export function sparkline(points: readonly number[], width: number): string {
  const shown = points.slice(-width);
  const [lo, hi] = range(shown);
  let out = '';
  for (const p of shown) {
    if (Number.isNaN(p)) out += ' ';
    else if (hi === lo) out += BLOCKS[1];
    else out += BLOCKS[Math.max(1, Math.round(((p - lo) / (hi - lo)) * 8))];
  }
  return out.padStart(width, ' ');
}

/**
 * A graph `height` rows high and `width` columns wide, one column per point (newest right), each column
 * filled in eighth-blocks; rows are returned top first. Also returns the range drawn.
 */
export function graph(points: readonly number[], width: number, height: number): { rows: string[]; lo: number; hi: number } {
  const shown = points.slice(-width);
  const [lo, hi] = range(shown);
  const cells = height * 8;
  const fill = shown.map((p) => (Number.isNaN(p) ? 0 : hi === lo ? 1 : Math.max(1, Math.round(((p - lo) / (hi - lo)) * cells))));
  const rows: string[] = [];
  for (let r = height - 1; r >= 0; r--) {
    let line = '';
    for (const f of fill) line += BLOCKS[Math.min(8, Math.max(0, f - r * 8))];
    rows.push(line.padStart(width, ' '));
  }
  return { rows, lo, hi };
}

/** `text` cut or padded to exactly `width` columns (one column per code point; a cut ends in "…"). */
export function fit(text: string, width: number, align: 'left' | 'right' = 'left'): string {
  if (width <= 0) return '';
  const chars = Array.from(text);
  if (chars.length > width) return chars.slice(0, width - 1).join('') + '…';
  const pad = ' '.repeat(width - chars.length);
  return align === 'left' ? text + pad : pad + text;
}
