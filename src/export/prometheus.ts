/**
 * Prometheus text format (0.0.4) and OpenMetrics 1.0.0 rendering of a Snapshot. Pure apart from the
 * optional self metrics (process_*, read when asked for): no I/O on the tree, no clock.
 *
 * The mapping is in docs/prometheus.md: host collectors declare node_exporter's names beside their
 * definitions (src/model/exposure.ts), every other value is named after its place in the tree
 * (src/export/prom-plan.ts). Planning and writing are generators over the shared ByteWriter, so a caller
 * that runs them in time slices never holds the event loop for long.
 */
import type { SourceExposure } from '../model/exposure.js';
import type { ValueDef } from '../model/schema.js';
import type { CaptureFilter } from '../model/capture.js';
import type { Snapshot } from '../model/snapshot.js';
import { ByteWriter, runSync } from './common.js';
import { buildPlan, type Family, type Plan, type PlanOptions } from './prom-plan.js';
import { processFamilies, scrapeFamilies, type PrebuiltFamily } from './prom-self.js';
import { writeExposition } from './prom-write.js';
import type { MetricType } from './prom-naming.js';

export { AGGREGATION_LABEL, DIR_LABEL, TOP_FAMILY_LABEL } from './prom-plan.js';
export { escapeHelp, escapeLabelValue, metricType, sanitizeLabelName, sanitizeMetricName, scaledDecimal, type MetricType } from './prom-naming.js';

export interface RenderOptions extends PlanOptions {
  /** OpenMetrics 1.0.0 (counters' family name without _total, # UNIT, # EOF) instead of text 0.0.4. */
  openMetrics: boolean;
  /** Also the process_* metrics of this process and the scrape's per-source success; default false. */
  selfMetrics?: boolean;
  /** Keeps the plan between renders of one tree (a scrape server's), reused while the tree keeps its shape. */
  cache?: PlanCache;
}

/**
 * The plan of the last snapshot of a tree and that snapshot's shape: which directories (parent, name,
 * exposure) and which values (directory, definition, aggregate?) in which order. A plan depends on nothing
 * else, so a snapshot of the same shape (host metrics between two scrapes, as a rule) reuses it and is only
 * written. Kept for snapshots of up to MAX_VALUES values: comparing is linear, planning a large tree is
 * sliced anyway.
 */
export class PlanCache {
  static readonly MAX_VALUES = 65536;
  private plan: Plan | null = null;
  private key = '';
  private dirParent = new Int32Array(0);
  private dirName: string[] = [];
  private dirExpose: (SourceExposure | null)[] = [];
  private valueDir = new Uint32Array(0);
  private valueDef: ValueDef[] = [];
  private valueAggregate = new Uint8Array(0);

  get(snapshot: Snapshot, key: string): Plan | null {
    if (this.plan === null || key !== this.key || snapshot.count !== this.valueDef.length || snapshot.dirCount !== this.dirName.length) return null;
    for (let d = 0; d < snapshot.dirCount; d++) {
      if (snapshot.dirParentOf(d) !== this.dirParent[d] || snapshot.dirNameOf(d) !== this.dirName[d] || snapshot.dirExposeOf(d) !== this.dirExpose[d]) return null;
    }
    for (let i = 0; i < snapshot.count; i++) {
      if (snapshot.dirNumber(i) !== this.valueDir[i] || snapshot.def(i) !== this.valueDef[i] || (snapshot.isAggregate(i) ? 1 : 0) !== this.valueAggregate[i]) return null;
    }
    return this.plan;
  }

  set(snapshot: Snapshot, key: string, plan: Plan): void {
    if (snapshot.count > PlanCache.MAX_VALUES) {
      this.plan = null;
      return;
    }
    this.plan = plan;
    this.key = key;
    this.dirParent = Int32Array.from({ length: snapshot.dirCount }, (_, d) => snapshot.dirParentOf(d));
    this.dirName = Array.from({ length: snapshot.dirCount }, (_, d) => snapshot.dirNameOf(d));
    this.dirExpose = Array.from({ length: snapshot.dirCount }, (_, d) => snapshot.dirExposeOf(d));
    this.valueDir = Uint32Array.from({ length: snapshot.count }, (_, i) => snapshot.dirNumber(i));
    this.valueDef = Array.from({ length: snapshot.count }, (_, i) => snapshot.def(i));
    this.valueAggregate = Uint8Array.from({ length: snapshot.count }, (_, i) => (snapshot.isAggregate(i) ? 1 : 0));
  }
}

export const TEXT_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

