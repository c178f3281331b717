/**
 * Scale: a complete 1,000,000-value /metrics export through a real HTTP server, in both formats, rendered in
 * slices that give the event loop turns (the figures go to the log; `npm run bench` measures the holds).
 */
import { request } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MetricsServer } from '../../src/export/http.js';
import { Schema, Source, type ValueSpec } from '../../src/model/index.js';

function child(parent: Source, name: string): Source {
  const s = new Source(name);
  parent.addSubordinate(s);
  return s;
}

describe('a 1,000,000-value export', () => {
  const SOURCES = 100_000;
  const PER_SOURCE = 10;
  const root = Source.root();
  const specs: ValueSpec[] = [];
  for (let k = 0; k < PER_SOURCE; k++) specs.push({ name: `value_${k}`, type: 'u64', aggr: 'sum', description: `value ${k}` });
  const schema = new Schema(specs);
  const dev = child(root, 'dev');
  dev.addAggregates(schema);
  for (let i = 0; i < SOURCES; i++) {
    const g = child(dev, `d${i}`).addValues(schema);
    for (let k = 0; k < PER_SOURCE; k++) g.set(k, BigInt(i) * 4294967311n + BigInt(k));
  }
  const server = new MetricsServer(root, { host: '127.0.0.1', port: 0 });
  let port = 0;
  beforeAll(async () => {
    port = (await server.listen()).port;
  });
  afterAll(() => server.close());

  /** Streams /metrics, counting sample lines, while a timer measures how long the event loop is held. */
  async function scrape(headers: Record<string, string>): Promise<{ samples: number; last: string; maxGapMs: number; turns: number; bytes: number }> {
    let samples = 0;
    let bytes = 0;
    let rest = '';
    let last = '';
    let maxGapMs = 0;
    let turns = 0;
    let tick = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      maxGapMs = Math.max(maxGapMs, now - tick);
      turns++;
      tick = now;
    }, 1);
    try {
      await new Promise<void>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port, path: '/metrics', headers }, (res) => {
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            bytes += chunk.length;
            const lines = (rest + chunk).split('\n');
            rest = lines.pop()!;
            for (const line of lines) {
              if (!line.startsWith('statsfs_dev_value_')) continue;
              samples++;
              last = line;
            }
          });
          res.on('end', () => resolve());
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      });
    } finally {
      clearInterval(timer);
    }
    expect(rest).toBe('');
    return { samples, last, maxGapMs, turns, bytes };
  }

  it('streams every value (text format), in slices that leave the event loop free', async () => {
    const before = server.stats.maxSliceMs;
    expect(before).toBe(0);
    const r = await scrape({});
    expect(r.samples).toBe(SOURCES * PER_SOURCE);
    expect(r.last).toBe(`statsfs_dev_value_9_total{dev="d${SOURCES - 1}"} ${BigInt(SOURCES - 1) * 4294967311n + 9n}`);
    expect(server.stats.lastValues).toBe(SOURCES * PER_SOURCE); // the aggregates are not even captured: Prometheus sums
    console.log(
      `1M-value export: ${(r.bytes / 1e6).toFixed(1)} MB; capture ${server.stats.lastCaptureMs.toFixed(0)} ms (one synchronous walk); ` +
        `longest render slice ${server.stats.maxSliceMs.toFixed(1)} ms; longest event-loop gap seen by the client ${r.maxGapMs.toFixed(0)} ms`,
    );
    // rendered in slices: the event loop of this process (the server's) turned many times during the scrape
    // (how long each slice holds it is measured by `npm run bench`, not asserted here)
    expect(r.turns).toBeGreaterThan(10);
  }, 120_000);

  it('streams every value (OpenMetrics, gzip) and ends with # EOF', async () => {
    const zipped: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: '/metrics', headers: { Accept: 'application/openmetrics-text', 'Accept-Encoding': 'gzip' } }, (res) => {
        res.on('data', (d: Buffer) => zipped.push(d));
        res.on('end', () => resolve());
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    const text = gunzipSync(Buffer.concat(zipped)).toString();
    let samples = 0;
    for (let at = text.indexOf('\nstatsfs_dev_value_'); at >= 0; at = text.indexOf('\nstatsfs_dev_value_', at + 1)) samples++;
    expect(samples).toBe(SOURCES * PER_SOURCE);
    expect(text.endsWith('# EOF\n')).toBe(true);
  }, 120_000);

  it('stops rendering when the client goes away', async () => {
    const aborted = server.stats.aborted;
    await new Promise<void>((resolve) => {
      const req = request({ host: '127.0.0.1', port, path: '/metrics' }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.end();
    });
    const deadline = Date.now() + 10_000;
    while (server.stats.aborted === aborted && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(server.stats.aborted).toBe(aborted + 1);
  }, 60_000);
});
