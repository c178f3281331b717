/**
 * Series that do not come from the tree: the standard process_* metrics every Prometheus client exports,
 * and whether each top-level source of the scrape was read whole (node_exporter's
 * node_scrape_collector_success), so that a value whose read failed is visible instead of silently absent.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Snapshot } from '../model/snapshot.js';
import { escapeLabelValue, scaledDecimal, type MetricType } from './prom-naming.js';

/** A family written as it is, after the planned ones. */
export interface PrebuiltFamily {
  /** Family name (without _total). */
  base: string;
  type: MetricType;
  help: string;
  unit: string;
  /** Label text ('' for none) and value text of each sample. */
  samples: [string, string][];
}

function gauge(base: string, help: string, value: string, unit = ''): PrebuiltFamily {
  return { base, type: 'gauge', help, unit, samples: [['', value]] };
}

/** Microseconds as exact seconds ("12.003456"). */
function microsToSeconds(us: number): string {
  const whole = Math.floor(us / 1e6);
  const frac = String(us - whole * 1e6).padStart(6, '0').replace(/0+$/, '');
  return frac === '' ? String(whole) : `${whole}.${frac}`;
}

/** Reads a /proc file, or '' where there is none. */
function procText(path: string): string {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return '';
  }
}

/**
 * process_* as client_golang names them. CPU time comes from /proc/self/stat in USER_HZ ticks, as
 * client_golang reads it (getrusage() through process.cpuUsage() cost this multi-threaded daemon ~0.4 ms
 * a scrape); without /proc, from process.cpuUsage().
 */
export function processFamilies(): PrebuiltFamily[] {
  const stat = procText('/proc/self/stat');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let cpu: string;
  if (fields.length > 13 && /^\d+$/.test(fields[11]) && /^\d+$/.test(fields[12])) {
    const ticks = BigInt(fields[11]) + BigInt(fields[12]);
    cpu = scaledDecimal(Number(ticks & 0xffffffffn), Number(ticks >> 32n), false, { exp10: -2 });
  }
  else {
    const usage = process.cpuUsage();
    cpu = microsToSeconds(usage.user + usage.system);
  }
  const status = procText('/proc/self/status');
  const rss = /^VmRSS:\s+(\d+) kB/m.exec(status);
  const families: PrebuiltFamily[] = [
    { base: 'process_cpu_seconds', type: 'counter', help: 'Total user and system CPU time spent in seconds.', unit: 'seconds', samples: [['', cpu]] },
    gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', rss !== null ? String(Number(rss[1]) * 1024) : String(process.memoryUsage.rss()), 'bytes'),
    gauge('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', (Math.round(performance.timeOrigin) / 1000).toFixed(3), 'seconds'),
  ];
  const vm = /^VmSize:\s+(\d+) kB/m.exec(status);
  if (vm !== null) families.push(gauge('process_virtual_memory_bytes', 'Virtual memory size in bytes.', String(Number(vm[1]) * 1024), 'bytes'));
  try {
    families.push(gauge('process_open_fds', 'Number of open file descriptors.', String(readdirSync('/proc/self/fd').length)));
  } catch {
    // no /proc
  }
  const limit = /^Max open files\s+(\d+)/m.exec(procText('/proc/self/limits'));
  if (limit !== null) families.push(gauge('process_max_fds', 'Maximum number of open file descriptors.', limit[1]));
  return families;
}

/** One success gauge per top-level source (1: every value read; 0: some left out) and the count left out. */
export function scrapeFamilies(snapshot: Snapshot): PrebuiltFamily[] {
  const failed = new Map<string, number>();
  for (const { path } of snapshot.failures) {
    const top = path.includes('/') ? path.slice(0, path.indexOf('/')) : '';
    failed.set(top, (failed.get(top) ?? 0) + 1);
  }
  const success: [string, string][] = [];
  for (let d = 1; d < snapshot.dirCount; d++) {
    if (snapshot.dirParentOf(d) !== 0) continue;
    const name = snapshot.dirNameOf(d);
    success.push([`collector="${escapeLabelValue(name)}"`, failed.has(name) ? '0' : '1']);
  }
  return [
    { base: 'statsfs_scrape_collector_success', type: 'gauge', help: 'statsfs: whether every value below this top-level source could be read in this scrape.', unit: '', samples: success },
    gauge('statsfs_scrape_failed_values', 'statsfs: values left out of this scrape because reading them failed (see the daemon log).', String(snapshot.failures.length)),
  ];
}
