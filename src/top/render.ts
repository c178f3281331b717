/**
 * Frames of `statsfs top` as lines of text: the whole screen every time (no diffing: 80×24 is 2 KB), and the
 * plain-text listing printed without a terminal. Pure functions of the rows, the view and the size.
 *
 *    statsfs top  /run/statsfs/net     120 values · every 1s · sort rate  02:58:24
 *     NAME                       AGG       VALUE         RATE  HISTORY
 *   ▸ lo                               24 values    4 changed  ███████████
 *     rx_bytes                     Σ     978 MiB    720 KiB/s  ▇▆▅▄▃▂▂▁▁▂▃
 *   ─ rx_bytes  720 KiB/s  (counter · sum aggregate · 0644, c clears) ──────
 *     (the selected row's graph, then the keys or the last message)
 */
import { fit, graph, hasScaledUnit, quantity, sparkline } from './format.js';
import type { Row, RowKind } from './model.js';
import { clearable, type ViewState } from './view.js';

export interface FrameInfo {
  mount: string;
  /** The shown source, from the mount's root. */
  path: string;
  intervalSeconds: number;
  /** Capture time of the rows (null before the first). */
  takenAt: Date | null;
  /** Values in the shown subtree. */
  values: number;
  /** Why the last refresh failed, if it did. */
  error: string | null;
}

export interface Size {
  columns: number;
  rows: number;
}

/** The keys, for the help screen, the footer and the README. */
export const KEYS: readonly [string, string][] = [
  ['↑ ↓  j k', 'move the selection'],
  ['PgUp PgDn  g G', 'a page up or down, the first or last row'],
  ['Enter →  l', 'open the selected source (▸)'],
  ['← Backspace  h', 'go up to the parent source'],
  ['/', 'filter by name: type, Enter keeps it, Esc drops it'],
  ['s', 'sort by name, value, rate (sources stay first)'],
  ['c', 'clear the selected counter: asks y/n; only counters whose file is 0644'],
  ['p', 'pause or resume refreshing'],
  ['?', 'this help'],
  ['q  Ctrl-C', 'quit'],
];

const AGGREGATE_MARKS: Record<string, string> = { sum: 'Σ', min: 'min', max: 'max', avg: 'avg', count_zero: '#0', none: 'agg' };

/** The cells of a row that depend on its kind: its reading and its rate. Add a kind by adding an entry. */
const CELLS: { [K in RowKind]: (row: Row) => { value: string; rate: string } } = {
  source: (row) => ({ value: row.text, rate: row.rate === null ? '' : `${row.rate} changed` }),
  counter: (row) => ({ value: quantity(row.value, row.unit), rate: row.rate === null ? '–' : quantity(row.rate, row.unit, true) }),
  // a show() text (a state such as "up") is shown as it is
  level: (row) => ({ value: /^-?\d+$/.test(row.text) ? quantity(row.value, row.unit) : row.text, rate: '' }),
  // the tail in the value column (the graph's title has the median too), observations per second beside it
  histogram: (row) => ({ value: row.quantiles ? `p99 ${quantity(row.quantiles.p99, row.unit)}` : '', rate: row.rate === null ? '–' : quantity(row.rate, '', true) }),
};

/** A histogram's percentiles for titles and plain text. */
function percentiles(row: Row): string {
  return row.quantiles ? `p50 ${quantity(row.quantiles.p50, row.unit)} · p99 ${quantity(row.quantiles.p99, row.unit)}` : '';
}

const RESET = '\x1b[0m';
const BOLD = '\x1b[1m';
const DIM = '\x1b[2m';
const REVERSE = '\x1b[7m';

/** Drops the styles: what the terminal shows as text. */
export function stripAnsi(line: string): string {
  return line.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '');
}

function clock(d: Date | null): string {
  return d ? d.toTimeString().slice(0, 8) : '--:--:--';
}

interface Columns {
  name: number;
  value: number;
  rate: number;
  history: number;
}

