/**
 * The producer socket: other processes publish statistics into the daemon's tree over a Unix domain socket
 * (protocol in ./protocol.ts, specified in docs/protocol.md).
 *
 * Every node a connection creates (source, value group) belongs to its *owner*: the name it gave in HELLO,
 * or, anonymous, the connection itself. Only the owner may change or remove it, and nodes may be created
 * only under the server's root or under the owner's own sources. When the last connection of an owner
 * closes, its nodes are removed, unless that connection asked to KEEP them (HELLO flag, or the server's
 * keepOnDisconnect): a later connection with the same owner name adopts them again by creating the same
 * paths and definitions. Ownership protects producers from one another's mistakes; who may connect at all
 * is decided by the socket's file mode (0600 by default).
 *
 * Requests are applied synchronously, one frame at a time, so no reader of the tree (the FUSE adapter runs
 * on the same event loop) ever sees part of a frame: an UPDATE batch is validated as a whole first and only
 * then applied, all of it or none.
 */
import type { Log } from '../log.js';
import { unlink } from 'node:fs/promises';
import net from 'node:net';
import { NAME_MAX, Schema, Source, StatsError, validateName, Writes, type ValueGroup, type ValueSpec } from '../model/index.js';
import {
  DEFAULT_MAX_FRAME_BYTES,
  DESCRIPTION_MAX,
  FrameReader,
  HEADER_BYTES,
  MIN_PROTOCOL_VERSION,
  Op,
  PROTOCOL_VERSION,
  ProtocolError,
  RemoveKind,
  UNIT_MAX,
  HISTOGRAM_PROTOCOL_VERSION,
  UPDATE_ENTRY_BYTES,
  UpdateOp,
  decodeRequest,
  encodeError,
  encodeHelloOk,
  encodeValuesOk,
  type DefineRequest,
  type Frame,
  type HelloRequest,
  type SourceRequest,
  type ValuesRequest,
  type WireValueSpec,
} from '../protocol/protocol.js';
import { listenUnix } from './unix-socket.js';

export interface ProducerServerOptions {
  /** Path of the Unix domain socket. */
  path: string;
  /** File mode of the socket; default 0600, or 0660 when `group` is given. */
  mode?: number;
  /** Group (name or gid) given to the socket, so its members may publish too. */
  group?: string | number;
  /** Keep what every connection created after it disconnects, as if each had sent HELLO with KEEP. */
  keepOnDisconnect?: boolean;
  /** Largest frame accepted, length field included (default 1 MiB). */
  maxFrameBytes?: number;
  /** Sources one owner may have (default 100,000). */
  maxSourcesPerConnection?: number;
  /** Replies queued for a producer that does not read them before the server stops reading its requests (default 4 MiB). */
  maxBufferedBytes?: number;
  /** Handles (sources, schemas, groups) one connection may bind (default 262,144). */
  maxHandlesPerConnection?: number;
  /**
   * Stored values one owner may have (default 1,000,000: 8 MB of storage); a histogram counts as
   * HISTOGRAM_VALUE_COST of them.
   */
  maxValuesPerConnection?: number;
  /** Simultaneous connections (default 1024); more are refused with EBUSY and closed. */
  maxConnections?: number;
  /**
   * Another keeper of nodes in the same tree (the daemon's StatsD receiver): REMOVE_PATH offers it the
   * path first; it removes what it keeps there and returns true, else false and the path is looked up here.
   */
  removeKept?: (path: string) => boolean;
  /** A connection that has not completed HELLO this long after it was accepted is closed with ETIMEDOUT (default 10,000 ms). */
  helloTimeoutMs?: number;
  /**
   * A frame started but not completed this long is closed with ETIMEDOUT (default 10,000 ms). A producer idle
   * between frames is never timed out; neither is one whose reading the server paused (replies not read).
   */
  frameTimeoutMs?: number;
  log?: Log;
}

/** What a named producer (or an anonymous connection) owns. */
class Owner {
  readonly sources = new Set<Source>();
  readonly groups = new Set<ValueGroup>();
  readonly conns = new Set<Connection>();
  valueSlots = 0;
  constructor(readonly name: string | null) {}

  get label(): string {
    return this.name ?? 'an anonymous producer';
  }
}

class Connection {
  owner: Owner | null = null;
  keep = false;
  version = 0;
  closing = false;
  readonly sources = new Map<number, Source>();
  readonly schemas = new Map<number, Schema>();
  readonly groups = new Map<number, ValueGroup>();
  /** The handles bound to each source and group, so those of removed nodes are freed with them. */
  readonly sourceHandles = new Map<Source, number[]>();
  readonly groupHandles = new Map<ValueGroup, number[]>();
  /** The HELLO timeout, then the timeout of the frame being received (null: none pending). */
  timer: NodeJS.Timeout | null = null;

