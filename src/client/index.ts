/**
 * The producer client: publish statistics into a statsfs daemon from another Node process.
 *
 * ```js
 * import { connect } from 'statsfs/client';
 * const client = await connect({ path: '/run/statsfs.sock' });
 * const schema = client.define([{ name: 'requests', type: 'u64', aggr: 'sum' }, { name: 'queue', type: 'u32', floating: true }]);
 * const web = client.source('myapp/web');
 * const values = web.values(schema);
 * const requests = values.counter('requests');
 * const queue = values.gauge('queue');
 * requests.add();            // batched: sent within flushIntervalMs, or when the batch is full
 * queue.set(17);
 * await client.flush();      // everything so far is applied (rejects with the first error since the last flush)
 * await client.close();
 * ```
 *
 * Definitions, sources and value groups are sent at once and pipelined with the updates (their handles
 * are chosen here, so nothing waits for a reply); their `ready` promise settles when the daemon answers.
 * The client keeps the last value of everything it publishes, so after a lost connection it reconnects,
 * creates everything it owned again and sets every value to what it was (`reconnect`, on by default).
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import {
  DEFAULT_MAX_FRAME_BYTES,
  FrameReader,
  HEADER_BYTES,
  RemoveKind,
  UPDATE_ENTRY_BYTES,
  UpdateOp,
  UpdateWriter,
  decodeHelloOk,
  decodeReply,
  defaultSocketPath,
  encodeAttach,
  encodeDefine,
  encodeDetach,
  encodeHello,
  encodePing,
  encodeRemove,
  encodeRemovePath,
  encodeSource,
  encodeValues,
  type HelloReply,
  type WireAggregation,
  type WireType,
  type WireValueSpec,
} from '../producers/protocol.js';

export { defaultSocketPath };
export type { WireAggregation as Aggregation, WireType as ValueTypeName };

/** One value of a definition, as the daemon's Schema takes it (without custom types or show functions). */
export interface ClientValueSpec extends Omit<WireValueSpec, 'type'> {
  /** Default 'u64'. */
  type?: WireType;
}

export interface ConnectOptions {
  /** The daemon's socket (default: defaultSocketPath()). */
  path?: string;
  /** Owner name: connections with the same name share (and may adopt) what it owns. Default: anonymous. */
  owner?: string;
  /** Keep what this client created in the tree after it disconnects (default false: it disappears). */
  keep?: boolean;
  /** Updates are sent at most this long after they are made (default 10 ms). */
  flushIntervalMs?: number;
  /** Updates per frame before a batch is sent without waiting for the interval (default 4096). */
  maxBatch?: number;
  /** false: every update is sent at once in a frame of its own (no batching). Default true. */
  batch?: boolean;
  /** Reconnect after a lost connection and re-create everything (default true). */
  reconnect?: boolean | { minDelayMs?: number; maxDelayMs?: number };
  /** Errors the daemon reports for requests nobody awaited (the next flush() rejects with them too). */
  onError?: (err: StatsClientError) => void;
}

/** An error reply from the daemon (code is an errno name such as EPERM), or ENOTCONN/ECONNRESET. */
export class StatsClientError extends Error {
  override readonly name = 'StatsClientError';
  constructor(
    readonly code: string,
    message: string,
    /** What was asked: 'SOURCE myapp/web', 'UPDATE', … */
    readonly request = '',
  ) {
    super(request ? `${request}: ${message}` : message);
  }
}

interface Waiter {
  resolve(): void;
  reject(err: StatsClientError): void;
  what: string;
  onPayload?: (payload: Buffer) => void;
}

type Value = number | bigint;

const SIGNED = new Set(['s8', 's16', 's32', 's64']);

function settled(p: Promise<void>): Promise<void> {
  p.catch(() => undefined); // the caller may never await it: no unhandled rejection
  return p;
}

/** A definition: any number of sources may get values of it. */
export class SchemaHandle {
  ready: Promise<void> = Promise.resolve();
  readonly names: readonly string[];

