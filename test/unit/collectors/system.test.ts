/**
 * The system, filesystem and pressure collectors on fixture trees: the kernel's names and units in the tree,
 * exact parsing, freshness, absent files, statfs failures, mounts that come and go, and filters.
 */
import { mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { collectorOptions, type CollectorOptions } from '../../../src/collectors/index.js';
import { filesystemCollector, parseMounts } from '../../../src/collectors/filesystem.js';
import { parsePressure, pressureCollector } from '../../../src/collectors/pressure.js';
import { parseLoadavg, parseStat, systemCollector } from '../../../src/collectors/system.js';
import { captureSnapshot, StatsError, type Source } from '../../../src/model/index.js';

let root = '';
let clock = 0;
let options: CollectorOptions;
const write = (path: string, text: string) => {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), text);
};
const values = (src: Source) => Object.fromEntries(src.visibleValues().map((v) => [v.def.name, src.getValue(v.def.name)]));

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), 'statsfs-system-'));
  clock = 0;
  options = collectorOptions({ procRoot: join(root, 'proc'), sysRoot: join(root, 'sys'), rootFs: root, freshnessMs: 100, now: () => clock });
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('system collector', () => {
  it("keeps /proc/stat's names and the load average in hundredths, exactly", () => {
    write('proc/stat', 'cpu  1 2 3\ncpu0 1 2 3\nintr 18446744073709551615 0 1\nctxt 5\nbtime 1700000000\nprocesses 9\nprocs_running 2\nprocs_blocked 0\n');
    write('proc/loadavg', '0.05 1.50 12.34 3/456 7890\n');
    write('proc/sys/kernel/hostname', 'box\n');
    const system = systemCollector.create(options);
    expect(values(system)).toMatchObject({ ctxt: 5n, intr: 2n ** 64n - 1n, processes: 9n, procs_running: 2n, procs_blocked: 0n, btime: 1700000000n });
    expect(values(system.subordinate('loadavg')!)).toEqual({ load1: 5n, load5: 150n, load15: 1234n });
    expect(system.subordinate('uname')!.expose?.labels).toMatchObject({ nodename: 'box', sysname: '' }); // ostype missing: empty, not an error
    const ms = system.getValue('time_ms');
    expect(Math.abs(Number(ms) - Date.now())).toBeLessThan(60_000);
    // one read per freshness window
    write('proc/stat', 'ctxt 6\n');
    expect(system.getValue('ctxt')).toBe(5n);
    clock += 100;
    expect(system.getValue('ctxt')).toBe(6n);
    expect(() => system.getValue('btime')).toThrow(StatsError);
  });

  it('parses what the kernel prints and nothing else', () => {
    expect(parseStat('intr 1 2\nctxt x\nbogus 4\n')).toEqual(new Map([['intr', 1n]]));
    expect(parseLoadavg('0.5 2 3.141 1/2 3')).toEqual(new Map([['load1', 50n]]));
  });
});

