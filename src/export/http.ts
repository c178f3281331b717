/**
 * GET /metrics over node:http: one atomic capture of the tree, then the exposition streamed in slices of
 * at most ~10 ms of work, each followed by a turn of the event loop (or by 'drain' when the client reads
 * slower than we render), so a million-value export neither blocks the daemon nor is held in memory whole.
 *
 * What a scrape holds until its response ends is its capture and at most BUFFERED_MAX rendered bytes the
 * client has not taken yet. At most maxScrapes are served at once (beyond: 503 with Retry-After, counted),
 * and a client that takes nothing for stallMs is dropped, so slow or idle clients hold bounded memory and
 * cannot keep the slots.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { constants as zlibConstants, createGzip, gzipSync } from 'node:zlib';
import type { Log } from '../log.js';
import { whenListening } from '../net.js';
import { counterType, gaugeType, LiveValues } from '../model/live.js';
import { Schema } from '../model/schema.js';
import { captureSnapshotSliced } from '../model/capture.js';
import { Source } from '../model/source.js';
import { exportFilter, negotiateFormat, OPENMETRICS_CONTENT_TYPE, PlanCache, renderPrometheus, TEXT_CONTENT_TYPE } from './prometheus.js';

export interface MetricsServerOptions {
  host: string;
  /** 0 for an ephemeral port (listen() tells which). */
  port: number;
  log?: Log;
  /** Export aggregates too (see docs/prometheus.md); default false. */
  includeAggregates?: boolean;
  /** Offer OpenMetrics when the client asks for it (default true); false always serves the text format. */
  openMetrics?: boolean;
  /** Longest stretch of rendering between two turns of the event loop, in ms (default 10). */
  sliceMs?: number;
  /** Scrapes served at once; more are answered 503 (default DEFAULT_MAX_SCRAPES). */
  maxScrapes?: number;
  /** A scrape whose client takes no bytes for this long is dropped, in ms (default 30,000). */
  stallMs?: number;
}

export const DEFAULT_MAX_SCRAPES = 4;

/** What the server has done, for tests and the daemon's own statistics. */
export interface MetricsServerStats {
  scrapes: number;
  openMetrics: number;
  text: number;
  gzip: number;
  /** Scrapes that ended before the whole exposition was written (client gone, stalled, or an error). */
  aborted: number;
  /** Scrapes answered 503 because maxScrapes were being served. */
  refused: number;
  /** Scrapes dropped because the client took nothing for stallMs. */
  stalled: number;
  /** Scrapes being served now. */
  inFlight: number;
  lastCaptureMs: number;
  lastValues: number;
  /** Longest synchronous stretch of rendering and writing in any scrape so far (the capture excluded). */
  maxSliceMs: number;
}

const selfSchema = new Schema([
  { name: 'scrapes', type: counterType, description: 'GET /metrics served', unit: 'requests' },
  { name: 'aborted', type: counterType, description: 'scrapes that ended before the whole exposition was sent', unit: 'requests' },
  { name: 'refused', type: counterType, description: 'scrapes answered 503: the most allowed at once were being served', unit: 'requests' },
  { name: 'stalled', type: counterType, description: 'scrapes dropped: the client took nothing for too long', unit: 'requests' },
  { name: 'in_flight', type: gaugeType, floating: true, description: 'scrapes being served now', unit: 'requests' },
]);

const PATH = '/metrics';
/** Rendered bytes queued for a slow client before rendering waits for it ('drain'). */
const BUFFERED_MAX = 1024 * 1024;

export class MetricsServer {
  readonly stats: MetricsServerStats = {
    scrapes: 0,
    openMetrics: 0,
    text: 0,
    gzip: 0,
    aborted: 0,
    refused: 0,
    stalled: 0,
    inFlight: 0,
    lastCaptureMs: 0,
    lastValues: 0,
    maxSliceMs: 0,
  };
  private server: Server | null = null;
  private readonly plans = new PlanCache();

  constructor(
    private readonly root: Source,
    private readonly options: MetricsServerOptions,
  ) {}

  /** The server's own statistics as a source named `http`, for the daemon's statsfs/ directory. */
  selfStats(): Source {
    const src = new Source('http');
    const stats = this.stats as unknown as Record<string, number>;
    src.addValues(selfSchema, { base: new LiveValues((name) => stats[name === 'in_flight' ? 'inFlight' : name]) });
    return src;
  }

  async listen(): Promise<{ host: string; port: number }> {
    if (this.server !== null) throw new Error('MetricsServer is already listening');
    const server = createServer((req, res) => this.handle(req, res));
    server.keepAliveTimeout = 65_000; // longer than any scrape interval, so Prometheus reuses its connection
    this.server = server;
    try {
      await whenListening(server, (onListening) => server.listen(this.options.port, this.options.host, onListening));
    } catch (err) {
      this.server = null;
      throw err;
    }
    server.on('error', (err) => this.options.log?.error({ err }, 'metrics server error'));
    const address = server.address() as AddressInfo;
    this.options.log?.info({ host: address.address, port: address.port }, 'serving /metrics');
    return { host: address.address, port: address.port };
  }

