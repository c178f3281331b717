/**
 * Storage for simple values: one growable Uint32Array holding 64-bit slots as (lo, hi) pairs.
 *
 * A million values cost 8 MB here and no per-value object; a group of values owns a run of consecutive
 * slots. Runs are recycled by length, which fits how sources come and go: many of the same schema.
 *
 * Readers on other threads (the FUSE binding answers `open` of plain values on its session thread) read
 * this memory directly. Slot 0 is not a value: it is a write sequence, odd while a write is under way
 * (a seqlock), so that such a reader never sees half of a 64-bit value written by two 32-bit stores. It
 * retries or hands the read to the JS thread, where no write can be under way.
 */
export class SlotArena {
  /** Reallocated on growth: read it anew after any alloc(). Word 0 is the write sequence ({@link SEQ}). */
  u32: Uint32Array;
  private top = 1;
  private readonly freeRuns = new Map<number, number[]>();
  private used = 0;
  private readonly growthListeners = new Set<(u32: Uint32Array) => void>();
  /** Depth of batch() calls: inside one, the sequence is already odd and stores need no steps of their own. */
  private batchDepth = 0;

  constructor(initialSlots = 1024) {
    this.u32 = new Uint32Array(Math.max(initialSlots, 2) * 2);
  }

  /** Returns the first slot of a zeroed run of n slots. */
  alloc(n: number): number {
    this.used += n;
    const recycled = this.freeRuns.get(n)?.pop();
    if (recycled !== undefined) return recycled;
    const first = this.top;
    this.top += n;
    if (this.top * 2 > this.u32.length) {
      let length = this.u32.length * 2;
      while (this.top * 2 > length) length *= 2;
      const grown = new Uint32Array(length);
      grown.set(this.u32.subarray(0, first * 2));
      this.u32 = grown;
      // before any write lands in the new array, so that no reader keeps reading the old one
      for (const listener of this.growthListeners) listener(grown);
    }
    return first;
  }

  release(first: number, n: number): void {
    this.batch(() => this.u32.fill(0, first * 2, (first + n) * 2));
    this.used -= n;
    let runs = this.freeRuns.get(n);
    if (!runs) this.freeRuns.set(n, (runs = []));
    runs.push(first);
  }

  /** Stores a 64-bit word in slot `slot`, as one write for readers on other threads. */
  store(slot: number, lo: number, hi: number): void {
    const u32 = this.u32;
    if (this.batchDepth > 0) {
      u32[slot * 2] = lo;
      u32[slot * 2 + 1] = hi;
      return;
    }
    // atomic steps: neither the CPU nor the compiler may move the two stores outside them
    Atomics.add(u32, SEQ, 1);
    u32[slot * 2] = lo;
    u32[slot * 2 + 1] = hi;
    Atomics.add(u32, SEQ, 1);
  }

  /**
   * Runs `fn` as one write: two sequence steps around all of its stores instead of two per store (they
   * cost about as much as the store itself). Readers on other threads that overlap it hand their read
   * to the JS thread, so keep it to one batch of updates.
   */
  batch<T>(fn: () => T): T {
    if (this.batchDepth++ === 0) Atomics.add(this.u32, SEQ, 1);
    try {
      return fn();
    } finally {
      // this.u32 anew: fn may have grown the arena (the sequence moved with the words)
      if (--this.batchDepth === 0) Atomics.add(this.u32, SEQ, 1);
    }
  }

  /** Calls `listener` with the new array each time the arena grows; returns the unsubscribe function. */
  onGrowth(listener: (u32: Uint32Array) => void): () => void {
    this.growthListeners.add(listener);
    return () => this.growthListeners.delete(listener);
  }

  /** Slots in use and slots reserved (for the daemon's own memory statistics). */
  get usage(): { used: number; capacity: number } {
    return { used: this.used, capacity: this.u32.length / 2 };
  }
}

/** Index of the write sequence in {@link SlotArena.u32}: odd while a write is under way. */
export const SEQ = 0;

/** Shared by every source: a source may move between trees, its storage stays put. */
export const arena = new SlotArena();