/** Which format an Accept header asks for: OpenMetrics when it accepts it at least as much as the text format. */
export function negotiateFormat(accept: string | undefined): 'openmetrics' | 'text' {
  if (!accept) return 'text';
  let om = 0;
  let text = -1;
  for (const part of accept.split(',')) {
    const [type, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    let q = 1;
    let version: string | null = null;
    for (const p of params) {
      const eq = p.indexOf('=');
      const key = p.slice(0, eq).trim();
      const value = p.slice(eq + 1).trim();
      if (key === 'q') q = Number.isFinite(Number(value)) ? Number(value) : 0;
      else if (key === 'version') version = value;
    }
    if (type === 'application/openmetrics-text') {
      if (version === null || version === '1.0.0' || version === '0.0.1') om = Math.max(om, q);
    } else if (type === 'text/plain' || type === 'text/*' || type === '*/*') text = Math.max(text, q);
  }
  return om > 0 && om >= text ? 'openmetrics' : 'text';
}

const EMPTY = Buffer.alloc(0);

/**
 * What a capture for this exposition needs to read: no value whose definition is left out of exports, and
 * no aggregate unless includeAggregates asks for inferred ones (Prometheus sums the members itself).
 */
export function exportFilter(options: PlanOptions = {}): CaptureFilter {
  const aggregates = options.includeAggregates ?? false;
  return (def, aggregate) => {
    if (def.expose === false) return false;
    return !aggregate || (aggregates && (def.expose === null || def.expose.name === undefined));
  };
}

/**
 * The exposition of a snapshot as UTF-8 chunks written straight into buffers (no string per line); empty
 * chunks mark points where a caller may pause. Every captured value appears exactly once unless its
 * definition leaves it out (aggregates only with includeAggregates). Chunks are never reused.
 */
export function* renderPrometheus(snapshot: Snapshot, options: RenderOptions): Generator<Buffer> {
  const out = new ByteWriter(32 * 1024);
  const plan = yield* planChunks(snapshot, options);
  const extra: PrebuiltFamily[] = options.selfMetrics ? [...scrapeFamilies(snapshot), ...processFamilies()] : [];
  const steps = writeExposition(snapshot, plan, extra, options.openMetrics, out);
  for (let step = steps.next(); ; step = steps.next()) {
    const chunks = out.take();
    if (chunks.length === 0) yield EMPTY;
    else yield* chunks;
    if (step.done) return;
  }
}

function* planChunks(snapshot: Snapshot, options: RenderOptions): Generator<Buffer, Plan> {
  const key = `${options.includeAggregates ?? false}\u0000${options.prefix ?? ''}`;
  const known = options.cache?.get(snapshot, key);
  if (known) return known;
  const steps = buildPlan(snapshot, options);
  for (;;) {
    const step = steps.next();
    if (step.done) {
      options.cache?.set(snapshot, key, step.value);
      return step.value;
    }
    yield EMPTY;
  }
}

/** The whole exposition as one string (tests, small trees). */
export function renderPrometheusText(snapshot: Snapshot, options: RenderOptions): string {
  return Buffer.concat([...renderPrometheus(snapshot, options)]).toString('utf8');
}

/** One exported series, for tests and documentation. */
export interface SeriesInfo {
  /** The value's path in the snapshot: "net/eth0/rx_bytes". */
  path: string;
  /** The family name (OpenMetrics' MetricFamily, TYPE line): node_network_receive_bytes. */
  family: string;
  /** The sample name, in both formats: node_network_receive_bytes_total. */
  name: string;
  labels: Record<string, string>;
  type: MetricType;
  aggregate: boolean;
}

/** `a="x",b="y\""` back to a record. */
function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    labels[m[1]] = m[2].replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
  }
  return labels;
}

function labelsOf(snapshot: Snapshot, plan: Plan, f: Family, i: number): Record<string, string> {
  const text = [plan.override.get(i) ?? plan.dirLabels[snapshot.dirNumber(i)], f.extra].filter((t) => t !== '').join(',');
  return parseLabels(text);
}

/** Where every exported value goes: name, labels and type, in output order. */
export function mapSeries(snapshot: Snapshot, options: PlanOptions = {}): SeriesInfo[] {
  const plan = runSync(buildPlan(snapshot, options));
  const out: SeriesInfo[] = [];
  for (const f of plan.families) {
    for (let k = f.start; k < f.start + f.count; k++) {
      const i = plan.order[k];
      out.push({ path: snapshot.path(i), family: f.base, name: f.sample, labels: labelsOf(snapshot, plan, f, i), type: f.type, aggregate: snapshot.isAggregate(i) });
    }
  }
  return out;
}
