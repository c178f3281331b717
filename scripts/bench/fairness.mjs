// 9. Fairness: readers are not starved by a producer writing at full speed. The real daemon (bin/statsfs.js
// mount --socket) holds a tree of 1,000 sources published by a producer in another process (flood.mjs); the
// readers are the real `ls -lR` of that tree (spawned, output to /dev/null) and cat of an aggregate over all
// 1,000 sources (reader.c: open + read to EOF + close). Three contenders alternate round by round: the
// readers alone (idle), the producer alone (its applied updates per second), and both at once (the readers'
// latency loaded, and the producer's throughput while they read).
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { alternate, buildC, CannotRun, fmtMs, fmtRate, HERE, measured, median, mustRun, nullFd, ratioRow, readerLatency, requireBuild, runCommand, startDaemon } from './common.mjs';

export const name = 'fairness';
export const title = 'readers under a producer at full speed';

const GROUPS = 10;
const PER = 100;
const VALUES = 16;
/** Latency loaded ÷ idle at most this. */
const MAX_SLOWDOWN = 3;
/** Producer throughput with readers ÷ alone at least this. */
const MIN_THROUGHPUT = 0.5;
/** How the producer floods (flood.mjs): through the client library, and pre-encoded frames that saturate the daemon. */
const MODES = [
  { name: 'client', label: 'producer at full speed (client library)' },
  { name: 'wire', label: 'producer at full speed (pre-encoded frames: the daemon saturated)' },
];

