/**
 * statsfs top without a terminal or a mount: rates and resets, number formatting, sparklines, the keys and
 * the frames. The model reads real `.snapshot.bin` files written by the daemon's own renderer into a
 * temporary directory, with capture times set by the test.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { renderBinary } from '../../../src/export/binary.js';
import { captureSnapshot, Schema, Source, type ValueGroup } from '../../../src/model/index.js';
import { fit, graph, quantity, sparkline } from '../../../src/top/format.js';
import { TopModel, type Row } from '../../../src/top/model.js';
import { counterStep, History, perSecond } from '../../../src/top/rates.js';
import { layout, renderFrame, renderPlain, stripAnsi, type FrameInfo } from '../../../src/top/render.js';
import { decodeKeys } from '../../../src/top/terminal.js';
import { sourcePath } from '../../../src/top/command.js';
import { handleKey, initialView, keepInView, visibleRows, type ViewState } from '../../../src/top/view.js';

describe('counter rates', () => {
  it('a step is the increase; a decrease (clear, wrap, restart) is no step at all', () => {
    expect(counterStep(10n, 25n)).toBe(15n);
    expect(counterStep(7n, 7n)).toBe(0n);
    expect(counterStep(1000n, 0n)).toBeNull(); // echo 0 >
    expect(counterStep(250n, 4n)).toBeNull(); // a u8 that wrapped
    expect(counterStep(2n ** 64n - 5n, 2n ** 64n - 1n)).toBe(4n);
    expect(counterStep(-3n, 2n)).toBe(5n);
  });

  it('per second over the interval; nothing without a step or without time', () => {
    expect(perSecond(150n, 500)).toBe(300);
    expect(perSecond(null, 1000)).toBeNull();
    expect(perSecond(5n, 0)).toBeNull();
  });

  it('a history keeps the last points, oldest first', () => {
    const h = new History(3);
    expect(h.toArray()).toEqual([]);
    for (const p of [1, 2, 3, 4]) h.push(p);
    expect(h.toArray()).toEqual([2, 3, 4]);
    expect(h.length).toBe(3);
  });
});

describe('the model over real .snapshot.bin files', () => {
  let dir = '';
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const schema = new Schema([
    { name: 'hits', type: 'u64', aggr: 'sum', unit: 'requests' },
    { name: 'small', type: 'u8' },
    { name: 'temp', type: 's16', aggr: 'max', floating: true, unit: 'celsius' },
  ]);

  /** `web` (aggregates) with subordinates a and b. */
  function tree(): { root: Source; web: Source; sa: Source; a: ValueGroup; b: ValueGroup } {
    const root = Source.root();
    const web = new Source('web');
    root.addSubordinate(web);
    web.addAggregates(schema);
    const sa = new Source('a');
    const sb = new Source('b');
    web.addSubordinate(sa);
    web.addSubordinate(sb);
    return { root, web, sa, a: sa.addValues(schema), b: sb.addValues(schema) };
  }
  /** What opening `<path>/.snapshot.bin` would give, captured at `ms`. */
  function write(source: Source, path: string, ms: number): void {
    const buf = renderBinary(captureSnapshot(source));
    buf.writeBigUInt64LE(BigInt(ms) * 1_000_000n, 24); // taken_at_ns: not part of the layout id
    mkdirSync(join(dir, path), { recursive: true });
    writeFileSync(join(dir, path, '.snapshot.bin'), buf);
  }
  const row = (model: TopModel, name: string): Row => model.rows().find((r) => r.name === name)!;

  it('counters become rates over the capture times; levels stay values; sources count what changed', async () => {
    dir = mkdtempSync(join(tmpdir(), 'top-model-'));
    const t = tree();
    t.a.set('hits', 100);
    t.a.set('temp', -5);
    t.b.set('temp', -7);
    write(t.web, 'web', 1_000_000);
    const model = new TopModel(dir, 'web');
    await model.refresh();
    expect(model.rows().map((r) => `${r.kind} ${r.name}`)).toEqual(['source a', 'source b', 'counter hits', 'counter small', 'level temp']);
    expect(row(model, 'hits')).toMatchObject({ path: 'web/hits', aggregate: 'sum', value: 100, rate: null, unit: 'requests', mode: 0o644 });
    expect(row(model, 'temp')).toMatchObject({ kind: 'level', aggregate: 'max', value: -5, text: '-5', mode: 0o444 });

    t.a.add('hits', 300);
    t.b.add('hits', 200);
    t.a.set('temp', 40);
    write(t.web, 'web', 1_000_500);
    await model.refresh();
    expect(row(model, 'hits').rate).toBe(1000); // 500 in 0.5 s
    expect(row(model, 'small').rate).toBe(0);
    expect(row(model, 'temp')).toMatchObject({ value: 40, rate: null });
    expect(row(model, 'temp').history.toArray()).toEqual([-5, 40]);
    expect(row(model, 'a')).toMatchObject({ kind: 'source', value: 3, text: '3 values', rate: 2 }); // hits and temp changed
    expect(row(model, 'b').rate).toBe(1);
  });

  it('a clear or a wrap leaves a gap, never a negative rate, and the rate resumes after it', async () => {
    dir = mkdtempSync(join(tmpdir(), 'top-model-'));
    const t = tree();
    t.a.set('hits', 5000);
    t.a.set('small', 250);
    write(t.sa, 'web/a', 2_000_000);
    const model = new TopModel(dir, 'web/a');
    await model.refresh();
    t.a.clear('hits'); // echo 0 >
    t.a.add('hits', 40);
    t.a.add('small', 10); // u8: 250 + 10 wraps to 4
    write(t.sa, 'web/a', 2_001_000);
    await model.refresh();
    expect(row(model, 'small').value).toBe(4);
    expect(row(model, 'small').rate).toBeNull();
    expect(row(model, 'hits').rate).toBeNull();
    t.a.add('hits', 20);
    t.a.add('small', 3);
    write(t.sa, 'web/a', 2_002_000);
    await model.refresh();
    expect(row(model, 'hits').rate).toBe(20);
    expect(row(model, 'small').rate).toBe(3);
    const history = row(model, 'hits').history.toArray();
    expect(history.slice(1).map((p) => (Number.isNaN(p) ? 'gap' : p))).toEqual(['gap', 20]);
    expect(history.every((p) => Number.isNaN(p) || p >= 0)).toBe(true);
  });

  it('a subordinate leaving a sum is a gap, not a spike; moving into a source keeps the rates going', async () => {
    dir = mkdtempSync(join(tmpdir(), 'top-model-'));
    const t = tree();
    t.a.set('hits', 1000);
    t.b.set('hits', 1000);
    write(t.web, 'web', 3_000_000);
    const model = new TopModel(dir, 'web');
    await model.refresh();
    t.a.add('hits', 10);
    t.b.add('hits', 10);
    t.web.removeSubordinate(t.web.subordinates.find((s) => s.name === 'b')!);
    write(t.web, 'web', 3_001_000);
    await model.refresh();
    expect(row(model, 'hits').value).toBe(1010);
    expect(row(model, 'hits').rate).toBeNull(); // the sum fell by b's 1010: no -1000/s, no +1010/s
    expect(model.rows().map((r) => r.name)).not.toContain('b');

    // into web/a: another file, the same values: the rate carries on from the capture above
    t.a.add('hits', 50);
    write(t.sa, 'web/a', 3_002_000);
    model.show('web/a');
    await model.refresh();
    expect(model.path).toBe('web/a');
    expect(row(model, 'hits')).toMatchObject({ path: 'web/a/hits', aggregate: null, rate: 50 });
    expect(model.allRows().map((r) => r.name)).toEqual(['hits', 'small', 'temp']);
  });

  it('a histogram shows its p50 and p99 and the rate of its count; a clear of it is no negative rate', async () => {
    dir = mkdtempSync(join(tmpdir(), 'top-model-'));
    const timings = new Schema([{ name: 'latency', type: 'histogram', aggr: 'sum', unit: 'milliseconds' }]);
    const root = Source.root();
    const api = new Source('api');
    root.addSubordinate(api);
    api.addAggregates(timings);
    const groups = ['a', 'b'].map((name) => {
      const s = new Source(name);
      api.addSubordinate(s);
      return s.addValues(timings);
    });
    for (let v = 1; v <= 100; v++) groups[v % 2].observe('latency', v);
    write(api, 'api', 4_000_000);
    const model = new TopModel(dir, 'api');
    await model.refresh();
    const first = row(model, 'latency');
    expect(first).toMatchObject({ kind: 'histogram', aggregate: 'sum', value: 100, rate: null });
    // within the buckets' 1.1 % of the merged samples' own percentiles (50 and 99)
    expect(first.quantiles!.p50).toBeGreaterThan(50 * 0.985);
    expect(first.quantiles!.p50).toBeLessThan(50 * 1.015);
    expect(first.quantiles!.p99).toBeGreaterThan(99 * 0.985);
    expect(first.quantiles!.p99).toBeLessThan(99 * 1.015);
    for (let k = 0; k < 300; k++) groups[0].observe('latency', 1000);
    write(api, 'api', 4_002_000);
    await model.refresh();
    expect(row(model, 'latency')).toMatchObject({ value: 400, rate: 150 }); // 300 observations in 2 s
    expect(row(model, 'latency').quantiles!.p99).toBeGreaterThan(985);
    expect(stripAnsi(renderPlain(model.rows()).join('\n'))).toMatch(/^latency +Σ +400 \(p50 9\d\d ms · p99 9\d\d ms\) +150\/s +milliseconds$/m);
    groups[0].clear('latency');
    write(api, 'api', 4_003_000);
    await model.refresh();
    expect(row(model, 'latency')).toMatchObject({ value: 50, rate: null });
  });
});

