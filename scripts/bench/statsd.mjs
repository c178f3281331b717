// 9. StatsD (issue 17): three StatsD receivers side by side, each alone in its process, each fed by the same
// C sender (statsd-sender.c, sendmmsg on 127.0.0.1) with counter lines: the statsfs daemon (--statsd),
// collectd's statsd plugin (C, Debian's collectd-core, counters written by its csv plugin) and Etsy's statsd
// (npm `statsd`, installed by this script under .bench/, counters read from its management port).
//
// Every receiver has the same 8 MiB receive buffer (as the kernel counts it, `ss -m`'s rb, checked): statsfs
// through --statsd-rcvbuf; collectd and Etsy's statsd do not set one, so they are started while
// net.core.rmem_default is 8 MiB (raised by this script as root, and put back at once). net.core.rmem_max
// is raised to 8 MiB for the run if it is lower, and put back at the end.
//
// Each run sends for a while to names of its own, then waits until the receiver's count stops moving and
// compares the lines counted with the lines sent; CPU is the receiver process's user + system time over
// the run. Kernel drops are the receiver socket's `drops` in /proc/net/udp.
import { createConnection } from 'node:net';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  alternate, BUILD_DIR, buildC, CannotRun, fmt3, fmtRate, measured, median, mustRun, ratioRow, requireBuild, ROOT, say, sleep, threadCpuMs,
} from './common.mjs';

export const name = 'statsd';
export const title = 'StatsD receivers';

const HOST = '127.0.0.1';
/** Ports: statsfs, collectd, Etsy's statsd and its management port (the range this benchmark may use). */
const PORTS = { statsfs: 28150, collectd: 28151, etsy: 28152, etsyMgmt: 28153 };
const RCVBUF = 8 << 20;
const ETSY_VERSION = '0.9.0';
const LOSSLESS = 0.01;
const LINES_TARGET = 5_000_000;

// ---- sysctl ----

const SYSCTL = '/proc/sys/net/core';
const readSysctl = (key) => Number(readFileSync(join(SYSCTL, key), 'utf8'));
function writeSysctl(key, value) {
  try {
    writeFileSync(join(SYSCTL, key), String(value));
  } catch (err) {
    throw new CannotRun(`cannot set net.core.${key} to ${value} (${err.code}): run the benchmark as root, or set it yourself`);
  }
}

/** Raises rmem_max to RCVBUF for the whole run (put back by the scope). */
function raiseRmemMax(scope) {
  const before = readSysctl('rmem_max');
  if (before >= RCVBUF) return;
  writeSysctl('rmem_max', RCVBUF);
  say(`net.core.rmem_max raised from ${before} to ${RCVBUF} for the run`);
  scope.defer(() => writeSysctl('rmem_max', before));
}

/** Runs start() while every new socket gets an RCVBUF buffer, then puts rmem_default back. */
async function withDefaultBuffer(start) {
  const before = readSysctl('rmem_default');
  writeSysctl('rmem_default', RCVBUF);
  try {
    return await start();
  } finally {
    writeSysctl('rmem_default', before);
  }
}

// ---- sockets ----

/** The receive buffer (rb) and kernel drops of the UDP socket bound to port, or null. */
async function udpSocket(port) {
  const r = await mustRun('ss', ['-uamnH', 'sport', '=', `:${port}`]);
  const rb = /rb(\d+)/.exec(r.stdout);
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  let drops = 0;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length > 12 && f[1].endsWith(`:${hex}`)) drops += Number(f[f.length - 1]);
  }
  return rb ? { rb: Number(rb[1]), drops } : null;
}

async function waitBound(port, what) {
  for (let i = 0; i < 200; i++) {
    const s = await udpSocket(port);
    if (s) return s;
    await sleep(50);
  }
  throw new CannotRun(`${what} did not bind UDP port ${port}`);
}

// ---- the receivers ----

