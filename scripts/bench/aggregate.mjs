// 3. Aggregation: latency of open + read + close of aggregate files (a sum computed at open over every
// subordinate source), on 100 groups × 1,000 sources × 10 u64 values = 1,000,000 values mounted by a Node
// program using the library (tree.mjs --groups), read by the native reader in its latency mode.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildC, CannotRun, fmtMs, measured, readerLatency, requireBuild, say, startTree, valueOf } from './common.mjs';

export const name = 'aggregate';
export const title = 'aggregation over 1,000,000 values';

const GROUPS = 100;
const PER = 1000;
const VALUES = 10;
const TARGET_MS = 50;

export async function run({ full, scope }) {
  requireBuild();
  buildC('reader');
  const { mnt } = await startTree(scope, ['--groups', String(GROUPS), '--per', String(PER), '--values', String(VALUES)]);

  // the sums must be right before their speed means anything
  const n = GROUPS * PER;
  for (let k = 0; k < VALUES; k++) {
    let expected = 0n;
    for (let i = 0; i < n; i++) expected += BigInt(valueOf(i, k));
    const got = readFileSync(join(mnt, `value_${k}`), 'latin1').trim();
    if (got !== String(expected)) throw new CannotRun(`value_${k} at the root read ${got}, expected ${expected}`);
  }

  const cases = [
    { key: 'one', label: 'root `value_0`: one cat of an aggregate over 100,000 sources × 10 values', paths: [join(mnt, 'value_0')], target: true },
    { key: 'all', label: 'context: the 10 root aggregates, one cat after another (10 opens, every one of the 1,000,000 values summed)', paths: Array.from({ length: VALUES }, (_, k) => join(mnt, `value_${k}`)) },
    { key: 'group', label: 'context: `g0/value_0`, a sum over 1,000 sources', paths: [join(mnt, 'g0', 'value_0')] },
    { key: 'plain', label: 'context: `g0/s0/value_0`, a plain value (the FUSE + JavaScript round trip)', paths: [join(mnt, 'g0', 's0', 'value_0')] },
  ];
  // rounds over all cases in turn, so that noise falls on each alike
  const rounds = full ? 10 : 4;
  const per = full ? 50 : 25;
  const samples = Object.fromEntries(cases.map((c) => [c.key, []]));
  for (let r = 0; r < rounds; r++) {
    for (const c of cases) samples[c.key].push(...(await readerLatency(c.paths, per, 2)).ms);
    say(`aggregate round ${r + 1}/${rounds}: ${cases.map((c) => `${c.key} ${samples[c.key].at(-1).toFixed(2)} ms`).join(', ')}`);
  }
  const rows = cases.map((c) => {
    if (!c.target) return measured(c.label, samples[c.key], fmtMs);
    const row = measured(c.label, samples[c.key], fmtMs, { target: `≤ ${TARGET_MS} ms` });
    return { ...row, met: row.value <= TARGET_MS };
  });
  const notes = [
    `Each sample is open + read to EOF + close by the native reader (a separate process); ${rounds} rounds of ${per} samples per case, the cases in turn. The sums are checked against the expected totals first.`,
    'The target is the latency of one cat of an aggregate in a tree of 100,000 sources × 10 values. A sum aggregate combines the values of its own definition only, so that cat walks the 100,000 sources and sums 100,000 of the million values; the context row reads all ten root aggregates back to back (ten requests), which sums every value.',
  ];
  return { rows, notes };
}
