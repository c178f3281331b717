/**
 * The real daemon with its host collectors on this machine: values read through the mount are compared
 * with the kernel's own files, read just before and just after (counters only grow, so the mount's value
 * must lie between). --freshness-ms 0 makes every read go to the kernel.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { NODE_EXPORTER_FILTERS } from '../../src/collectors/filters.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sh, skipWithoutFuse, startDaemon, type Daemon } from '../helpers/mount.js';

const read = (path: string) => readFileSync(path, 'utf8');
const big = (text: string) => BigInt(text.trim());
const procStat = (cpu: string, field: number) => big(read('/proc/stat').split('\n').find((l) => l.startsWith(cpu + ' '))!.trim().split(/\s+/)[field]);

describe.skipIf(skipWithoutFuse)('host collectors through the mount (real kernel files)', { timeout: 60_000 }, () => {
  let d: Daemon;
  let m: string;
  beforeAll(async () => {
    d = await startDaemon(['--freshness-ms', '0']);
    m = d.mountpoint;
  });
  afterAll(() => d?.cleanup());

  const cat = (path: string) => {
    const r = sh(`cat ${m}/${path}`);
    expect(r.stderr, path).toBe('');
    return big(r.stdout);
  };

  it('shows every collector at the root', () => {
    const names = sh(`ls ${m}`).stdout.split('\n');
    for (const name of ['net', 'cpu', 'block', 'memory', 'statsfs']) expect(names).toContain(name);
  });

  it('net/<if>/<counter> matches /sys/class/net and net/<counter> is the sum over interfaces', () => {
    const ifaces = readdirSync('/sys/class/net');
    expect(sh(`ls ${m}/net`).stdout.split('\n')).toEqual(expect.arrayContaining(ifaces));
    const kernel = (i: string, c: string) => big(read(`/sys/class/net/${i}/statistics/${c}`));
    for (const counter of ['rx_bytes', 'tx_packets', 'rx_errors', 'rx_crc_errors']) {
      for (const i of ifaces) {
        const before = kernel(i, counter);
        const seen = cat(`net/${i}/${counter}`);
        expect(seen, `${i}/${counter}`).toBeGreaterThanOrEqual(before);
        expect(seen, `${i}/${counter}`).toBeLessThanOrEqual(kernel(i, counter));
      }
      const sumBefore = ifaces.reduce((a, i) => a + kernel(i, counter), 0n);
      const total = cat(`net/${counter}`);
      expect(total).toBeGreaterThanOrEqual(sumBefore);
      expect(total).toBeLessThanOrEqual(ifaces.reduce((a, i) => a + kernel(i, counter), 0n));
    }
  });

  it('echo 0 > a kernel counter starts counting from now; the aggregate follows', () => {
    const lo = readdirSync('/sys/class/net').includes('lo') ? 'lo' : readdirSync('/sys/class/net')[0];
    const kernel = () => big(read(`/sys/class/net/${lo}/statistics/rx_bytes`));
    const before = kernel();
    expect(sh(`echo 0 > ${m}/net/${lo}/rx_bytes`).status).toBe(0);
    const delta = cat(`net/${lo}/rx_bytes`);
    // the baseline was taken between `before` and now, so the delta is at most what arrived meanwhile
    expect(delta).toBeGreaterThanOrEqual(0n);
    expect(delta).toBeLessThanOrEqual(kernel() - before);
  });

  it('cpu/cpuN/<time> matches /proc/stat and cpu/<time> is the machine-wide line', () => {
    const cpus = read('/proc/stat').split('\n').filter((l) => /^cpu\d+ /.test(l)).map((l) => l.split(' ')[0]);
    expect(sh(`ls ${m}/cpu`).stdout.split('\n')).toEqual(expect.arrayContaining(cpus));
    for (const [field, name] of [[1, 'user'], [3, 'system'], [4, 'idle']] as const) {
      const before = procStat('cpu0', field);
      const seen = cat(`cpu/cpu0/${name}`);
      expect(seen).toBeGreaterThanOrEqual(before);
      expect(seen).toBeLessThanOrEqual(procStat('cpu0', field));
      // against the sum of the per-CPU lines: the kernel rounds the machine-wide line separately
      const sum = () => cpus.reduce((a, cpu) => a + procStat(cpu, field), 0n);
      const allBefore = sum();
      const total = cat(`cpu/${name}`);
      expect(total).toBeGreaterThanOrEqual(allBefore);
      expect(total).toBeLessThanOrEqual(sum());
    }
  });

  it('memory/ holds /proc/meminfo in bytes, read-only', () => {
    const total = big(read('/proc/meminfo').match(/^MemTotal:\s+(\d+) kB$/m)![1]) * 1024n;
    expect(cat('memory/MemTotal')).toBe(total);
    expect(sh(`stat -c %a ${m}/memory/MemTotal`).stdout).toBe('444\n');
    expect(sh(`echo 0 > ${m}/memory/MemTotal`).stderr).toMatch(/Permission denied/);
  });

  it('block/<dev>/ matches /proc/diskstats', () => {
    // the command line's default filters are node_exporter's: loop and ram devices are left out
    const all = readdirSync('/sys/block');
    const devs = all.filter((d) => !NODE_EXPORTER_FILTERS.devices!.exclude!.test(d));
    const listed = sh(`ls ${m}/block`).stdout.split('\n');
    expect(listed).toEqual(expect.arrayContaining(devs));
    for (const d of all.filter((x) => /^(loop|ram)\d+$/.test(x))) expect(listed).not.toContain(d);
    const dev = devs.find((x) => !x.startsWith('loop')) ?? devs[0];
    const kernel = () => big(read('/proc/diskstats').split('\n').find((l) => l.trim().split(/\s+/)[2] === dev)!.trim().split(/\s+/)[3]);
    const before = kernel();
    const seen = cat(`block/${dev}/reads_completed`);
    expect(seen).toBeGreaterThanOrEqual(before);
    expect(seen).toBeLessThanOrEqual(kernel());
  });

  it.runIf(existsSync('/sys/fs/cgroup/cgroup.controllers') || existsSync('/sys/fs/cgroup/unified/cgroup.controllers'))(
    'cgroup/ mirrors the cgroup v2 hierarchy',
    () => {
      const v2 = existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
      const dirs = readdirSync(v2, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);
      const listed = sh(`ls ${m}/cgroup`).stdout.split('\n');
      for (const dir of dirs.filter((n) => n.length <= 99)) expect(listed).toContain(dir);
    },
  );
});
