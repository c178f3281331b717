import { arena } from './arena.js';
import { WriteBarrier } from './barrier.js';
import { changes } from './incremental.js';
import type { Source } from './source.js';

/**
 * The one way the daemon's writers change a tree. A change must both wait behind a sliced snapshot capture
 * (the tree's {@link WriteBarrier}, so the snapshot stays one instant) and be one write for the readers on
 * other threads (the arena's write sequence, so no 64-bit value is seen half written); a writer that
 * remembered only one of the two would be wrong in a way no test of a single value shows. Every writer
 * (producer frames and departures, StatsD lines and expiry, clears through the filesystem) goes through here.
 *
 * Changes run in the order they arrived: now when no capture holds the barrier, else once the captures
 * holding it have ended.
 */
export class Writes {
  private constructor(private readonly barrier: WriteBarrier) {}

  /** The writes of the tree `source` belongs to (one barrier per topmost source). */
  static of(source: Source): Writes {
    return new Writes(WriteBarrier.of(source));
  }

  /** Applies `change` as one write and returns its result, or a promise of it when it had to wait. */
  apply<T>(change: () => T): T | Promise<T> {
    return this.barrier.run(() => arena.batch(() => settled(change)));
  }

  /** Like apply() for changes whose result nobody waits for (socket data, datagrams); errors are theirs to handle. */
  defer(change: () => void): void {
    this.barrier.defer(() => arena.batch(() => settled(change)));
  }
}

/**
 * The end of a write: its changes go into the aggregates' kept results now, while what they touched is
 * still in the CPU's caches (a read would find the groups scattered over memory), so that a read finds
 * nothing left to do. A batch is a frame of at most a few thousand updates.
 */
function settled<T>(change: () => T): T {
  const result = change();
  if (changes.pending > 0) changes.flush();
  return result;
}
