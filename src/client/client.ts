/**
 * The producer client: publish statistics into a statsfs daemon from another Node process.
 *
 * ```js
 * import { connect } from 'statsfs/client';
 * const client = await connect({ socket: '/run/statsfs.sock' });
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
 * are chosen here, so nothing waits for a reply); their `ready` promise settles when the daemon answers (it is
 * made only when read: a million creations make no million promises). The frames made in one turn of the event
 * loop go out in one write, in the order they were made, except that a creation goes ahead of the updates
 * still being batched (they are of groups created before it, and a creation changes no value).
 *
 * The client mirrors every value it publishes **as the daemon acknowledged it**: an UPDATE frame the daemon
 * refuses (it applies a frame all or none) changes no mirror and is reported (flush() rejects, onError). After
 * a lost connection it reconnects (`reconnect`, on by default) and creates everything it owned again. Where the
 * daemon kept the values (an owner with `keep`), the daemon's values are adopted as they are (a clear made
 * through the mount stays); where it dropped them, they are re-created from the mirror. Updates made while
 * disconnected are sent after that; updates in flight when the connection was lost are applied at most once.
 *
 * Over 450 lines by design: StatsClient is one state machine (socket, waiters, registry, update batch and
 * reconnection share its private state); the handles, options, errors and update folding are modules of their own.
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
  PROTOCOL_VERSION,
  Reply,
  decodeHelloOk,
  decodeReply,
  decodeValuesOk,
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
} from '../protocol/protocol.js';
import { Acknowledgement } from './acknowledgement.js';
import { StatsClientError } from './errors.js';
import { Counter, Gauge, GroupHandle, SchemaHandle, SourceHandle, ValuesHandle } from './handles.js';
import { checkOptions, type ClientValueSpec, type ConnectOptions } from './options.js';
import { asValue, fold, forEachUpdate, type Op, type Value } from './updates.js';

/** A request someone awaits (request()), or an UPDATE frame. */
interface Waiter {
  resolve(): void;
  reject(err: StatsClientError): void;
  what: string;
  onPayload?: (payload: Buffer) => void;
  /** An UPDATE frame: applied to the mirrors when the daemon acknowledges it. */
  updates?: Buffer;
}

type Registered = SchemaHandle | SourceHandle | GroupHandle;

/** A creation's reply is matched to its handle (whose `ack` it settles): no promise or closure per request. */
const isRegistered = (w: Waiter | Registered): w is Registered => w instanceof SourceHandle || w instanceof GroupHandle || w instanceof SchemaHandle;

/** Frames queued in a turn are written together at its end, or once this many bytes are queued. */
const OUT_BYTES = 256 << 10;
type GroupKind<G extends GroupHandle> = new (client: StatsClient, handle: number, source: SourceHandle, schema: SchemaHandle, hidden: boolean) => G;

/**
 * A connection to the daemon. Events: 'connect' (after every successful (re)connection and re-creation),
 * 'disconnect' (err), 'close'.
 */
export class StatsClient extends EventEmitter {
  private socket: net.Socket | null = null;
  private reader: FrameReader | null = null;
  /** HELLO was answered on `socket`: requests may be sent. */
  private sessionUp = false;
  /** ... and everything registered was re-created: updates go straight into batches. */
  private connectedFlag = false;
  private closed = false;
  private nextHandle = 1;
  /** Handles whose removal the daemon acknowledged: given out again before new numbers. */
  private readonly freeHandles: number[] = [];
  private nextId = 1;
  private readonly waiters = new Map<number, Waiter | Registered>();
  /** Frames not written yet: those of this turn, written together (see send). */
  private out: Buffer[] = [];
  private outBytes = 0;
  private outScheduled = false;
  private errors: StatsClientError[] = [];
  private readonly registry = new Set<Registered>();
  private readonly groupsByHandle = new Map<number, ValuesHandle>();
  /** The error the daemon sent with id 0 before closing this connection (EBUSY, ETIMEDOUT, …). */
  private connError: StatsClientError | null = null;
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
    this.path = checkOptions(options);
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

  /** The daemon's socket this client connects to. */
  get socketPath(): string {
    return this.path;
  }

  // --- definitions and sources ---------------------------------------------------------------------------

  private handle(): number {
    return this.freeHandles.pop() ?? this.nextHandle++;
  }

