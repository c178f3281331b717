/**
 * Series that do not come from the tree: the standard process_* metrics every Prometheus client exports,
 * and whether each top-level source of the scrape was read whole (node_exporter's
 * node_scrape_collector_success), so that a value whose read failed is visible instead of silently absent.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Snapshot } from '../model/snapshot.js';
import { escapeLabelValue, type MetricType } from './prom-naming.js';

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

/** process_* as client_golang and prom-client name them; the /proc ones only where /proc is readable. */
export function processFamilies(): PrebuiltFamily[] {
  const cpu = process.cpuUsage();
  const families: PrebuiltFamily[] = [
    { base: 'process_cpu_seconds', type: 'counter', help: 'Total user and system CPU time spent in seconds.', unit: 'seconds', samples: [['', microsToSeconds(cpu.user + cpu.system)]] },
    gauge('process_resident_memory_bytes', 'Resident memory size in bytes.', String(process.memoryUsage.rss()), 'bytes'),
    gauge('process_start_time_seconds', 'Start time of the process since unix epoch in seconds.', (Math.round(performance.timeOrigin) / 1000).toFixed(3), 'seconds'),
  ];
  try {
    const status = readFileSync('/proc/self/status', 'latin1');
    const vm = /^VmSize:\s+(\d+) kB/m.exec(status);
    if (vm !== null) families.push(gauge('process_virtual_memory_bytes', 'Virtual memory size in bytes.', String(Number(vm[1]) * 1024), 'bytes'));
    families.push(gauge('process_open_fds', 'Number of open file descriptors.', String(readdirSync('/proc/self/fd').length)));
    const limit = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'latin1'));
    if (limit !== null) families.push(gauge('process_max_fds', 'Maximum number of open file descriptors.', limit[1]));
  } catch {
    // no /proc: the portable three above are enough
  }
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
