/** statsfs as a library: build a tree of sources and values, then mount it (or read it directly). */
export * from './model/index.js';
import { SNAPSHOT_FILES } from './export/snapshot-files.js';
import { mountTree, type MountedStatsFs, type MountOptions } from './fs/mount.js';
import type { Source } from './model/index.js';

export { lazyUnmount, type MountOptions, type MountedStatsFs } from './fs/mount.js';
export { createSelfStats } from './daemon/self-stats.js';
export { SNAPSHOT_FILES };

/**
 * Mounts `root` at `mountpoint` and serves it from this process until unmount(), with the snapshot files
 * in every directory (options.snapshots replaces them). Never read the mount synchronously from this same
 * process: the thread that would answer is the one waiting.
 */
export function mount(root: Source, mountpoint: string, options: MountOptions = {}): Promise<MountedStatsFs> {
  return mountTree(root, mountpoint, { snapshots: SNAPSHOT_FILES, ...options });
}
export { MetricsServer } from './export/http.js';
export { renderPrometheus, renderPrometheusText } from './export/prometheus.js';
export { ProducerServer } from './producers/socket-server.js';
export { StatsdServer } from './producers/statsd.js';
export { parseBinarySnapshot, openBinarySnapshot, histogramQuantile, type SnapshotHistogram } from './client/snapshot-reader.js';
