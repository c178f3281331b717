/**
 * Histograms through the real daemon and a real mount: two producer processes observe into two sources
 * and `cat` of the parent's aggregate matches the merged samples; StatsD timings from a real client give
 * the right percentiles; the daemon's /metrics passes promtool and a real Prometheus (Debian's package)
 * computes histogram_quantile within the `le` bucket of the true quantile. The bound of the files is the
 * histogram's: 1.09 % (scale 5), plus the 6-digit rounding of the percentile files.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeTcpPort, freeUdpPort } from '../helpers/ports.js';
import { relativeError } from '../../src/model/index.js';
import { ROOT, sh, skipWithoutFuse, startDaemon, tempDir, waitFor, type Daemon } from '../helpers/mount.js';
import { rng } from '../helpers/rng.js';

const logNormal = (rand: () => number, mu: number, sigma: number) => Math.exp(mu + sigma * Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()));

function exactQuantile(sorted: readonly number[], q: number): number {
  const x = q * sorted.length;
  return sorted[Math.max(1, Math.ceil(x - x * 1e-12)) - 1];
}

/** The bucket bound, and the six significant digits a percentile file is printed with. */
const BOUND = relativeError(5) + 1e-5;

const PROMETHEUS = ['/usr/bin/prometheus', '/usr/local/bin/prometheus'].find((p) => existsSync(p)) ?? null;
const PROMTOOL = ['/usr/bin/promtool', '/usr/local/bin/promtool'].find((p) => existsSync(p)) ?? null;