describe('numbers for people', () => {
  it('bytes in binary steps, times in their steps, everything else in k/M/G', () => {
    expect(quantity(512, 'bytes')).toBe('512 B');
    expect(quantity(1536, 'bytes')).toBe('1.50 KiB');
    expect(quantity(5 * 1024 ** 3, 'bytes', true)).toBe('5.00 GiB/s');
    expect(quantity(2500, 'milliseconds')).toBe('2.50 s');
    expect(quantity(340, 'microseconds')).toBe('340 µs');
    expect(quantity(1500, 'us', true)).toBe('1.50 ms/s');
    expect(quantity(7200, 'seconds')).toBe('2.00 h');
    expect(quantity(0, 'milliseconds', true)).toBe('0 ms/s');
    expect(quantity(12_345, 'requests')).toBe('12.3k');
    expect(quantity(999, '')).toBe('999');
    expect(quantity(1_000_000, 'packets', true)).toBe('1.00M/s');
    expect(quantity(0.5, '', true)).toBe('0.50/s');
    expect(quantity(-5, 'celsius')).toBe('-5');
    expect(quantity(2 ** 64, '')).toBe('18.4E');
  });

  it('sparklines: eighth blocks from zero to the highest point, gaps as spaces, newest on the right', () => {
    expect(sparkline([0, 4, 8], 3)).toBe('▁▄█');
    expect(sparkline([0, 4, 8], 5)).toBe('  ▁▄█');
    expect(sparkline([1, NaN, 8], 3)).toBe('▁ █');
    expect(sparkline([3, 3], 2)).toBe('██');
    expect(sparkline([0, 0], 2)).toBe('▁▁');
    expect(sparkline([1, 2, 3, 4, 5, 6, 7, 8, 9], 4)).toHaveLength(4);
  });

  it('a graph fills its columns bottom up, one column per point', () => {
    const g = graph([0, 8, 16], 3, 2);
    expect(g).toEqual({ rows: ['  █', '▁██'], lo: 0, hi: 16 });
  });

  it('fit cuts with an ellipsis and pads to the width', () => {
    expect(fit('rx_bytes', 5)).toBe('rx_b…');
    expect(fit('lo', 4, 'right')).toBe('  lo');
  });
});

