// 4. Memory: what 1,000,000 values (100,000 sources × 10 u64, with sum aggregates at the parents) cost, and
// 10,000,000 (1,000,000 sources) with --full, built
// by tree.mjs --memory in a fresh `node --expose-gc` process per run: heap + external (ArrayBuffers: the
// value arena) and RSS, each the difference across the build, after full collections.
import { join } from 'node:path';
import { CannotRun, fmtBytes, HERE, measured, mustRun, requireBuild, say } from './common.mjs';

export const name = 'memory';
export const title = 'memory per value';

const TARGET = 100;
/** Issue 18: at 10,000,000 values. */
const TARGET_10M = 48;

export async function run({ full }) {
  requireBuild();
  const rows = [];
  const notes = [];
  // 1,000,000 values (quick and full), then 10,000,000 with --full (issue 18's scale and target)
  const scales = [{ groups: 100, runs: full ? 7 : 3, target: TARGET }];
  if (full) scales.push({ groups: 1000, runs: 3, target: TARGET_10M });
  for (const { groups, runs, target } of scales) {
    const got = [];
    for (let r = 0; r < runs; r++) {
      const out = await mustRun(process.execPath, ['--expose-gc', join(HERE, 'tree.mjs'), '--groups', String(groups), '--per', '1000', '--values', '10', '--memory']);
      let m;
      try {
        m = JSON.parse(out.stdout);
      } catch {
        throw new CannotRun(`tree.mjs --memory printed ${out.stdout.slice(0, 200)}`);
      }
      got.push(m);
      say(`memory ${m.values} values, run ${r + 1}/${runs}: heap ${(m.heapUsed / m.values).toFixed(1)} B, external ${(m.external / m.values).toFixed(1)} B, RSS ${(m.rss / m.values).toFixed(1)} B per value`);
    }
    const at = `${got[0].values.toLocaleString('en-US')} values`;
    const per = (f) => got.map((m) => f(m) / m.values);
    const withTarget = (row) => ({ ...row, met: row.value <= target });
    rows.push(
      withTarget(measured(`${at}: heap + external per value`, per((m) => m.heapUsed + m.external), fmtBytes, { target: `≤ ${target} B` })),
      withTarget(measured(`${at}: RSS per value`, per((m) => m.rss), fmtBytes, { target: `≤ ${target} B` })),
      measured(`${at}: of which V8 heap (sources, groups, names, kept aggregation results)`, per((m) => m.heapUsed), fmtBytes),
      measured(`${at}: of which external (the value arena, reserved by doubling: RSS holds only the pages written)`, per((m) => m.external), fmtBytes),
    );
    notes.push(`${at}: ${runs} runs, each a fresh process: memoryUsage() after two full collections before and after building the tree (${(got[0].values / 10 / 1000).toLocaleString('en-US')} groups × 1,000 sources × 10 u64 values, sum aggregates at the groups and the root, every root aggregate read once so that what incremental aggregation keeps is counted), divided by the values. RSS also holds heap pages V8 reserved and has not returned, so it is the upper figure.`);
  }
  return { rows, notes };
}
