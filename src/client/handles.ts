/**
 * What the client hands out: definitions (SchemaHandle), sources (SourceHandle), groups of values
 * (ValuesHandle, with each value's mirror) or aggregates (AggregatesHandle), and the Counter and Gauge views of
 * one value. Each asks its StatsClient (client.ts) to send what it changes.
 */
import { UpdateOp, isSignedType, TYPE_BITS, TYPE_CODES } from '../protocol/protocol.js';
import { Acknowledgement } from './acknowledgement.js';
import type { StatsClient } from './client.js';
import { StatsClientError } from './errors.js';
import type { ClientValueSpec } from './options.js';
import { asValue, checkValue, type Op, type Value } from './updates.js';

/** The answer of a handle not sent yet (made while not connected): it is sent, and answered, at reconnection. */
const ANSWERED = Acknowledgement.settled();

/** A definition: any number of sources may get values of it. */
export class SchemaHandle {
  /** @internal the daemon's answer to this handle's creation (on the current connection) */
  ack: Acknowledgement = ANSWERED;

  /** Resolves when the daemon acknowledged the creation; rejects with its refusal. */
  get ready(): Promise<void> {
    return this.ack.ready;
  }
  readonly names: readonly string[];
  /** @internal per value, shared by the groups of this definition: signed type, width in bits, histogram */
  readonly signed: readonly boolean[];
  /** @internal */
  readonly bits: readonly number[];
  /** @internal */
  readonly histograms: readonly boolean[];

  /** @internal */
  constructor(
    private readonly client: StatsClient,
    readonly handle: number,
    readonly specs: readonly ClientValueSpec[],
  ) {
    this.names = specs.map((s) => s.name);
    this.signed = specs.map((s) => isSignedType(s.type ?? 'u64'));
    this.bits = specs.map((s) => TYPE_BITS[TYPE_CODES.indexOf(s.type ?? 'u64')] ?? 64);
    this.histograms = specs.map((s) => s.type === 'histogram');
  }

  index(name: string | number): number {
    if (typeof name === 'number') {
      if (name >= 0 && name < this.specs.length && Number.isInteger(name)) return name;
    } else {
      const i = this.names.indexOf(name);
      if (i >= 0) return i;
    }
    throw new StatsClientError('ENOENT', `no value ${JSON.stringify(name)} in this definition`);
  }

  /** @internal the creating request, for its error */
  request(): string {
    return `DEFINE ${this.names.join(',')}`;
  }

  /** Forgets the definition on the daemon (values already added keep it). */
  remove(): Promise<void> {
    return this.client.removeSchema(this);
  }
}

/** A source (directory) this client created. */
export class SourceHandle {
  /** @internal the daemon's answer to this handle's creation (on the current connection) */
  ack: Acknowledgement = ANSWERED;

  /** Resolves when the daemon acknowledged the creation; rejects with its refusal. */
  get ready(): Promise<void> {
    return this.ack.ready;
  }
  /** @internal null: under the daemon's root */
  parent: SourceHandle | null;
  /** @internal path relative to the parent */
  rel: string;
  /** @internal */
  detached: boolean;
  /** @internal */
  removed = false;

  /** @internal */
  constructor(
    private readonly client: StatsClient,
    readonly handle: number,
    parent: SourceHandle | null,
    rel: string,
    readonly hidden: boolean,
    detached: boolean,
  ) {
    this.parent = parent;
    this.rel = rel;
    this.detached = detached;
  }

  /** Path from the daemon's root ('' prefix '#<handle>/' while detached). */
  get path(): string {
    if (this.detached) return `#${this.handle}/${this.rel}`;
    return this.parent === null ? this.rel : `${this.parent.path}/${this.rel}`;
  }

  get name(): string {
    return this.rel.slice(this.rel.lastIndexOf('/') + 1);
  }

  /** @internal the creating request, for its error */
  request(): string {
    return `SOURCE ${this.path}`;
  }

  /** A source below this one (intermediate directories are created as needed). */
  source(path: string, options: { hidden?: boolean } = {}): SourceHandle {
    return this.client.source(path, { ...options, parent: this });
  }

  /** Simple values of `schema` in this source, stored by the daemon. */
  values(schema: SchemaHandle, options: { hidden?: boolean } = {}): ValuesHandle {
    return this.client.addGroup(ValuesHandle, this, schema, options.hidden ?? false);
  }

