// 2. ls and ls -l of a directory of 10,000 sources: the real tools, output to /dev/null, on a tree mounted by
// a Node program using the library (tree.mjs --flat), on basefs.c's ls/ (the same 10,000 names, empty
// directories) and, for the kernel's own limit, on a tmpfs directory of 10,000 empty directories,
// alternating. Ratio: C baseline time ÷ statsfs time.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { alternate, CannotRun, fmtMs, measured, mustRun, nullFd, ratioRow, requireBuild, runCommand, startBasefs, startTree } from './common.mjs';

export const name = 'ls';
export const title = 'ls of 10,000 sources';

const N = 10_000;
const TARGET = 2.0;

export async function run({ full, scope }) {
  requireBuild();
  const ours = await startTree(scope, ['--flat', String(N)]);
  const theirs = await startBasefs(scope, ['--dirs', String(N)]);
  const tmpfs = join(await scope.tmpfsDir(), 'ls');
  for (let i = 0; i < N; i++) mkdirSync(join(tmpfs, `s${i}`), { recursive: true });
  const dirs = { statsfs: join(ours.mnt, 'ls'), 'C FUSE': join(theirs.mnt, 'ls'), tmpfs };

  for (const [who, dir] of Object.entries(dirs)) {
    const listed = (await mustRun('ls', [dir])).stdout.split('\n').filter(Boolean).length;
    if (listed !== N) throw new CannotRun(`ls ${dir} listed ${listed} entries on ${who}, expected ${N}`);
  }

  const rounds = full ? 75 : 25;
  const rows = [];
  for (const flags of [[], ['-l']]) {
    const cmd = ['ls', ...flags].join(' ');
    const once = async (dir) => {
      const r = await runCommand('ls', [...flags, dir], { stdout: nullFd() });
      if (r.code !== 0) throw new CannotRun(`${cmd} ${dir} failed (${r.code}): ${r.stderr.trim()}`);
      return r.ms;
    };
    for (const dir of Object.values(dirs)) await once(dir); // warm-up
    const samples = await alternate(cmd, rounds, Object.entries(dirs).map(([who, dir]) => ({ name: who, show: (ms) => `${ms.toFixed(1)} ms`, run: () => once(dir) })));
    rows.push(measured(`\`${cmd}\`, statsfs (library mount)`, samples.statsfs, fmtMs));
    rows.push(measured(`\`${cmd}\`, C FUSE baseline (basefs)`, samples['C FUSE'], fmtMs));
    rows.push(measured(`\`${cmd}\`, tmpfs (kernel limit)`, samples.tmpfs, fmtMs));
    rows.push(ratioRow(`\`${cmd}\`: C time ÷ statsfs time`, samples.statsfs, samples['C FUSE'], { lowerIsBetter: true, min: TARGET }));
    rows.push(ratioRow(`\`${cmd}\`: tmpfs time ÷ statsfs time`, samples.statsfs, samples.tmpfs, { lowerIsBetter: true }));
  }
  const notes = [
    `Wall time of the spawned tool (fork and exec included, alike on both sides) listing ${N.toLocaleString('en-US')} directories, output to /dev/null; ${rounds} runs of each, alternating.`,
    'Both filesystems answer readdirplus with attributes and 1 s entry/attribute timeouts, so `ls -l` costs no lookup per entry on either; basefs builds the listing in C at every opendir and answers every readdirplus; statsfs builds it in JavaScript at the first opendir, keeps it while the directory does not change (directories of 256 entries or more), serves readdirplus from it in C and lets the kernel keep it in its page cache (cache_readdir), so an `ls` of an unchanged directory costs an opendir and a releasedir, no readdir.',
    '`ls -l` spends its time in the kernel\'s statx of each entry and in ls itself (formatting, user and group names): the tmpfs row is that floor, and a FUSE filesystem cannot list faster than it.',
  ];
  return { rows, notes };
}
