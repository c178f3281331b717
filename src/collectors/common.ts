/**
 * What every collector shares: where the kernel's files are, how long one read of a file serves a burst of
 * reads, and how a source's subordinates follow what exists in the kernel now.
 *
 * Freshness rule: a kernel file is read at most once per `freshnessMs` (default 100 ms); every value read
 * within that window is served from the same parse. Membership (interfaces, CPUs, devices, cgroups) is
 * re-listed under the same rule, when a directory is listed or looked up or an aggregate is read — never
 * by a background poller.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { Source, StatsError } from '../model/index.js';
import type { CollectorFilters } from './filters.js';

export interface CollectorOptions {
  /** Where /proc is (tests point it at a fixture tree). */
  procRoot: string;
  /** Where /sys is. */
  sysRoot: string;
  freshnessMs: number;
  /** Milliseconds clock; injectable so that tests control freshness. */
  now: () => number;
  /** Which devices, interfaces, filesystems and cgroups to show (src/collectors/filters.ts). */
  filters: CollectorFilters;
  /** Where the host's root filesystem is, for statfs() of its mount points. */
  rootFs: string;
}

export const DEFAULT_COLLECTOR_OPTIONS: CollectorOptions = Object.freeze({
  procRoot: '/proc',
  sysRoot: '/sys',
  freshnessMs: 100,
  now: () => performance.now(),
  filters: Object.freeze({}),
  rootFs: '/',
});

export function collectorOptions(partial: Partial<CollectorOptions> = {}): CollectorOptions {
  return { ...DEFAULT_COLLECTOR_OPTIONS, ...partial };
}

/** A collector builds one top-level source (net, cpu, …) whose values are read from the kernel on demand. */
export interface Collector {
  readonly name: string;
  readonly description: string;
  create(options: CollectorOptions): Source;
}

/** Grows as needed and is reused: most reads are of small sysfs files, where allocation would dominate. */
let scratch = Buffer.allocUnsafe(64 * 1024);

function readWhole(path: string): string {
  const fd = openSync(path, 'r');
  try {
    let n = 0;
    for (;;) {
      if (n === scratch.length) {
        const grown = Buffer.allocUnsafe(scratch.length * 2);
        scratch.copy(grown, 0, 0, n);
        scratch = grown;
      }
      const got = readSync(fd, scratch, n, scratch.length - n, null);
      if (got === 0) return scratch.toString('latin1', 0, n);
      n += got;
    }
  } finally {
    closeSync(fd);
  }
}

/** Missing kernel files mean the thing is gone: ENOENT for the reader, not EIO. */
export function readKernelFile(path: string): string {
  try {
    return readWhole(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENODEV' || code === 'ENXIO') throw new StatsError('ENOENT', `${path} is gone`);
    throw err;
  }
}

/** One kernel file, parsed at most once per freshness window. */
export class KernelFile<T> {
  private readAt = -Infinity;
  private parsed: T | undefined;

  constructor(
    readonly path: string,
    private readonly parse: (text: string) => T,
    private readonly options: CollectorOptions,
  ) {}

  get(): T {
    const now = this.options.now();
    if (this.parsed === undefined || now - this.readAt >= this.options.freshnessMs) {
      this.parsed = this.parse(readKernelFile(this.path));
      this.readAt = now;
    }
    return this.parsed;
  }
}

/** Runs `fn` at most once per freshness window. */
export function throttle(options: CollectorOptions, fn: () => void): () => void {
  let at = -Infinity;
  return () => {
    const now = options.now();
    if (now - at < options.freshnessMs) return;
    at = now;
    fn();
  };
}

/**
 * Makes the subordinates of `parent` exactly `names`: creates the missing ones with `make`, removes those
 * that are gone (a file held open on a removed one keeps its snapshot). Order follows `names` for new ones.
 */
export function syncSubordinates(parent: Source, names: Iterable<string>, make: (name: string) => Source): void {
  const wanted = new Set(names);
  for (const sub of [...parent.subordinates]) {
    if (!wanted.delete(sub.name)) parent.removeSubordinate(sub);
  }
  for (const name of wanted) parent.addSubordinate(make(name));
}

/** Joins a root (e.g. options.sysRoot) with an absolute kernel path such as '/class/net'. */
export function kernelPath(root: string, ...parts: string[]): string {
  return join(root, ...parts);
}