  constructor(
    readonly id: number,
    readonly socket: net.Socket,
    readonly reader: FrameReader,
  ) {}

  get handleCount(): number {
    return this.sources.size + this.schemas.size + this.groups.size;
  }
}

/** Counters of the server's own activity (for the daemon's statistics and tests). */
export interface ProducerServerStats {
  /** Connections open now (refused ones are not counted). */
  connections: number;
  /** Connections accepted by the socket since the start, refused ones included. */
  accepted: number;
  /** Connections refused at the connection cap (EBUSY). */
  refused: number;
  /** Connections closed because HELLO or a frame was not completed in time (ETIMEDOUT). */
  timedOut: number;
  frames: number;
  updates: number;
  errors: number;
  closedForProtocolErrors: number;
}

/** How long a connection the server is closing may take to read its last reply before it is destroyed. */
const CLOSE_GRACE_MS = 1000;

/** Binds `handle` to `target` in `map`, recording it in `back` (target -> its handles). */
function bindHandle<T>(map: Map<number, T>, back: Map<T, number[]>, handle: number, target: T): void {
  const old = map.get(handle);
  if (old !== undefined) unbindHandle(map, back, handle, old);
  map.set(handle, target);
  const handles = back.get(target);
  if (handles === undefined) back.set(target, [handle]);
  else handles.push(handle);
}

function unbindHandle<T>(map: Map<number, T>, back: Map<T, number[]>, handle: number, target: T): void {
  map.delete(handle);
  const handles = back.get(target);
  if (handles === undefined) return;
  const i = handles.indexOf(handle);
  if (i >= 0) handles.splice(i, 1);
  if (handles.length === 0) back.delete(target);
}

/** Frees every handle bound to `target` (it was removed). */
function unbindTarget<T>(map: Map<number, T>, back: Map<T, number[]>, target: T): void {
  const handles = back.get(target);
  if (handles === undefined) return;
  back.delete(target);
  for (const h of handles) map.delete(h);
}

function errorCode(err: unknown): string {
  if (err instanceof ProtocolError || err instanceof StatsError) return err.code;
  return 'EIO';
}

function noControl(s: string, what: string, max: number): void {
  if (s.length > max) throw new ProtocolError('EINVAL', `${what} is longer than ${max} characters`);
  if (/[\u0000-\u001f\u007f]/.test(s)) throw new ProtocolError('EINVAL', `${what} ${JSON.stringify(s.slice(0, 40))} contains a control character`);
}

function enumShow(names: readonly string[]): (v: bigint) => string {
  return (v) => (v >= 0n && v < BigInt(names.length) ? names[Number(v)] : v.toString());
}

export class ProducerServer {
  private server: net.Server | null = null;
  private readonly conns = new Set<Connection>();
  private readonly owners = new Map<string, Owner>();
  private readonly nodeOwner = new WeakMap<Source, Owner>();
  /** Identical definitions share one Schema, so producers' values aggregate together and adoption works. */
  private readonly schemas = new Map<string, WeakRef<Schema>>();
  private readonly schemaGc = new FinalizationRegistry<string>((key) => {
    if (this.schemas.get(key)?.deref() === undefined) this.schemas.delete(key);
  });
  private nextConnId = 1;
  private readonly maxFrameBytes: number;
  private readonly maxSources: number;
  private readonly maxBuffered: number;
  private readonly maxHandles: number;
  private readonly maxValues: number;
  private readonly maxConnections: number;
  private readonly helloTimeoutMs: number;
  private readonly frameTimeoutMs: number;
  readonly stats: ProducerServerStats = { connections: 0, accepted: 0, refused: 0, timedOut: 0, frames: 0, updates: 0, errors: 0, closedForProtocolErrors: 0 };

  private readonly writes: Writes;

  constructor(
    readonly root: Source,
    private readonly options: ProducerServerOptions,
  ) {
    this.writes = Writes.of(root);
    this.maxFrameBytes = Math.max(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES, 256);
    this.maxSources = options.maxSourcesPerConnection ?? 100_000;
    this.maxBuffered = options.maxBufferedBytes ?? 4 << 20;
    this.maxHandles = options.maxHandlesPerConnection ?? 262_144;
    this.maxValues = options.maxValuesPerConnection ?? 1_000_000;
    this.maxConnections = options.maxConnections ?? 1024;
    this.helloTimeoutMs = options.helloTimeoutMs ?? 10_000;
    this.frameTimeoutMs = options.frameTimeoutMs ?? 10_000;
  }

  get path(): string {
    return this.options.path;
  }