async function startStatsfs(scope) {
  const mnt = scope.mountpoint();
  const args = [join(ROOT, 'bin', 'statsfs.js'), 'mount', mnt, '--no-collectors', '--no-allow-other', '--no-socket', '--statsd', `${HOST}:${PORTS.statsfs}`, '--statsd-rcvbuf', String(RCVBUF)];
  const proc = await scope.start('statsfs daemon', process.execPath, args, { ready: (line) => line.includes('"msg":"mounted"'), mountpoint: mnt });
  await waitBound(PORTS.statsfs, 'statsfs');
  // the counters of a run are mnt/<prefix>/c<i>
  const count = async (prefix) => {
    let dir;
    try {
      dir = readdirSync(join(mnt, prefix));
    } catch {
      return 0; // nothing arrived yet
    }
    let n = 0;
    for (const f of dir) n += Number(await readFile(join(mnt, prefix, f), 'latin1'));
    return n;
  };
  const selfStat = async (stat) => Number(await readFile(join(mnt, 'statsfs', 'statsd', stat), 'latin1').catch(() => 'NaN'));
  return { name: 'statsfs', pid: proc.child.pid, port: PORTS.statsfs, count, selfStat };
}

async function startCollectd(scope) {
  const bin = ['/usr/sbin/collectd', '/usr/bin/collectd'].find((p) => existsSync(p));
  if (!bin || !existsSync('/usr/lib/collectd/statsd.so')) throw new CannotRun("collectd's statsd plugin is missing: install Debian's collectd-core (scripts/setup.sh --for-bench)");
  const dir = scope.tempDir('statsfs-bench-collectd-');
  const csv = join(dir, 'csv');
  const conf = join(dir, 'collectd.conf');
  // its counters are cumulative derives: the csv plugin writes them as they are (StoreRates false) every Interval
  writeFileSync(
    conf,
    [
      'Hostname "bench"',
      'FQDNLookup false',
      'Interval 0.5',
      `BaseDir "${dir}"`,
      `PIDFile "${dir}/collectd.pid"`,
      'PluginDir "/usr/lib/collectd"',
      'TypesDB "/usr/share/collectd/types.db"',
      'LoadPlugin statsd',
      'LoadPlugin csv',
      '<Plugin statsd>',
      `  Host "${HOST}"`,
      `  Port "${PORTS.collectd}"`,
      '  DeleteCounters false',
      '</Plugin>',
      '<Plugin csv>',
      `  DataDir "${csv}"`,
      '  StoreRates false',
      '</Plugin>',
      '',
    ].join('\n'),
  );
  const proc = await withDefaultBuffer(async () => {
    const p = await scope.start('collectd', bin, ['-f', '-C', conf], { ready: (line) => line.includes('Initialization complete') });
    await waitBound(PORTS.collectd, 'collectd');
    return p;
  });
  const files = join(csv, 'bench', 'statsd');
  const count = async (prefix) => {
    let n = 0;
    let names = [];
    try {
      names = readdirSync(files).filter((f) => f.startsWith(`derive-${prefix}.`));
    } catch {
      return 0;
    }
    for (const f of names) {
      const last = (await readFile(join(files, f), 'utf8')).trimEnd().split('\n').at(-1);
      n += Number(last.split(',')[1]) || 0;
    }
    return n;
  };
  return { name: 'collectd', pid: proc.child.pid, port: PORTS.collectd, count };
}

/** Etsy's statsd, installed once under .bench/ from npm (its version pinned). */
async function etsyInstall() {
  const dir = join(BUILD_DIR, `etsy-statsd-${ETSY_VERSION}`);
  const main = join(dir, 'node_modules', 'statsd', 'stats.js');
  if (!existsSync(main)) {
    say(`installing Etsy's statsd ${ETSY_VERSION} from npm into ${dir}`);
    await mustRun('npm', ['install', '--prefix', dir, '--no-audit', '--no-fund', '--no-save', '--loglevel=error', `statsd@${ETSY_VERSION}`]);
  }
  return main;
}

