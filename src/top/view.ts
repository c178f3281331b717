/**
 * The view's state and what each key does to it: pure, so every key is tested without a terminal. The
 * command carries out the actions a key asks for (quit, show another source, clear a value).
 */
import { parentPath, type Row } from './model.js';

export const SORTS = ['name', 'value', 'rate'] as const;
export type SortKey = (typeof SORTS)[number];

export interface ViewState {
  sort: SortKey;
  /** Rows whose name contains this (case-insensitive). */
  filter: string;
  /** Name of the selected row: kept across refreshes and re-sorts. */
  selected: string | null;
  /** Index of the first row on screen. */
  scroll: number;
  mode: 'browse' | 'filter' | 'confirm' | 'help';
  paused: boolean;
  /** One line for the footer: the outcome of the last key, the question being asked, or an error. */
  message: string;
  /** The path a confirmation is about. */
  confirming: string | null;
}

export type Action =
  | { type: 'none' }
  | { type: 'quit' }
  | { type: 'show'; path: string }
  | { type: 'clear'; path: string }
  | { type: 'pause'; paused: boolean };

export function initialView(sort: SortKey = 'name'): ViewState {
  return { sort, filter: '', selected: null, scroll: 0, mode: 'browse', paused: false, message: '', confirming: null };
}

/** Whether the daemon lets this row be cleared: a counter or histogram whose file is writable (0644). */
export function clearable(row: Row): boolean {
  return (row.kind === 'counter' || row.kind === 'histogram') && (row.mode & 0o200) !== 0;
}

/** The file whose `echo 0 >` clears the row: a histogram is cleared through its count. */
function clearPath(row: Row): string {
  return row.kind === 'histogram' ? `${row.path}/count` : row.path;
}

function byName(a: Row, b: Row): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/** Highest first; rows without a number (no rate yet) last. */
function descending(key: (r: Row) => number | null): (a: Row, b: Row) => number {
  return (a, b) => {
    const x = key(a) ?? -Infinity;
    const y = key(b) ?? -Infinity;
    return x === y ? byName(a, b) : y > x ? 1 : -1;
  };
}

const ORDER: Record<SortKey, (a: Row, b: Row) => number> = {
  name: byName,
  value: descending((r) => r.value),
  rate: descending((r) => (r.kind === 'level' ? null : r.rate)),
};

/** The rows as shown: filtered by name, sources first, each group in the chosen order. */
export function visibleRows(rows: readonly Row[], view: Pick<ViewState, 'filter' | 'sort'>): Row[] {
  const needle = view.filter.toLowerCase();
  const shown = needle === '' ? [...rows] : rows.filter((r) => r.name.toLowerCase().includes(needle));
  const order = ORDER[view.sort];
  return shown.sort((a, b) => (a.kind === 'source') !== (b.kind === 'source') ? (a.kind === 'source' ? -1 : 1) : order(a, b));
}

/** Index of the selected row among `rows` (the first when the selection is gone). */
export function selectedIndex(rows: readonly Row[], view: Pick<ViewState, 'selected'>): number {
  const i = rows.findIndex((r) => r.name === view.selected);
  return i < 0 ? 0 : i;
}

/** The scroll offset that keeps row `index` among the `page` rows on screen. */
export function keepInView(scroll: number, index: number, count: number, page: number): number {
  if (page <= 0) return 0;
  let s = Math.min(scroll, Math.max(0, count - page));
  if (index < s) s = index;
  if (index >= s + page) s = index - page + 1;
  return Math.max(0, s);
}

export interface KeyContext {
  /** The shown source, from the mount's root. */
  path: string;
  /** The rows on screen, in their order. */
  rows: readonly Row[];
  /** How many rows fit on a page. */
  page: number;
}

const NONE: Action = { type: 'none' };

