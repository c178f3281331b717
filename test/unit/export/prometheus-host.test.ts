/**
 * The host collectors' exposition, exactly, on a fixture /proc and /sys: node_exporter's names, labels,
 * types and base units; exact decimal scaling of 64-bit values (ticks, ms, sectors) far beyond 2^53;
 * partitions as their own device whatever the layout; node_exporter's default filters; and the
 * system, filesystem and pressure collectors.
 */
import { mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { addFilter, COLLECTORS, collectorOptions, NODE_EXPORTER_FILTERS, type CollectorFilters } from '../../../src/collectors/index.js';
import { mapSeries, renderPrometheusText, scaledDecimal } from '../../../src/export/prometheus.js';
import { captureSnapshot, Source } from '../../../src/model/index.js';

const U64_MAX = 2n ** 64n - 1n;
const root = mkdtempSync(join(tmpdir(), 'statsfs-prom-host-'));
const proc = join(root, 'proc');
const sys = join(root, 'sys');
afterAll(() => rmSync(root, { recursive: true, force: true }));

function write(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

// /proc/stat: cpu0 with u64 extremes, cpu1 small; the host-wide lines
write(
  join(proc, 'stat'),
  [
    'cpu  1 2 3 4 5 6 7 8 9 10',
    `cpu0 123456 0 ${U64_MAX} 1 2 3 4 5 6 7`,
    'cpu1 100 200 300 400 500 600 700 800 900 1000',
    'intr 98765 1 2 3',
    'ctxt 2061040',
    'btime 1795832972',
    'processes 27796',
    'procs_running 3',
    'procs_blocked 1',
    'softirq 5 1 1',
    '',
  ].join('\n'),
);
write(join(proc, 'loadavg'), '0.52 12.5 3.07 2/345 6789\n');
write(join(proc, 'meminfo'), 'MemTotal:       25276514304 kB\nActive(anon):       1564 kB\nHugePages_Total:       0\nHugepagesize:       2048 kB\n');
// /proc/net/dev: eth0 with every column distinct, lo; rx_nohandler comes from sysfs
const cols = (base: number) => Array.from({ length: 16 }, (_, i) => String(base + i)).join(' ');
write(join(proc, 'net', 'dev'), `Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n  eth0: ${cols(100)}\n    lo: ${cols(200)}\n`);
for (const ifname of ['eth0', 'lo']) {
  write(join(sys, 'class', 'net', ifname, 'statistics', 'rx_nohandler'), ifname === 'eth0' ? '77\n' : '0\n');
}
// diskstats: sda with one partition, vdb with two, loop0, mmcblk0 with a partition (kept by node_exporter's filter)
const disk = (name: string, base: bigint) => `   8       0 ${name} ${Array.from({ length: 17 }, (_, i) => String(base + BigInt(i))).join(' ')}`;
write(
  join(proc, 'diskstats'),
  [disk('sda', 1000n), disk('sda1', 2000n), disk('vdb', 2n ** 60n), disk('vdb1', 3000n), disk('vdb2', 4000n), disk('loop0', 0n), disk('mmcblk0', 5000n), disk('mmcblk0p1', 6000n), ''].join('\n'),
);
for (const [d, parts] of [['sda', ['sda1']], ['vdb', ['vdb1', 'vdb2']], ['loop0', []], ['mmcblk0', ['mmcblk0p1']]] as const) {
  mkdirSync(join(sys, 'block', d), { recursive: true });
  for (const p of parts) write(join(sys, 'block', d, p, 'partition'), '1\n');
}
for (const [r, some, full] of [['cpu', 193701728, 0], ['io', 10379901, 6930296], ['memory', 5, 3]] as const) {
  write(join(proc, 'pressure', r), `some avg10=1.00 avg60=2.00 avg300=3.00 total=${some}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=${full}\n`);
}
write(join(proc, '1', 'mounts'), ['/dev/vda / ext4 rw,relatime 0 0', 'proc /proc proc rw 0 0', 'tmpfs /dev/shm tmpfs rw 0 0', 'statsfs /mnt/x fuse.statsfs rw 0 0', ''].join('\n'));
for (const [k, v] of Object.entries({ ostype: 'Linux', osrelease: '6.1.0', version: '#1 SMP', hostname: 'host', domainname: '(none)' })) write(join(proc, 'sys', 'kernel', k), `${v}\n`);
mkdirSync(join(sys, 'fs', 'cgroup'), { recursive: true }); // no cgroup v2 here: an empty cgroup/

function scrape(filters: CollectorFilters = {}): string {
  const top = Source.root();
  const options = collectorOptions({ procRoot: proc, sysRoot: sys, rootFs: root, filters });
  for (const c of COLLECTORS) top.addSubordinate(c.create(options));
  return renderPrometheusText(captureSnapshot(top), { openMetrics: false });
}

describe("the host collectors under node_exporter's names", () => {
  const text = scrape();
  const lines = text.split('\n');

  it('CPU: seconds per mode, exactly (USER_HZ ticks / 100), guest apart, cpu="N"', () => {
    expect(lines).toContain('# TYPE node_cpu_seconds_total counter');
    expect(lines).toContain('node_cpu_seconds_total{cpu="0",mode="user"} 1234.56');
    expect(lines).toContain('node_cpu_seconds_total{cpu="0",mode="nice"} 0');
    expect(lines).toContain('node_cpu_seconds_total{cpu="0",mode="system"} 184467440737095516.15'); // 2^64-1 ticks
    expect(lines).toContain('node_cpu_seconds_total{cpu="1",mode="steal"} 8');
    expect(lines).toContain('node_cpu_guest_seconds_total{cpu="1",mode="user"} 9');
    expect(lines).toContain('node_cpu_guest_seconds_total{cpu="1",mode="nice"} 10');
    expect(lines.filter((l) => l.startsWith('node_cpu_seconds_total{')).length).toBe(16);
    expect(text).not.toMatch(/busy/);
  });

  it('memory: node_memory_<Key>_bytes, (anon) as _anon, counts without _bytes', () => {
    expect(lines).toContain(`node_memory_MemTotal_bytes ${25276514304n * 1024n}`);
    expect(lines).toContain('node_memory_Active_anon_bytes 1601536');
    expect(lines).toContain('node_memory_HugePages_Total 0');
    expect(lines).toContain('node_memory_Hugepagesize_bytes 2097152');
    expect(lines).toContain('# TYPE node_memory_MemTotal_bytes gauge');
  });

  it("network: node_exporter's 17 netdev counters with device=", () => {
    const eth0 = lines.filter((l) => l.startsWith('node_network_') && l.includes('{device="eth0"}'));
    expect(eth0.sort()).toEqual(
      [
        'receive_bytes 100', 'receive_packets 101', 'receive_errs 102', 'receive_drop 103', 'receive_fifo 104', 'receive_frame 105',
        'receive_compressed 106', 'receive_multicast 107', 'transmit_bytes 108', 'transmit_packets 109', 'transmit_errs 110',
        'transmit_drop 111', 'transmit_fifo 112', 'transmit_colls 113', 'transmit_carrier 114', 'transmit_compressed 115', 'receive_nohandler 77',
      ].map((s) => { const [n, v] = s.split(' '); return `node_network_${n}_total{device="eth0"} ${v}`; }).sort(),
    );
    expect(lines).toContain('node_network_receive_bytes_total{device="lo"} 200');
  });

  it('disks: bytes and seconds exactly, every device and partition its own device=, names independent of the layout', () => {
    expect(lines).toContain('node_disk_reads_completed_total{device="sda"} 1000');
    expect(lines).toContain('node_disk_read_bytes_total{device="sda"} 513024'); // 1002 sectors
    expect(lines).toContain('node_disk_read_time_seconds_total{device="sda"} 1.003');
    expect(lines).toContain('node_disk_io_now{device="sda"} 1008');
    expect(lines).toContain('node_disk_discarded_sectors_total{device="sda"} 1013'); // sectors, as node_exporter
    expect(lines).toContain('node_disk_flush_requests_time_seconds_total{device="sda"} 1.016');
    // beyond 2^53: (2^60 + 2) sectors of 512 bytes, exactly; the kernel's ms fields are 32-bit (2^60 + 3 reads as 3)
    expect(lines).toContain(`node_disk_read_bytes_total{device="vdb"} ${(2n ** 60n + 2n) * 512n}`);
    expect(lines).toContain('node_disk_read_time_seconds_total{device="vdb"} 0.003');
    expect(lines).toContain('node_disk_reads_completed_total{device="sda1"} 2000');
    expect(lines).toContain('node_disk_reads_completed_total{device="vdb2"} 4000');
    // one partition or two: the same metric names (the old mapping made sda1 part of the name)
    const namesOf = (device: string) => lines.filter((l) => l.includes(`{device="${device}"}`) && l.startsWith('node_disk_')).map((l) => l.split('{')[0]).sort();
    expect(namesOf('sda1')).toEqual(namesOf('vdb1'));
    expect(namesOf('sda1')).toEqual(namesOf('sda'));
    expect(namesOf('sda')).toHaveLength(17);
  });

  it('load, boot time, context switches, forks, interrupts, procs, uname, clock', () => {
    expect(lines).toContain('node_load1 0.52');
    expect(lines).toContain('node_load5 12.5');
    expect(lines).toContain('node_load15 3.07');
    expect(lines).toContain('node_boot_time_seconds 1795832972');
    expect(lines).toContain('node_context_switches_total 2061040');
    expect(lines).toContain('node_forks_total 27796');
    expect(lines).toContain('node_intr_total 98765');
    expect(lines).toContain('node_procs_running 3');
    expect(lines).toContain('node_procs_blocked 1');
    expect(lines.find((l) => l.startsWith('node_uname_info'))).toMatch(/^node_uname_info\{domainname="\(none\)",machine="\w+",nodename="host",release="6\.1\.0",sysname="Linux",version="#1 SMP"\} 1$/);
    const time = Number(lines.find((l) => l.startsWith('node_time_seconds '))!.split(' ')[1]);
    expect(Math.abs(time - Date.now() / 1000)).toBeLessThan(60);
  });

  it('filesystems: statfs in bytes with device, fstype, mountpoint; pseudo filesystems and statsfs mounts left out', () => {
    const s = statfsSync(root, { bigint: true });
    expect(lines).toContain(`node_filesystem_size_bytes{device="/dev/vda",fstype="ext4",mountpoint="/"} ${s.blocks * s.bsize}`);
    expect(lines).toContain(`node_filesystem_files{device="/dev/vda",fstype="ext4",mountpoint="/"} ${s.files}`);
    expect(lines).toContain('node_filesystem_readonly{device="/dev/vda",fstype="ext4",mountpoint="/"} 0');
    expect(lines).toContain('node_filesystem_device_error{device="/dev/vda",fstype="ext4",mountpoint="/"} 0');
    expect(text).not.toMatch(/mountpoint="\/(proc|dev\/shm|mnt\/x)"/);
  });

  it('pressure: stall totals in seconds (µs / 10^6), cpu "full" left out as node_exporter 1.5.0 does', () => {
    expect(lines).toContain('node_pressure_cpu_waiting_seconds_total 193.701728');
    expect(lines).toContain('node_pressure_io_waiting_seconds_total 10.379901');
    expect(lines).toContain('node_pressure_io_stalled_seconds_total 6.930296');
    expect(lines).toContain('node_pressure_memory_stalled_seconds_total 0.000003');
    expect(text).not.toMatch(/node_pressure_cpu_stalled/);
  });

  it("applies node_exporter's default device filter, and include/exclude patterns", () => {
    const filtered = scrape(NODE_EXPORTER_FILTERS);
    const devices = (t: string) => [...new Set(t.split('\n').filter((l) => l.startsWith('node_disk_reads_completed_total')).map((l) => /device="([^"]+)"/.exec(l)![1]))].sort();
    expect(devices(text)).toEqual(['loop0', 'mmcblk0', 'mmcblk0p1', 'sda', 'sda1', 'vdb', 'vdb1', 'vdb2']);
    expect(devices(filtered)).toEqual(['mmcblk0', 'mmcblk0p1', 'sda', 'vdb']);
    const onlyEth = scrape(addFilter({}, 'include', 'interfaces=^eth'));
    expect(onlyEth).toContain('{device="eth0"}');
    expect(onlyEth).not.toContain('{device="lo"}');
    expect(() => addFilter({}, 'exclude', 'disks=x')).toThrow(/kind one of devices, interfaces, mountpoints, fstypes, cgroups/);
  });

  it('exports nothing twice and every name once with one type', () => {
    const samples = lines.filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.slice(0, l.lastIndexOf(' ')));
    expect(new Set(samples).size).toBe(samples.length);
    const types = lines.filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]);
    expect(new Set(types).size).toBe(types.length);
    const top = Source.root();
    for (const c of COLLECTORS) top.addSubordinate(c.create(collectorOptions({ procRoot: proc, sysRoot: sys, rootFs: root })));
    for (const s of mapSeries(captureSnapshot(top))) {
      expect(s.aggregate, s.path).toBe(false);
      expect(s.name, s.path).toMatch(/^node_/);
    }
  });
});