  close(): Promise<void> {
    const server = this.server;
    if (server === null) return Promise.resolve();
    this.server = null;
    return new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== PATH) {
      send(res, 404, `not found: metrics are at ${PATH}\n`);
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      send(res, 405, `method ${req.method} not allowed: use GET or HEAD\n`);
      return;
    }
    if (req.method === 'GET' && this.stats.inFlight >= (this.options.maxScrapes ?? DEFAULT_MAX_SCRAPES)) {
      this.stats.refused++;
      res.setHeader('Retry-After', '1');
      send(res, 503, `too many scrapes at once (${this.stats.inFlight}): retry later\n`);
      return;
    }
    const openMetrics = (this.options.openMetrics ?? true) && negotiateFormat(req.headers.accept) === 'openmetrics';
    const gzip = acceptsGzip(req.headers['accept-encoding']);
    res.statusCode = 200;
    res.setHeader('Content-Type', openMetrics ? OPENMETRICS_CONTENT_TYPE : TEXT_CONTENT_TYPE);
    res.setHeader('Vary', 'Accept, Accept-Encoding');
    res.setHeader('Cache-Control', 'no-store');
    if (gzip) res.setHeader('Content-Encoding', 'gzip');
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    this.stats.scrapes++;
    if (openMetrics) this.stats.openMetrics++;
    else this.stats.text++;
    if (gzip) this.stats.gzip++;
    // in flight until the response is over, sent or not: its capture and buffers are held until then
    this.stats.inFlight++;
    res.once('close', () => this.stats.inFlight--);
    res.setTimeout(this.options.stallMs ?? 30_000, () => {
      this.stats.stalled++;
      res.destroy();
    });
    this.stream(res, openMetrics, gzip).catch((err: unknown) => {
      this.stats.aborted++;
      this.options.log?.error({ err }, 'metrics export failed');
      res.destroy(err instanceof Error ? err : new Error(String(err)));
    });
  }

  private async stream(res: ServerResponse, openMetrics: boolean, gzip: boolean): Promise<void> {
    const started = performance.now();
    const sliceMs = this.options.sliceMs ?? 10;
    // one instant, in slices, of what the exposition shows
    const snapshot = await captureSnapshotSliced(this.root, sliceMs, exportFilter({ includeAggregates: this.options.includeAggregates }));
    const captureMs = performance.now() - started;
    this.stats.lastCaptureMs = captureMs;
    this.stats.lastValues = snapshot.count;
    this.options.log?.debug({ values: snapshot.count, captureMs: Math.round(captureMs) }, 'metrics snapshot');
    if (snapshot.failures.length > 0) {
      const first = snapshot.failures[0];
      this.options.log?.warn({ failures: snapshot.failures.length, path: first.path, err: first.error }, 'values left out of the metrics: their getters threw');
    }

    let closed = false;
    res.once('close', () => (closed = true));
    const chunks = renderPrometheus(snapshot, { openMetrics, includeAggregates: this.options.includeAggregates, selfMetrics: true, cache: this.plans });
    // the capture already held the loop: let others run before the first slice
    await nextTurn();
    // An exposition rendered whole in its first slice (host metrics: tens of KB) is compressed in one
    // call: zlib's stream cost such a scrape ~4 ms in trips through the thread pool, the deflate ~0.2 ms.
    const first = firstSlice(chunks, sliceMs, this.stats);
    if (first.done && gzip) {
      res.end(gzipSync(Buffer.concat(first.parts), { level: zlibConstants.Z_BEST_SPEED }));
      return;
    }
    const out = gzip ? createGzip({ level: zlibConstants.Z_BEST_SPEED }) : res;
    if (gzip) {
      out.on('error', (err) => res.destroy(err));
      out.pipe(res);
    }
    for (const part of first.parts) out.write(part);
    if (first.done) {
      out.end();
      return;
    }
    await nextTurn();
    for (;;) {
      // destroyed too: the client may have gone (or stalled) while the capture ran, before the listener
      if (closed || res.destroyed) {
        this.stats.aborted++;
        if (gzip) out.destroy();
        return;
      }
      const sliceStart = performance.now();
      const deadline = sliceStart + sliceMs;
      let done = false;
      do {
        const next = chunks.next();
        if (next.done) {
          done = true;
          break;
        }
        if (next.value.length > 0) out.write(next.value);
      } while (out.writableLength < BUFFERED_MAX && performance.now() < deadline);
      if (done) out.end();
      const slice = performance.now() - sliceStart;
      if (slice > this.stats.maxSliceMs) this.stats.maxSliceMs = slice;
      if (done) return;
      // 'drain' can come from a write that completed at once, inside this very turn: always give the
      // loop a turn as well, or slice after slice would run without it
      if (out.writableLength >= BUFFERED_MAX) await drained(out, res);
      await nextTurn();
    }
  }
}

/** Renders for one slice (or until BUFFERED_MAX bytes), keeping the chunks; done when the exposition ended. */
function firstSlice(chunks: Generator<Buffer>, sliceMs: number, stats: MetricsServerStats): { parts: Buffer[]; done: boolean } {
  const start = performance.now();
  const parts: Buffer[] = [];
  let bytes = 0;
  let done = false;
  do {
    const next = chunks.next();
    if (next.done) done = true;
    else if (next.value.length > 0) {
      parts.push(next.value);
      bytes += next.value.length;
    }
  } while (!done && bytes < BUFFERED_MAX && performance.now() < start + sliceMs);
  stats.maxSliceMs = Math.max(stats.maxSliceMs, performance.now() - start);
  return { parts, done };
}

function send(res: ServerResponse, status: number, body: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.end(body);
}

/** gzip when the client accepts it with a non-zero quality. */
function acceptsGzip(header: string | undefined): boolean {
  if (!header) return false;
  for (const part of header.split(',')) {
    const [coding, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    if (coding !== 'gzip' && coding !== 'x-gzip') continue;
    const q = params.find((p) => p.startsWith('q='));
    return q === undefined || Number(q.slice(2)) > 0;
  }
  return false;
}

/** Resolves when `out` wants more, or when the response is gone (the loop then notices `closed`). */
function drained(out: NodeJS.WritableStream, res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      out.off('drain', done);
      res.off('close', done);
      resolve();
    };
    out.on('drain', done);
    res.on('close', done);
  });
}