function mgmt(command) {
  return new Promise((resolveMgmt, reject) => {
    const conn = createConnection(PORTS.etsyMgmt, HOST);
    let out = '';
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${command}\n`));
    conn.on('data', (d) => {
      out += d;
      if (out.includes('\nEND\n')) {
        conn.end();
        resolveMgmt(out);
      }
    });
    conn.on('error', reject);
  });
}

async function startEtsy(scope) {
  const main = await etsyInstall();
  const dir = scope.tempDir('statsfs-bench-etsy-');
  const conf = join(dir, 'config.js');
  // no backend and no flush during the run: the counters only grow
  writeFileSync(conf, JSON.stringify({ port: PORTS.etsy, address: HOST, mgmt_port: PORTS.etsyMgmt, mgmt_address: HOST, flushInterval: 2_000_000_000, backends: [] }));
  const proc = await withDefaultBuffer(async () => {
    const p = await scope.start("Etsy's statsd", process.execPath, [main, conf], { ready: (line) => line.includes('server is up') });
    await waitBound(PORTS.etsy, "Etsy's statsd");
    return p;
  });
  const count = async (prefix) => {
    const text = await mgmt('counters');
    let n = 0;
    for (const m of text.matchAll(/'?([\w.]+)'?: (\d+)/g)) if (m[1].startsWith(`${prefix}.`)) n += Number(m[2]);
    return n;
  };
  return { name: 'Etsy statsd', pid: proc.child.pid, port: PORTS.etsy, count };
}

// ---- one run ----

const cpuMs = (pid) => [...threadCpuMs(pid).values()].reduce((a, b) => a + b, 0);

let runs = 0;

/** Sends to one receiver, waits until its count settles; lines sent and counted, CPU, kernel drops. */
async function send(receiver, sender, { rate, seconds, lines }) {
  const prefix = `r${++runs}`;
  const before = { cpu: cpuMs(receiver.pid), sock: await udpSocket(receiver.port) };
  const r = await mustRun(sender, [HOST, String(receiver.port), String(rate), String(seconds), String(lines), prefix]);
  const m = /sent (\d+) lines (\d+) seconds ([\d.]+)/.exec(r.stdout);
  if (!m) throw new CannotRun(`statsd-sender printed no result: ${r.stdout} ${r.stderr}`);
  const sent = Number(m[2]);
  // settled: the same count twice, 0.6 s apart (collectd writes every 0.5 s)
  let counted = -1;
  for (let i = 0; i < 60; i++) {
    await sleep(600);
    const now = await receiver.count(prefix);
    if (now === counted) break;
    counted = now;
  }
  const after = { cpu: cpuMs(receiver.pid), sock: await udpSocket(receiver.port) };
  if (counted > sent) throw new CannotRun(`${receiver.name} counted ${counted} lines of ${sent} sent`);
  const cpu = after.cpu - before.cpu;
  return {
    sent,
    counted,
    ratio: counted / sent,
    linesPerSec: counted / Number(m[3]),
    /** datagrams per second the sender reached */
    offeredPerSec: Number(m[1]) / Number(m[3]),
    cpuUsPerLine: counted > 0 ? (cpu * 1000) / counted : NaN,
    kernelDrops: after.sock.drops - before.sock.drops,
  };
}

// ---- the benchmark ----

export async function run({ full, scope }) {
  requireBuild();
  const sender = buildC('statsd-sender');
  raiseRmemMax(scope);
  const receivers = [await startStatsfs(scope), await startCollectd(scope), await startEtsy(scope)];
  const buffers = [];
  for (const rcv of receivers) {
    const s = await udpSocket(rcv.port);
    buffers.push(`${rcv.name} ${s.rb.toLocaleString('en-US')} B`);
    if (s.rb !== RCVBUF) throw new CannotRun(`${rcv.name}'s receive buffer is ${s.rb} bytes, not ${RCVBUF}`);
  }

  const seconds = full ? 4 : 2;
  // datagrams per second asked, with 1 line and with 20; then each at the sender's max
  const rates1 = full ? [50_000, 100_000, 200_000, 300_000, 400_000, 600_000] : [100_000, 200_000, 300_000, 500_000];
  const rates20 = full ? [50_000, 100_000, 200_000, 250_000, 300_000, 400_000] : [100_000, 250_000, 300_000];
  const CPU_RATE = 200_000;
  const rounds = full ? 3 : 2;
  // warm up each receiver (JIT, first names)
  for (const rcv of receivers) await send(rcv, sender, { rate: 100_000, seconds: 1, lines: 1 });

  const statsfsDrops = { kernel: 0, counted: 0 };
  const lossless = (runs) => Math.max(0, ...runs.filter((x) => 1 - x.ratio < LOSSLESS).map((x) => x.offeredPerSec));
  const samples = await alternate(
    'statsd',
    rounds,
    receivers.map((rcv) => ({
      name: rcv.name,
      show: (x) => `lossless ≤ ${fmt3(x.lossless1 / 1000)}k datagrams/s, ${fmt3(x.cpuUs)} µs/line, 20-line ≤ ${fmt3(x.best20 / 1e6)} M lines/s`,
      run: async () => {
        const dropsBefore = rcv.selfStat ? await rcv.selfStat('kernel_drops') : 0;
        const runs1 = [];
        const runs20 = [];
        for (const rate of [...rates1, 0]) runs1.push({ rate, ...(await send(rcv, sender, { rate, seconds, lines: 1 })) });
        for (const rate of [...rates20, 0]) runs20.push({ rate, ...(await send(rcv, sender, { rate, seconds, lines: 20 })) });
        if (rcv.selfStat) {
          statsfsDrops.kernel += [...runs1, ...runs20].reduce((a, x) => a + x.kernelDrops, 0);
          statsfsDrops.counted += (await rcv.selfStat('kernel_drops')) - dropsBefore;
        }
        return {
          runs1,
          runs20,
          // the rates the sender reached, which a loaded machine may keep below the ones asked
          lossless1: lossless(runs1),
          best20: Math.max(...runs20.map((x) => x.linesPerSec)),
          lossless20: lossless(runs20) * 20,
          cpuUs: runs1.find((x) => x.rate === CPU_RATE).cpuUsPerLine,
          cpuUs20: runs20[0].cpuUsPerLine,
        };
      },
    })),
  );

  const rows = [];
  const [us, collectd, etsy] = receivers.map((r) => samples[r.name]);
  const pick = (xs, f) => xs.map(f);
  const collectdLossless = median(pick(collectd, (x) => x.lossless1));
  const collectdCpu = median(pick(collectd, (x) => x.cpuUs));
  const fmtUs = (x) => `${fmt3(x)} µs`;
  const fmtPct = (x) => `${(100 * x).toFixed(1)} %`;
  const rateName = (rate) => (rate === 0 ? 'max' : `${rate / 1000}k/s`);
  for (const rcv of receivers) {
    const xs = samples[rcv.name];
    const isUs = rcv.name === 'statsfs';
    const loss1 = measured(`${rcv.name}: highest rate with < 1% loss, 1-line datagrams`, pick(xs, (x) => x.lossless1), fmtRate('datagrams'), isUs ? { target: `≥ collectd's (${fmtRate('datagrams')(collectdLossless)})` } : {});
    const cpu = measured(`${rcv.name}: receiver CPU per line, 1-line datagrams at ${CPU_RATE / 1000}k/s`, pick(xs, (x) => x.cpuUs), fmtUs, isUs ? { target: `≤ collectd's (${fmtUs(collectdCpu)})` } : {});
    const best20 = measured(`${rcv.name}: highest lines counted per second, 20-line datagrams`, pick(xs, (x) => x.best20), fmtRate('lines'), isUs ? { target: `≥ ${fmtRate('lines')(LINES_TARGET)}` } : {});
    if (isUs) {
      loss1.met = loss1.value >= collectdLossless;
      cpu.met = cpu.value <= collectdCpu;
      best20.met = best20.value >= LINES_TARGET;
    }
    rows.push(loss1, cpu, best20);
    rows.push(measured(`${rcv.name}: highest rate with < 1% loss, 20-line datagrams`, pick(xs, (x) => x.lossless20), fmtRate('lines')));
    rows.push(measured(`${rcv.name}: receiver CPU per line, 20-line datagrams at ${rates20[0] / 1000}k/s`, pick(xs, (x) => x.cpuUs20), fmtUs));
    for (const [lines, rates, key] of [[1, rates1, 'runs1'], [20, rates20, 'runs20']]) {
      rates.concat(0).forEach((rate, i) => {
        const reached = median(pick(xs, (x) => x[key][i].offeredPerSec));
        rows.push(measured(`${rcv.name}: lines counted ÷ sent, ${lines}-line datagrams, ${rateName(rate)} asked (${fmt3(reached / 1000)}k/s reached)`, pick(xs, (x) => x[key][i].ratio), fmtPct));
      });
    }
  }
  for (const [other, xs] of [['collectd', collectd], ["Etsy's statsd", etsy]]) {
    if (median(pick(xs, (x) => x.lossless1)) > 0) rows.push(ratioRow(`statsfs ÷ ${other}: highest lossless rate, 1-line`, pick(us, (x) => x.lossless1), pick(xs, (x) => x.lossless1)));
    rows.push(ratioRow(`statsfs ÷ ${other}: CPU per line, 1-line (higher: statsfs uses less)`, pick(us, (x) => x.cpuUs), pick(xs, (x) => x.cpuUs), { lowerIsBetter: true }));
    rows.push(ratioRow(`statsfs ÷ ${other}: CPU per line, 20-line (higher: statsfs uses less)`, pick(us, (x) => x.cpuUs20), pick(xs, (x) => x.cpuUs20), { lowerIsBetter: true }));
    rows.push(ratioRow(`statsfs ÷ ${other}: highest 20-line lines/s`, pick(us, (x) => x.best20), pick(xs, (x) => x.best20)));
  }
  const notes = [
    `${rounds} rounds, receivers alternating; in each, ${seconds} s at each of ${rates1.map((r) => `${r / 1000}k`).join(', ')} 1-line datagrams/s and at the sender's max, then ${seconds} s at each of ${rates20.map((r) => `${r / 1000}k`).join(', ')} 20-line datagrams/s and at max (counter lines over 20 names of the run's own; the sender is scripts/bench/statsd-sender.c, sendmmsg in batches of 32, one process).`,
    `Receive buffers (ss -m rb): ${buffers.join(', ')}. "Highest rate with < 1% loss" is the highest rate the sender reached (asked a fixed rate, or its max) where the lines counted were ≥ 99% of those sent; 0 when every run lost 1% or more. On a loaded machine the sender reaches less than it is asked: the "reached" rates say what was offered.`,
    'Lines counted: statsfs, the counters read through the mount; collectd, the last csv line of each counter; Etsy\'s statsd, its management port\'s `counters`. CPU: the receiver process\'s user + system time (all threads) over the run, ÷ lines counted.',
    statsfsDrops.counted === statsfsDrops.kernel
      ? `statsfs/statsd/kernel_drops counted every datagram the kernel dropped for statsfs (${statsfsDrops.kernel.toLocaleString('en-US')} over the runs, per /proc/net/udp).`
      : `statsfs/statsd/kernel_drops: ${Number.isNaN(statsfsDrops.counted) ? 'absent' : statsfsDrops.counted.toLocaleString('en-US')}; /proc/net/udp drops for statsfs's socket: ${statsfsDrops.kernel.toLocaleString('en-US')}.`,
  ];
  return { rows, notes };
}
