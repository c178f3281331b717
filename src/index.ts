/** statsfs as a library: build a tree of sources and values, then mount it (or read it directly). */
export * from './model/index.js';
export { mount, lazyUnmount, type MountOptions, type MountedStatsFs } from './fs/mount.js';
export { createSelfStats } from './daemon/self-stats.js';
