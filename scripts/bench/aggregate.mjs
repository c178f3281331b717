// 3. Aggregation: latency of one cat (open + read + close) of a root sum aggregate, incremental against the
// reference walk in the same run, after 1% of the sources changed and after all of them changed since the
// last read. The tree is tree.mjs --groups G --per P --values 10 --control, mounted by a Node program using
// the library: 1,000,000 values (100 × 1,000 sources) in the quick run, and 10,000,000 (1,000 × 1,000) too
// with --full. The program changes the values on command (as one write, a producer's batch) and keeps the
// expected total: every read is checked against it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CannotRun, fmtMs, measured, ratioRow, requireBuild, say, startTree, treeCommand } from './common.mjs';

export const name = 'aggregate';
export const title = 'aggregation over 1,000,000 and 10,000,000 values';

const VALUES = 10;
const FEW_TARGET_MS = 1;
const ALL_TARGET_MS = 50;

const SCALES = [
  { groups: 100, per: 1000, label: '1,000,000 values' },
  { groups: 1000, per: 1000, label: '10,000,000 values', full: true },
];

export async function run({ full, scope }) {
  requireBuild();
  const rows = [];
  const notes = [];
  for (const scale of SCALES) {
    if (scale.full && !full) continue;
    rows.push(...(await atScale(scope, scale, full)));
  }
  const rounds = full ? 5 : 3;
  notes.push(
    `Each sample: tree.mjs changes every value of 1% of the sources picked at random (or of all of them) in writes of at most 4,096 updates, as a producer's frames come, then the driver times one open + read to EOF + close of the root \`value_0\` (a sum over every source) and checks it against the total the program keeps. ${rounds} rounds, each taking samples with incremental aggregation and then with the reference walk (src/model/incremental.ts's walkAggregate, chosen at run time in the same process), after a read that is not timed.`,
    'Incremental aggregation keeps the partial sums at the sources with subordinates; a store notes its group once per write, and the end of the write applies the notes to the partial sums above them (a read applies what is left, from stores outside a write). The walk reads every source on every read. What the writes cost is in the ingest benchmark.',
  );
  return { rows, notes };
}

async function atScale(scope, { groups, per, label, full: isFull }, full) {
  const sources = groups * per;
  const tree = await startTree(scope, ['--groups', String(groups), '--per', String(per), '--values', String(VALUES), '--control'], { timeoutMs: 600_000 });
  const path = join(tree.mnt, 'value_0');
  const read = (expected) => {
    const t0 = process.hrtime.bigint();
    const got = readFileSync(path, 'latin1');
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    if (got.trim() !== String(expected)) throw new CannotRun(`${label}: the root value_0 read ${got.trim()}, expected ${expected}`);
    return ms;
  };
  const cases = [
    { key: 'few', what: '1% of the sources changed', n: Math.ceil(sources / 100), target: FEW_TARGET_MS, samples: full ? 20 : 10 },
    { key: 'all', what: 'every source changed', n: sources, target: ALL_TARGET_MS, samples: isFull ? 2 : full ? 5 : 3 },
  ];
  const modes = ['incremental', 'walk'];
  const samples = {};
  const writes = {};
  for (const c of cases) {
    for (const m of modes) {
      samples[`${c.key} ${m}`] = [];
      writes[`${c.key} ${m}`] = [];
    }
  }
  const rounds = full ? 5 : 3;
  for (let r = 0; r < rounds; r++) {
    for (const m of modes) {
      read((await treeCommand(tree, `mode ${m}`)).expected); // the first read after the switch builds what is kept: not timed
      for (const c of cases) {
        for (let i = 0; i < c.samples; i++) {
          const { expected, ms } = await treeCommand(tree, `touch ${c.n}`);
          samples[`${c.key} ${m}`].push(read(expected));
          writes[`${c.key} ${m}`].push(ms);
        }
      }
    }
    say(`aggregate ${label} round ${r + 1}/${rounds}: ${Object.entries(samples).map(([k, xs]) => `${k} ${xs.at(-1).toFixed(2)} ms`).join(', ')}`);
  }
  const rows = [];
  for (const c of cases) {
    const row = measured(`${label}: root \`value_0\` after ${c.what} (${c.n.toLocaleString('en-US')} sources), incremental`, samples[`${c.key} incremental`], fmtMs, { target: `≤ ${c.target} ms` });
    rows.push({ ...row, met: row.value <= c.target });
    rows.push(measured(`${label}: the same with the reference walk`, samples[`${c.key} walk`], fmtMs));
    rows.push(ratioRow(`${label}, ${c.what}: walk ÷ incremental`, samples[`${c.key} walk`], samples[`${c.key} incremental`]));
    rows.push(measured(`${label}: context: the writes that changed them, with change tracking`, writes[`${c.key} incremental`], fmtMs));
    rows.push(ratioRow(`${label}: context: those writes, without ÷ with change tracking (sources at random: the worst case for tracking)`, writes[`${c.key} walk`], writes[`${c.key} incremental`]));
  }
  return rows;
}