  /** A definition of values; send it once, use it for any number of sources. */
  define(specs: readonly ClientValueSpec[]): SchemaHandle {
    if (specs.length === 0) throw new StatsClientError('EINVAL', 'a definition needs at least one value');
    const schema = new SchemaHandle(this, this.handle(), specs.map((s) => ({ ...s, type: s.type ?? 'u64' })));
    this.registry.add(schema);
    schema.ack = this.sendDefine(schema);
    return schema;
  }

  /**
   * A source at `path` ('/'-separated) under `parent` or the daemon's root; missing intermediate sources are
   * created (visible). With `detached`, a source of one name attached nowhere (attach it later).
   */
  source(path: string, options: { hidden?: boolean; parent?: SourceHandle; detached?: boolean } = {}): SourceHandle {
    if (options.parent?.removed) throw new StatsClientError('ENOENT', `source "${options.parent.path}" was removed`);
    const src = new SourceHandle(this, this.handle(), options.detached ? null : (options.parent ?? null), path, options.hidden ?? false, options.detached ?? false);
    this.registry.add(src);
    src.ack = this.sendSource(src);
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
    const freed: number[] = [];
    for (const r of [...this.registry]) {
      if (r instanceof SourceHandle && !r.detached && !r.removed && (r.path === path || r.path.startsWith(path + '/'))) freed.push(...this.forgetSource(r));
      if (r instanceof GroupHandle && !r.removed && !r.source.detached) {
        const src = r.source.path;
        if (path.startsWith(src + '/') && !path.slice(src.length + 1).includes('/') && r.schema.names.includes(path.slice(src.length + 1))) {
          this.forgetGroup(r);
          if (r.failed === null) freed.push(r.handle);
        }
      }
    }
    this.freeHandles.push(...freed);
  }

  /** @internal adds a group of `kind` (ValuesHandle or AggregatesHandle) to `source` and sends it. */
  addGroup<G extends GroupHandle>(kind: GroupKind<G>, source: SourceHandle, schema: SchemaHandle, hidden: boolean): G {
    if (source.removed) throw new StatsClientError('ENOENT', `source "${source.path}" was removed`);
    const g = new kind(this, this.handle(), source, schema, hidden);
    this.registry.add(g);
    if (g instanceof ValuesHandle) this.groupsByHandle.set(g.handle, g);
    g.ack = this.sendGroup(g);
    return g;
  }

  /** @internal */
  async attachSource(parent: SourceHandle, child: SourceHandle): Promise<void> {
    if (!child.detached) throw new StatsClientError('EEXIST', `source "${child.path}" is attached: detach it first`);
    child.detached = false;
    child.parent = parent;
    child.rel = child.name;
    if (this.sessionUp) await this.request(encodeAttach(this.id(), parent.handle, child.handle), `ATTACH ${child.name}`);
  }

  /** @internal */
  async detachSource(src: SourceHandle): Promise<void> {
    if (src.detached) throw new StatsClientError('ENOENT', `source "${src.name}" is not attached`);
    src.rel = src.name;
    src.detached = true;
    src.parent = null;
    if (this.sessionUp) await this.request(encodeDetach(this.id(), src.handle), `DETACH ${src.name}`);
  }

  /** @internal */
  async removeSource(src: SourceHandle): Promise<void> {
    const path = src.path;
    const freed = this.forgetSource(src);
    // the handles are given out again once the daemon has freed them (it frees those below the source too)
    if (this.sessionUp) await this.request(encodeRemove(this.id(), RemoveKind.SOURCE, src.handle), `REMOVE ${path}`);
    this.freeHandles.push(...freed);
  }

  /** @internal */
  async removeGroup(g: GroupHandle): Promise<void> {
    this.forgetGroup(g);
    if (this.sessionUp) await this.request(encodeRemove(this.id(), RemoveKind.GROUP, g.handle), `REMOVE group of ${g.source.path}`);
    this.freeHandles.push(g.handle);
  }

  /** @internal */
  async removeSchema(s: SchemaHandle): Promise<void> {
    this.registry.delete(s);
    if (this.sessionUp) await this.request(encodeRemove(this.id(), RemoveKind.SCHEMA, s.handle), 'REMOVE definition');
    this.freeHandles.push(s.handle);
  }