export async function run({ full, scope }) {
  requireBuild();
  buildC('reader');
  const daemon = await startDaemon(scope);
  const producer = await scope.start('producer (flood.mjs)', process.execPath, [join(HERE, 'flood.mjs'), daemon.socket, '--groups', String(GROUPS), '--per', String(PER), '--values', String(VALUES)], {
    ready: (line) => line.startsWith('ready '),
    stdin: 'pipe',
  });
  const stopped = [];
  createInterface({ input: producer.child.stdout }).on('line', (line) => {
    const m = /^stopped (\d+) ([\d.]+)$/.exec(line);
    if (m) stopped.shift()?.({ updates: Number(m[1]), seconds: Number(m[2]) });
  });
  const command = (cmd) => producer.child.stdin.write(`${cmd}\n`);
  const go = (mode) => command(`go ${mode}`);
  const stop = () => {
    const done = new Promise((resolve) => stopped.push(resolve));
    command('stop');
    return done;
  };

  const tree = join(daemon.mnt, 'fair');
  const aggregate = join(tree, 'c0');
  const listed = (await mustRun('ls', ['-R', tree])).stdout.split('\n').filter((l) => /\/s\d+:$/.test(l)).length;
  if (listed !== GROUPS * PER) throw new CannotRun(`ls -R ${tree} listed ${listed} sources, expected ${GROUPS * PER}`);

  const passes = full ? 3 : 2;
  const catsPerPass = 20;
  const ls = async () => {
    const r = await runCommand('ls', ['-lR', tree], { stdout: nullFd() });
    if (r.code !== 0) throw new CannotRun(`ls -lR ${tree} failed (${r.code}): ${r.stderr.trim()}`);
    return r.ms;
  };
  /** `passes` times: one ls -lR, then catsPerPass cats of the aggregate; all the samples. */
  const readers = async () => {
    const lsMs = [];
    const catMs = [];
    for (let p = 0; p < passes; p++) {
      lsMs.push(await ls());
      const r = await readerLatency([aggregate], catsPerPass, 0);
      if (!(r.bytes > 1)) throw new CannotRun(`cat ${aggregate} read ${r.bytes} bytes`);
      catMs.push(...r.ms);
    }
    return { lsMs, catMs };
  };

  const RAMP_MS = 300;
  const rounds = full ? 9 : 5;
  await readers(); // warm-up: the kernel's caches and the daemon's listings, as in every round after
  for (const mode of MODES) {
    go(mode.name);
    await new Promise((r) => setTimeout(r, 1000));
    await stop();
  }

  /** Per mode: the readers with the producer flooding, then the producer alone for as long as that took. */
  const loadedSeconds = {};
  const contenders = [{ name: 'idle', show: (x) => `ls -lR ${x.lsMs.map((v) => v.toFixed(0)).join('/')} ms`, run: readers }];
  for (const { name: mode } of MODES) {
    contenders.push(
      {
        name: `loaded ${mode}`,
        show: (x) => `ls -lR ${x.lsMs.map((v) => v.toFixed(0)).join('/')} ms, producer ${Math.round(x.rate)}/s`,
        run: async () => {
          go(mode);
          await new Promise((r) => setTimeout(r, RAMP_MS));
          const x = await readers();
          const p = await stop();
          loadedSeconds[mode] = p.seconds;
          return { ...x, rate: p.updates / p.seconds };
        },
      },
      {
        // as long as the loaded round just took, so both rates cover the same ramp and the same span
        name: `alone ${mode}`,
        show: (x) => `producer ${Math.round(x)}/s`,
        run: async () => {
          go(mode);
          await new Promise((r) => setTimeout(r, loadedSeconds[mode] * 1000));
          const p = await stop();
          return p.updates / p.seconds;
        },
      },
    );
  }
  const samples = await alternate('fairness', rounds, contenders);
  await once(producer.child.stdin.end(), 'finish');

  // each round's medians, so that ratios pair the rounds
  const per = (who, key) => samples[who].map((x) => median(x[key]));
  const all = (who, key) => samples[who].flatMap((x) => x[key]);
  const slowdown = (subject, loaded, idle) => {
    const row = ratioRow(subject, idle, loaded);
    // shown as loaded ÷ idle (lower is better), against the ceiling
    const ratio = 1 / row.value;
    return { ...row, ratio: `${ratio.toFixed(2)}×`, range: row.range.replace(/([\d.]+)× – ([\d.]+)×/, (_m, a, b) => `${(1 / Number(b)).toFixed(2)}× – ${(1 / Number(a)).toFixed(2)}×`), target: `≤ ${MAX_SLOWDOWN.toFixed(1)}×`, met: ratio <= MAX_SLOWDOWN, value: ratio };
  };
  const rows = [
    measured('`ls -lR` of the tree, idle', all('idle', 'lsMs'), fmtMs),
    measured('cat of an aggregate over 1,000 sources, idle', all('idle', 'catMs'), fmtMs),
  ];
  for (const { name: mode, label } of MODES) {
    const loaded = `loaded ${mode}`;
    const alone = `alone ${mode}`;
    rows.push(
      measured(`\`ls -lR\` of the tree, ${label}`, all(loaded, 'lsMs'), fmtMs),
      slowdown(`\`ls -lR\`: loaded ÷ idle, ${label}`, per(loaded, 'lsMs'), per('idle', 'lsMs')),
      measured(`cat of the aggregate, ${label}`, all(loaded, 'catMs'), fmtMs),
      slowdown(`cat of the aggregate: loaded ÷ idle, ${label}`, per(loaded, 'catMs'), per('idle', 'catMs')),
      measured(`producer alone, ${label}`, samples[alone], fmtRate('updates')),
      measured(`producer while the readers read, ${label}`, samples[loaded].map((x) => x.rate), fmtRate('updates')),
      ratioRow(`producer throughput: with readers ÷ alone, ${label}`, samples[loaded].map((x) => x.rate), samples[alone], { min: MIN_THROUGHPUT }),
    );
  }
  const notes = [
    `Tree: fair/g0..g${GROUPS - 1}/s0..s${PER - 1}, ${GROUPS * PER} sources of ${VALUES} u64 counters with sum aggregates at fair/ and every g<a>, published by flood.mjs in a process of its own; the aggregate read is fair/c0 (a sum over all ${GROUPS * PER} sources, computed at open).`,
    `${rounds} rounds, alternating idle, then for each way of flooding: loaded, producer alone. Readers in a round: ${passes} × (\`ls -lR\` of the tree, spawned, output to /dev/null; then ${catsPerPass} timed open + read + close of the aggregate by reader.c). Loaded: the producer floods from ${RAMP_MS} ms before the readers start until they end. Producer alone: flooding for as long as the loaded round before it took.`,
    'Client library: counter updates as fast as the client takes them, with its default batching (up to 4096 updates a frame), confirmed by flush() every 16,384 updates with at most 4 flushes outstanding; on this machine the client is the slower side, so the daemon has time to spare. Pre-encoded frames: the same 4096-entry UPDATE frames written as fast as the socket takes them, so the daemon\'s JavaScript thread is the bottleneck (the case of issue 17). Rates count updates the daemon applied (acknowledged). Ratios pair each round\'s medians; the ceilings are on loaded ÷ idle latency, the floor on the producer\'s rate.',
  ];
  return { rows, notes };
}
