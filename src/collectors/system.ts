/**
 * system/: the host-wide figures of /proc/stat and /proc/loadavg, the kernel's identity and the clock —
 * what dashboards show beside CPU, memory, disks and network (load, uptime, context switches, forks).
 *
 *   system/ctxt, intr, processes     counters from /proc/stat (context switches, interrupts, forks)
 *   system/procs_running, procs_blocked, btime   gauges from /proc/stat (btime: boot time, Unix seconds)
 *   system/loadavg/load1, load5, load15          /proc/loadavg in hundredths (the kernel prints two decimals)
 *   system/time_ms                   the wall clock, Unix milliseconds (uptime = time - btime)
 *   system/uname/info                1, with sysname, release, version, machine, nodename, domainname
 *                                    as labels of node_uname_info (read once, at start)
 *
 * Each file is read at most once per freshness window (common.ts), whatever number of values is read.
 */
import { machine } from 'node:os';
import { counterType, gaugeType, LiveValues, Schema, Source, StatsError, type ValueSpec } from '../model/index.js';
import { KernelFile, kernelPath, readKernelFile, type Collector, type CollectorOptions } from './common.js';

/** The single-number lines of /proc/stat that are kept ("intr" keeps its first number, the total). */
const STAT_KEYS = ['ctxt', 'intr', 'processes', 'procs_running', 'procs_blocked', 'btime'] as const;

export function parseStat(text: string): Map<string, bigint> {
  const values = new Map<string, bigint>();
  for (const line of text.split('\n')) {
    const space = line.indexOf(' ');
    const key = line.slice(0, space);
    if (!(STAT_KEYS as readonly string[]).includes(key)) continue;
    const first = line.slice(space + 1).trim().split(/\s+/)[0];
    if (/^\d+$/.test(first)) values.set(key, BigInt(first));
  }
  return values;
}

/** "0.52 0.58 0.59 1/234 5678": the three averages in hundredths, exactly. */
export function parseLoadavg(text: string): Map<string, bigint> {
  const fields = text.trim().split(/\s+/);
  const values = new Map<string, bigint>();
  ['load1', 'load5', 'load15'].forEach((name, i) => {
    const m = /^(\d+)\.(\d{1,2})$/.exec(fields[i] ?? '');
    if (m !== null) values.set(name, BigInt(m[1]) * 100n + BigInt(m[2].padEnd(2, '0')));
  });
  return values;
}

const statSchema = new Schema([
  { name: 'ctxt', type: counterType, unit: 'switches', description: 'context switches since boot (/proc/stat ctxt)', expose: { name: 'node_context_switches_total', type: 'counter', help: 'Total number of context switches.' } },
  { name: 'intr', type: counterType, unit: 'interrupts', description: 'interrupts serviced since boot (/proc/stat intr, first number)', expose: { name: 'node_intr_total', type: 'counter', help: 'Total number of interrupts serviced.' } },
  { name: 'processes', type: counterType, unit: 'forks', description: 'processes and threads created since boot (/proc/stat processes)', expose: { name: 'node_forks_total', type: 'counter', help: 'Total number of forks.' } },
  { name: 'procs_running', type: gaugeType, floating: true, unit: 'tasks', description: 'tasks runnable now (/proc/stat procs_running)', expose: { name: 'node_procs_running', type: 'gauge', help: 'Number of processes in runnable state.' } },
  { name: 'procs_blocked', type: gaugeType, floating: true, unit: 'tasks', description: 'tasks blocked on I/O now (/proc/stat procs_blocked)', expose: { name: 'node_procs_blocked', type: 'gauge', help: 'Number of processes blocked waiting for I/O to complete.' } },
  { name: 'btime', type: gaugeType, floating: true, unit: 'seconds', description: 'boot time, seconds since the Unix epoch (/proc/stat btime)', expose: { name: 'node_boot_time_seconds', type: 'gauge', help: 'Node boot time, in unixtime.' } },
  { name: 'time_ms', type: gaugeType, floating: true, unit: 'milliseconds', description: 'the wall clock, milliseconds since the Unix epoch', expose: { name: 'node_time_seconds', type: 'gauge', scale: { exp10: -3 }, help: 'System time in seconds since epoch (1970).' } },
]);

const HUNDREDTHS = { exp10: -2 } as const;
const loadSchema = new Schema(
  (['1', '5', '15'] as const).map(
    (m): ValueSpec => ({
      name: `load${m}`,
      type: gaugeType,
      floating: true,
      unit: 'hundredths',
      description: `load average over ${m} minute${m === '1' ? '' : 's'}, in hundredths (/proc/loadavg)`,
      expose: { name: `node_load${m}`, type: 'gauge', scale: HUNDREDTHS, help: `${m}m load average.` },
    }),
  ),
);

const unameSchema = new Schema([
  { name: 'info', type: 'u8', floating: true, description: 'always 1: the kernel identity is in the labels of node_uname_info', expose: { name: 'node_uname_info', type: 'gauge', help: 'Labeled system information as provided by the uname system call.' } },
]);

/** The uname fields as node_exporter labels them, from /proc/sys/kernel (the host's, under --host-root). */
function unameLabels(options: CollectorOptions): Record<string, string> {
  const read = (name: string): string => {
    try {
      return readKernelFile(kernelPath(options.procRoot, 'sys', 'kernel', name)).trim();
    } catch {
      return '';
    }
  };
  return { domainname: read('domainname'), machine: machine(), nodename: read('hostname'), release: read('osrelease'), sysname: read('ostype'), version: read('version') };
}

export const systemCollector: Collector = {
  name: 'system',
  description: 'load average, boot time, context switches, forks, runnable and blocked tasks, the clock and uname',
  create(options: CollectorOptions): Source {
    const stat = new KernelFile(kernelPath(options.procRoot, 'stat'), parseStat, options);
    const loadavg = new KernelFile(kernelPath(options.procRoot, 'loadavg'), parseLoadavg, options);
    const pick = (file: KernelFile<Map<string, bigint>>, name: string): bigint => {
      const value = file.get().get(name);
      if (value === undefined) throw new StatsError('ENOENT', `${file.path} has no ${name}`);
      return value;
    };
    const top = new Source('system');
    top.addValues(statSchema, { base: new LiveValues((name) => (name === 'time_ms' ? Date.now() : pick(stat, name))) });
    const load = new Source('loadavg');
    load.addValues(loadSchema, { base: new LiveValues((name) => pick(loadavg, name)) });
    top.addSubordinate(load);
    const uname = new Source('uname', { expose: { labels: unameLabels(options) } });
    uname.addValues(unameSchema).set('info', 1);
    top.addSubordinate(uname);
    stat.get(); // a missing /proc/stat fails here, at start
    return top;
  },
};
