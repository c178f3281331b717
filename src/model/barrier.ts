import type { Source } from './source.js';

/**
 * Keeps a snapshot atomic while it is captured in slices. A capture of a large tree yields the event loop
 * between slices so that no request waits long; while it is under way, the daemon's writers (producer
 * frames, StatsD lines, clears through the filesystem, producers going away) queue here and run, in the
 * order they arrived, once no capture holds the barrier. Writers that bypass it, such as a library user's
 * own code mutating the tree between awaits, are not held back.
 *
 * A capture that starts while writes are queued waits for them first, so back-to-back captures cannot
 * starve writers.
 */
export class WriteBarrier {
  private holds = 0;
  private readonly queue: (() => void)[] = [];

  /** The barrier of the tree `source` belongs to (one per topmost source). */
  static of(source: Source): WriteBarrier {
    let top = source;
    while (top.parent !== null) top = top.parent;
    let barrier = barriers.get(top);
    if (barrier === undefined) {
      barrier = new WriteBarrier();
      barriers.set(top, barrier);
    }
    return barrier;
  }

  /** True while a write would have to wait. */
  get held(): boolean {
    return this.holds > 0 || this.queue.length > 0;
  }

  /** Writes queued behind the captures under way. */
  get waiting(): number {
    return this.queue.length;
  }

  /** Runs `write` now when nothing holds the barrier, else once the captures holding it have ended. */
  run<T>(write: () => T): T | Promise<T> {
    if (!this.held) return write();
    return new Promise<T>((resolve, reject) => {
      this.queue.push(() => {
        try {
          resolve(write());
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
  }

  /** Like run() for writes whose result nobody waits for (socket data, datagrams); errors are theirs to handle. */
  defer(write: () => void): void {
    if (this.held) this.queue.push(write);
    else write();
  }

  /** Resolves when no capture holds the barrier and the writes that were waiting have run. @internal */
  drained(): Promise<void> {
    return new Promise((resolve) => this.defer(resolve));
  }

  /** @internal */
  hold(): void {
    this.holds++;
  }

  /** @internal */
  release(): void {
    if (--this.holds > 0) return;
    // Nothing can hold the barrier again during this loop: captures start from events, not from writes.
    for (const write of this.queue.splice(0)) {
      try {
        write();
      } catch (err) {
        queueMicrotask(() => {
          throw err; // as if it had thrown in its own event callback
        });
      }
    }
  }
}

const barriers = new WeakMap<Source, WriteBarrier>();
