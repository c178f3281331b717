/**
 * The daemon's answer to a request nobody has to await (DEFINE, SOURCE, VALUES): a handle's `ready`. Its
 * promise is made only when someone asks for it, so a producer creating a million sources makes no million
 * promises; the answer is kept either way (a refusal also goes to onError and the next flush(), as before).
 */
import type { StatsClientError } from './errors.js';

export class Acknowledgement {
  /** undefined: not answered yet; null: acknowledged; else the refusal. */
  private outcome: StatsClientError | null | undefined;
  private promise: Promise<void> | null = null;
  private settle: { resolve(): void; reject(err: StatsClientError): void } | null = null;

  /** An answer already known (a request not sent: it will be answered when the connection is back). */
  static settled(): Acknowledgement {
    const ack = new Acknowledgement();
    ack.outcome = null;
    return ack;
  }

  /** Resolves when the daemon acknowledged the request, rejects with its refusal (never unhandled). */
  get ready(): Promise<void> {
    if (this.promise === null) {
      const outcome = this.outcome;
      if (outcome === null) this.promise = Promise.resolve();
      else if (outcome !== undefined) this.promise = Promise.reject(outcome);
      else this.promise = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
      this.promise.catch(() => undefined); // the caller may never await it
    }
    return this.promise;
  }

  resolve(): void {
    this.outcome = null;
    this.settle?.resolve();
    this.settle = null;
  }

  reject(err: StatsClientError): void {
    this.outcome = err;
    this.settle?.reject(err);
    this.settle = null;
  }
}
