// 1. cat throughput: open + read to EOF + close of one value file, in a loop, from separate native processes
// (reader.c), with 1 and 8 concurrent readers. Subject: the real daemon (bin/statsfs.js mount) reading
// bench/requests, a counter that a producer in another process (producer.mjs) bumps every millisecond,
// captured at open; and, for context, statsfs/fuse/open/requests, a value read through a JavaScript getter
// (the daemon's own statistics), which the session thread cannot answer by itself. Baselines: basefs.c,
// a C libfuse filesystem with the same per-open-snapshot semantics; and the kernel limit, the same loop on a
// tmpfs file and on a /sys attribute (/sys/class/net/lo/statistics/rx_bytes, a counter shown as text).
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { alternate, buildC, CannotRun, fmtRate, HERE, measured, mustRun, ratioRow, readerOps, requireBuild, startBasefs, startDaemon, threadCpuMs } from './common.mjs';

export const name = 'cat';
export const title = 'cat throughput';

const SYS_FILE = '/sys/class/net/lo/statistics/rx_bytes';
const TARGET = 1.3;
/**
 * Issue 17's target for a value unchanged since its last read, with an option trading freshness for speed:
 * half a /sys file's throughput. statsfs has no such option (see the note written with the row): the row
 * shows where the exact default stands against it.
 */
const CACHED_TARGET = 0.5;