describe.skipIf(skipWithoutFuse)('histograms in the real daemon', { timeout: 90_000 }, () => {
  let d: Daemon;
  let m: string;
  let port: number;
  let metrics: string;
  beforeAll(async () => {
    port = await freeUdpPort();
    const http = await freeTcpPort();
    metrics = `http://127.0.0.1:${http}/metrics`;
    d = await startDaemon(['--no-collectors', '--statsd', `127.0.0.1:${port}`, '--http', `127.0.0.1:${http}`]);
    m = d.mountpoint;
  });
  afterAll(() => d?.cleanup());

  /** A producer process (owner "web", KEEP) that observes `samples` into <top>/<name> and exits. */
  function produce(name: string, samples: number[], top = 'api'): Promise<void> {
    const file = join(tempDir('statsfs-samples-'), 'samples.json');
    writeFileSync(file, JSON.stringify(samples));
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { readFileSync } from 'node:fs';
         import { connect } from 'statsfs/client';
         const c = await connect({ socket: ${JSON.stringify(join(m, '..', 'producers.sock'))}, owner: 'web', keep: true });
         const schema = c.define([{ name: 'latency', type: 'histogram', unit: 'ms', aggr: 'sum', description: 'latency of ${top}' }]);
         c.source('${top}').aggregates(schema);
         const v = c.source('${top}/${name}').values(schema);
         for (const x of JSON.parse(readFileSync(${JSON.stringify(file)}, 'utf8'))) v.observe('latency', x);
         await c.close();`,
      ],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (x) => (stderr += x));
    return new Promise((resolve, reject) => child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`producer ${name}: ${stderr}`)))));
  }

  const cat = (path: string) => sh(`cat ${m}/${path}`).stdout;

  it("two producers observe into two sources; the parent's aggregate is the merge of their samples", async () => {
    const rand = rng(2026);
    const a = Array.from({ length: 20_000 }, () => logNormal(rand, 2, 0.5)); // around 7 ms
    const b = Array.from({ length: 5_000 }, () => logNormal(rand, 6, 0.3)); // a slow tail around 400 ms
    await Promise.all([produce('a', a), produce('b', b)]);
    const all = [...a, ...b].sort((x, y) => x - y);
    expect(cat('api/latency/count')).toBe('25000\n');
    expect(cat('api/a/latency/count')).toBe('20000\n');
    expect(Number(cat('api/latency/max'))).toBe(all[all.length - 1]);
    expect(Number(cat('api/latency/min'))).toBe(all[0]);
    expect(Number(cat('api/latency/sum'))).toBeCloseTo(all.reduce((x, y) => x + y, 0), 6);
    for (const [file, q] of [['p50', 0.5], ['p90', 0.9], ['p99', 0.99], ['p999', 0.999]] as const) {
      const exact = exactQuantile(all, q);
      const shown = Number(cat(`api/latency/${file}`));
      expect(Math.abs(shown - exact) / exact, `${file}: ${shown} vs ${exact}`).toBeLessThanOrEqual(BOUND);
    }
    // p99 of the merge is in b's range: averaging each source's p99 (what StatsD servers do) would not be
    expect(Number(cat('api/latency/p99'))).toBeGreaterThan(Number(cat('api/a/latency/p99')) * 10);

    expect(sh(`ls ${m}/api/latency`).stdout.split('\n').filter(Boolean)).toEqual(['avg', 'buckets', 'count', 'max', 'min', 'p50', 'p90', 'p99', 'p999', 'sum']);
    expect(sh(`stat -c '%a %F' ${m}/api/latency ${m}/api/latency/count ${m}/api/latency/p99`).stdout).toBe('755 directory\n644 regular empty file\n444 regular empty file\n');
    const buckets = cat('api/a/latency/buckets').trim().split('\n').map((l) => l.split(' ').map(Number));
    expect(buckets.reduce((n, [, c]) => n + c, 0)).toBe(20_000);
    expect(buckets.every(([ub], k) => k === 0 || ub > buckets[k - 1][0])).toBe(true);
    expect(sh(`grep '^latency/p99 ' ${m}/api/.snapshot`).stdout).toBe(`latency/p99 ${cat('api/latency/p99')}`);

    expect(sh(`echo 1 > ${m}/api/latency/count`).stderr).toMatch(/Invalid argument/);
    expect(sh(`echo 0 > ${m}/api/latency/p99`).stderr).toMatch(/Permission denied/);
    expect(sh(`echo 0 > ${m}/api/a/latency/count`).status).toBe(0);
    expect(cat('api/latency/count')).toBe('5000\n');
    expect(sh(`echo 0 > ${m}/api/latency/count`).status).toBe(0);
    expect([cat('api/b/latency/count'), cat('api/latency/p99'), cat('api/latency/buckets')]).toEqual(['0\n', '0\n', '\n']);
  });

  it('StatsD timings from a real client give the percentiles of what was sent', async () => {
    const rand = rng(7);
    // milliseconds with three decimals: the timing keeps whole microseconds
    const ms = Array.from({ length: 600 }, () => Math.round(logNormal(rand, 3, 0.8) * 1000) / 1000);
    const r = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import StatsD from 'hot-shots';
         const c = new StatsD({ host: '127.0.0.1', port: ${port} });
         const ms = ${JSON.stringify(ms)};
         for (let i = 0; i < ms.length; i++) { c.timing('app.db.query', ms[i]); if (i % 50 === 49) await new Promise((r) => setTimeout(r, 5)); }
         await new Promise((r) => c.close(r));`,
      ],
      { encoding: 'utf8', cwd: ROOT },
    );
    expect(r.stderr).toBe('');
    await waitFor('every timing line', () => cat('app/db/query/count') === `${ms.length}\n`);
    const us = ms.map((x) => Math.round(x * 1000)).sort((x, y) => x - y);
    expect(Number(cat('app/db/query/max_us'))).toBe(us[us.length - 1]);
    expect(Number(cat('app/db/query/min_us'))).toBe(us[0]);
    for (const [file, q] of [['p50_us', 0.5], ['p90_us', 0.9], ['p99_us', 0.99], ['p999_us', 0.999]] as const) {
      const exact = exactQuantile(us, q);
      const shown = Number(cat(`app/db/query/${file}`));
      // whole microseconds: the rounding adds half of one
      expect(Math.abs(shown - exact), `${file}: ${shown} vs ${exact}`).toBeLessThanOrEqual(exact * relativeError(5) + 0.5);
    }
  });

  it('/metrics: a Prometheus histogram that passes promtool; a real Prometheus computes histogram_quantile(0.99, …) within its le bucket', async () => {
    if (PROMETHEUS === null || PROMTOOL === null) throw new Error('prometheus and promtool are needed (Debian: apt-get install -y prometheus)');
    const rand = rng(99);
    const a = Array.from({ length: 3_000 }, () => logNormal(rand, 1, 0.7));
    const b = Array.from({ length: 1_000 }, () => logNormal(rand, 4, 0.5));
    await Promise.all([produce('a', a, 'rpc'), produce('b', b, 'rpc')]);
    const text = await (await fetch(metrics)).text();
    const promtool = (input: string) => spawnSync(PROMTOOL, ['check', 'metrics'], { input, encoding: 'utf8' });
    // the whole exposition parses (3: lint remarks only, about names that are not this feature's)
    expect([0, 3]).toContain(promtool(text).status);

    // the family of rpc/*/latency, its le ladder, and the series of each source
    const family = /^# TYPE (\S*rpc\S*latency\S*) histogram$/m.exec(text)?.[1];
    expect(family, text.split('\n').filter((l) => l.startsWith('# TYPE') && l.endsWith(' histogram')).join('\n')).toBeDefined();
    // milliseconds are exported in the base unit, seconds, as every other value is
    expect(family).toMatch(/_seconds$/);
    const MS = 1e-3;
    const lines = text.split('\n').filter((l) => l.startsWith(`${family}_`));
    const block = text.split('\n').filter((l) => l.startsWith(`${family}_`) || l.startsWith(`# HELP ${family} `) || l.startsWith(`# TYPE ${family} `));
    const check = promtool(block.join('\n') + '\n');
    expect(check.stdout + check.stderr).toBe('');
    expect(check.status).toBe(0);
    const les = [...new Set(lines.filter((l) => l.includes('_bucket{')).map((l) => /le="([^"]+)"/.exec(l)![1]))].map((x) => (x === '+Inf' ? Infinity : Number(x)));
    expect(les.length).toBeLessThanOrEqual(41); // bounded: at most 40 and +Inf
    expect(les.at(-1)).toBe(Infinity);
    expect(lines.filter((l) => l.startsWith(`${family}_count{`)).map((l) => Number(l.split(' ').at(-1))).sort((x, y) => x - y)).toEqual([1000, 3000]);
    /** The finite le bucket (lower, upper] holding v. */
    const bucketOf = (v: number): [number, number] => {
      const k = les.findIndex((le) => v <= le);
      return [k === 0 ? 0 : les[k - 1], les[k]];
    };

    const dir = tempDir('statsfs-prometheus-');
    const promPort = await freeTcpPort();
    const target = new URL(metrics).host;
    writeFileSync(join(dir, 'prometheus.yml'), `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: statsfs\n    static_configs:\n      - targets: ['${target}']\n`);
    let log = '';
    const prometheus: ChildProcess = spawn(
      PROMETHEUS,
      [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prometheus.stdout!.on('data', (x: Buffer) => (log += x.toString()));
    prometheus.stderr!.on('data', (x: Buffer) => (log += x.toString()));
    try {
      const query = async (promql: string): Promise<number | null> => {
        try {
          const res = await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(promql)}`);
          const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
          return body.data.result.length === 1 ? Number(body.data.result[0].value[1]) : null;
        } catch {
          return null; // not listening yet
        }
      };
      const quantile = async (q: number, selector: string): Promise<number> => {
        const promql = `histogram_quantile(${q}, sum by (le) (${family}_bucket${selector}))`;
        const deadline = Date.now() + 40_000;
        for (;;) {
          const v = await query(promql);
          if (v !== null && Number.isFinite(v)) return v;
          if (prometheus.exitCode !== null || Date.now() > deadline) throw new Error(`no answer to ${promql}; prometheus log: ${log}`);
          await new Promise((r) => setTimeout(r, 250));
        }
      };
      const all = [...a, ...b].sort((x, y) => x - y);
      for (const q of [0.5, 0.9, 0.99]) {
        const exact = exactQuantile(all, q) * MS;
        const [lower, upper] = bucketOf(exact);
        const estimate = await quantile(q, '');
        expect(estimate, `q=${q}: exact ${exact} in (${lower}, ${upper}]`).toBeGreaterThanOrEqual(lower);
        expect(estimate).toBeLessThanOrEqual(upper);
      }
      // the aggregate's own file agrees with Prometheus to within that bucket too
      const p99 = Number(cat('rpc/latency/p99')) * MS;
      const [lower, upper] = bucketOf(exactQuantile(all, 0.99) * MS);
      expect(p99).toBeGreaterThanOrEqual(lower);
      expect(p99).toBeLessThanOrEqual(upper);
    } finally {
      if (prometheus.exitCode === null && prometheus.signalCode === null) {
        const exited = new Promise((resolve) => prometheus.once('exit', resolve));
        prometheus.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