  private forgetGroup(g: GroupHandle): void {
    g.removed = true;
    this.registry.delete(g);
    if (this.groupsByHandle.get(g.handle) === g) this.groupsByHandle.delete(g.handle);
  }

  /**
   * Drops a source, the sources below it and their groups from what is re-created after a reconnect; returns
   * their handles.
   */
  private forgetSource(src: SourceHandle): number[] {
    const below = (s: SourceHandle): boolean => {
      for (let p: SourceHandle | null = s; p !== null; p = p.parent) if (p === src) return true;
      return false;
    };
    const prefix = src.path + '/';
    const handles: number[] = [];
    for (const r of [...this.registry]) {
      if (r instanceof SourceHandle && (below(r) || (!r.detached && !src.detached && r.path.startsWith(prefix)))) {
        r.removed = true;
        this.registry.delete(r);
        handles.push(r.handle);
      }
    }
    for (const r of [...this.registry]) {
      if (r instanceof GroupHandle && r.source.removed) {
        this.forgetGroup(r);
        if (r.failed === null) handles.push(r.handle);
      }
    }
    return handles;
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
    if (this.socket === null) return Promise.reject(new StatsClientError('ENOTCONN', 'not connected', what));
    this.flushBatch();
    const p = new Promise<void>((resolve, reject) => this.waiters.set(frame.readUInt32LE(8), { resolve, reject, what, onPayload }));
    p.catch(() => undefined); // the caller may never await it: no unhandled rejection
    this.send(frame);
    return p;
  }

  /**
   * Sends the frame creating `target`; its reply settles the returned answer (and, for a group, is applied by
   * valuesAnswered). Not connected: sent at reconnection (replay). It goes ahead of the updates still being
   * batched: they are of groups created before it (so still after their own VALUES), and a creation changes no
   * value; so a producer building a tree sends full UPDATE frames, not one per group it fills.
   */
  private create(target: Registered, frame: () => Buffer): Acknowledgement {
    this.requireOpen();
    if (!this.sessionUp || this.socket === null) return Acknowledgement.settled();
    const f = frame();
    this.waiters.set(f.readUInt32LE(8), target);
    this.send(f);
    return new Acknowledgement();
  }

  private sendDefine(schema: SchemaHandle): Acknowledgement {
    return this.create(schema, () => encodeDefine(this.id(), schema.handle, schema.specs.map((s) => ({ ...s, type: s.type ?? 'u64' }))));
  }

  private sendSource(src: SourceHandle): Acknowledgement {
    const parent = src.detached || src.parent === null ? 0 : src.parent.handle;
    return this.create(src, () => encodeSource(this.id(), src.handle, parent, src.rel, { hidden: src.hidden, detached: src.detached }));
  }

  private sendGroup(g: GroupHandle): Acknowledgement {
    return this.create(g, () => encodeValues(this.id(), g.handle, g.source.handle, g.schema.handle, { hidden: g.hidden, aggregate: g.aggregate }));
  }

  /**
   * Queues a frame: the frames of a turn (requests, UPDATE batches, in the order they were made) go out in one
   * write at its end, or before once OUT_BYTES are queued.
   */
  private send(frame: Buffer): void {
    this.out.push(frame);
    this.outBytes += frame.length;
    if (this.outBytes >= OUT_BYTES) this.writeOut();
    else if (!this.outScheduled) {
      this.outScheduled = true;
      process.nextTick(this.writeOut);
    }
  }

  private readonly writeOut = (): void => {
    this.outScheduled = false;
    const out = this.out;
    if (out.length === 0) return;
    const bytes = this.outBytes;
    this.out = [];
    this.outBytes = 0;
    this.socket?.write(out.length === 1 ? out[0] : Buffer.concat(out, bytes));
  };

  /** The daemon answered the creation of `target`: OK (`payload`: VALUES's reply) or `err`. */
  private created(target: Registered, payload: Buffer | null, err: StatsClientError | null): void {
    if (err === null) {
      if (target instanceof ValuesHandle) this.valuesAnswered(target, payload!);
      target.ack.resolve();
      return;
    }
    if (target instanceof ValuesHandle && err.code !== 'ECONNRESET' && err.code !== 'ENOTCONN') {
      // refused: the daemon holds nothing of it; its updates are refused at once from now on
      target.failed = err;
      target.pending = null;
      target.inflight = null;
    }
    target.ack.reject(err);
  }