export async function run({ full, scope }) {
  requireBuild();
  buildC('reader');
  const daemon = await startDaemon(scope);
  await scope.start('producer (producer.mjs)', process.execPath, [join(HERE, 'producer.mjs'), daemon.socket], { ready: (line) => line === 'ready' });
  const base = await startBasefs(scope);
  const tmpfsFile = join(await scope.tmpfsDir(), 'value');
  writeFileSync(tmpfsFile, '1234567\n');

  const fuse = [
    { name: 'statsfs', label: 'statsfs daemon, a producer\'s counter (`bench/requests`)', path: join(daemon.mnt, 'bench/requests'), pid: daemon.child.pid, node: true },
    { name: 'statsfs getter', label: 'statsfs daemon, a value read through a JavaScript getter (`statsfs/fuse/open/requests`)', path: join(daemon.mnt, 'statsfs/fuse/open/requests'), pid: daemon.child.pid, node: true },
    { name: 'C FUSE', label: 'C FUSE baseline (basefs, one session thread)', path: join(base.mnt, 'value'), pid: base.child.pid },
  ];
  // the same filesystem on libfuse's multi-threaded loop: not statsfs's threading, but what many C
  // filesystems use, so the report shows whether one session thread is what holds either back
  const mt = await startBasefs(scope, ['--mt']);
  fuse.push({ name: 'C FUSE mt', label: "C FUSE on libfuse's multi-threaded loop (not statsfs's model)", path: join(mt.mnt, 'value'), pid: mt.child.pid });
  const kernel = [{ name: 'tmpfs', label: 'tmpfs file (kernel limit)', path: tmpfsFile }];
  if (existsSync(SYS_FILE)) kernel.push({ name: '/sys', label: `/sys file (kernel limit: \`${SYS_FILE}\`)`, path: SYS_FILE });

  // short rounds, many of them: the median of many is steadier on a noisy VM than a few long rounds
  const rounds = full ? 15 : 7;
  const seconds = full ? 2 : 1.5;
  const rows = [];
  const notes = [
    `Each round runs the reader for ${seconds} s per contender, in turn; ${rounds} rounds per configuration. A reader process loops open(O_RDONLY) + read(128 KiB) until EOF + close and counts a cycle whose content is empty or lacks its newline as an error; 8 readers are 8 processes. Files are served with direct_io, so each cycle costs open, two reads (the second answers 0 bytes) and release at the FUSE level, and flush on the C baseline (statsfs answers a read-only open with noflush); release is sent in the background, so a cycle waits for three requests on statsfs and four on the C baseline.`,
    'No option trades freshness for speed: serving values from the kernel\'s page cache (keep_cache, FUSE_CAP_NO_OPEN_SUPPORT) bounds every read by the cached i_size, and when a value\'s length changes (999 → 1000) a concurrent reader can pair the new i_size with the old page or the reverse: a torn or zero-padded value. The /sys row with a target shows the exact default against the goal such an option would have had.',
  ];

  const configurations = [
    { who: '1 reader', procs: 1, contenders: [...fuse, ...kernel], target: true },
    { who: '8 readers', procs: 8, contenders: [...fuse, ...kernel], target: true },
    { who: '1 reader, all on CPU 0', procs: 1, contenders: fuse, cpus: '0' },
  ];
  for (const { who, procs, contenders, target, cpus = null } of configurations) {
    if (cpus !== null) {
      // every thread of each daemon on the reader's CPU: no cross-CPU wake-ups, just the CPU work per cycle
      for (const c of contenders) await mustRun('taskset', ['-a', '-p', '-c', cpus, String(c.pid)]);
    }
    for (const c of contenders) await readerOps(c.path, procs, 1, { cpus }); // warm-up
    const errors = {};
    const cpu = {};
    const samples = await alternate(`cat, ${who}`, rounds, contenders.map((c) => ({
      name: c.name,
      show: (x) => `${Math.round(x)}/s`,
      run: async () => {
        const before = c.pid ? threadCpuMs(c.pid) : null;
        const r = await readerOps(c.path, procs, seconds, { cpus });
        if (before) account(cpu, c, before, threadCpuMs(c.pid), r.ops);
        errors[c.name] = (errors[c.name] ?? 0) + r.errors;
        if (r.ops === 0) throw new CannotRun(`${c.label}: no successful read (${r.errors} errors)`);
        return r.perSec;
      },
    })));
    for (const c of contenders) rows.push(measured(`${c.label}, ${who}`, samples[c.name], fmtRate('ops')));
    rows.push(ratioRow(`statsfs ÷ C FUSE, ${who}`, samples.statsfs, samples['C FUSE'], target ? { min: TARGET } : {}));
    rows.push(ratioRow(`statsfs getter ÷ C FUSE, ${who}`, samples['statsfs getter'], samples['C FUSE']));
    for (const k of ['C FUSE mt', 'tmpfs']) if (samples[k]) rows.push(ratioRow(`statsfs ÷ ${k}, ${who}`, samples.statsfs, samples[k]));
    if (samples['/sys']) {
      const cachedTarget = target && procs === 1 ? { min: CACHED_TARGET } : {};
      rows.push(ratioRow(`statsfs ÷ /sys, ${who}${cachedTarget.min ? ' (target of a freshness-for-speed option; statsfs has none: its exact default)' : ''}`, samples.statsfs, samples['/sys'], cachedTarget));
    }
    const bad = Object.entries(errors).filter(([, n]) => n > 0);
    if (bad.length) notes.push(`${who}: failed or torn cycles: ${bad.map(([k, n]) => `${k} ${n}`).join(', ')}.`);
    notes.push(`${who}: daemon CPU per cycle (user + system, all rounds): ${cpuNote(cpu)}.`);
  }
  notes.push(
    'On this kind of VM a wake-up of a thread on the other, idle vCPU costs far more than the work of a cycle: compare "1 reader" (the scheduler spreads the reader and the daemon over both CPUs) with "1 reader, all on CPU 0" (no cross-CPU wake-ups; the kernel limits are left out there). statsfs answers open and getattr of a plain stored value on its FUSE session thread, as the C baseline answers everything; a value read through a getter (the daemon\'s own statistics) still goes to the JavaScript thread, one more cross-thread wake-up per cycle (session thread → JavaScript thread → reply).',
  );
  return { rows, notes };
}

/** Adds a round's CPU time of the daemon's threads: the JavaScript (main) thread apart from the rest. */
function account(cpu, c, before, after, ops) {
  const t = (cpu[c.name] ??= { label: c.name, js: 0, other: 0, ops: 0, node: c.node === true });
  for (const [tid, ms] of after) {
    const used = ms - (before.get(tid) ?? 0);
    if (t.node && tid === c.pid) t.js += used;
    else t.other += used;
  }
  t.ops += ops;
}

function cpuNote(cpu) {
  const us = (ms, ops) => `${((ms * 1000) / ops).toFixed(0)} µs`;
  return Object.values(cpu)
    .map((t) => `${t.label} ${us(t.js + t.other, t.ops)}${t.node ? ` (JavaScript thread ${us(t.js, t.ops)}, FUSE session and other threads ${us(t.other, t.ops)})` : ''}`)
    .join('; ');
}