  /** Aggregates of `schema` over this source and every source below it. */
  aggregates(schema: SchemaHandle, options: { hidden?: boolean } = {}): AggregatesHandle {
    return this.client.addGroup(AggregatesHandle, this, schema, options.hidden ?? false);
  }

  /** Attaches a detached source of this client below this one. */
  attach(child: SourceHandle): Promise<void> {
    return this.client.attachSource(this, child);
  }

  /** Detaches this source from its parent (it and its values live on, unseen, until attached or removed). */
  detach(): Promise<void> {
    return this.client.detachSource(this);
  }

  /** Removes this source, everything below it and its values. */
  remove(): Promise<void> {
    return this.client.removeSource(this);
  }
}

/** A group of values or aggregates this client added to a source: what both kinds share. */
export abstract class GroupHandle {
  /** @internal the daemon's answer to this handle's creation (on the current connection) */
  ack: Acknowledgement = ANSWERED;

  /** Resolves when the daemon acknowledged the creation; rejects with its refusal. */
  get ready(): Promise<void> {
    return this.ack.ready;
  }
  /** Whether its values are aggregates (AggregatesHandle) or simple values (ValuesHandle). */
  abstract readonly aggregate: boolean;
  /** @internal */
  removed = false;
  /** @internal the daemon refused to add the group */
  failed: StatsClientError | null = null;

  /** @internal */
  constructor(
    protected readonly client: StatsClient,
    readonly handle: number,
    readonly source: SourceHandle,
    readonly schema: SchemaHandle,
    readonly hidden: boolean,
  ) {}

  /** @internal the creating request, for its error */
  request(): string {
    return `VALUES ${this.source.path}`;
  }

  remove(): Promise<void> {
    return this.client.removeGroup(this);
  }
}

/** A group of aggregates: read-only, computed by the daemon. */
export class AggregatesHandle extends GroupHandle {
  readonly aggregate = true;
}

/** Simple values of one definition in one source: set and add by name or index. */
export class ValuesHandle extends GroupHandle {
  readonly aggregate = false;
  /** @internal each value as the daemon holds it, as far as this client knows (what it acknowledged) */
  mirror: Value[];
  /** @internal updates not sent yet (made while not connected, or before the group's VALUES reply on reconnect) */
  pending: (Op | undefined)[] | null = null;
  /** @internal updates sent on a connection that was lost before they were acknowledged */
  inflight: (Op | undefined)[] | null = null;
  /** @internal observations made while not connected, in order: index, value, count */
  pendingObservations: [number, number, Value][] | null = null;
  /** @internal the count of the next acknowledged OBSERVE (set by the WEIGHT before it) */
  private nextWeight: Value = 1;
  /** @internal which values are histograms */
  readonly histograms: readonly boolean[];
  private readonly signed: readonly boolean[];
  private readonly bits: readonly number[];

  /** @internal */
  constructor(client: StatsClient, handle: number, source: SourceHandle, schema: SchemaHandle, hidden: boolean) {
    super(client, handle, source, schema, hidden);
    this.mirror = schema.specs.map(() => 0);
    // the definition's, shared: a group costs its mirror only
    this.signed = schema.signed;
    this.bits = schema.bits;
    this.histograms = schema.histograms;
  }

  set(name: string | number, value: Value | boolean): void {
    const i = this.notHistogram(name);
    const v = typeof value === 'boolean' ? (value ? 1 : 0) : checkValue(value);
    this.usable();
    this.client.queueUpdate(this, i, UpdateOp.SET, v);
  }

  add(name: string | number, delta: Value = 1): void {
    const i = this.notHistogram(name);
    const d = checkValue(delta);
    this.usable();
    this.client.queueUpdate(this, i, UpdateOp.ADD, d);
  }

