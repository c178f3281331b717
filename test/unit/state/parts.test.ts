/**
 * What the producer socket and the StatsD receiver save for a state checkpoint, and how they restore it:
 * through JSON, into a fresh tree, with the values exact and the kept nodes adopted by their owner.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, type SchemaHandle, type SourceHandle, type StatsClient, type ValuesHandle } from '../../../src/client/index.js';
import { rng } from '../../helpers/rng.js';
import { waitFor } from '../../helpers/wait.js';
import { Source } from '../../../src/model/index.js';
import { ProducerTree, type KeptRecord, type KeptState } from '../../../src/producers/producer-tree.js';
import { ProducerServer } from '../../../src/producers/socket-server.js';
import { StatsdServer } from '../../../src/producers/statsd.js';

const viaJson = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;

/** Every source below `root` (hidden ones too) with its groups and what they hold, aggregates computed: sorted lines. */
function dump(root: Source): string[] {
  const lines: string[] = [];
  const walk = (src: Source, path: string): void => {
    for (const g of src.valueGroups) {
      const held = g.schema.defs.map((d) => (d.histogram ? JSON.stringify(g.histogram(d.name).toState()) : g.get(d.index).toString()));
      lines.push(`${path}${src.hidden ? ' (hidden)' : ''} ${g.isAggregate ? 'aggregates' : 'values'}${g.hidden ? ' hidden' : ''}: ${held.join(' ')}`);
    }
    if (src.valueGroups.length === 0) lines.push(`${path}${src.hidden ? ' (hidden)' : ''}`);
    for (const sub of src.subordinates) walk(sub, `${path}/${sub.name}`);
  };
  walk(root, '');
  return lines.sort();
}

function at(root: Source, path: string): Source | undefined {
  let s: Source | undefined = root;
  for (const p of path.split('/')) s = s?.subordinate(p);
  return s;
}

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

async function serve(root: Source): Promise<{ server: ProducerServer; sock: string }> {
  const sock = join(mkdtempSync(join(tmpdir(), 'statsfs-parts-')), 'p.sock');
  const server = new ProducerServer(root, { path: sock });
  await server.listen();
  closers.push(() => server.close());
  return { server, sock };
}

async function client(sock: string, owner: string, keep: boolean): Promise<StatsClient> {
  const c = await connect({ socket: sock, owner, keep, reconnect: false });
  closers.push(() => c.close());
  return c;
}

/** Builds the same nodes each time: nested sources, a hidden one, aggregates, an enum, a histogram. */
function build(c: StatsClient) {
  const schema = c.define([
    { name: 'n', type: 'u64', aggr: 'sum' },
    { name: 's', type: 's64', floating: true },
    { name: 'state', type: 'u8', enum: ['idle', 'busy'] },
    { name: 'lat', type: 'histogram', unit: 'ms' },
  ]);
  const app = c.source('app');
  app.aggregates(schema);
  const web = app.source('web').values(schema);
  const hid = app.source('bg', { hidden: true }).values(schema);
  return { web, hid };
}

