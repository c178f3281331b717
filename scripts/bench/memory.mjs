// 4. Memory: what 1,000,000 values (100,000 sources × 10 u64, with sum aggregates at the parents) cost, built
// by tree.mjs --memory in a fresh `node --expose-gc` process per run: heap + external (ArrayBuffers: the
// value arena) and RSS, each the difference across the build, after full collections.
import { join } from 'node:path';
import { CannotRun, fmtBytes, HERE, measured, mustRun, requireBuild, say } from './common.mjs';

export const name = 'memory';
export const title = 'memory per value';

const TARGET = 100;

export async function run({ full }) {
  requireBuild();
  const runs = full ? 7 : 3;
  const got = [];
  for (let r = 0; r < runs; r++) {
    const out = await mustRun(process.execPath, ['--expose-gc', join(HERE, 'tree.mjs'), '--groups', '100', '--per', '1000', '--values', '10', '--memory']);
    let m;
    try {
      m = JSON.parse(out.stdout);
    } catch {
      throw new CannotRun(`tree.mjs --memory printed ${out.stdout.slice(0, 200)}`);
    }
    got.push(m);
    say(`memory run ${r + 1}/${runs}: heap ${(m.heapUsed / m.values).toFixed(1)} B, external ${(m.external / m.values).toFixed(1)} B, RSS ${(m.rss / m.values).toFixed(1)} B per value`);
  }
  const per = (f) => got.map((m) => f(m) / m.values);
  const withTarget = (row) => ({ ...row, met: row.value <= TARGET });
  const rows = [
    withTarget(measured('heap + external per value', per((m) => m.heapUsed + m.external), fmtBytes, { target: `≤ ${TARGET} B` })),
    withTarget(measured('RSS per value', per((m) => m.rss), fmtBytes, { target: `≤ ${TARGET} B` })),
    measured('of which V8 heap (sources, groups, names)', per((m) => m.heapUsed), fmtBytes),
    measured('of which external (the value arena)', per((m) => m.external), fmtBytes),
  ];
  const notes = [
    `${runs} runs, each a fresh process: memoryUsage() after two full collections before and after building the tree, divided by the ${got[0].values.toLocaleString('en-US')} values. RSS also holds heap pages V8 reserved and has not returned, so it is the upper figure.`,
  ];
  return { rows, notes };
}