/** What a key does: the next state, and what the command must do. */
export function handleKey(view: ViewState, key: string, ctx: KeyContext): { view: ViewState; action: Action } {
  if (key === 'ctrl-c') return { view, action: { type: 'quit' } };
  const next: ViewState = { ...view, message: '' };
  switch (view.mode) {
    case 'help':
      return { view: { ...next, mode: 'browse' }, action: NONE };
    case 'confirm':
      if (key === 'y' || key === 'Y') return { view: { ...next, mode: 'browse', confirming: null }, action: { type: 'clear', path: view.confirming! } };
      return { view: { ...next, mode: 'browse', confirming: null, message: 'not cleared' }, action: NONE };
    case 'filter':
      if (key === 'enter') return { view: { ...next, mode: 'browse' }, action: NONE };
      if (key === 'escape') return { view: { ...next, mode: 'browse', filter: '' }, action: NONE };
      if (key === 'backspace') return { view: { ...next, filter: Array.from(view.filter).slice(0, -1).join('') }, action: NONE };
      if (Array.from(key).length === 1 && key >= ' ') return { view: { ...next, filter: view.filter + key, scroll: 0 }, action: NONE };
      return { view: next, action: NONE };
    case 'browse':
      return browse(next, key, ctx);
  }
}

function browse(view: ViewState, key: string, ctx: KeyContext): { view: ViewState; action: Action } {
  const { rows } = ctx;
  const index = selectedIndex(rows, view);
  const row: Row | undefined = rows[index];
  const move = (to: number): { view: ViewState; action: Action } => {
    const target = rows[Math.max(0, Math.min(rows.length - 1, to))];
    return { view: { ...view, selected: target?.name ?? null }, action: NONE };
  };
  switch (key) {
    case 'q':
      return { view, action: { type: 'quit' } };
    case 'up':
    case 'k':
      return move(index - 1);
    case 'down':
    case 'j':
      return move(index + 1);
    case 'pageup':
      return move(index - Math.max(1, ctx.page - 1));
    case 'pagedown':
      return move(index + Math.max(1, ctx.page - 1));
    case 'home':
    case 'g':
      return move(0);
    case 'end':
    case 'G':
      return move(rows.length - 1);
    case 'enter':
    case 'right':
    case 'l':
      if (row?.kind !== 'source') return { view: { ...view, message: row ? `${row.name} is a value: Enter opens a source (▸)` : 'nothing to open here' }, action: NONE };
      return { view: { ...view, selected: null, scroll: 0, filter: '' }, action: { type: 'show', path: row.path } };
    case 'left':
    case 'backspace':
    case 'h': {
      if (ctx.path === '') return { view: { ...view, message: 'this is the top of the mount' }, action: NONE };
      const name = ctx.path.slice(ctx.path.lastIndexOf('/') + 1);
      return { view: { ...view, selected: name, scroll: 0, filter: '' }, action: { type: 'show', path: parentPath(ctx.path) } };
    }
    case '/':
      return { view: { ...view, mode: 'filter' }, action: NONE };
    case 'escape':
      return { view: { ...view, filter: '' }, action: NONE };
    case 's': {
      const sort = SORTS[(SORTS.indexOf(view.sort) + 1) % SORTS.length];
      return { view: { ...view, sort, message: `sorted by ${sort}` }, action: NONE };
    }
    case 'c':
      if (!row) return { view, action: NONE };
      if (row.kind === 'source') return { view: { ...view, message: `${row.name} is a source: select a counter to clear` }, action: NONE };
      if (!clearable(row)) {
        const why = row.kind === 'level' ? 'a level' : `read-only (mode ${row.mode.toString(8).padStart(4, '0')})`;
        return { view: { ...view, message: `${row.name} cannot be cleared: it is ${why}` }, action: NONE };
      }
      return {
        // clearing an aggregate clears that value in every source below it (as in the kernel's statsfs)
        view: { ...view, mode: 'confirm', confirming: clearPath(row), message: row.aggregate ? `clear ${row.path} and the ${row.name} of every source below it? y clears, any other key keeps them` : `clear ${row.path}? y clears, any other key keeps it` },
        action: NONE,
      };
    case 'p':
      return { view: { ...view, paused: !view.paused }, action: { type: 'pause', paused: !view.paused } };
    case '?':
      return { view: { ...view, mode: 'help' }, action: NONE };
    default:
      return { view, action: NONE };
  }
}