  /**
   * The daemon added or adopted the group. Adopted: the daemon's values are the truth (a clear made through the
   * mount stays). Created: it holds zeros, so what the mirror held, and what was in flight when an earlier
   * connection was lost, is added again. Then what was made meanwhile follows.
   */
  private valuesAnswered(g: GroupHandle, payload: Buffer): void {
    if (!(g instanceof ValuesHandle)) return;
    g.failed = null;
    const reply = decodeValuesOk(payload);
    const ops: (Op | undefined)[] = [];
    if (reply.adopted && reply.values.length === g.mirror.length) {
      g.mirror = reply.values.map((v, i) => g.narrow(i, asValue(v)));
    } else {
      for (let i = 0; i < g.mirror.length; i++) {
        if (g.histograms[i]) continue; // the observations went with the daemon's histogram
        const old = g.mirror[i];
        if (old !== 0 && old !== 0n) ops[i] = { set: false, v: BigInt(old) };
        const f = g.inflight?.[i];
        if (f !== undefined) ops[i] = fold(ops[i], f.set, f.v);
      }
      g.mirror = g.mirror.map(() => 0);
    }
    g.inflight = null;
    const pending = g.pending;
    g.pending = null;
    if (pending !== null) for (let i = 0; i < pending.length; i++) if (pending[i] !== undefined) ops[i] = fold(ops[i], pending[i]!.set, pending[i]!.v);
    this.sendOps(g, ops);
  }

  /** Sends the observations made while not connected. */
  private sendObservations(g: ValuesHandle): void {
    const observations = g.pendingObservations;
    g.pendingObservations = null;
    if (observations !== null && g.failed === null) for (const [index, value, count] of observations) this.pushObserve(g.handle, index, value, count);
  }

  private sendOps(g: ValuesHandle, ops: (Op | undefined)[]): void {
    for (let i = 0; i < ops.length; i++) {
      const op = ops[i];
      if (op !== undefined) this.push(g.handle, i, op.set ? UpdateOp.SET : UpdateOp.ADD, op.v);
    }
  }

  /** @internal the hot path: one 16-byte entry into the current batch */
  queueUpdate(g: ValuesHandle, index: number, op: number, value: Value): void {
    if (!this.connectedFlag) {
      if (this.closed) throw new StatsClientError('ENOTCONN', 'the client is closed');
      // sent once the connection is back and the group re-created
      const pending = (g.pending ??= []);
      pending[index] = fold(pending[index], op === UpdateOp.SET, BigInt(value));
      return;
    }
    this.push(g.handle, index, op, value);
  }

  /** @internal an OBSERVE entry (after a WEIGHT entry when count is not 1) */
  queueObservation(g: ValuesHandle, index: number, value: number, count: Value): void {
    if (!this.connectedFlag) {
      if (this.closed) throw new StatsClientError('ENOTCONN', 'the client is closed');
      (g.pendingObservations ??= []).push([index, value, count]);
      return;
    }
    this.pushObserve(g.handle, index, value, count);
  }

  private pushObserve(group: number, index: number, value: number, count: Value): void {
    // the pair goes into one frame: a WEIGHT must be followed by its OBSERVE
    if (count !== 1 && this.batch.count + 2 > this.batch.capacity) this.flushBatch();
    if (count !== 1) this.batch.push(group, index, UpdateOp.WEIGHT, count);
    this.batch.pushObserve(group, index, value);
    this.batched();
  }

  private push(group: number, index: number, op: number, value: Value): void {
    this.batch.push(group, index, op, value);
    this.batched();
  }

  /** Sends the batch when it is full enough, or arms the timer that will. */
  private batched(): void {
    const batch = this.batch;
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
    if (this.batch.count === 0 || this.socket === null) return;
    const count = this.batch.count;
    const frame = this.batch.finish(this.id())!;
    // acknowledged: applied to the mirrors; refused: reported (onData), and the mirrors do not change
    const what = `UPDATE of ${count} update${count === 1 ? '' : 's'}, none applied`;
    this.waiters.set(frame.readUInt32LE(8), { resolve: noop, reject: noop, what, updates: frame });
    this.send(frame);
  }

