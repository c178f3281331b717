/** Writes a planned exposition into the shared ByteWriter, yielding after every batch of values. */
import type { Snapshot } from '../model/snapshot.js';
import { BATCH, encodeStrings, writeWord, type ByteWriter } from './common.js';
import { histogramLines, leLadder } from './prometheus-histogram.js';
import { escapeHelp, scaledDecimal } from './prom-naming.js';
import type { Family, Plan } from './prom-plan.js';
import type { PrebuiltFamily } from './prom-self.js';

/** Longest decimal a word takes ("-9223372036854775808") and a newline. */
const VALUE_MAX = 22;
const NEWLINE = 10;
const SPACE = 32;

function header(base: string, sample: string, type: string, help: string, unit: string, om: boolean): string {
  const name = om ? base : sample;
  let text = `# HELP ${name} ${escapeHelp(help, om)}\n# TYPE ${name} ${type}\n`;
  if (om && unit !== '') text += `# UNIT ${base} ${unit}\n`;
  return text;
}

/** The bytes a plan writes whatever the values: headers, sample names, '{labels}' of each directory. */
interface Fixed {
  headers: Buffer[];
  samples: Buffer[];
  pool: { bytes: Buffer; starts: Uint32Array };
  /** 'name{labels} ' of the values whose labels are their own (declared series, aggregates, repeats). */
  own: Map<number, Buffer>;
}

/** Kept with the plan, which a scrape server reuses while the tree keeps its shape; per format. */
const fixedOf = new WeakMap<Plan, [Fixed | null, Fixed | null]>();

function* fixed(plan: Plan, om: boolean): Generator<void, Fixed> {
  let both = fixedOf.get(plan);
  if (both === undefined) fixedOf.set(plan, (both = [null, null]));
  const at = om ? 1 : 0;
  return (both[at] ??= {
    headers: plan.families.map((f) => Buffer.from(header(f.base, f.sample, f.type, f.help, f.unit, om), 'utf8')),
    samples: plan.families.map((f) => Buffer.from(f.sample, 'latin1')), // [a-zA-Z0-9_] only
    // a directory each: in batches
    pool: yield* encodeStrings(plan.dirLabels, (t) => (t === '' ? '' : `{${t}}`)),
    own: new Map(),
  });
}

/** The lines of one family: its directories' label text from the pool, the value exact or exactly scaled. */
function* familyLines(snapshot: Snapshot, plan: Plan, f: Family, sample: Buffer, { pool, own: ownLines }: Fixed, out: ByteWriter): Generator<void, void> {
  const { bytes, starts } = pool;
  const end = f.start + f.count;
  for (let k = f.start; k < end; k++) {
    const i = plan.order[k];
    const d = snapshot.dirNumber(i);
    const own = f.extra !== '' || plan.override.size > 0 ? plan.override.get(i) : undefined;
    if (own !== undefined || f.extra !== '') {
      let line = ownLines.get(i);
      if (line === undefined) {
        const text = [own ?? plan.dirLabels[d], f.extra].filter((t) => t !== '').join(',');
        ownLines.set(i, (line = Buffer.from(`${f.sample}${text === '' ? '' : `{${text}}`} `, 'utf8')));
      }
      out.ensure(line.length);
      out.bytes(line);
    } else {
      out.ensure(sample.length + starts[d + 1] - starts[d] + 1);
      out.bytes(sample);
      out.range(bytes, starts[d], starts[d + 1]);
      out.buf[out.pos++] = SPACE;
    }
    if (f.scale !== null) out.string(scaledDecimal(snapshot.lo(i), snapshot.hi(i), snapshot.def(i).type.signed, f.scale));
    else {
      out.ensure(VALUE_MAX);
      writeWord(out, snapshot.lo(i), snapshot.hi(i), snapshot.def(i).type.signed);
    }
    out.ensure(1);
    out.buf[out.pos++] = NEWLINE;
    if ((k & (BATCH - 1)) === BATCH - 1) yield;
  }
}

/** The series of a histogram family (prometheus-histogram.ts): one `le` ladder for all of them, scaled to the base unit. */
function* histogramFamilyLines(snapshot: Snapshot, plan: Plan, f: Family, out: ByteWriter): Generator<void, void> {
  const end = f.start + f.count;
  const histograms = [];
  for (let k = f.start; k < end; k++) histograms.push(snapshot.histogram(plan.order[k])!);
  const ladder = leLadder(histograms);
  const factor = f.scale === null ? 1 : (f.scale.times ?? 1) * 10 ** (f.scale.exp10 ?? 0);
  for (let k = f.start; k < end; k++) {
    const i = plan.order[k];
    const labels = [plan.override.get(i) ?? plan.dirLabels[snapshot.dirNumber(i)], f.extra].filter((t) => t !== '').join(',');
    out.string(histogramLines(f.base, labels, histograms[k - f.start], ladder, factor));
    if ((k & 63) === 63) yield;
  }
}

export function* writeExposition(snapshot: Snapshot, plan: Plan, extra: readonly PrebuiltFamily[], om: boolean, out: ByteWriter): Generator<void, void> {
  const fixedBytes = yield* fixed(plan, om);
  const { headers, samples } = fixedBytes;
  yield;
  for (const f of plan.families) {
    if (f.count === 0) continue;
    const h = headers[f.index];
    out.ensure(h.length);
    out.bytes(h);
    if (f.type === 'histogram') yield* histogramFamilyLines(snapshot, plan, f, out);
    else yield* familyLines(snapshot, plan, f, samples[f.index], fixedBytes, out);
  }
  for (const f of extra) {
    const sample = f.type === 'counter' ? `${f.base}_total` : f.base;
    out.string(header(f.base, sample, f.type, f.help, f.unit, om));
    for (const [labels, value] of f.samples) out.string(`${sample}${labels === '' ? '' : `{${labels}}`} ${value}\n`);
  }
  if (om) out.string('# EOF\n');
}