describe('producer state', () => {
  it('what keeping owners hold is restored exactly and adopted, values and all, by the owner reconnecting', async () => {
    const first = await serve(Source.root());
    const c = await client(first.sock, 'p', true);
    const { web, hid } = build(c);
    web.set('n', 2n ** 53n + 1n); // beyond a double's exact integers
    web.set('s', -5);
    web.set('state', 1);
    web.observe('lat', 12.5, 3);
    hid.set('n', 7);
    await c.flush();
    const other = await client(first.sock, 'q', false); // not kept: not saved
    other.counter('q/x').add(1);
    await other.flush();
    const saved = viaJson(first.server.saveKept());
    expect(saved.owners.map((o) => o.owner)).toEqual(['p']);
    expect(saved.schemas).toHaveLength(1); // each definition list once

    const root = Source.root();
    const second = await serve(root);
    second.server.restoreKept(saved);
    expect(at(root, 'app/web')!.getValue('n')).toBe(2n ** 53n + 1n);
    expect(at(root, 'app')!.getValue('n')).toBe(2n ** 53n + 8n);
    expect(at(root, 'app/web')!.getValue('s')).toBe(-5n);
    expect(at(root, 'app/web')!.findValue('state')!.group.render('state')).toBe('busy\n');
    expect(at(root, 'app/web')!.findValue('lat')!.group.histogram('lat').toState()).toMatchObject({ count: [3, 0], sum: 37.5, min: 12.5, max: 12.5 });
    expect(at(root, 'app')!.subordinate('bg')).toBeUndefined(); // hidden, still aggregated
    // the owner comes back: the same nodes are adopted with the daemon's values, not its own
    const again = await client(second.sock, 'p', true);
    const back = build(again);
    await again.flush();
    expect(back.web.get('n')).toBe(2n ** 53n + 1n);
    expect(back.hid.get('n')).toBe(7);
    back.web.add('n', 1);
    await again.flush();
    expect(at(root, 'app/web')!.getValue('n')).toBe(2n ** 53n + 2n);
  });

  it("an owner whose last connection did not keep loses its nodes, and the change is counted for the next checkpoint", async () => {
    const { server, sock } = await serve(Source.root());
    const kept = await connect({ socket: sock, owner: 'p', keep: true, reconnect: false });
    kept.counter('a/n').add(1);
    await kept.flush();
    const plain = await connect({ socket: sock, owner: 'p', keep: false, reconnect: false });
    await plain.flush();
    expect(server.saveKept().owners).toHaveLength(1);
    await kept.close();
    const before = server.keptChanges;
    await plain.close();
    await waitFor('the departure', () => server.keptChanges > before);
    expect(server.saveKept().owners).toEqual([]);
  });

  it('a restored source whose name another took meanwhile is left out with what was below it', async () => {
    const first = await serve(Source.root());
    const c = await client(first.sock, 'p', true);
    c.counter('app/web/n').add(1);
    c.counter('top/n').add(2);
    await c.flush();
    const root = Source.root();
    root.addSubordinate(new Source('app'));
    const second = await serve(root);
    second.server.restoreKept(viaJson(first.server.saveKept()));
    expect(at(root, 'app/web')).toBeUndefined();
    expect(at(root, 'top')!.getValue('n')).toBe(2n);
  });
});

describe('StatsD state', () => {
  it('counters, gauges, timings and histograms come back exact; names taken meanwhile are skipped', () => {
    const first = new StatsdServer(Source.root());
    first.ingest('a.b.c:5|c\na.b.c:9007199254740993|c\ng:-3|g\nt.lat:12|ms|@0.5\nt.lat:40|ms\nh:0.25|h\nh:0|h');
    const saved = viaJson(first.saveMetrics());
    expect(saved.map(([n, k]) => `${n}:${k}`).sort()).toEqual(['a.b.c:counter', 'g:gauge', 'h:histogram', 't.lat:timing']);
    const root = Source.root();
    root.addSubordinate(new Source('g'));
    const second = new StatsdServer(root);
    second.restoreMetrics(saved);
    expect(at(root, 'a/b')!.getValue('c')).toBe(9007199254740998n);
    expect(root.findValue('g')).toBeUndefined(); // a source took the name
    expect(viaJson(second.saveMetrics()).filter(([n]) => n !== 'g')).toEqual(saved.filter(([n]) => n !== 'g'));
    // lines go on from the restored values
    second.ingest('a.b.c:2|c');
    expect(at(root, 'a/b')!.getValue('c')).toBe(9007199254741000n);
    expect(second.changes).toBe(1);
  });
});

