/** Writes a planned exposition into the shared ByteWriter, yielding after every batch of values. */
import type { Snapshot } from '../model/snapshot.js';
import { BATCH, encodeStrings, writeWord, type ByteWriter } from './common.js';
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

/** The lines of one family: its directories' label text from the pool, the value exact or exactly scaled. */
function* familyLines(snapshot: Snapshot, plan: Plan, f: Family, pool: { bytes: Buffer; starts: Uint32Array }, out: ByteWriter): Generator<void, void> {
  const sample = Buffer.from(f.sample, 'latin1'); // [a-zA-Z0-9_] only
  const { bytes, starts } = pool;
  const end = f.start + f.count;
  for (let k = f.start; k < end; k++) {
    const i = plan.order[k];
    const d = snapshot.dirNumber(i);
    const own = f.extra !== '' || plan.override.size > 0 ? plan.override.get(i) : undefined;
    if (own !== undefined || f.extra !== '') {
      const text = [own ?? plan.dirLabels[d], f.extra].filter((t) => t !== '').join(',');
      out.string(`${f.sample}${text === '' ? '' : `{${text}}`} `);
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

export function* writeExposition(snapshot: Snapshot, plan: Plan, extra: readonly PrebuiltFamily[], om: boolean, out: ByteWriter): Generator<void, void> {
  // '{labels}' of each directory, encoded once
  const pool = encodeStrings(plan.dirLabels.map((t) => (t === '' ? '' : `{${t}}`)));
  yield;
  for (const f of plan.families) {
    if (f.count === 0) continue;
    out.string(header(f.base, f.sample, f.type, f.help, f.unit, om));
    yield* familyLines(snapshot, plan, f, pool, out);
  }
  for (const f of extra) {
    const sample = f.type === 'counter' ? `${f.base}_total` : f.base;
    out.string(header(f.base, sample, f.type, f.help, f.unit, om));
    for (const [labels, value] of f.samples) out.string(`${sample}${labels === '' ? '' : `{${labels}}`} ${value}\n`);
  }
  if (om) out.string('# EOF\n');
}
