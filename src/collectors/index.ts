/** The host collectors, in the order they appear at the root. */
import { blockCollector } from './block.js';
import { cgroupCollector } from './cgroup.js';
import type { Collector } from './common.js';
import { cpuCollector } from './cpu.js';
import { filesystemCollector } from './filesystem.js';
import { memoryCollector } from './memory.js';
import { netCollector } from './net.js';
import { pressureCollector } from './pressure.js';
import { systemCollector } from './system.js';

export { collectorOptions, type Collector, type CollectorOptions } from './common.js';
export { addFilter, filtersFrom, NODE_EXPORTER_FILTERS, type CollectorFilters, type Filter } from './filters.js';

export const COLLECTORS: readonly Collector[] = [
  netCollector,
  cpuCollector,
  blockCollector,
  memoryCollector,
  cgroupCollector,
  systemCollector,
  filesystemCollector,
  pressureCollector,
];

export function findCollector(name: string): Collector | undefined {
  return COLLECTORS.find((c) => c.name === name);
}