  /** Applies an acknowledged UPDATE frame to the mirrors. */
  private applied(frame: Buffer): void {
    let lastHandle = -1;
    let g: ValuesHandle | undefined;
    forEachUpdate(frame, (handle, index, op, value) => {
      if (handle !== lastHandle) {
        g = this.groupsByHandle.get(handle);
        lastHandle = handle;
      }
      g?.apply(index, op, value);
    });
  }

  /**
   * Sends what is batched and resolves when the daemon has applied everything sent so far. Rejects with the
   * first error the daemon reported since the last flush (the others go to onError), a refused UPDATE batch
   * included. While reconnecting it waits for the connection to come back.
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
    this.sessionUp = false;
    this.connectedFlag = false;
    this.emit('close');
  }

  // --- connection ----------------------------------------------------------------------------------------

  private frameCapacity(maxFrameBytes: number): number {
    return Math.max(1, Math.floor((maxFrameBytes - HEADER_BYTES - 4) / UPDATE_ENTRY_BYTES));
  }

  /** @internal opens the socket, says HELLO and re-creates everything registered. */
  async openConnection(): Promise<void> {
    const socket = net.connect(this.path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve();
      });
      socket.once('error', reject);
    });
    this.socket = socket;
    this.connError = null;
    this.reader = new FrameReader(1 << 24);
    socket.on('data', (chunk: Buffer) => this.onData(socket, chunk));
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => this.onClose(socket));
    socket.on('drain', this.onDrain);
    const hello = encodeHello(this.id(), { owner: this.options.owner, keep: this.options.keep, minVersion: PROTOCOL_VERSION, maxVersion: PROTOCOL_VERSION });
    await this.request(hello, 'HELLO', (payload) => {
      this.server = decodeHelloOk(payload);
    });
    this.batch = new UpdateWriter(this.frameCapacity(this.server!.maxFrameBytes));
    this.sessionUp = true;
    await Promise.allSettled(this.replay());
    if (this.socket !== socket) throw this.connError ?? new StatsClientError('ECONNRESET', 'the connection to the daemon was lost');
    this.connectedFlag = true;
    // what was made while the groups were being re-created
    for (const g of this.groupsByHandle.values()) {
      const pending = g.pending;
      g.pending = null;
      if (pending !== null && g.failed === null) this.sendOps(g, pending);
      this.sendObservations(g);
    }
    this.reconnectDelay = this.reconnect?.minDelayMs ?? 0;
    this.emit('connect');
  }

  /** Sends every registered definition, source and group again; returns the groups' replies. */
  private replay(): Promise<void>[] {
    const schemas: SchemaHandle[] = [];
    const sources: SourceHandle[] = [];
    const groups: GroupHandle[] = [];
    for (const r of this.registry) {
      if (r instanceof SchemaHandle) schemas.push(r);
      else if (r instanceof SourceHandle) sources.push(r);
      else groups.push(r);
    }
    for (const s of schemas) s.ack = this.sendDefine(s);
    // a source attached later under a source created after it must wait for its parent
    const done = new Set<SourceHandle>();
    let pending = sources;
    while (pending.length > 0) {
      const next: SourceHandle[] = [];
      for (const s of pending) {
        if (s.parent === null || s.detached || done.has(s.parent) || !this.registry.has(s.parent)) {
          s.ack = this.sendSource(s);
          done.add(s);
        } else next.push(s);
      }
      if (next.length === pending.length) break;
      pending = next;
    }
    return groups.map((g) => (g.ack = this.sendGroup(g)).ready);
  }

  private onData(socket: net.Socket, chunk: Buffer): void {
    if (socket !== this.socket) return;
    try {
      this.reader!.push(chunk, (frame) => {
        const waiter = this.waiters.get(frame.id);
        if (waiter !== undefined) this.waiters.delete(frame.id);
        if (frame.op === Reply.OK) {
          // most replies are empty OKs: no decoding, no payload view unless someone reads it
          if (waiter === undefined) return;
          if (isRegistered(waiter)) this.created(waiter, waiter instanceof ValuesHandle ? frame.buf.subarray(frame.start, frame.end) : null, null);
          else {
            if (waiter.updates !== undefined) this.applied(waiter.updates);
            waiter.onPayload?.(frame.buf.subarray(frame.start, frame.end));
            waiter.resolve();
          }
          return;
        }
        const reply = decodeReply(frame);
        let err: StatsClientError;
        if (reply.id === 0) {
          // about the connection, which the daemon closes now (EBUSY: at its connection cap; ETIMEDOUT; …)
          const why = reply.code === 'EBUSY' ? `the daemon at ${this.path} refused the connection: ${reply.message}` : reply.message;
          err = this.connError = new StatsClientError(reply.code, why, 'connection');
        } else err = new StatsClientError(reply.code, reply.message, waiter === undefined ? 'UPDATE' : isRegistered(waiter) ? waiter.request() : waiter.what);
        if (waiter !== undefined) {
          if (isRegistered(waiter)) this.created(waiter, null, err);
          else waiter.reject(err);
        }
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
    this.sessionUp = false;
    this.connectedFlag = false;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    // Updates sent but not acknowledged may or may not have been applied: they are added again only if the
    // daemon re-creates the group (it dropped it, and them with it). Those not sent are sent in any case.
    this.out = []; // frames of the lost connection not written yet: they count as in flight (their waiters are below)
    this.outBytes = 0;
    for (const w of this.waiters.values()) {
      if (!isRegistered(w) && w.updates !== undefined) this.fold(w.updates, (g) => (g.inflight ??= []), false);
    }
    const unsent = this.batch.finish(0);
    if (unsent !== null) {
      const later = new Map<ValuesHandle, (Op | undefined)[] | null>();
      for (const g of this.groupsByHandle.values()) {
        later.set(g, g.pending);
        g.pending = null;
      }
      this.fold(unsent, (g) => (g.pending ??= []), true);
      for (const [g, ops] of later) {
        if (ops === null) continue;
        const pending = (g.pending ??= []);
        for (let i = 0; i < ops.length; i++) if (ops[i] !== undefined) pending[i] = fold(pending[i], ops[i]!.set, ops[i]!.v);
      }
    }
    const lost = this.connError ?? new StatsClientError('ECONNRESET', 'the connection to the daemon was lost');
    for (const w of this.waiters.values()) {
      // a lost connection is no refusal: a group whose creation it cut off is re-created at reconnection
      if (isRegistered(w)) w.ack.reject(new StatsClientError(lost.code, lost.message, w.request()));
      else w.reject(new StatsClientError(lost.code, lost.message, w.what));
    }
    this.waiters.clear();
    if (this.closed) return;
    if (wasConnected) this.emit('disconnect', lost);
    this.scheduleReconnect();
  }

  /**
   * Folds the entries of an UPDATE frame into each group's list chosen by `into`; its observations are
   * kept to be sent again when `observations` (a frame never sent), else dropped.
   */
  private fold(frame: Buffer, into: (g: ValuesHandle) => (Op | undefined)[], observations: boolean): void {
    let weight: Value = 1;
    forEachUpdate(frame, (handle, index, op, value, at) => {
      const g = this.groupsByHandle.get(handle);
      if (g === undefined || g.failed !== null) return;
      if (op === UpdateOp.WEIGHT) weight = asValue(BigInt.asUintN(64, BigInt(value)));
      if (op === UpdateOp.OBSERVE) {
        if (observations) (g.pendingObservations ??= []).push([index, frame.readDoubleLE(at + 8), weight]);
        weight = 1;
      }
      if (op > UpdateOp.ADD) return;
      const ops = into(g);
      ops[index] = fold(ops[index], op === UpdateOp.SET, BigInt(value));
    });
  }

  private scheduleReconnect(): void {
    if (this.reconnect === null || this.closed || this.reconnectTimer !== null) return;
    const delay = this.reconnectDelay;
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, this.reconnect.maxDelayMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closed) return;
      this.openConnection().catch(() => {
        this.socket?.destroy();
        this.socket = null;
        this.sessionUp = false;
        this.scheduleReconnect();
      });
    }, delay);
  }
}

function noop(): void {}

/**
 * Connects to the daemon's producer socket and says HELLO; rejects if the daemon cannot be reached (code
 * EBUSY when it refused the connection at its connection cap). Unknown options are a TypeError.
 */
export async function connect(options: ConnectOptions = {}): Promise<StatsClient> {
  const client = new StatsClient(options);
  try {
    await client.openConnection();
  } catch (err) {
    await client.close().catch(() => undefined);
    if (err instanceof StatsClientError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw new StatsClientError(e.code ?? 'EIO', `cannot connect to ${client.socketPath}: ${e.message}`);
  }
  return client;
}