/** A row as the model makes them, for the keys and the frames. */
function fakeRow(kind: Row['kind'], name: string, fields: Partial<Row> = {}): Row {
  const history = new History(10);
  for (const p of [1, 2, 3]) history.push(p);
  const counting = kind === 'counter' || kind === 'histogram';
  const quantiles = kind === 'histogram' ? { p50: 12, p99: 250 } : null;
  return { kind, name, path: `web/${name}`, aggregate: null, unit: '', description: '', mode: counting ? 0o644 : 0o444, text: '7', value: 7, rate: counting ? 2 : null, history, sources: 0, quantiles, ...fields };
}

describe('keys', () => {
  const rows = visibleRows(
    [fakeRow('counter', 'hits', { value: 10, rate: 5 }), fakeRow('level', 'temp', { value: 90 }), fakeRow('source', 'b', { value: 3 }), fakeRow('source', 'a', { value: 9 }), fakeRow('counter', 'ro', { mode: 0o444, rate: 50 })],
    initialView(),
  );
  const ctx = { path: 'web', rows, page: 10 };
  const press = (keys: string[], view: ViewState = initialView()) => {
    let v = view;
    const actions = [];
    for (const key of keys) {
      const r = handleKey(v, key, { ...ctx, rows: visibleRows(rows, v) });
      v = r.view;
      actions.push(r.action);
    }
    return { view: v, actions };
  };

  it('decodes what a terminal sends', () => {
    expect(decodeKeys('\x1b[A\x1b[B\x1bOC\x1b[D\r\x7f\x03/x\x1b[5~\x1b[6~\x1b[1;5A\x1bq')).toEqual({
      keys: ['up', 'down', 'right', 'left', 'enter', 'backspace', 'ctrl-c', '/', 'x', 'pageup', 'pagedown', 'up', 'escape', 'q'],
      rest: '',
    });
    // a key cut in two by the connection: the start waits for the rest
    expect(decodeKeys('j\x1b[')).toEqual({ keys: ['j'], rest: '\x1b[' });
    expect(decodeKeys('\x1b[' + '5')).toEqual({ keys: [], rest: '\x1b[5' });
    expect(decodeKeys('\x1b[5' + '~')).toEqual({ keys: ['pageup'], rest: '' });
    expect(decodeKeys('\x1b')).toEqual({ keys: [], rest: '\x1b' });
  });

  it('sources come first; s cycles name, value, rate', () => {
    expect(rows.map((r) => r.name)).toEqual(['a', 'b', 'hits', 'ro', 'temp']);
    const byValue = press(['s']).view;
    expect(byValue.sort).toBe('value');
    expect(visibleRows(rows, byValue).map((r) => r.name)).toEqual(['a', 'b', 'temp', 'hits', 'ro']);
    const byRate = press(['s', 's']).view;
    expect(visibleRows(rows, byRate).map((r) => r.name)).toEqual(['a', 'b', 'ro', 'hits', 'temp']);
    expect(press(['s', 's', 's']).view.sort).toBe('name');
  });

  it('moves, opens a source, refuses to open a value, goes up selecting where it came from', () => {
    expect(press(['down', 'j', 'k']).view.selected).toBe('b');
    expect(press(['G']).view.selected).toBe('temp');
    expect(press(['up']).view.selected).toBe('a');
    expect(press(['enter']).actions[0]).toEqual({ type: 'show', path: 'web/a' });
    expect(press(['j', 'right']).actions[1]).toEqual({ type: 'show', path: 'web/b' });
    expect(press(['G', 'enter']).view.message).toMatch(/temp is a value/);
    const up = press(['backspace']);
    expect(up.actions[0]).toEqual({ type: 'show', path: '' });
    expect(up.view.selected).toBe('web');
    expect(handleKey(initialView(), 'left', { ...ctx, path: '' }).view.message).toMatch(/top of the mount/);
  });

  it('/ filters by name as it is typed; Enter keeps it, Esc drops it', () => {
    const typing = press(['/', 'H', 'i']).view;
    expect(typing).toMatchObject({ mode: 'filter', filter: 'Hi' });
    expect(visibleRows(rows, typing).map((r) => r.name)).toEqual(['hits']);
    expect(press(['/', 'h', 'x', 'backspace', 'enter']).view).toMatchObject({ mode: 'browse', filter: 'h' });
    expect(press(['/', 'h', 'escape']).view).toMatchObject({ mode: 'browse', filter: '' });
    expect(press(['/', 'q']).actions[1]).toEqual({ type: 'none' }); // q is a letter while filtering
  });

  it('c asks before clearing a writable counter, and refuses sources, levels and read-only counters', () => {
    const asked = press(['j', 'j', 'c']);
    expect(asked.view).toMatchObject({ mode: 'confirm', confirming: 'web/hits', message: 'clear web/hits? y clears, any other key keeps it' });
    expect(press(['y'], asked.view).actions[0]).toEqual({ type: 'clear', path: 'web/hits' });
    expect(press(['n'], asked.view)).toMatchObject({ view: { mode: 'browse', message: 'not cleared' }, actions: [{ type: 'none' }] });
    expect(press(['G', 'c']).view.message).toBe('temp cannot be cleared: it is a level');
    expect(press(['j', 'j', 'j', 'c']).view.message).toBe('ro cannot be cleared: it is read-only (mode 0444)');
    expect(press(['c']).view.message).toMatch(/a is a source/);
  });

  it('c on a histogram clears it through its count file', () => {
    const histograms = visibleRows([fakeRow('histogram', 'latency')], initialView());
    const r = handleKey(initialView(), 'c', { path: 'web', rows: histograms, page: 10 });
    expect(r.view).toMatchObject({ mode: 'confirm', confirming: 'web/latency/count' });
    expect(handleKey(r.view, 'y', { path: 'web', rows: histograms, page: 10 }).action).toEqual({ type: 'clear', path: 'web/latency/count' });
  });

  it('p pauses and resumes, ? shows the help until a key, q and Ctrl-C quit in every mode', () => {
    expect(press(['p']).actions[0]).toEqual({ type: 'pause', paused: true });
    expect(press(['p', 'p']).actions[1]).toEqual({ type: 'pause', paused: false });
    expect(press(['?']).view.mode).toBe('help');
    expect(press(['?', 'x']).view.mode).toBe('browse');
    expect(press(['q']).actions[0]).toEqual({ type: 'quit' });
    expect(press(['/', 'ctrl-c']).actions[1]).toEqual({ type: 'quit' });
  });

  it('keeps the selection on screen', () => {
    expect(keepInView(0, 15, 40, 10)).toBe(6);
    expect(keepInView(20, 3, 40, 10)).toBe(3);
    expect(keepInView(35, 39, 40, 10)).toBe(30);
  });

  it('a path is taken from the mount root, or as an absolute path inside the mount', () => {
    expect(sourcePath('/run/statsfs', undefined)).toBe('');
    expect(sourcePath('/run/statsfs', 'net/lo/')).toBe('net/lo');
    expect(sourcePath('/run/statsfs', '/run/statsfs/net')).toBe('net');
    expect(() => sourcePath('/run/statsfs', '/tmp/x')).toThrow(/not inside the mount/);
    expect(() => sourcePath('/run/statsfs', 'net/../..')).toThrow(/without/);
  });
});

