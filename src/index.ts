/** statsfs as a library: build a tree of sources and values, then mount it (or read it directly). */
export * from './model/index.js';
export { mount, lazyUnmount, type MountOptions, type MountedStatsFs } from './fs/mount.js';
export { createSelfStats } from './daemon/self-stats.js';
export { SNAPSHOT_FILES } from './fs/mount.js';
export { MetricsServer } from './export/http.js';
export { renderPrometheus, renderPrometheusText } from './export/prometheus.js';
export { ProducerServer } from './producers/socket-server.js';
export { StatsdServer } from './producers/statsd.js';
export { parseBinarySnapshot, openBinarySnapshot, histogramQuantile, type SnapshotHistogram } from './client/snapshot-reader.js';
