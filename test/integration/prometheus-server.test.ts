/**
 * Integration: a real Prometheus server (Debian's prometheus package) scrapes two MetricsServers every
 * second, one negotiating (Prometheus asks for OpenMetrics first) and one serving only the text format, and
 * the expected series, values, types and HELP are found through its HTTP API. Loopback addresses only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeTcpPort } from '../helpers/ports.js';
import { MetricsServer } from '../../src/export/http.js';
import { Schema, Source, type ValueGroup } from '../../src/model/index.js';

const CI = process.env.CI === 'true';
const PROMETHEUS = ['/usr/bin/prometheus', '/usr/local/bin/prometheus'].find((p) => existsSync(p)) ?? null;
const MISSING = 'the prometheus server is not installed (Debian: apt-get install -y prometheus)';
if (PROMETHEUS === null && !CI) console.warn(`skipping the Prometheus integration test: ${MISSING}`);
/** With CI=true the suite runs even without Prometheus, so that it fails there instead of skipping. */
const suite = PROMETHEUS !== null || CI ? describe : describe.skip;

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

suite('a real Prometheus server scraping /metrics', () => {
  const netSchema = new Schema([
    { name: 'rx_bytes', type: 'u64', aggr: 'sum', unit: 'bytes', description: 'bytes received, "in total"' },
    { name: 'up_state', type: 'u8', floating: true, description: 'link state (1 = up)' },
  ]);
  const cgSchema = new Schema([{ name: 'cpu.usage_usec', type: 'u64', description: 'CPU time in microseconds' }]);
  const root = Source.root();
  const net = new Source('net');
  root.addSubordinate(net);
  net.addAggregates(netSchema);
  const ifaces = new Map<string, ValueGroup>();
  for (const name of ['eth0', 'we"ird\\if']) {
    const s = new Source(name);
    net.addSubordinate(s);
    ifaces.set(name, s.addValues(netSchema));
  }
  ifaces.get('eth0')!.set('rx_bytes', 2n ** 53n); // exactly representable: Prometheus stores doubles
  ifaces.get('eth0')!.set('up_state', 1);
  ifaces.get('we"ird\\if')!.set('rx_bytes', 1234567);
  const cgroup = new Source('cgroup');
  root.addSubordinate(cgroup);
  cgroup.addValues(cgSchema).set(0, 1000);
  const slice = new Source('system.slice');
  cgroup.addSubordinate(slice);
  slice.addValues(cgSchema).set(0, 700);
  const service = new Source('foo.service');
  slice.addSubordinate(service);
  service.addValues(cgSchema).set(0, 300);

  const negotiating = new MetricsServer(root, { host: '127.0.0.1', port: 0 });
  const textOnly = new MetricsServer(root, { host: '127.0.0.1', port: 0, openMetrics: false });
  let dir = '';
  let prometheus: ChildProcess | null = null;
  let api = '';
  let log = '';

  beforeAll(async () => {
    if (PROMETHEUS === null) throw new Error(MISSING);
    const a = await negotiating.listen();
    const b = await textOnly.listen();
    dir = mkdtempSync(join(tmpdir(), 'statsfs-prometheus-'));
    writeFileSync(
      join(dir, 'prometheus.yml'),
      [
        'global:',
        '  scrape_interval: 1s',
        '  scrape_timeout: 1s',
        'scrape_configs:',
        '  - job_name: statsfs',
        '    static_configs:',
        `      - targets: ['127.0.0.1:${a.port}']`,
        '  - job_name: statsfs_text',
        '    static_configs:',
        `      - targets: ['127.0.0.1:${b.port}']`,
        '',
      ].join('\n'),
    );
    const port = await freeTcpPort();
    api = `http://127.0.0.1:${port}`;
    prometheus = spawn(
      PROMETHEUS,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    prometheus.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    prometheus.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  }, 30_000);

  afterAll(async () => {
    const child = prometheus;
    if (child !== null && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await negotiating.close();
    await textOnly.close();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  }, 30_000);

  async function query(promql: string): Promise<Sample[]> {
    const res = await fetch(`${api}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as { status: string; data: { result: Sample[] } };
    if (body.status !== 'success') throw new Error(`query ${promql}: ${JSON.stringify(body)}`);
    return body.data.result;
  }

  /** Polls until `check` accepts the query's result (Prometheus starts, then scrapes every second). */
  async function until(promql: string, check: (r: Sample[]) => boolean, timeoutMs = 40_000): Promise<Sample[]> {
    const deadline = Date.now() + timeoutMs;
    let last: Sample[] | string = 'no answer yet';
    while (Date.now() < deadline) {
      if (prometheus?.exitCode !== null) throw new Error(`prometheus exited (${prometheus?.exitCode}): ${log}`);
      try {
        const r = await query(promql);
        last = r;
        if (check(r)) return r;
      } catch (err) {
        last = String(err); // not listening yet
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error(`timed out waiting for ${promql}; last answer: ${JSON.stringify(last)}; prometheus log: ${log}`);
  }

  const byJob = (r: Sample[], job: string) => r.filter((s) => s.metric.job === job);

  it('scrapes both targets and finds every series with its labels and exact values', async () => {
    const rx = await until('statsfs_net_rx_bytes_total', (r) => byJob(r, 'statsfs').length === 2 && byJob(r, 'statsfs_text').length === 2);
    for (const job of ['statsfs', 'statsfs_text']) {
      const series = byJob(rx, job)
        .map((s) => ({ net: s.metric.net, value: s.value[1], name: s.metric.__name__ }))
        .sort((x, y) => x.net.localeCompare(y.net));
      expect(series).toEqual([
        { net: 'eth0', value: '9007199254740992', name: 'statsfs_net_rx_bytes_total' },
        { net: 'we"ird\\if', value: '1234567', name: 'statsfs_net_rx_bytes_total' },
      ]);
    }
    const cpu = await query('statsfs_cgroup_cpu_usage_usec_total{job="statsfs"}');
    expect(cpu.map((s) => [s.metric.cgroup ?? '', s.value[1]]).sort()).toEqual([
      ['', '1000'],
      ['system.slice', '700'],
      ['system.slice/foo.service', '300'],
    ]);
    const up = await query('statsfs_net_up_state{job="statsfs", net="eth0"}');
    expect(up.map((s) => s.value[1])).toEqual(['1']);
    // aggregates are Prometheus's job: no statsfs_net_rx_bytes without a net label
    expect(await query('statsfs_net_rx_bytes_total{net=""}')).toEqual([]);
    const sum = await query('sum by (job) (statsfs_net_rx_bytes_total)');
    expect(sum.map((s) => s.value[1])).toEqual([String(2 ** 53 + 1234567), String(2 ** 53 + 1234567)]);
  }, 60_000);

  it('sees new values at the next scrape', async () => {
    ifaces.get('we"ird\\if')!.add('rx_bytes', 1000);
    const r = await until('statsfs_net_rx_bytes_total{job="statsfs", net="we\\"ird\\\\if"}', (x) => x.length === 1 && x[0].value[1] === '1235567');
    expect(r[0].metric.net).toBe('we"ird\\if');
  }, 60_000);

  it('reports both targets healthy, having negotiated OpenMetrics and the text format, gzip-compressed', async () => {
    const res = await fetch(`${api}/api/v1/targets`);
    const body = (await res.json()) as { data: { activeTargets: { labels: Record<string, string>; health: string; lastError: string }[] } };
    const targets = body.data.activeTargets.map((t) => ({ job: t.labels.job, health: t.health, lastError: t.lastError })).sort((x, y) => x.job.localeCompare(y.job));
    expect(targets).toEqual([
      { job: 'statsfs', health: 'up', lastError: '' },
      { job: 'statsfs_text', health: 'up', lastError: '' },
    ]);
    expect(negotiating.stats.openMetrics).toBeGreaterThan(0);
    expect(negotiating.stats.text).toBe(0);
    expect(textOnly.stats.text).toBeGreaterThan(0);
    expect(negotiating.stats.gzip).toBe(negotiating.stats.scrapes);
  }, 30_000);

  it('keeps the types and HELP texts as metadata', async () => {
    const res = await fetch(`${api}/api/v1/targets/metadata?match_target=${encodeURIComponent('{job="statsfs"}')}`);
    const body = (await res.json()) as { data: { metric: string; type: string; help: string; unit: string }[] };
    const meta = new Map(body.data.map((m) => [m.metric, m]));
    // OpenMetrics names the family without _total
    expect(meta.get('statsfs_net_rx_bytes')).toMatchObject({ type: 'counter', help: 'bytes received, "in total"', unit: 'bytes' });
    expect(meta.get('statsfs_net_up_state')).toMatchObject({ type: 'gauge', help: 'link state (1 = up)' });
    const text = await fetch(`${api}/api/v1/targets/metadata?match_target=${encodeURIComponent('{job="statsfs_text"}')}`);
    const textMeta = new Map(((await text.json()) as typeof body).data.map((m) => [m.metric, m]));
    expect(textMeta.get('statsfs_net_rx_bytes_total')).toMatchObject({ type: 'counter', help: 'bytes received, "in total"' });
  }, 30_000);
});