describe('journal records of the parts', () => {
  it('producers: a chunk of updates journals the touched groups; replayed over the checkpoint, they win', async () => {
    const first = await serve(Source.root());
    const records: unknown[] = [];
    // a server journaling into `records`, as the daemon's keeper would
    const root = Source.root();
    const sock = join(mkdtempSync(join(tmpdir(), 'statsfs-parts-')), 'p.sock');
    const server = new ProducerServer(root, { path: sock, journal: { append: (part, data) => void records.push([part, viaJson(data)]) } });
    await server.listen();
    closers.push(() => server.close());
    const c = await client(sock, 'p', true);
    const { web } = build(c);
    await c.flush();
    const checkpoint = viaJson(server.saveKept());
    const cut = records.length;
    // nodes and definitions, no values (a chunk of frames each)
    expect(records.map((r) => ((r as [string, KeptRecord])[1].changes === undefined ? 'values' : 'changes'))).not.toContain('values');
    web.set('n', 41);
    await c.flush();
    web.add('n', 1);
    web.observe('lat', 3);
    await c.flush();
    expect(records.slice(cut).map((r) => Object.keys((r as [string, object])[1]).join())).toEqual(['values', 'values']);
    // a restart: the checkpoint, then the journal after it
    first.server.restoreKept(checkpoint);
    for (const [, data] of records.slice(cut)) first.server.replayKept(data);
    const again = await client(first.sock, 'p', true);
    const back = build(again);
    await again.flush();
    expect([back.web.get('n'), back.web.get('lat')]).toEqual([42, 1]);
  });

  it('producers: a random sequence of changes by keeping owners, replayed over a checkpoint, makes the live tree again', async () => {
    const random = rng(15);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
    const records: unknown[] = [];
    const root = Source.root();
    const sock = join(mkdtempSync(join(tmpdir(), 'statsfs-parts-')), 'p.sock');
    const server = new ProducerServer(root, { path: sock, journal: { append: (part, data) => void records.push(viaJson(data)) } });
    await server.listen();
    closers.push(() => server.close());
    interface Producer {
      c: StatsClient;
      keep: boolean;
      sources: SourceHandle[];
      groups: ValuesHandle[];
      schemas: SchemaHandle[];
    }
    const open = async (owner: string, keep = true): Promise<Producer> => {
      const c = await client(sock, owner, keep);
      const schemas = [
        c.define([{ name: 'n', type: 'u64', aggr: 'sum' }, { name: 'm', type: 's64', aggr: 'min' }]),
        c.define([{ name: 'lat', type: 'histogram', aggr: 'sum' }, { name: 'z', type: 'u32', aggr: 'count_zero' }]),
      ];
      await c.flush();
      return { c, keep, sources: [], groups: [], schemas };
    };
    /** The owner's connection is replaced by one that keeps (or does not): its nodes become kept (or stop being). */
    const flip = async (i: number): Promise<void> => {
      const old = producers[i];
      const owner = i === 0 ? 'p' : 'q';
      producers[i] = await open(owner, !old.keep);
      await old.c.close();
      if (old.keep) await waitFor('the owner stops keeping', () => !server.saveKept().owners.some((o) => o.owner === owner));
    };
    const producers = [await open('p'), await open('q')];
    // checkpoints taken along the way, each with the number of records journaled before it
    const checkpoints: { saved: KeptState; cut: number }[] = [{ saved: viaJson(server.saveKept()), cut: 0 }];
    const names = ['a', 'b', 'c'];
    for (let step = 0; step < 800; step++) {
      const i = Math.floor(random() * producers.length);
      const p = producers[i];
      const parent = p.sources.length > 0 && random() < 0.7 ? pick(p.sources) : undefined;
      const r = random();
      // the first sources, then their first groups, before anything is updated or removed
      const ready = p.sources.length > 0 ? (p.groups.length > 0 ? 1 : 0.4) : 0.2;
      try {
        const name = parent === undefined ? `${i}${pick(names)}` : pick(names);
        if (r < 0.2 || (ready === 0.2 && r < 0.95)) p.sources.push(p.c.source(name, { parent, hidden: random() < 0.2 }));
        else if (r < 0.25) {
          const d = p.c.source(pick(names), { detached: true });
          d.values(p.schemas[0]).set('n', 5);
          p.sources.push(d);
          if (parent !== undefined) void d.attach(parent).catch(() => undefined); // may stay detached (a name taken)
        } else if (r < 0.4 || (ready === 0.4 && r < 0.95)) {
          const src = pick(p.sources);
          if (random() < 0.25) src.aggregates(pick(p.schemas), { hidden: random() < 0.3 });
          else p.groups.push(src.values(pick(p.schemas), { hidden: random() < 0.2 }));
        } else if (r < 0.8) {
          const g = pick(p.groups);
          if (g.schema === p.schemas[0]) {
            if (random() < 0.5) g.set('n', 2n ** 60n + BigInt(Math.floor(random() * 1e6)));
            else g.add('n', Math.floor(random() * 100));
            g.set('m', -Math.floor(random() * 1e9));
          } else {
            g.observe('lat', random() * 100, 1 + Math.floor(random() * 3));
            g.set('z', random() < 0.5 ? 0 : 1);
          }
        } else if (r < 0.82) void pick(p.sources).remove().catch(() => undefined);
        else if (r < 0.85) void pick(p.groups).remove().catch(() => undefined);
        else if (r < 0.87) void pick(p.sources).detach().catch(() => undefined);
        else if (r < 0.88) void p.c.removePath(`${i}${pick(names)}/${pick(names)}`).catch(() => undefined);
        else if (r < 0.95) checkpoints.push({ saved: viaJson(server.saveKept()), cut: records.length });
        else if (r < 0.96) await flip(i);
      } catch {
        // refused by the client already (a removed handle, an attached source): nothing changed
      }
      await producers[i].c.flush().catch(() => undefined); // refusals (a name taken, a removed handle) change nothing
    }
    for (let i = 0; i < producers.length; i++) if (!producers[i].keep) await flip(i);
    await waitFor('every owner keeps', () => viaJson(server.saveKept()).owners.length === 2);
    const live = dump(root);
    expect(live.length).toBeGreaterThan(20);
    expect(live.some((l) => l.includes('hidden'))).toBe(true);
    expect(records.some((r) => JSON.stringify(r).includes('"rs"'))).toBe(true);
    // a restart from the first checkpoint (nothing) and from the last one: the live tree, exactly
    for (const { saved, cut } of [checkpoints[0], checkpoints.at(-1)!]) {
      const again = Source.root();
      const restarted = new ProducerTree(again, { maxSources: 1e6, maxHandles: 1e6, maxValues: 1e6 }, { updates: 0 });
      expect(restarted.restoreKept(saved)).toBe(0);
      let skipped = 0;
      for (const data of records.slice(cut)) skipped += restarted.replayKept(data as KeptRecord);
      expect(skipped).toBe(0);
      expect(dump(again)).toEqual(live);
    }
  });

  it('producers: a change of a large kept state is journaled in a record the size of the change', async () => {
    const records: unknown[] = [];
    const sock = join(mkdtempSync(join(tmpdir(), 'statsfs-parts-')), 'p.sock');
    const server = new ProducerServer(Source.root(), { path: sock, journal: { append: (part, data) => void records.push(viaJson(data)) } });
    await server.listen();
    closers.push(() => server.close());
    const c = await client(sock, 'p', true);
    const schema = c.define([{ name: 'n', type: 'u64' }]);
    for (let i = 0; i < 2000; i++) c.source(`s${i}`).values(schema);
    await c.flush();
    records.length = 0;
    const web = c.source('top').source('web');
    web.values(schema).set('n', 3);
    await c.flush();
    await web.remove();
    // (the frames may come in more than one chunk: a record each)
    const kept = records as KeptRecord[];
    expect(kept.flatMap((r) => r.changes ?? [])).toEqual([
      ['s', 'p', ['top'], false],
      ['s', 'p', ['top', 'web'], false],
      ['g', 'p', ['top', 'web'], 0, false, false, []],
      ['rs', 'p', ['top', 'web']],
    ]);
    expect(kept.flatMap((r) => r.schemas ?? [])).toEqual([[{ name: 'n', type: 'u64', aggr: 'none' }]]);
    expect(kept.flatMap((r) => r.values ?? [])).toEqual([['p', ['top', 'web'], 'n', ['3']]]);
    for (const r of kept) expect(JSON.stringify(r).length).toBeLessThan(300);
  });

  it('producers: replayed changes that no longer fit (a name another took since) are skipped and counted, with what was below them', async () => {
    const records: KeptRecord[] = [];
    const sock = join(mkdtempSync(join(tmpdir(), 'statsfs-parts-')), 'p.sock');
    const server = new ProducerServer(Source.root(), { path: sock, journal: { append: (part, data) => void records.push(viaJson(data) as KeptRecord) } });
    await server.listen();
    closers.push(() => server.close());
    const c = await client(sock, 'p', true);
    c.counter('app/web/n').add(4);
    c.counter('top/n').add(2);
    await c.flush();
    const root = Source.root();
    root.addSubordinate(new Source('app'));
    const tree = new ProducerTree(root, { maxSources: 100, maxHandles: 100, maxValues: 100 }, { updates: 0 });
    let skipped = 0;
    for (const r of records) skipped += tree.replayKept(r);
    expect(skipped).toBe(3); // app, app/web, and the group on app/web (its values find nothing and are dropped)
    expect(at(root, 'app/web')).toBeUndefined();
    expect(at(root, 'top')!.getValue('n')).toBe(2n);
  });

  it('StatsD: the values changed in a turn, or all of them after a removal', async () => {
    const records: unknown[] = [];
    const server = new StatsdServer(Source.root(), { journal: { append: (part, data) => void records.push(viaJson(data)) } });
    server.ingest('a.x:1|c\na.y:2|g');
    await new Promise((r) => setImmediate(r));
    expect(records).toEqual([{ values: [['a.x', 'counter', '1'], ['a.y', 'gauge', '2']] }]);
    records.length = 0;
    const checkpoint = viaJson(server.saveMetrics());
    server.ingest('a.x:4|c');
    await new Promise((r) => setImmediate(r));
    server.removePath('a/y');
    await new Promise((r) => setImmediate(r));
    expect(records).toEqual([{ values: [['a.x', 'counter', '5']] }, { all: [['a.x', 'counter', '5']] }]);
    const root = Source.root();
    const restarted = new StatsdServer(root);
    restarted.restoreMetrics(checkpoint);
    for (const r of records) restarted.replayJournal(r as { all: [] });
    expect(viaJson(restarted.saveMetrics())).toEqual([['a.x', 'counter', '5']]);
  });
});
