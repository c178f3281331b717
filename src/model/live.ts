import type { CustomType } from './types.js';

/**
 * Values read from their owner at the moment of reading (the kernel, the FUSE binding, the process).
 *
 * Counters there cannot be reset by us, so clearing one records a baseline and later reads show the delta
 * since: `echo 0 > file` then means "count from now", as users expect. Gauges are read as they are.
 */
export class LiveValues {
  private baselines: Map<string, bigint> | null = null;

  constructor(readonly read: (name: string) => bigint | number) {}

  delta(name: string): bigint {
    const now = BigInt(this.read(name));
    return BigInt.asUintN(64, now - (this.baselines?.get(name) ?? 0n));
  }

  reset(name: string): void {
    (this.baselines ??= new Map()).set(name, BigInt(this.read(name)));
  }

  /** The baselines recorded by clears (a state file keeps them, so a clear outlives a restart). */
  baselineEntries(): [string, bigint][] {
    return this.baselines === null ? [] : [...this.baselines];
  }

  /** Puts back a baseline saved by baselineEntries(). */
  restoreBaseline(name: string, baseline: bigint): void {
    (this.baselines ??= new Map()).set(name, baseline);
  }
}

/** Cumulative, clearable (0644) counters of a LiveValues base. */
export const counterType: CustomType<LiveValues> = Object.freeze({
  name: 'counter',
  signed: false,
  get: (base: LiveValues, name: string) => base.delta(name),
  clear: (base: LiveValues, name: string) => base.reset(name),
});

/** Gauges of a LiveValues base: declare them floating, so they are read-only (0444). */
export const gaugeType: CustomType<LiveValues> = Object.freeze({
  name: 'gauge',
  signed: false,
  get: (base: LiveValues, name: string) => base.read(name),
});