describe('filesystem collector', () => {
  it('shows statfs() of each mount in bytes and inodes, pseudo filesystems and statsfs mounts left out', () => {
    mkdirSync(join(root, 'data'));
    write('proc/1/mounts', '/dev/vda / ext4 rw 0 0\n/dev/vdb /data xfs ro,noatime 0 0\nproc /proc proc rw 0 0\ntmpfs /run/credentials/x tmpfs rw 0 0\nstatsfs /data statsfs.fuse rw 0 0\nstatsfs /mnt/s fuse.statsfs rw 0 0\n');
    const fs = filesystemCollector.create(options);
    expect(fs.visibleSubordinates().map((s) => s.name)).toEqual(['-', 'data']);
    const s = statfsSync(root, { bigint: true });
    const top = values(fs.subordinate('-')!);
    expect(top).toMatchObject({ size: s.blocks * s.bsize, files: s.files, readonly: 0n, device_error: 0n });
    expect(fs.subordinate('data')!.expose?.labels).toEqual({ device: '/dev/vdb', fstype: 'xfs', mountpoint: '/data' });
    expect(fs.subordinate('data')!.getValue('readonly')).toBe(1n);
  });

  it('reports a statfs() failure as device_error = 1 and fails the other values', () => {
    write('proc/1/mounts', '/dev/sdz /gone ext4 rw 0 0\n');
    const gone = filesystemCollector.create(options).subordinate('gone')!;
    expect(gone.getValue('device_error')).toBe(1n);
    expect(() => gone.getValue('size')).toThrow(/ENOENT|no such file/);
    const snapshot = captureSnapshot(gone.parent!);
    expect(snapshot.failures.map((f) => f.path).sort()).toEqual(['gone/avail', 'gone/files', 'gone/files_free', 'gone/free', 'gone/size']);
  });

  it('follows mounts that come and go, and a device mounted in place of another', () => {
    write('proc/1/mounts', '/dev/vda / ext4 rw 0 0\n');
    const fs = filesystemCollector.create(options);
    const first = fs.subordinate('-')!;
    write('proc/1/mounts', '/dev/vdc / btrfs rw 0 0\n/dev/vda /srv/a\\040b ext4 rw 0 0\n');
    clock += 100;
    expect(fs.visibleSubordinates().map((s) => s.name).sort()).toEqual(['-', 'srv-a b']);
    expect(fs.subordinate('-')).not.toBe(first);
    expect(fs.subordinate('-')!.expose?.labels).toMatchObject({ device: '/dev/vdc', fstype: 'btrfs' });
    expect(fs.subordinate('srv-a b')!.expose?.labels).toMatchObject({ mountpoint: '/srv/a b' });
  });

  it('falls back to <proc>/mounts and applies mount point and type filters', () => {
    write('proc/mounts', '/dev/vda / ext4 rw 0 0\n/dev/vdb /home ext4 rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n');
    const only = filesystemCollector.create({ ...options, filters: { mountpoints: { include: /^\/home$/ } } });
    expect(only.visibleSubordinates().map((s) => s.name)).toEqual(['home']);
    const noTmpfs = filesystemCollector.create({ ...options, filters: { fstypes: { exclude: /^tmpfs$/ } } });
    expect(noTmpfs.visibleSubordinates().map((s) => s.name)).toEqual(['-', 'home']);
    expect(parseMounts('a\\011b /x\\134y ext4 ro 0 0')).toEqual([{ device: 'a\tb', mountpoint: '/x\\y', fstype: 'ext4', readonly: true }]);
  });

  it('shows a mount point too long for a source name (Kubernetes volumes) under a shortened name, labelled whole', () => {
    const long = `/var/lib/kubelet/pods/${'0123456789abcdef'.repeat(3)}/volumes/kubernetes.io~projected/kube-api-access-x`;
    write('proc/1/mounts', `tmpfs ${long} tmpfs rw 0 0\ntmpfs ${long}2 tmpfs rw 0 0\n`);
    const subs = filesystemCollector.create(options).visibleSubordinates();
    expect(subs).toHaveLength(2);
    for (const sub of subs) expect(sub.name).toMatch(/^var-lib-kubelet-pods-.{59}~[0-9a-f]{16}$/); // 80 + ~ + 16 characters
    expect(subs.map((s) => s.expose?.labels?.mountpoint).sort()).toEqual([long, `${long}2`]);
  });
});

describe('pressure collector', () => {
  it('keeps the some and full totals in microseconds; a kernel without PSI gives an empty pressure/', () => {
    expect(pressureCollector.create(options).visibleSubordinates()).toEqual([]);
    write('proc/pressure/io', 'some avg10=0.00 avg60=0.00 avg300=0.00 total=18446744073709551615\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n');
    write('proc/pressure/cpu', 'some avg10=1.00 avg60=0.00 avg300=0.00 total=3\n');
    const p = pressureCollector.create(options);
    expect(p.visibleSubordinates().map((s) => s.name)).toEqual(['cpu', 'io']);
    expect(values(p.subordinate('io')!)).toEqual({ some: 2n ** 64n - 1n, full: 7n });
    expect(() => p.subordinate('cpu')!.getValue('full')).toThrow(StatsError); // older kernels: no "full" line for cpu
    expect(parsePressure('full avg10=0 total=x\n')).toEqual(new Map());
  });
});