/** Column widths for a width: the name and the history share what the fixed columns leave. */
function columns(width: number): Columns {
  const value = 11;
  const rate = 12;
  const fixed = 2 + 1 + 3 + 1 + value + 1 + rate + 2; // marker, gaps, aggregate mark
  const free = Math.max(0, width - fixed);
  const name = Math.max(8, Math.min(40, free - Math.max(8, Math.floor(free / 2.2))));
  return { name, value, rate, history: Math.max(0, free - name) };
}

function rowLine(row: Row, cols: Columns): string {
  const cells = CELLS[row.kind](row);
  const marker = row.kind === 'source' ? '▸ ' : '  ';
  const mark = row.aggregate ? (AGGREGATE_MARKS[row.aggregate] ?? 'agg') : '';
  return (
    marker +
    fit(row.name, cols.name) +
    ' ' +
    fit(mark, 3, 'right') +
    ' ' +
    fit(cells.value, cols.value, 'right') +
    ' ' +
    fit(cells.rate, cols.rate, 'right') +
    '  ' +
    (cols.history > 0 ? sparkline(row.history.toArray(), cols.history) : '')
  );
}

function title(view: ViewState, info: FrameInfo, width: number): string {
  const state = [`${info.values} values`, `every ${info.intervalSeconds}s`, `sort ${view.sort}`];
  if (view.filter !== '' || view.mode === 'filter') state.push(`filter "${view.filter}"`);
  if (view.paused) state.push('PAUSED');
  const right = Array.from(`${state.join(' · ')}  ${clock(info.takenAt)} `);
  const left = ' statsfs top  ';
  // a long path loses its beginning: where in the tree the view is, is at its end
  const where = Array.from(info.path === '' ? info.mount : `${info.mount}/${info.path}`);
  const room = Math.max(1, width - left.length - right.length - 1);
  const shown = where.length > room ? '…' + where.slice(where.length - room + 1).join('') : where.join('');
  return fit(left + shown, Math.max(0, width - right.length)) + fit(right.join(''), Math.min(width, right.length), 'right');
}

/** What a row's kind and unit are, for the graph's title. */
function about(row: Row): string {
  if (row.kind === 'source') return `source · ${row.sources} sources, ${row.value} values below · values changed per refresh`;
  const parts: string[] = [row.kind];
  if (row.aggregate) parts.push(`${row.aggregate} aggregate`);
  if (row.unit !== '' && !hasScaledUnit(row.unit)) parts.push(row.unit);
  parts.push(`${row.mode.toString(8).padStart(4, '0')}${clearable(row) ? ', c clears' : ''}`);
  return parts.join(' · ');
}

function graphLines(row: Row, width: number, height: number): string[] {
  const label = (n: number): string => (row.kind === 'source' ? String(n) : row.kind === 'histogram' ? quantity(n, '', true) : quantity(n, row.unit, row.kind === 'counter'));
  const now = CELLS[row.kind](row);
  const reading = row.kind === 'counter' ? now.rate : row.kind === 'histogram' ? `${percentiles(row)} · ${now.rate}` : now.value;
  const head = `─ ${row.name}  ${reading}  (${about(row)}) `;
  const lines = [Array.from(head + '─'.repeat(width)).slice(0, width).join('')];
  const axis = 12;
  const g = graph(row.history.toArray(), Math.max(1, width - axis - 1), height - 1);
  g.rows.forEach((line, k) => {
    const tick = k === 0 ? label(g.hi) : k === g.rows.length - 1 ? label(g.lo) : '';
    lines.push(line + ' ' + fit(tick, axis));
  });
  return lines;
}

function helpLines(): string[] {
  const lines = ['', '  Keys', ''];
  for (const [keys, what] of KEYS) lines.push(`  ${keys.padEnd(18)}${what}`);
  lines.push('', '  Counters show per-second rates (– until a second capture, and after a reset);', '  levels show their value, histograms their p99 and observations per second.', '  Σ min max avg #0 mark aggregates over the subordinates.', '', '  any key closes this help');
  return lines;
}

