// 7. Host metrics beside node_exporter: the statsfs daemon (default collectors, --http) and Debian's
// node_exporter 1.5.0 side by side, scraped by one real Prometheus every second. Reported:
//  - scrape duration as Prometheus measures it (scrape_duration_seconds, every scrape of the window), for
//    statsfs, node_exporter with its default collectors (what users run) and node_exporter limited to the
//    collectors statsfs has (cpu, meminfo, netdev, diskstats, filesystem, loadavg, stat, uname, pressure, time);
//  - CPU used while idle (no scrape, no read) over a window, from /proc/<pid>/stat;
//  - CPU used per scrape during the scrape window.
// node_exporter and prometheus come from Debian (scripts/setup.sh --for-tests installs them).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { CannotRun, fmtMs, measured, ratioRow, requireBuild, ROOT, say, sleep } from './common.mjs';

export const name = 'host';
export const title = 'host metrics beside node_exporter';

const NODE_EXPORTER = ['/usr/bin/prometheus-node-exporter', '/usr/local/bin/node_exporter'].find((p) => existsSync(p));
const PROMETHEUS = ['/usr/bin/prometheus', '/usr/local/bin/prometheus'].find((p) => existsSync(p));
/** Upstream 1.5.0's defaults where Debian's build differs, which are statsfs's defaults too. */
const UPSTREAM = ['--collector.netdev.device-exclude=^$', '--collector.filesystem.mount-points-exclude=^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)'];
const SAME_COLLECTORS = ['cpu', 'meminfo', 'netdev', 'diskstats', 'filesystem', 'loadavg', 'stat', 'uname', 'pressure', 'time'].map((c) => `--collector.${c}`);

function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** CPU time (user + system) a process has used, in ms (USER_HZ is 100 on Linux). */
function cpuMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