describe('exact decimal scaling', () => {
  it('scales 64-bit words without a double', () => {
    const split = (v: bigint) => [Number(BigInt.asUintN(64, v) & 0xffffffffn), Number(BigInt.asUintN(64, v) >> 32n)] as const;
    const scaled = (v: bigint, signed: boolean, scale: { times?: number; exp10?: number }) => scaledDecimal(...split(v), signed, scale);
    expect(scaled(U64_MAX, false, { exp10: -2 })).toBe('184467440737095516.15');
    expect(scaled(U64_MAX, false, { exp10: -3 })).toBe('18446744073709551.615');
    expect(scaled(U64_MAX, false, { times: 512 })).toBe(String(U64_MAX * 512n));
    expect(scaled(5n, false, { exp10: -3 })).toBe('0.005');
    expect(scaled(1500n, false, { exp10: -3 })).toBe('1.5');
    expect(scaled(2000n, false, { exp10: -3 })).toBe('2');
    expect(scaled(0n, false, { exp10: -6 })).toBe('0');
    expect(scaled(-(2n ** 63n), true, { exp10: -6 })).toBe('-9223372036854.775808');
    expect(scaled(-5n, true, { exp10: -2 })).toBe('-0.05');
    expect(scaled(2n ** 53n + 1n, false, { exp10: -2 })).toBe('90071992547409.93');
  });
});