  /** @internal */
  constructor(
    private readonly client: StatsClient,
    readonly handle: number,
    readonly specs: readonly ClientValueSpec[],
  ) {
    this.names = specs.map((s) => s.name);
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

  /** Forgets the definition on the daemon (values already added keep it). */
  remove(): Promise<void> {
    return this.client._removeSchema(this);
  }
}

/** A source (directory) this client created. */
export class SourceHandle {
  ready: Promise<void> = Promise.resolve();
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

  /** A source below this one (intermediate directories are created as needed). */
  source(path: string, options: { hidden?: boolean } = {}): SourceHandle {
    return this.client.source(path, { ...options, parent: this });
  }

  /** Simple values of `schema` in this source, stored by the daemon. */
  values(schema: SchemaHandle, options: { hidden?: boolean } = {}): ValuesHandle {
    return this.client._group(this, schema, options.hidden ?? false, false) as ValuesHandle;
  }

  /** Aggregates of `schema` over this source and every source below it. */
  aggregates(schema: SchemaHandle, options: { hidden?: boolean } = {}): AggregatesHandle {
    return this.client._group(this, schema, options.hidden ?? false, true);
  }

  /** Attaches a detached source of this client below this one. */
  attach(child: SourceHandle): Promise<void> {
    return this.client._attach(this, child);
  }

  /** Detaches this source from its parent (it and its values live on, unseen, until attached or removed). */
  detach(): Promise<void> {
    return this.client._detach(this);
  }

  /** Removes this source, everything below it and its values. */
  remove(): Promise<void> {
    return this.client._removeSource(this);
  }
}

/** A group of aggregates: read-only, computed by the daemon. */
export class AggregatesHandle {
  ready: Promise<void> = Promise.resolve();
  /** @internal */
  removed = false;

  /** @internal */
  constructor(
    protected readonly client: StatsClient,
    readonly handle: number,
    readonly source: SourceHandle,
    readonly schema: SchemaHandle,
    readonly hidden: boolean,
    readonly aggregate: boolean,
  ) {}

  remove(): Promise<void> {
    return this.client._removeGroup(this);
  }
}

/** Simple values of one definition in one source: set and add by name or index. */
export class ValuesHandle extends AggregatesHandle {
  /** @internal last value of each definition, as this client set it: replayed after a reconnect */
  readonly mirror: Value[];
  private readonly signed: boolean[];

  /** @internal */
  constructor(client: StatsClient, handle: number, source: SourceHandle, schema: SchemaHandle, hidden: boolean) {
    super(client, handle, source, schema, hidden, false);
    this.mirror = schema.specs.map(() => 0);
    this.signed = schema.specs.map((s) => SIGNED.has(s.type ?? 'u64'));
  }

  set(name: string | number, value: Value | boolean): void {
    const i = this.schema.index(name);
    const v = typeof value === 'boolean' ? (value ? 1 : 0) : checkValue(value);
    this.mirror[i] = v;
    this.client._update(this.handle, i, UpdateOp.SET, v);
  }

  add(name: string | number, delta: Value = 1): void {
    const i = this.schema.index(name);
    const d = checkValue(delta);
    const v = this.mirror[i];
    if (typeof v === 'number' && typeof d === 'number' && Number.isSafeInteger(v + d)) this.mirror[i] = v + d;
    else {
      const sum = BigInt(v) + BigInt(d);
      this.mirror[i] = this.signed[i] ? BigInt.asIntN(64, sum) : BigInt.asUintN(64, sum);
    }
    this.client._update(this.handle, i, UpdateOp.ADD, d);
  }

  /** The value as this client last set it (the daemon may narrow it to the type, or a reader may clear it). */
  get(name: string | number): Value {
    return this.mirror[this.schema.index(name)];
  }

  counter(name: string | number): Counter {
    return new Counter(this, this.schema.index(name));
  }