async function query(api, promql) {
  const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(promql)}`);
  const body = await res.json();
  if (body.status !== 'success') throw new CannotRun(`query ${promql}: ${JSON.stringify(body)}`);
  return body.data.result;
}

export async function run({ full, scope }) {
  requireBuild();
  if (!NODE_EXPORTER || !PROMETHEUS) throw new CannotRun('prometheus-node-exporter and prometheus are needed: run scripts/setup.sh --for-tests (as root) or apt-get install prometheus prometheus-node-exporter');
  const idleSeconds = full ? 60 : 30;
  const scrapeSeconds = full ? 180 : 60;
  const [statsfsPort, nodePort, samePort, promPort] = [await freePort(), await freePort(), await freePort(), await freePort()];

  const mnt = scope.mountpoint();
  const socket = join(scope.tempDir(), 'producers.sock');
  const daemon = await scope.start('statsfs daemon', process.execPath, [join(ROOT, 'bin', 'statsfs.js'), 'mount', mnt, '--no-allow-other', '--no-state', '--socket', socket, '--http', `127.0.0.1:${statsfsPort}`], {
    ready: (line) => line.includes('"msg":"mounted"'),
    mountpoint: mnt,
  });
  const listening = (line) => /Listening on/.test(line);
  const node = await scope.start('node_exporter', NODE_EXPORTER, [`--web.listen-address=127.0.0.1:${nodePort}`, ...UPSTREAM], { ready: listening });
  const same = await scope.start('node_exporter (same collectors)', NODE_EXPORTER, [`--web.listen-address=127.0.0.1:${samePort}`, '--collector.disable-defaults', ...SAME_COLLECTORS, ...UPSTREAM], { ready: listening });

  // idle: nobody scrapes or reads (after 10 s for start-up work: the first listings, JIT, collections)
  await sleep(10_000);
  const pids = { statsfs: daemon.child.pid, node: node.child.pid, same: same.child.pid };
  const idle0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMs(pid)]));
  say(`idle for ${idleSeconds} s`);
  await sleep(idleSeconds * 1000);
  const idle = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, (cpuMs(pid) - idle0[k]) / idleSeconds]));

  const dir = scope.tempDir();
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global: { scrape_interval: 1s, scrape_timeout: 1s }',
      'scrape_configs:',
      `  - { job_name: statsfs, static_configs: [{ targets: ['127.0.0.1:${statsfsPort}'] }] }`,
      `  - { job_name: node, static_configs: [{ targets: ['127.0.0.1:${nodePort}'] }] }`,
      `  - { job_name: node_same, static_configs: [{ targets: ['127.0.0.1:${samePort}'] }] }`,
      '',
    ].join('\n'),
  );
  const api = `http://127.0.0.1:${promPort}`;
  await scope.start('prometheus', PROMETHEUS, [`--config.file=${join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`], {
    ready: (line) => /Server is ready to receive web requests/.test(line),
  });
  await sleep(5000); // first scrapes: connections, caches, JIT
  const busy0 = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMs(pid)]));
  say(`scraping every second for ${scrapeSeconds} s`);
  await sleep(scrapeSeconds * 1000);
  const busyMs = Object.fromEntries(Object.entries(pids).map(([k, pid]) => [k, cpuMs(pid) - busy0[k]]));
  const durations = {};
  const scrapes = {};
  for (const job of ['statsfs', 'node', 'node_same']) {
    const r = await query(api, `scrape_duration_seconds{job="${job}"}[${scrapeSeconds}s]`);
    if (r.length !== 1) throw new CannotRun(`no scrape_duration_seconds for ${job}: ${JSON.stringify(r).slice(0, 200)}`);
    durations[job] = r[0].values.map(([, v]) => Number(v) * 1000);
    scrapes[job] = durations[job].length;
    const up = await query(api, `min_over_time(up{job="${job}"}[${scrapeSeconds}s])`);
    if (up[0]?.value[1] !== '1') throw new CannotRun(`${job} was not up for every scrape`);
  }
  const samples = (await query(api, 'scrape_samples_scraped'))
    .map((s) => `${s.metric.job} ${s.value[1]}`)
    .sort()
    .join(', ');
  const n = Math.min(...Object.values(durations).map((d) => d.length));
  const rows = [
    measured('statsfs scrape, as Prometheus measures it', durations.statsfs, fmtMs),
    measured('node_exporter scrape, default collectors', durations.node, fmtMs),
    measured('node_exporter scrape, the collectors statsfs has', durations.node_same, fmtMs),
    ratioRow('statsfs vs node_exporter (default collectors)', durations.statsfs.slice(0, n), durations.node.slice(0, n), { lowerIsBetter: true, min: 1 }),
    ratioRow('statsfs vs node_exporter (same collectors)', durations.statsfs.slice(0, n), durations.node_same.slice(0, n), { lowerIsBetter: true }),
    measured('statsfs CPU while idle', [idle.statsfs], (x) => `${x.toFixed(2)} ms/s`, { target: '< 0.1 ms/s (USER_HZ resolution over the window)', met: idle.statsfs < 0.1 }),
    measured('node_exporter CPU while idle', [idle.node], (x) => `${x.toFixed(2)} ms/s`),
    measured('statsfs CPU per scrape', [busyMs.statsfs / scrapes.statsfs], fmtMs),
    measured('node_exporter CPU per scrape (default collectors)', [busyMs.node / scrapes.node], fmtMs),
    measured('node_exporter CPU per scrape (same collectors)', [busyMs.same / scrapes.node_same], fmtMs),
  ];
  const notes = [
    `Prometheus ${PROMETHEUS} scraped the three targets every second for ${scrapeSeconds} s (after 5 s of warm-up); each row's samples are every scrape_duration_seconds of its job in that window. Samples per scrape: ${samples}.`,
    `Idle: ${idleSeconds} s with no scrape and no read, from 10 s after start until Prometheus started; CPU from /proc/<pid>/stat (10 ms ticks, so below 0.33 ms/s over 30 s reads as 0).`,
    'node_exporter runs with upstream 1.5.0 defaults where Debian differs (lo and /run are shown), as statsfs does; "the collectors statsfs has" adds --collector.disable-defaults and cpu, meminfo, netdev, diskstats, filesystem, loadavg, stat, uname, pressure, time.',
  ];
  return { rows, notes };
}