  /**
   * Listens on the socket. A stale socket file (nothing accepts on it) is replaced; a live one is
   * EADDRINUSE; anything at the path that is not a socket is left alone and EEXIST.
   */
  async listen(): Promise<void> {
    if (this.server) throw new Error('ProducerServer is already listening');
    const path = this.options.path;
    const server = net.createServer((socket) => this.accept(socket));
    await listenUnix(server, path, { mode: this.options.mode, group: this.options.group, option: '--socket' });
    server.on('error', (err) => this.options.log?.error({ err }, 'producer socket error'));
    this.server = server;
    this.options.log?.info({ socket: path }, 'producer socket listening');
  }

  /** Stops listening, closes every connection (removing what they did not keep) and removes the socket file. */
  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const conn of [...this.conns]) {
      conn.socket.destroy();
      this.disconnect(conn);
    }
    if (!server) return;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await unlink(this.options.path).catch(() => undefined);
  }

  private accept(socket: net.Socket): void {
    const conn = new Connection(this.nextConnId++, socket, new FrameReader(this.maxFrameBytes));
    this.stats.accepted++;
    if (this.conns.size >= this.maxConnections) {
      this.stats.refused++;
      this.options.log?.debug({ connection: conn.id }, 'producer connection refused: too many connections');
      socket.on('error', () => undefined);
      endSoon(socket, encodeError(0, 'EBUSY', `too many producer connections (the daemon's cap is ${this.maxConnections})`));
      return;
    }
    this.conns.add(conn);
    this.stats.connections = this.conns.size;
    this.options.log?.debug({ connection: conn.id }, 'producer connected');
    // Frames and departures change the tree: they wait while a snapshot is being captured in slices, and a
    // chunk's frames are one write for readers on other threads (the FUSE session thread).
    socket.on('data', (chunk: Buffer) => this.writes.defer(() => this.onData(conn, chunk)));
    socket.on('error', (err) => this.options.log?.debug({ connection: conn.id, err: err.message }, 'producer socket error'));
    socket.on('close', () => this.writes.defer(() => this.disconnect(conn)));
    this.arm(conn, this.helloTimeoutMs, 'HELLO');
  }

  /** Closes `conn` with ETIMEDOUT after `ms` unless disarmed; the check runs in order with its frames. */
  private arm(conn: Connection, ms: number, what: 'HELLO' | 'frame'): void {
    if (conn.timer !== null) clearTimeout(conn.timer);
    conn.timer = setTimeout(() => {
      conn.timer = null;
      this.writes.defer(() => {
        if (conn.closing || conn.timer !== null) return; // closed or re-armed meanwhile
        if (what === 'HELLO' ? conn.owner !== null : conn.reader.buffered === 0) return;
        this.stats.timedOut++;
        const message = what === 'HELLO' ? `no HELLO within ${ms} ms` : `a frame was left unfinished for ${ms} ms`;
        this.options.log?.warn({ connection: conn.id, err: message }, 'closing producer connection: timed out');
        conn.closing = true;
        endSoon(conn.socket, encodeError(0, 'ETIMEDOUT', message, conn.version || PROTOCOL_VERSION));
      });
    }, ms);
    conn.timer.unref();
  }

  private disarm(conn: Connection): void {
    if (conn.timer === null) return;
    clearTimeout(conn.timer);
    conn.timer = null;
  }

  private onData(conn: Connection, chunk: Buffer): void {
    if (conn.closing) return;
    const socket = conn.socket;
    const framesBefore = this.stats.frames;
    socket.cork();
    try {
      conn.reader.push(chunk, (frame) => this.onFrame(conn, frame));
    } catch (err) {
      // framing is lost (bad length): say why, then close
      this.fatal(conn, 0, err);
    } finally {
      // the replies go out once the kernel has dropped the names they made stale
      const settled = this.root.changesSettled();
      if (settled === null) socket.uncork();
      else void settled.then(() => socket.uncork());
    }
    if (conn.closing) return;
    // A producer that does not read its replies: stop reading its requests until it does (and do not time
    // out the frame it may have started meanwhile: the server is the one not reading).
    if (socket.writableLength > this.maxBuffered && !socket.isPaused()) {
      socket.pause();
      if (conn.owner !== null) this.disarm(conn);
      socket.once('drain', () => {
        if (conn.closing) return;
        socket.resume();
        if (conn.owner !== null && conn.reader.buffered > 0) this.arm(conn, this.frameTimeoutMs, 'frame');
      });
      return;
    }
    // Before HELLO the HELLO timeout runs on. After it, a frame left partial must be completed in time (a new
    // one begun after a complete frame gets the full time); an idle producer has nothing pending.
    if (conn.owner === null) return;
    if (conn.reader.buffered === 0) this.disarm(conn);
    else if (conn.timer === null || this.stats.frames !== framesBefore) this.arm(conn, this.frameTimeoutMs, 'frame');
  }

  private fatal(conn: Connection, id: number, err: unknown): void {
    this.stats.errors++;
    this.stats.closedForProtocolErrors++;
    const message = err instanceof Error ? err.message : String(err);
    this.options.log?.warn({ connection: conn.id, code: errorCode(err), err: message }, 'closing producer connection after a protocol error');
    conn.closing = true;
    this.disarm(conn);
    endSoon(conn.socket, encodeError(id, errorCode(err), message, conn.version || PROTOCOL_VERSION));
  }

  private onFrame(conn: Connection, frame: Frame): void {
    if (conn.closing) return;
    this.stats.frames++;
    let reply: Buffer | null = null;
    try {
      if (conn.owner === null) {
        if (frame.op !== Op.HELLO) throw new ProtocolError('EPROTO', 'the first frame must be HELLO', true);
        if (frame.flags !== 0) throw new ProtocolError('EINVAL', `header flags must be 0 (HELLO has ${frame.flags})`, true);
        const req = decodeRequest(frame) as HelloRequest;
        reply = this.hello(conn, req, frame.id);
      } else {
        if (frame.version !== conn.version) throw new ProtocolError('EPROTO', `frame version ${frame.version}, the connection negotiated ${conn.version}`);
        if (frame.flags !== 0) throw new ProtocolError('EINVAL', `header flags must be 0 in version ${conn.version}`);
        reply = this.apply(conn, frame) ?? okReply(frame.id, conn.version);
      }
    } catch (err) {
      if (err instanceof ProtocolError && err.fatal) {
        this.fatal(conn, frame.id, err);
        return;
      }
      this.stats.errors++;
      if (!(err instanceof ProtocolError) && !(err instanceof StatsError)) {
        this.options.log?.error({ connection: conn.id, err }, 'unexpected error applying a producer request');
      }
      reply = encodeError(frame.id, errorCode(err), err instanceof Error ? err.message : String(err), conn.version || PROTOCOL_VERSION);
    }
    conn.socket.write(reply);
  }

  private hello(conn: Connection, req: HelloRequest, id: number): Buffer {
    const version = Math.min(req.maxVersion, PROTOCOL_VERSION);
    if (version < Math.max(req.minVersion, MIN_PROTOCOL_VERSION)) {
      throw new ProtocolError('EPROTONOSUPPORT', `versions ${req.minVersion}..${req.maxVersion} offered, this server speaks ${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION}`, true);
    }
    let owner: Owner;
    if (req.owner === '') owner = new Owner(null);
    else {
      try {
        validateName(req.owner, 'owner');
      } catch (err) {
        throw new ProtocolError('EINVAL', (err as Error).message, true);
      }
      owner = this.owners.get(req.owner) ?? new Owner(req.owner);
      this.owners.set(req.owner, owner);
    }
    owner.conns.add(conn);
    conn.owner = owner;
    this.disarm(conn);
    conn.keep = req.keep || (this.options.keepOnDisconnect ?? false);
    conn.version = version;
    this.options.log?.debug({ connection: conn.id, owner: owner.name, keep: conn.keep }, 'producer hello');
    return encodeHelloOk(id, { version, maxFrameBytes: this.maxFrameBytes, maxSources: this.maxSources, maxHandles: this.maxHandles, connection: conn.id });
  }

  /** Applies a request; returns the OK reply when it has a payload (else null: an empty OK). */
  private apply(conn: Connection, frame: Frame): Buffer | null {
    const req = decodeRequest(frame);
    switch (req.op) {
      case Op.HELLO:
        throw new ProtocolError('EPROTO', 'HELLO was already received on this connection');
      case Op.UPDATE:
        this.update(conn, req.buf, req.offset, req.count);
        return null;
      case Op.DEFINE:
        this.define(conn, req);
        return null;
      case Op.SOURCE:
        this.createSource(conn, req);
        return null;
      case Op.ATTACH: {
        const parent = this.parentSource(conn, req.parent);
        const child = this.ownSource(conn, req.child);
        if (child.parent !== null) throw new StatsError('EEXIST', `source "${child.path}" is attached: detach it first`);
        if (child.hidden) this.checkHiddenName(parent, child.name);
        parent.addSubordinate(child);
        return null;
      }
      case Op.DETACH: {
        const src = this.ownSource(conn, req.handle);
        const parent = src.parent;
        if (parent === null) throw new StatsError('ENOENT', `source "${src.name}" is not attached`);
        parent.removeSubordinate(src);
        return null;
      }
      case Op.VALUES: {
        const adopted = this.addValues(conn, req);
        if (conn.version < 2) return null;
        // version 2: say whether the group was adopted and, for values, what they hold now
        const values = adopted !== null && !adopted.isAggregate ? adopted.schema.defs.map((d) => adopted.get(d.index)) : [];
        return encodeValuesOk(frame.id, { adopted: adopted !== null, values }, conn.version);
      }
      case Op.REMOVE:
        this.remove(conn, req.kind, req.handle);
        return null;
      case Op.REMOVE_PATH:
        this.removePath(conn, req.path);
        return null;
      case Op.PING:
        return null;
    }
  }

  // --- handles ---------------------------------------------------------------------------------------------

  private bindable<T>(conn: Connection, map: Map<number, T>, handle: number, what: string, live: (t: T) => boolean): void {
    if (handle === 0) throw new ProtocolError('EINVAL', `${what} handle 0 is reserved`);
    const old = map.get(handle);
    if (old !== undefined && live(old)) throw new StatsError('EEXIST', `${what} handle ${handle} is in use`);
    if (old === undefined && conn.handleCount >= this.maxHandles) {
      throw new ProtocolError('EDQUOT', `this connection has ${this.maxHandles} handles: remove some first`);
    }
  }

  /** A source handle that is live: 0 is the root. */
  private source(conn: Connection, handle: number): Source {
    if (handle === 0) return this.root;
    const src = conn.sources.get(handle);
    if (src === undefined) throw new StatsError('ENOENT', `no source handle ${handle}`);
    if (!conn.owner!.sources.has(src)) throw new StatsError('ENOENT', `source handle ${handle} ("${src.name}") was removed`);
    return src;
  }

  private ownSource(conn: Connection, handle: number): Source {
    if (handle === 0) throw new StatsError('EPERM', 'the root belongs to the daemon');
    return this.source(conn, handle);
  }

  /** Where this connection may create or attach: the root or its own sources. */
  private parentSource(conn: Connection, handle: number): Source {
    return this.source(conn, handle);
  }

  private owns(conn: Connection, src: Source): boolean {
    return this.nodeOwner.get(src) === conn.owner;
  }

  // --- DEFINE ----------------------------------------------------------------------------------------------

  private define(conn: Connection, req: DefineRequest): void {
    this.bindable(conn, conn.schemas, req.schema, 'schema', () => true);
    const seen = new Set<string>();
    for (const v of req.values) {
      validateName(v.name, 'value');
      if (seen.has(v.name)) throw new StatsError('EINVAL', `value "${v.name}" is defined twice`);
      seen.add(v.name);
      noControl(v.unit ?? '', `value "${v.name}": unit`, UNIT_MAX);
      noControl(v.description ?? '', `value "${v.name}": description`, DESCRIPTION_MAX);
      for (const e of v.enum ?? []) {
        if (e.length === 0) throw new ProtocolError('EINVAL', `value "${v.name}": empty enum name`);
        noControl(e, `value "${v.name}": enum name`, NAME_MAX);
      }
    }
    for (const v of req.values) {
      if (v.type !== 'histogram') continue;
      if (conn.version < HISTOGRAM_PROTOCOL_VERSION) throw new ProtocolError('EINVAL', `value "${v.name}": histograms need protocol version ${HISTOGRAM_PROTOCOL_VERSION}`);
      if (v.enum && v.enum.length > 0) throw new ProtocolError('EINVAL', `histogram "${v.name}" cannot have enum names`);
    }
    const key = JSON.stringify(req.values.map((v) => [v.name, v.type, v.aggr ?? 'none', v.floating ?? false, v.mode ?? null, v.unit ?? '', v.description ?? '', v.enum ?? []]));
    let schema = this.schemas.get(key)?.deref();
    if (schema === undefined) {
      schema = new Schema(req.values.map(toValueSpec));
      this.schemas.set(key, new WeakRef(schema));
      this.schemaGc.register(schema, key);
    }
    conn.schemas.set(req.schema, schema);
  }

  // --- SOURCE ----------------------------------------------------------------------------------------------

  /** A subordinate by name: the visible one, else a hidden one of this owner. */
  private child(conn: Connection, parent: Source, name: string): Source | undefined {
    return parent.subordinate(name) ?? parent.hiddenSubordinates(name).find((s) => this.owns(conn, s));
  }

  private checkHiddenName(parent: Source, name: string): void {
    if (parent.hiddenSubordinates(name).length > 0) throw new StatsError('EEXIST', `a hidden source "${name}" exists there`);
  }

  private createSource(conn: Connection, req: SourceRequest): void {
    const owner = conn.owner!;
    this.bindable(conn, conn.sources, req.handle, 'source', (s) => owner.sources.has(s));
    const parts = req.path.split('/');
    for (const p of parts) validateName(p, 'source');
    if (req.detached) {
      if (req.parent !== 0 || parts.length !== 1) throw new ProtocolError('EINVAL', 'a detached source is created from one name with parent 0');
      this.checkSourceCap(owner, 1);
      const src = new Source(parts[0], { hidden: req.hidden });
      this.own(owner, src);
      bindHandle(conn.sources, conn.sourceHandles, req.handle, src);
      return;
    }
    const parent = this.parentSource(conn, req.parent);
    // First pass: permissions, conflicts and caps, so that a refused request changes nothing.
    let cur: Source | undefined = parent;
    let missing = 0;
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      if (cur !== undefined && cur !== this.root && !this.owns(conn, cur)) {
        throw new StatsError('EPERM', `"${cur.path}" belongs to ${this.ownerLabel(cur)}: create your own sources beside it`);
      }
      const next: Source | undefined = cur === undefined ? undefined : this.child(conn, cur, parts[i]);
      if (next === undefined) {
        missing++;
        if (last && req.hidden && cur !== undefined) this.checkHiddenName(cur, parts[i]);
      } else if (last) {
        if (!this.owns(conn, next)) throw new StatsError('EPERM', `"${next.path}" exists and belongs to ${this.ownerLabel(next)}`);
        if (next.hidden !== req.hidden) throw new StatsError('EEXIST', `"${next.path}" exists ${next.hidden ? 'hidden' : 'visible'}`);
      }
      cur = next;
    }
    this.checkSourceCap(owner, missing);
    // Second pass: create what is missing; an existing source of this owner is adopted.
    cur = parent;
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      let next = this.child(conn, cur, parts[i]);
      if (next === undefined) {
        next = new Source(parts[i], { hidden: last && req.hidden });
        cur.addSubordinate(next);
        this.own(owner, next);
      }
      cur = next;
    }
    bindHandle(conn.sources, conn.sourceHandles, req.handle, cur);
  }

  private checkSourceCap(owner: Owner, more: number): void {
    if (owner.sources.size + more > this.maxSources) {
      throw new ProtocolError('EDQUOT', `${owner.label} would have more than ${this.maxSources} sources`);
    }
  }

  private own(owner: Owner, src: Source): void {
    owner.sources.add(src);
    this.nodeOwner.set(src, owner);
  }

  private ownerLabel(src: Source): string {
    const owner = this.nodeOwner.get(src);
    return owner === undefined ? 'the daemon' : `producer ${owner.name === null ? '(anonymous)' : JSON.stringify(owner.name)}`;
  }

  // --- VALUES ----------------------------------------------------------------------------------------------

  /** Adds (or adopts) a value group; returns the adopted group, or null when a new one was made. */
  private addValues(conn: Connection, req: ValuesRequest): ValueGroup | null {
    const owner = conn.owner!;
    this.bindable(conn, conn.groups, req.group, 'group', (g) => owner.groups.has(g));
    const src = this.ownSource(conn, req.source);
    if (!this.owns(conn, src)) throw new StatsError('EPERM', `"${src.path}" belongs to ${this.ownerLabel(src)}`);
    const schema = conn.schemas.get(req.schema);
    if (schema === undefined) throw new StatsError('ENOENT', `no schema handle ${req.schema}`);
    for (const g of src.valueGroups) {
      if (g.schema === schema) {
        if (g.isAggregate !== req.aggregate) continue;
        if (!owner.groups.has(g) || g.hidden !== req.hidden) throw new StatsError('EEXIST', `"${src.path}" already has these ${req.aggregate ? 'aggregates' : 'values'}`);
        bindHandle(conn.groups, conn.groupHandles, req.group, g); // adopted: the same definition added again by its owner
        return g;
      }
      for (const def of schema.defs) {
        if (g.schema.find(def.name)) throw new StatsError('EEXIST', `"${src.path}/${def.name}" exists with another definition`);
      }
    }
    if (!req.aggregate && owner.valueSlots + valueCost(schema) > this.maxValues) {
      throw new ProtocolError('EDQUOT', `${owner.label} would have more than ${this.maxValues} values (a histogram counts as ${HISTOGRAM_VALUE_COST})`);
    }
    const group = req.aggregate ? src.addAggregates(schema, { hidden: req.hidden }) : src.addValues(schema, { hidden: req.hidden });
    owner.groups.add(group);
    if (!req.aggregate) owner.valueSlots += valueCost(schema);
    bindHandle(conn.groups, conn.groupHandles, req.group, group);
    return null;
  }

  // --- UPDATE: the hot path ----------------------------------------------------------------------------------

  private update(conn: Connection, buf: Buffer, offset: number, count: number): void {
    const owned = conn.owner!.groups;
    const groups = conn.groups;
    const end = offset + count * UPDATE_ENTRY_BYTES;
    const maxOp = conn.version >= HISTOGRAM_PROTOCOL_VERSION ? UpdateOp.WEIGHT : UpdateOp.ADD;
    // observed doubles through a view: Buffer.readDoubleLE checks its arguments on every call
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    // Validate everything first: after this loop nothing below can throw, so the batch is all or nothing.
    let lastHandle = -1;
    let last: ValueGroup | undefined;
    for (let at = offset, i = 0; at < end; at += UPDATE_ENTRY_BYTES, i++) {
      const handle = buf.readUInt32LE(at);
      if (handle !== lastHandle) {
        last = groups.get(handle);
        if (last === undefined) throw new StatsError('ENOENT', `update ${i}: no group handle ${handle}`);
        if (!owned.has(last)) throw new StatsError('ENOENT', `update ${i}: group handle ${handle} was removed`);
        if (last.isAggregate) throw new StatsError('EPERM', `update ${i}: group handle ${handle} holds aggregates`);
        lastHandle = handle;
      }
      const index = buf.readUInt16LE(at + 4);
      if (index >= last!.schema.size) throw new StatsError('ENOENT', `update ${i}: group handle ${handle} has no value ${index}`);
      const op = buf[at + 6];
      if (op > maxOp || buf[at + 7] !== 0) throw new ProtocolError('EINVAL', `update ${i}: unknown operation ${op}/${buf[at + 7]}`);
      const def = last!.schema.defs[index];
      if (op <= UpdateOp.ADD) {
        if (def.histogram) throw new ProtocolError('EINVAL', `update ${i}: "${def.name}" is a histogram: OBSERVE it`);
        continue;
      }
      if (!def.histogram) throw new ProtocolError('EINVAL', `update ${i}: "${def.name}" is not a histogram: SET or ADD it`);
      if (op === UpdateOp.WEIGHT) {
        const next = at + UPDATE_ENTRY_BYTES;
        if (next >= end || buf[next + 6] !== UpdateOp.OBSERVE || buf.readUInt32LE(next) !== handle || buf.readUInt16LE(next + 4) !== index) {
          throw new ProtocolError('EINVAL', `update ${i}: a WEIGHT must be followed by an OBSERVE of the same value`);
        }
        continue;
      }
      const value = view.getFloat64(at + 8, true);
      if (!(value >= 0) || value === Infinity) throw new ProtocolError('EINVAL', `update ${i}: a histogram takes finite values >= 0, not ${value}`);
    }
    lastHandle = -1;
    // the words go in as they came (lo, hi): no number or bigint per entry
    let weightLo = 1;
    let weightHi = 0;
    for (let at = offset; at < end; at += UPDATE_ENTRY_BYTES) {
      const handle = buf.readUInt32LE(at);
      if (handle !== lastHandle) {
        last = groups.get(handle);
        lastHandle = handle;
      }
      const op = buf[at + 6];
      if (op === UpdateOp.OBSERVE) {
        last!.ownHistogram(last!.schema.defs[buf.readUInt16LE(at + 4)]).observeWeighted(view.getFloat64(at + 8, true), weightLo, weightHi);
        weightLo = 1;
        weightHi = 0;
      } else if (op === UpdateOp.WEIGHT) {
        weightLo = buf.readUInt32LE(at + 8);
        weightHi = buf.readUInt32LE(at + 12);
      } else if (op === UpdateOp.SET) last!.setWord(buf.readUInt16LE(at + 4), buf.readUInt32LE(at + 8), buf.readUInt32LE(at + 12));
      else last!.addWord(buf.readUInt16LE(at + 4), buf.readUInt32LE(at + 8), buf.readUInt32LE(at + 12));
    }
    this.stats.updates += count;
  }

  // --- REMOVE ----------------------------------------------------------------------------------------------

  private remove(conn: Connection, kind: number, handle: number): void {
    const owner = conn.owner!;
    if (kind === RemoveKind.SOURCE) {
      const src = this.ownSource(conn, handle);
      this.removeTree(owner, src); // frees its handles, and those of everything below it
    } else if (kind === RemoveKind.GROUP) {
      const g = conn.groups.get(handle);
      if (g === undefined || !owner.groups.has(g)) throw new StatsError('ENOENT', `no group handle ${handle}`);
      this.removeGroup(owner, g);
    } else {
      if (!conn.schemas.delete(handle)) throw new StatsError('ENOENT', `no schema handle ${handle}`);
    }
  }

  private removePath(conn: Connection, path: string): void {
    const owner = conn.owner!;
    const parts = path.split('/');
    for (const p of parts) validateName(p, 'path component');
    if (this.options.removeKept?.(path) === true) return;
    let cur = this.root;
    for (let i = 0; i < parts.length - 1; i++) {
      const next = this.child(conn, cur, parts[i]);
      if (next === undefined) throw new StatsError('ENOENT', `no source "${parts.slice(0, i + 1).join('/')}"`);
      cur = next;
    }
    const name = parts[parts.length - 1];
    const src = this.child(conn, cur, name);
    if (src !== undefined) {
      if (!this.owns(conn, src)) throw new StatsError('EPERM', `"${path}" belongs to ${this.ownerLabel(src)}`);
      this.removeTree(owner, src);
      return;
    }
    const found = cur.findValue(name);
    if (found === undefined) throw new StatsError('ENOENT', `no source or value "${path}"`);
    if (!owner.groups.has(found.group)) throw new StatsError('EPERM', `"${path}" belongs to ${this.ownerLabel(cur)}`);
    this.removeGroup(owner, found.group);
  }

  private removeGroup(owner: Owner, g: ValueGroup): void {
    g.source.removeValues(g);
    owner.groups.delete(g);
    for (const c of owner.conns) unbindTarget(c.groups, c.groupHandles, g);
    if (!g.isAggregate) owner.valueSlots -= valueCost(g.schema);
  }

  /** Detaches `src` (the mount sees it go at once), then releases it and everything of the owner below it. */
  private removeTree(owner: Owner, src: Source): void {
    src.parent?.removeSubordinate(src);
    this.release(owner, src);
  }

  private release(owner: Owner, src: Source): void {
    for (const sub of [...src.subordinates]) if (owner.sources.has(sub)) this.release(owner, sub);
    for (const g of [...src.valueGroups]) if (owner.groups.has(g)) this.removeGroup(owner, g);
    owner.sources.delete(src);
    for (const c of owner.conns) unbindTarget(c.sources, c.sourceHandles, src);
  }

  // --- disconnect ------------------------------------------------------------------------------------------

  private disconnect(conn: Connection): void {
    if (!this.conns.delete(conn)) return;
    conn.closing = true;
    this.disarm(conn);
    this.stats.connections = this.conns.size;
    const owner = conn.owner;
    this.options.log?.debug({ connection: conn.id, owner: owner?.name }, 'producer disconnected');
    if (owner === null) return;
    owner.conns.delete(conn);
    if (owner.conns.size > 0) return;
    // The last connection of this owner: remove its sources unless it kept them. Detached sources could
    // never be found again, so they go in any case.
    const tops = [...owner.sources].filter((s) => s.parent === null || !owner.sources.has(s.parent));
    for (const src of tops) if (!conn.keep || src.parent === null) this.removeTree(owner, src);
    if (owner.sources.size === 0 && owner.name !== null) this.owners.delete(owner.name);
  }
}