function footer(view: ViewState, info: FrameInfo): string {
  if (view.mode === 'filter') return `filter: ${view.filter}▏  (Enter keeps it, Esc drops it)`;
  if (view.message !== '') return view.message;
  if (info.error !== null) return info.error;
  return '↑↓ move  Enter open  ← up  / filter  s sort  c clear  p pause  ? help  q quit';
}

/**
 * The screen: exactly size.rows lines, each exactly size.columns wide once styles are dropped. `rows` are
 * the visible rows in order, `view.scroll` already keeps the selection on screen (see pageSize).
 */
export function renderFrame(view: ViewState, rows: readonly Row[], selected: number, info: FrameInfo, size: Size): string[] {
  const width = size.columns;
  if (width < 40 || size.rows < 6) {
    const lines = [fit(`terminal ${width}×${size.rows} is too small for statsfs top: 40×6 at least`, width)];
    while (lines.length < size.rows) lines.push(' '.repeat(width));
    return lines;
  }
  const cols = columns(width);
  const { table, graph: graphHeight } = layout(size);
  const lines: string[] = [REVERSE + title(view, info, width) + RESET];
  const head = '  ' + fit('NAME', cols.name) + ' ' + fit('AGG', 3, 'right') + ' ' + fit('VALUE', cols.value, 'right') + ' ' + fit('RATE', cols.rate, 'right') + '  ' + fit('HISTORY', cols.history);
  lines.push(BOLD + fit(head, width) + RESET);
  const body: string[] = [];
  if (view.mode === 'help') {
    for (const line of helpLines()) body.push(fit(line, width));
  } else if (rows.length === 0) {
    body.push(fit(info.takenAt === null ? '  reading…' : view.filter !== '' ? `  nothing here matches "${view.filter}"` : '  no values here', width));
  } else {
    for (let k = view.scroll; k < Math.min(rows.length, view.scroll + table); k++) {
      const line = fit(rowLine(rows[k], cols), width);
      body.push(k === selected ? REVERSE + line + RESET : line);
    }
  }
  for (let k = 0; k < table; k++) lines.push(body[k] ?? ' '.repeat(width));
  if (graphHeight > 0) {
    const row = rows[selected];
    const g = row && view.mode !== 'help' ? graphLines(row, width, graphHeight) : [];
    for (let k = 0; k < graphHeight; k++) lines.push(k === 0 ? DIM + fit(g[k] ?? '', width) + RESET : fit(g[k] ?? '', width));
  }
  lines.push(REVERSE + fit(' ' + footer(view, info), width) + RESET);
  return lines;
}

/** How the height is shared: title, column heads and footer take 3 lines, the selected value's graph up to 7. */
export function layout(size: Size): { table: number; graph: number } {
  const graph = size.rows >= 16 ? Math.min(7, Math.floor(size.rows / 3)) : 0;
  return { table: Math.max(1, size.rows - 3 - graph), graph };
}

/** Every value of the subtree as aligned text, for scripts (`statsfs top --once net | grep …`). */
export function renderPlain(rows: readonly Row[]): string[] {
  const table = rows.map((row) => {
    const cells = CELLS[row.kind](row);
    const text = row.kind === 'histogram' ? `${row.text} (${percentiles(row)})` : row.text;
    return [row.name, row.aggregate ? (AGGREGATE_MARKS[row.aggregate] ?? 'agg') : '', text, row.kind === 'counter' || row.kind === 'histogram' ? cells.rate : '', row.unit];
  });
  const heads = ['PATH', 'AGG', 'VALUE', 'RATE', 'UNIT'];
  const widths = heads.map((h, c) => Math.max(Array.from(h).length, ...table.map((cells) => Array.from(cells[c]).length)));
  const line = (cells: string[]): string =>
    cells
      .map((cell, c) => (c === 2 || c === 3 ? fit(cell, widths[c], 'right') : fit(cell, widths[c])))
      .join('  ')
      .trimEnd();
  return [line(heads), ...table.map(line)];
}