  gauge(name: string | number): Gauge {
    return new Gauge(this, this.schema.index(name));
  }
}

function checkValue(v: Value): Value {
  if (typeof v === 'bigint') return v;
  if (!Number.isSafeInteger(v)) throw new RangeError(`${v} is not a safe integer: pass 64-bit quantities as bigint`);
  return v;
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

type Registered = SchemaHandle | SourceHandle | AggregatesHandle;

/**
 * A connection to the daemon. Events: 'connect' (after every successful (re)connection and re-creation),
 * 'disconnect' (err), 'close'.
 */
export class StatsClient extends EventEmitter {
  private socket: net.Socket | null = null;
  private reader: FrameReader | null = null;
  private connectedFlag = false;
  private closed = false;
  private nextHandle = 1;
  private nextId = 1;
  private readonly waiters = new Map<number, Waiter>();
  private errors: StatsClientError[] = [];
  private readonly registry = new Set<Registered>();
  private batch: UpdateWriter;
  private timer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private reconnectDelay: number;
  private readonly path: string;
  private readonly flushIntervalMs: number;
  private readonly maxBatch: number;
  private readonly batching: boolean;
  private readonly reconnect: { minDelayMs: number; maxDelayMs: number } | null;
  private readonly onDrain = (): void => {
    if (this.batch.count >= this.maxBatch) this.flushBatch();
  };
  /** The daemon's limits, from its HELLO reply. */
  server: HelloReply | null = null;

  /** @internal use connect() */
  constructor(private readonly options: ConnectOptions) {
    super();
    this.path = options.path ?? defaultSocketPath();
    this.flushIntervalMs = Math.max(options.flushIntervalMs ?? 10, 0);
    this.batching = options.batch ?? true;
    this.maxBatch = this.batching ? Math.max(1, Math.floor(options.maxBatch ?? 4096)) : 1;
    const r = options.reconnect ?? true;
    this.reconnect = r === false ? null : { minDelayMs: (r === true ? undefined : r.minDelayMs) ?? 50, maxDelayMs: (r === true ? undefined : r.maxDelayMs) ?? 2000 };
    this.reconnectDelay = this.reconnect?.minDelayMs ?? 0;
    this.batch = new UpdateWriter(this.frameCapacity(DEFAULT_MAX_FRAME_BYTES));
  }

  get connected(): boolean {
    return this.connectedFlag;
  }

  // --- definitions and sources ---------------------------------------------------------------------------

  /** A definition of values; send it once, use it for any number of sources. */
  define(specs: readonly ClientValueSpec[]): SchemaHandle {
    if (specs.length === 0) throw new StatsClientError('EINVAL', 'a definition needs at least one value');
    const schema = new SchemaHandle(this, this.nextHandle++, specs.map((s) => ({ ...s, type: s.type ?? 'u64' })));
    this.registry.add(schema);
    schema.ready = this.sendDefine(schema);
    return schema;
  }

  /**
   * A source at `path` ('/'-separated) under `parent` or the daemon's root; missing intermediate sources are
   * created (visible). With `detached`, a source of one name attached nowhere (attach it later).
   */
  source(path: string, options: { hidden?: boolean; parent?: SourceHandle; detached?: boolean } = {}): SourceHandle {
    if (options.parent?.removed) throw new StatsClientError('ENOENT', `source "${options.parent.path}" was removed`);
    const src = new SourceHandle(this, this.nextHandle++, options.detached ? null : (options.parent ?? null), path, options.hidden ?? false, options.detached ?? false);
    this.registry.add(src);
    src.ready = this.sendSource(src);
    return src;
  }

  /** A counter at `path` (its last component is the value's name): one definition, source and group. */
  counter(path: string, spec: Omit<ClientValueSpec, 'name'> = {}): Counter {
    return this.single(path, { aggr: 'none', ...spec, floating: false }).counter(0);
  }

  /** A gauge at `path` (floating: read-only in the filesystem). */
  gauge(path: string, spec: Omit<ClientValueSpec, 'name'> = {}): Gauge {
    return this.single(path, { floating: true, ...spec }).gauge(0);
  }

  private single(path: string, spec: Omit<ClientValueSpec, 'name'>): ValuesHandle {
    const cut = path.lastIndexOf('/');
    if (cut <= 0) throw new StatsClientError('EINVAL', `"${path}": a value needs a source: give a path like dir/name`);
    const schema = this.define([{ ...spec, name: path.slice(cut + 1) }]);
    return this.source(path.slice(0, cut)).values(schema);
  }

  /** Removes a source or value by path from the root (it must be this owner's). */
  async removePath(path: string): Promise<void> {
    this.requireOpen();
    await this.request(encodeRemovePath(this.id(), path), `REMOVE_PATH ${path}`);
    for (const r of [...this.registry]) {
      if (r instanceof SourceHandle && !r.detached && (r.path === path || r.path.startsWith(path + '/'))) this.forgetSource(r);
      if (r instanceof AggregatesHandle && !r.source.detached) {
        const src = r.source.path;
        if (path.startsWith(src + '/') && !path.slice(src.length + 1).includes('/') && r.schema.names.includes(path.slice(src.length + 1))) {
          r.removed = true;
          this.registry.delete(r);
        }
      }
    }
  }

  /** @internal */
  _group(source: SourceHandle, schema: SchemaHandle, hidden: boolean, aggregate: boolean): AggregatesHandle {
    if (source.removed) throw new StatsClientError('ENOENT', `source "${source.path}" was removed`);
    const handle = this.nextHandle++;
    const g = aggregate ? new AggregatesHandle(this, handle, source, schema, hidden, true) : new ValuesHandle(this, handle, source, schema, hidden);
    this.registry.add(g);
    g.ready = this.sendGroup(g);
    return g;
  }

  /** @internal */
  async _attach(parent: SourceHandle, child: SourceHandle): Promise<void> {
    if (!child.detached) throw new StatsClientError('EEXIST', `source "${child.path}" is attached: detach it first`);
    child.detached = false;
    child.parent = parent;
    child.rel = child.name;
    if (this.connectedFlag) await this.request(encodeAttach(this.id(), parent.handle, child.handle), `ATTACH ${child.name}`);
  }

  /** @internal */
  async _detach(src: SourceHandle): Promise<void> {
    if (src.detached) throw new StatsClientError('ENOENT', `source "${src.name}" is not attached`);
    src.rel = src.name;
    src.detached = true;
    src.parent = null;
    if (this.connectedFlag) await this.request(encodeDetach(this.id(), src.handle), `DETACH ${src.name}`);
  }

  /** @internal */
  async _removeSource(src: SourceHandle): Promise<void> {
    const path = src.path;
    this.forgetSource(src);
    if (this.connectedFlag) await this.request(encodeRemove(this.id(), RemoveKind.SOURCE, src.handle), `REMOVE ${path}`);
  }

  /** @internal */
  async _removeGroup(g: AggregatesHandle): Promise<void> {
    g.removed = true;
    this.registry.delete(g);
    if (this.connectedFlag) await this.request(encodeRemove(this.id(), RemoveKind.GROUP, g.handle), `REMOVE group of ${g.source.path}`);
  }

  /** @internal */
  async _removeSchema(s: SchemaHandle): Promise<void> {
    this.registry.delete(s);
    if (this.connectedFlag) await this.request(encodeRemove(this.id(), RemoveKind.SCHEMA, s.handle), 'REMOVE definition');
  }

  /** Drops a source, the sources below it and their groups from what is re-created after a reconnect. */
  private forgetSource(src: SourceHandle): void {
    const below = (s: SourceHandle): boolean => {
      for (let p: SourceHandle | null = s; p !== null; p = p.parent) if (p === src) return true;
      return false;
    };
    const prefix = src.path + '/';
    for (const r of [...this.registry]) {
      if (r instanceof SourceHandle && (below(r) || (!r.detached && !src.detached && r.path.startsWith(prefix)))) {
        r.removed = true;
        this.registry.delete(r);
      }
    }
    for (const r of [...this.registry]) {
      if (r instanceof AggregatesHandle && r.source.removed) {
        r.removed = true;
        this.registry.delete(r);
      }
    }
  }

  // --- sending ---------------------------------------------------------------------------------------------

  private id(): number {
    const id = this.nextId;
    this.nextId = id >= 0xffffffff ? 1 : id + 1;
    return id;
  }

  private requireOpen(): void {
    if (this.closed) throw new StatsClientError('ENOTCONN', 'the client is closed');
  }

  /** Sends a control frame after the pending updates; resolves with the reply. */
  private request(frame: Buffer, what: string, onPayload?: (payload: Buffer) => void): Promise<void> {
    const socket = this.socket;
    if (socket === null) return Promise.reject(new StatsClientError('ENOTCONN', 'not connected', what));
    this.flushBatch();
    const id = frame.readUInt32LE(8);
    const p = new Promise<void>((resolve, reject) => this.waiters.set(id, { resolve, reject, what, onPayload }));
    socket.write(frame);
    return settled(p);
  }

  private sendDefine(schema: SchemaHandle): Promise<void> {
    this.requireOpen();
    if (!this.connectedFlag) return Promise.resolve();
    return this.request(encodeDefine(this.id(), schema.handle, schema.specs.map((s) => ({ ...s, type: s.type ?? 'u64' }))), `DEFINE ${schema.names.join(',')}`);
  }

  private sendSource(src: SourceHandle): Promise<void> {
    this.requireOpen();
    if (!this.connectedFlag) return Promise.resolve();
    const frame = encodeSource(this.id(), src.handle, src.detached || src.parent === null ? 0 : src.parent.handle, src.rel, { hidden: src.hidden, detached: src.detached });
    return this.request(frame, `SOURCE ${src.path}`);
  }

  private sendGroup(g: AggregatesHandle): Promise<void> {
    this.requireOpen();
    if (!this.connectedFlag) return Promise.resolve();
    return this.request(encodeValues(this.id(), g.handle, g.source.handle, g.schema.handle, { hidden: g.hidden, aggregate: g.aggregate }), `VALUES ${g.source.path}`);
  }

  /** @internal the hot path: one 16-byte entry into the current batch */
  _update(group: number, index: number, op: number, value: Value): void {
    if (!this.connectedFlag) {
      if (this.closed) throw new StatsClientError('ENOTCONN', 'the client is closed');
      return; // the mirror has it; a reconnect sets it
    }
    const batch = this.batch;
    batch.push(group, index, op, value);
    if (batch.count >= this.maxBatch || batch.full) {
      // While the socket is backed up, keep batching (up to a full frame) instead of queueing more frames.
      if (!this.batching || !this.socket!.writableNeedDrain || batch.full) this.flushBatch();
    } else if (this.timer === null) {
      this.timer = setTimeout(this.onTimer, this.flushIntervalMs);
    }
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    this.flushBatch();
  };

  private flushBatch(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const frame = this.batch.finish(this.id());
    if (frame !== null && this.socket !== null) this.socket.write(frame);
  }

  /**
   * Sends what is batched and resolves when the daemon has applied everything sent so far. Rejects with the
   * first error the daemon reported since the last flush (the others go to onError). While reconnecting it
   * waits for the connection to come back.
   */
  async flush(): Promise<void> {
    this.requireOpen();
    if (!this.connectedFlag) {
      if (this.reconnect === null) throw new StatsClientError('ENOTCONN', 'not connected');
      await new Promise<void>((resolve, reject) => {
        const onConnect = (): void => {
          this.off('close', onClose);
          resolve();
        };
        const onClose = (): void => {
          this.off('connect', onConnect);
          reject(new StatsClientError('ENOTCONN', 'the client is closed'));
        };
        this.once('connect', onConnect);
        this.once('close', onClose);
      });
    }
    await this.request(encodePing(this.id()), 'PING');
    const errors = this.errors;
    this.errors = [];
    if (errors.length > 0) throw errors[0];
  }

  /** Sends what is batched, waits for the replies and closes. What the client owned goes unless `keep`. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.connectedFlag) await this.flush().catch(() => undefined);
    this.closed = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    if (this.timer !== null) clearTimeout(this.timer);
    const socket = this.socket;
    if (socket !== null && !socket.destroyed) {
      await new Promise<void>((resolve) => {
        socket.once('close', () => resolve());
        socket.end();
      });
    }
    this.socket = null;
    this.connectedFlag = false;
    this.emit('close');
  }

  // --- connection ----------------------------------------------------------------------------------------

  private frameCapacity(maxFrameBytes: number): number {
    return Math.max(1, Math.floor((maxFrameBytes - HEADER_BYTES - 4) / UPDATE_ENTRY_BYTES));
  }

  /** @internal opens the socket, says HELLO and re-creates everything registered. */
  async _open(): Promise<void> {
    const socket = net.connect(this.path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve();
      });
      socket.once('error', reject);
    });
    this.socket = socket;
    this.reader = new FrameReader(1 << 24);
    socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => this.onClose(socket));
    socket.on('drain', this.onDrain);
    const hello = this.request(encodeHello(this.id(), { owner: this.options.owner, keep: this.options.keep }), 'HELLO', (payload) => {
      this.server = decodeHelloOk(payload);
    });
    await hello;
    this.batch = new UpdateWriter(this.frameCapacity(this.server!.maxFrameBytes));
    this.connectedFlag = true;
    this.replay();
    this.reconnectDelay = this.reconnect?.minDelayMs ?? 0;
    this.emit('connect');
  }

  /** Sends every registered definition, source and group again, then every value as last set. */
  private replay(): void {
    const schemas: SchemaHandle[] = [];
    const sources: SourceHandle[] = [];
    const groups: AggregatesHandle[] = [];
    for (const r of this.registry) {
      if (r instanceof SchemaHandle) schemas.push(r);
      else if (r instanceof SourceHandle) sources.push(r);
      else groups.push(r);
    }
    for (const s of schemas) s.ready = this.sendDefine(s);
    // a source attached later under a source created after it must wait for its parent
    const done = new Set<SourceHandle>();
    let pending = sources;
    while (pending.length > 0) {
      const next: SourceHandle[] = [];
      for (const s of pending) {
        if (s.parent === null || s.detached || done.has(s.parent) || !this.registry.has(s.parent)) {
          s.ready = this.sendSource(s);
          done.add(s);
        } else next.push(s);
      }
      if (next.length === pending.length) break;
      pending = next;
    }
    for (const g of groups) {
      g.ready = this.sendGroup(g);
      if (g instanceof ValuesHandle) {
        for (let i = 0; i < g.mirror.length; i++) {
          const v = g.mirror[i];
          if (v !== 0 && v !== 0n) this._update(g.handle, i, UpdateOp.SET, v);
        }
      }
    }
  }

  private onData(socket: net.Socket, chunk: Buffer): void {
    if (socket !== this.socket) return;
    try {
      this.reader!.push(chunk, (frame) => {
        const reply = decodeReply(frame);
        const waiter = this.waiters.get(reply.id);
        if (waiter !== undefined) this.waiters.delete(reply.id);
        if (reply.ok) {
          waiter?.onPayload?.(reply.payload);
          waiter?.resolve();
          return;
        }
        const err = new StatsClientError(reply.code, reply.message, waiter?.what ?? (reply.id === 0 ? 'connection' : 'UPDATE'));
        if (waiter !== undefined) waiter.reject(err);
        this.errors.push(err);
        this.options.onError?.(err);
      });
    } catch (err) {
      this.options.onError?.(new StatsClientError('EPROTO', (err as Error).message));
      socket.destroy();
    }
  }

  private onClose(socket: net.Socket): void {
    if (socket !== this.socket) return;
    const wasConnected = this.connectedFlag;
    this.socket = null;
    this.connectedFlag = false;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.batch.finish(0); // dropped: the mirrors hold the values
    const lost = new StatsClientError('ECONNRESET', 'the connection to the daemon was lost');
    for (const w of this.waiters.values()) w.reject(new StatsClientError(lost.code, lost.message, w.what));
    this.waiters.clear();
    if (this.closed) return;
    if (wasConnected) this.emit('disconnect', lost);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.reconnect === null || this.closed || this.reconnectTimer !== null) return;
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, this.reconnect.maxDelayMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closed) return;
      this._open().catch(() => {
        this.socket?.destroy();
        this.socket = null;
        this.scheduleReconnect();
      });
    }, delay);
  }
}

/** Connects to the daemon's producer socket and says HELLO; rejects if the daemon cannot be reached. */
export async function connect(options: ConnectOptions = {}): Promise<StatsClient> {
  const client = new StatsClient(options);
  try {
    await client._open();
  } catch (err) {
    await client.close().catch(() => undefined);
    if (err instanceof StatsClientError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new StatsClientError(e.code ?? 'EIO', `cannot connect to ${options.path ?? defaultSocketPath()}: ${e.message}`);
  }
  return client;
}

