/**
 * Storage for simple values: one growable Uint32Array holding 64-bit slots as (lo, hi) pairs.
 *
 * A million values cost 8 MB here and no per-value object; a group of values owns a run of consecutive
 * slots. Runs are recycled by length, which fits how sources come and go: many of the same schema.
 */
export class SlotArena {
  /** Reallocated on growth: read it anew after any alloc(). */
  u32: Uint32Array;
  private top = 0;
  private readonly freeRuns = new Map<number, number[]>();
  private used = 0;

  constructor(initialSlots = 1024) {
    this.u32 = new Uint32Array(initialSlots * 2);
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
    }
    return first;
  }

  release(first: number, n: number): void {
    this.u32.fill(0, first * 2, (first + n) * 2);
    this.used -= n;
    let runs = this.freeRuns.get(n);
    if (!runs) this.freeRuns.set(n, (runs = []));
    runs.push(first);
  }

  /** Slots in use and slots reserved (for the daemon's own memory statistics). */
  get usage(): { used: number; capacity: number } {
    return { used: this.used, capacity: this.u32.length / 2 };
  }
}

/** Shared by every source: a source may move between trees, its storage stays put. */
export const arena = new SlotArena();