describe('frames', () => {
  const rows = [
    fakeRow('source', 'eth0', { text: '24 values', value: 24, rate: 3, sources: 0 }),
    fakeRow('counter', 'rx_bytes', { aggregate: 'sum', unit: 'bytes', value: 522_664_078, text: '522664078', rate: 1.5 * 1024 * 1024 }),
    fakeRow('level', 'temp', { aggregate: 'max', unit: 'celsius', value: -5, text: '-5' }),
    fakeRow('level', 'state', { text: 'up', value: 1 }),
    fakeRow('counter', 'runs', { rate: null }),
  ];
  const info: FrameInfo = { mount: '/run/statsfs', path: 'net', intervalSeconds: 1, takenAt: new Date(2026, 0, 1, 12, 0, 1), values: 120, error: null };

  it('fills the terminal exactly, at 80×24 and at 200×60', () => {
    for (const size of [{ columns: 80, rows: 24 }, { columns: 200, rows: 60 }, { columns: 40, rows: 6 }]) {
      const lines = renderFrame(initialView(), rows, 0, info, size).map(stripAnsi);
      expect(lines).toHaveLength(size.rows);
      for (const line of lines) expect(Array.from(line)).toHaveLength(size.columns);
    }
  });

  it('shows rates for counters, values for levels, marks aggregates, and graphs the selected row', () => {
    const lines = renderFrame(initialView(), rows, 1, info, { columns: 80, rows: 24 });
    const text = lines.map(stripAnsi);
    expect(text[0]).toMatch(/^ statsfs top {2}\/run\/statsfs\/net .*120 values · every 1s · sort name {2}12:00:01 $/);
    expect(text[1]).toMatch(/NAME +AGG +VALUE +RATE {2}HISTORY/);
    expect(text[2]).toMatch(/^▸ eth0 +24 values +3 changed +▃▅█$/);
    expect(text[3]).toMatch(/^ {2}rx_bytes +Σ +498 MiB +1\.50 MiB\/s +▃▅█$/);
    expect(text[4]).toMatch(/^ {2}temp +max +-5 +▃▅█$/);
    expect(text[5]).toMatch(/^ {2}state +up /);
    expect(text[6]).toMatch(/^ {2}runs +7 +– /);
    expect(lines[3]).toMatch(/^\x1b\[7m/); // the selected row in reverse video
    const g = layout({ columns: 80, rows: 24 });
    expect(text[2 + g.table]).toMatch(/^─ rx_bytes {2}1\.50 MiB\/s {2}\(counter · sum aggregate · 0644, c clears\) ─+$/);
    expect(text[2 + g.table + 1]).toMatch(/█ 3 B\/s/); // the highest point, labelled
    expect(text[23]).toMatch(/q quit/);
  });

  it('the footer asks before a clear, shows the filter being typed, and the help replaces the table', () => {
    const keys = { path: 'net', rows, page: 10 };
    const asked = handleKey(handleKey(initialView(), 'G', keys).view, 'c', keys).view;
    const confirm = renderFrame(asked, rows, 4, info, { columns: 80, rows: 24 }).map(stripAnsi);
    expect(confirm[23]).toMatch(/^ clear web\/runs\? y clears, any other key keeps it +$/);
    const aggregate = handleKey(handleKey(initialView(), 'j', keys).view, 'c', keys).view;
    expect(aggregate.message).toBe('clear web/rx_bytes and the rx_bytes of every source below it? y clears, any other key keeps them');
    const filter = renderFrame({ ...initialView(), mode: 'filter', filter: 'rx' }, rows.slice(1, 2), 0, info, { columns: 80, rows: 24 }).map(stripAnsi);
    expect(filter[0]).toMatch(/filter "rx"/);
    expect(filter[23]).toMatch(/filter: rx/);
    const help = renderFrame({ ...initialView(), mode: 'help' }, rows, 0, info, { columns: 80, rows: 24 }).map(stripAnsi).join('\n');
    expect(help).toMatch(/Enter → {2}l +open the selected source/);
    expect(help).toMatch(/c +clear the selected counter/);
  });

  it('a terminal too small says so', () => {
    expect(stripAnsi(renderFrame(initialView(), rows, 0, info, { columns: 30, rows: 5 })[0])).toMatch(/too small/);
  });

  it('plain text lists every value with its path, reading and rate', () => {
    expect(renderPlain(rows.slice(1))).toEqual([
      'PATH      AGG      VALUE        RATE  UNIT',
      'rx_bytes  Σ    522664078  1.50 MiB/s  bytes',
      'temp      max         -5              celsius',
      'state                 up',
      'runs                   7           –',
    ]);
  });
});