/**
 * Ends `socket` with a last frame and makes sure its descriptor goes: what the peer still sends is read and
 * dropped (so its end is seen), and a peer that never closes its side is cut off after a short grace.
 */
function endSoon(socket: net.Socket, last: Buffer): void {
  socket.end(last);
  socket.resume();
  const timer = setTimeout(() => socket.destroy(), CLOSE_GRACE_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

/**
 * What one histogram counts for against the values cap: its buckets take up to 16 KiB (2,048 u64 counts),
 * typically 3 KiB, where a value takes 8 bytes; so the default cap holds at most 15,625 histograms of one
 * owner (256 MiB at worst) instead of a million (16 GiB).
 */
export const HISTOGRAM_VALUE_COST = 64;

/** Values a group of this schema counts for against the values cap. */
function valueCost(schema: Schema): number {
  return schema.hasHistograms ? schema.size + schema.defs.filter((d) => d.histogram).length * (HISTOGRAM_VALUE_COST - 1) : schema.size;
}

function toValueSpec(v: WireValueSpec): ValueSpec {
  const spec: ValueSpec = { name: v.name, type: v.type, aggr: v.aggr ?? 'none', floating: v.floating ?? false };
  if (v.mode !== undefined) spec.mode = v.mode;
  if (v.unit) spec.unit = v.unit;
  if (v.description) spec.description = v.description;
  if (v.enum && v.enum.length > 0) spec.show = enumShow(v.enum);
  return spec;
}

/** An OK reply with no payload: 12 bytes, built without a PayloadWriter (one per request on the hot path). */
function okReply(id: number, version: number): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES);
  out.writeUInt32LE(HEADER_BYTES - 4, 0);
  out[4] = version;
  out[5] = 0x80;
  out.writeUInt16LE(0, 6);
  out.writeUInt32LE(id, 8);
  return out;
}