  /**
   * Records `value` (finite, >= 0) `count` times in a histogram value, in the current batch like set/add.
   * Made while not connected, observations wait in memory for the connection. The histogram itself lives in
   * the daemon: if the daemon lost it (restarted), it starts again from the reconnection, and observations
   * sent on a connection lost before their batch was acknowledged are not sent again (they may have been
   * applied).
   */
  observe(name: string | number, value: number, count: Value = 1): void {
    const i = this.schema.index(name);
    if (!this.histograms[i]) throw new StatsClientError('EINVAL', `"${this.schema.specs[i].name}" is not a histogram: set() or add() it`);
    if (typeof value !== 'number' || !(value >= 0) || value === Infinity) throw new RangeError(`a histogram takes finite values >= 0, not ${value}`);
    const n = count === 1 ? 1 : checkValue(count);
    if (n < 0 || (typeof n === 'bigint' && n >= 1n << 64n)) throw new RangeError(`an observation's count must be in [0, 2^64), not ${n}`);
    this.usable();
    this.client.queueObservation(this, i, value, n);
  }

  private notHistogram(name: string | number): number {
    const i = this.schema.index(name);
    if (this.histograms[i]) throw new StatsClientError('EINVAL', `"${this.schema.specs[i].name}" is a histogram: observe() it`);
    return i;
  }

  /**
   * The value as the daemon holds it, as far as this client knows: every update of this client the daemon
   * acknowledged (after `await flush()`, all of them), or the daemon's value when the group was adopted. A
   * clear through the mount is seen at the next adoption. A number when it is a safe integer, else a bigint.
   */
  get(name: string | number): Value {
    return this.mirror[this.schema.index(name)];
  }

  counter(name: string | number): Counter {
    return new Counter(this, this.schema.index(name));
  }

  gauge(name: string | number): Gauge {
    return new Gauge(this, this.schema.index(name));
  }

  private usable(): void {
    if (this.removed) throw new StatsClientError('ENOENT', `the values of "${this.source.path}" were removed`);
    if (this.failed !== null) throw new StatsClientError(this.failed.code, `the daemon refused the values of "${this.source.path}": ${this.failed.message}`);
  }

  /**
   * @internal the value as its type stores it (the C type's wrap-around; bool is 0 or 1): a number when it is
   * a safe integer, else a bigint. Numbers take the fast path (ToInt32 is exact modulo 2^32 for safe integers).
   */
  narrow(i: number, v: Value): Value {
    const bits = this.bits[i];
    if (bits === 1) return v === 0 || v === 0n ? 0 : 1;
    if (typeof v === 'number') {
      const signed = this.signed[i];
      switch (bits) {
        case 8:
          return signed ? (v << 24) >> 24 : v & 0xff;
        case 16:
          return signed ? (v << 16) >> 16 : v & 0xffff;
        case 32:
          return signed ? v | 0 : v >>> 0;
        default:
          if (signed || v >= 0) return v; // a safe integer is in range of s64, and of u64 when not negative
      }
    }
    return asValue(this.signed[i] ? BigInt.asIntN(bits, BigInt(v)) : BigInt.asUintN(bits, BigInt(v)));
  }

  /** @internal an acknowledged update */
  apply(i: number, op: number, v: Value): void {
    if (i >= this.mirror.length) return;
    if (op === UpdateOp.WEIGHT) {
      this.nextWeight = asValue(BigInt.asUintN(64, BigInt(v)));
      return;
    }
    let next: Value;
    if (op === UpdateOp.OBSERVE) {
      // a histogram's mirror is its count
      const cur = this.mirror[i];
      const w = this.nextWeight;
      next = typeof cur === 'number' && typeof w === 'number' && cur + w <= Number.MAX_SAFE_INTEGER ? cur + w : BigInt(cur) + BigInt(w);
      this.nextWeight = 1;
    } else if (op === UpdateOp.SET) next = v;
    else {
      const cur = this.mirror[i];
      if (typeof cur === 'number' && typeof v === 'number' && Number.isSafeInteger(cur + v)) next = cur + v;
      else next = BigInt(cur) + BigInt(v);
    }
    this.mirror[i] = this.narrow(i, next);
  }
}

/** A count: add to it. */
export class Counter {
  constructor(
    readonly values: ValuesHandle,
    readonly index: number,
  ) {}

  add(delta: Value = 1): void {
    this.values.add(this.index, delta);
  }

  get value(): Value {
    return this.values.get(this.index);
  }
}

/** A level: set it (or move it). */
export class Gauge {
  constructor(
    readonly values: ValuesHandle,
    readonly index: number,
  ) {}

  set(value: Value | boolean): void {
    this.values.set(this.index, value);
  }

  add(delta: Value): void {
    this.values.add(this.index, delta);
  }

  get value(): Value {
    return this.values.get(this.index);
  }
}
