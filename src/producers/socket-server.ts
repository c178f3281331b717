/**
 * The producer socket: other processes publish statistics into the daemon's tree over a Unix domain socket
 * (the wire format in ../protocol/protocol.ts, specified in docs/protocol.md).
 *
 * Every node a connection creates (source, value group) belongs to its *owner*: the name it gave in HELLO,
 * or, anonymous, the connection itself. Only the owner may change or remove it, and nodes may be created
 * only under the server's root or under the owner's own sources. When the last connection of an owner
 * closes, its nodes are removed, unless that connection asked to KEEP them (HELLO flag, or the server's
 * keepOnDisconnect): a later connection with the same owner name adopts them again by creating the same
 * paths and definitions. Ownership protects producers from one another's mistakes; who may connect at all
 * is decided by the socket's file mode (0600 by default).
 *
 * This module is the transport: listening, HELLO, framing, timeouts and replies. What a request changes, and
 * who owns what, is producer-tree.ts and producer-owners.ts.
 *
 * Requests are applied synchronously, one frame at a time, so no reader of the tree (the FUSE adapter runs
 * on the same event loop) ever sees part of a frame: an UPDATE batch is validated as a whole first and only
 * then applied, all of it or none.
 *
 * Fairness: the event loop is shared with the mount's requests, so frames are applied in turns of at most
 * SLICE_MS (and at least one frame), and a turn also ends as soon as the mount has requests waiting (the next
 * then comes READERS_FIRST_MS later). Frames
 * received and not applied in a turn stay with their connection, whose reading is paused (counted in
 * `throttled`) until they are applied: a producer faster than the daemon is slowed down by the socket's own
 * flow control, and what the daemon holds for it stays within a chunk or two. Connections with such a
 * backlog are served in turn, one turn of the event loop apart.
 */
import type { Log } from '../log.js';
import { unlink } from 'node:fs/promises';
import net from 'node:net';
import { nameProblem, Source, StatsError, Writes } from '../model/index.js';
import {
  DEFAULT_MAX_FRAME_BYTES,
  FrameReader,
  MIN_PROTOCOL_VERSION,
  Op,
  PROTOCOL_VERSION,
  ProtocolError,
  decodeRequest,
  encodeError,
  encodeHelloOk,
  encodeOk,
  type Frame,
  type HelloRequest,
} from '../protocol/protocol.js';
import { Connection } from './producer-owners.js';
import { ProducerTree, type KeptRecord, type KeptState } from './producer-tree.js';
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
  /**
   * Where what keeping connections change is journaled (the daemon's state directory): called after each
   * chunk of frames, before their replies are sent, so an acknowledged change is never lost.
   */
  journal?: { append(part: string, data: unknown): void };
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
  /** Times the server paused reading a connection because frames it had received were still waiting to be applied. */
  throttled: number;
  /** Bytes received and not yet applied, all connections together (frames held back, and frames not complete yet). */
  readonly backlogBytes: number;
}

/** How long a connection the server is closing may take to read its last reply before it is destroyed. */
const CLOSE_GRACE_MS = 1000;

/** The longest a turn of applying frames runs before the event loop goes on (other work, the mount's requests). */
const SLICE_MS = 1;

/** How often at most a turn looks whether the mount has requests waiting (a look costs a call into the binding). */
const READERS_CHECK_MS = 0.05;

/** How long producers wait after a turn that readers interrupted (see nextTurn). */
const READERS_FIRST_MS = 1;

function errorCode(err: unknown): string {
  if (err instanceof ProtocolError || err instanceof StatsError) return err.code;
  return 'EIO';
}

export class ProducerServer {
  private server: net.Server | null = null;
  private readonly conns = new Set<Connection>();
  /** What the requests change, and who owns what. */
  private readonly tree: ProducerTree;
  private nextConnId = 1;
  private readonly maxFrameBytes: number;
  private readonly maxSources: number;
  private readonly maxBuffered: number;
  private readonly maxHandles: number;
  private readonly maxConnections: number;
  private readonly helloTimeoutMs: number;
  private readonly frameTimeoutMs: number;
  readonly stats: ProducerServerStats = serverStats(this.conns);
  /** Connections holding frames received and not applied yet, in the order their next turn comes. */
  private readonly backlog = new Set<Connection>();
  /** When the current turn of applying frames ends (performance.now()); 0: no turn under way. */
  private turnEnds = 0;
  /** When the turn next looks whether the mount has requests waiting. */
  private readersCheck = 0;
  /** A turn ended early because the mount had requests waiting. */
  private readersCame = false;
  /** nextTurn is scheduled. */
  private turnScheduled = false;

  private readonly writes: Writes;
  /** Replies to the frames applied in the current onData (one connection's): written as one buffer at its end. */
  private replies: Buffer[] = [];

  constructor(
    readonly root: Source,
    private readonly options: ProducerServerOptions,
  ) {
    this.writes = Writes.of(root);
    this.maxFrameBytes = Math.max(options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES, 256);
    this.maxSources = options.maxSourcesPerConnection ?? 100_000;
    this.maxBuffered = options.maxBufferedBytes ?? 4 << 20;
    this.maxHandles = options.maxHandlesPerConnection ?? 262_144;
    this.maxConnections = options.maxConnections ?? 1024;
    this.helloTimeoutMs = options.helloTimeoutMs ?? 10_000;
    this.frameTimeoutMs = options.frameTimeoutMs ?? 10_000;
    this.tree = new ProducerTree(
      root,
      { maxSources: this.maxSources, maxHandles: this.maxHandles, maxValues: options.maxValuesPerConnection ?? 1_000_000, removeKept: options.removeKept },
      this.stats,
    );
    this.tree.journaling = options.journal !== undefined;
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

  // --- state (issue 15): what owners keep outlives the daemon through its state directory ---------------------

  /** Moves with every change a keeping connection makes. */
  get keptChanges(): number {
    return this.tree.keptChanges;
  }

  /** What the keeping owners hold, for a state checkpoint. */
  saveKept(): KeptState {
    return this.tree.saveKept();
  }

  /** Applies a journal record (after restoreKept()). */
  replayKept(data: unknown): void {
    const skipped = this.tree.replayKept(data as KeptRecord | { kept: KeptState });
    if (skipped > 0) this.options.log?.info({ skippedChanges: skipped }, 'kept producer changes replayed: some no longer fit (a name taken since)');
  }

  /** Journals what keeping connections changed, if anything (before the replies go). */
  private journalChanges(): void {
    if (this.options.journal === undefined) return;
    const data = this.tree.journalChunk();
    if (data !== null) this.options.journal.append('producers', data);
  }

  /** Puts back what saveKept() returned (call before listen()): the owners adopt it when they reconnect. */
  restoreKept(saved: KeptState): void {
    const skipped = this.tree.restoreKept(saved);
    this.options.log?.info({ owners: saved.owners.length, skippedSources: skipped }, 'kept producer sources restored');
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

  /** Applies what `chunk` completes, after the frames `conn` holds back, for as long as the turn lasts. */
  private onData(conn: Connection, chunk: Buffer): void {
    if (conn.closing) return;
    const socket = conn.socket;
    const framesBefore = this.stats.frames;
    this.startTurn();
    let more = false;
    // replies are held while the connection has a backlog: one write for all of them, not one a turn
    if (!this.backlog.has(conn)) socket.cork();
    try {
      more = conn.reader.push(chunk, (frame) => {
        this.onFrame(conn, frame);
        return this.turnGoesOn();
      });
    } catch (err) {
      // framing is lost (bad length): say why, then close
      this.fatal(conn, 0, err);
    } finally {
      this.writeReplies(socket);
      if (!more || conn.closing) {
        // the replies go out once the kernel has dropped the names they made stale
        const settled = this.root.changesSettled();
        if (settled === null) socket.uncork();
        else void settled.then(() => socket.uncork());
      }
    }
    if (conn.closing) {
      this.backlog.delete(conn);
      return;
    }
    // the connection's next turn comes after the others' (insertion order)
    this.backlog.delete(conn);
    if (more) {
      this.backlog.add(conn);
      this.scheduleTurn();
    }
    this.flow(conn, this.stats.frames !== framesBefore);
  }

  /** Begins a turn of applying frames, unless one is under way. */
  private startTurn(): void {
    const now = performance.now();
    if (now < this.turnEnds) return;
    this.turnEnds = now + SLICE_MS;
    this.readersCheck = now;
    this.readersCame = false;
  }

  /**
   * Whether the turn may apply another frame: time is left, and the mount has no request waiting (looked at
   * every READERS_CHECK_MS at most, so that small frames do not pay for a look each).
   */
  private turnGoesOn(): boolean {
    const now = performance.now();
    if (now >= this.turnEnds) return false;
    if (now < this.readersCheck) return true;
    this.readersCheck = now + READERS_CHECK_MS;
    if (!this.root.readersWaiting()) return true;
    this.readersCame = true;
    return false;
  }

  /** The connections with a backlog get their next turn after the loop's other work (I/O, the mount's requests). */
  private scheduleTurn(): void {
    if (this.turnScheduled) return;
    this.turnScheduled = true;
    setImmediate(this.nextTurn);
  }

  /**
   * Serves the connections with a backlog, each after the other, while the turn lasts (at least one frame).
   * When readers came during the last turn, the next comes READERS_FIRST_MS later instead of at once, so a
   * reader's next request (ls asks for one directory after the other) finds the event loop free.
   */
  private readonly nextTurn = (): void => {
    this.turnScheduled = false;
    this.turnEnds = 0;
    if (this.backlog.size === 0) return;
    if (this.readersCame) {
      this.readersCame = false;
      this.turnScheduled = true;
      setTimeout(this.nextTurn, READERS_FIRST_MS);
      return;
    }
    this.writes.defer(() => {
      let first = true;
      for (const conn of [...this.backlog]) {
        if (!this.backlog.has(conn)) continue; // closed meanwhile
        if (!first && !this.turnGoesOn()) break;
        first = false;
        this.onData(conn, EMPTY);
      }
      // those the turn ended before still have theirs coming (the one served may have had its last frame)
      if (this.backlog.size > 0) this.scheduleTurn();
    });
  };

  /**
   * Pauses reading `conn` while it holds a backlog, or while its replies are not read (a producer that does not
   * read them: stop reading its requests until it does), else reads on. While paused its frame timeout does
   * not run: the server is the one not reading.
   */
  private flow(conn: Connection, applied: boolean): void {
    const socket = conn.socket;
    const backlogged = this.backlog.has(conn);
    const unread = socket.writableLength > this.maxBuffered;
    if (backlogged || unread) {
      if (!socket.isPaused()) {
        socket.pause();
        if (backlogged) this.stats.throttled++;
      }
      if (conn.owner !== null) this.disarm(conn);
      if (unread && !conn.awaitingDrain) {
        conn.awaitingDrain = true;
        socket.once('drain', () => {
          conn.awaitingDrain = false;
          if (!conn.closing) this.flow(conn, false);
        });
      }
      return;
    }
    if (socket.isPaused()) socket.resume();
    // Before HELLO the HELLO timeout runs on. After it, a frame left partial must be completed in time (a new
    // one begun after a complete frame gets the full time); an idle producer has nothing pending.
    if (conn.owner === null) return;
    if (conn.reader.buffered === 0) this.disarm(conn);
    else if (conn.timer === null || applied) this.arm(conn, this.frameTimeoutMs, 'frame');
  }

  /** Writes the replies gathered so far (one write instead of one per frame: a small frame's reply costs more than its work). */
  /** Writes the replies gathered, after journaling what they acknowledge (a kill -9 then loses none of it). */
  private writeReplies(socket: net.Socket): void {
    const replies = this.replies;
    if (replies.length === 0) return;
    this.journalChanges();
    this.replies = [];
    socket.write(replies.length === 1 ? replies[0] : Buffer.concat(replies));
  }

  private fatal(conn: Connection, id: number, err: unknown): void {
    this.writeReplies(conn.socket); // the replies to the frames before this one go first
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
        reply = this.tree.apply(conn, frame) ?? encodeOk(frame.id, conn.version);
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
    this.replies.push(reply);
  }

  private hello(conn: Connection, req: HelloRequest, id: number): Buffer {
    const version = Math.min(req.maxVersion, PROTOCOL_VERSION);
    if (version < Math.max(req.minVersion, MIN_PROTOCOL_VERSION)) {
      throw new ProtocolError('EPROTONOSUPPORT', `versions ${req.minVersion}..${req.maxVersion} offered, this server speaks ${MIN_PROTOCOL_VERSION}..${PROTOCOL_VERSION}`, true);
    }
    const problem = req.owner === '' ? null : nameProblem(req.owner, 'owner');
    if (problem !== null) throw new ProtocolError('EINVAL', problem, true);
    const owner = this.tree.owner(req.owner);
    conn.keep = req.keep || (this.options.keepOnDisconnect ?? false);
    this.tree.arrive(conn, owner);
    conn.owner = owner;
    this.disarm(conn);
    conn.version = version;
    this.options.log?.debug({ connection: conn.id, owner: owner.name, keep: conn.keep }, 'producer hello');
    return encodeHelloOk(id, { version, maxFrameBytes: this.maxFrameBytes, maxSources: this.maxSources, maxHandles: this.maxHandles, connection: conn.id });
  }

  private disconnect(conn: Connection): void {
    if (!this.conns.delete(conn)) return;
    if (this.backlog.delete(conn)) {
      // frames it sent before it went are applied as if it had stayed (the replies go nowhere)
      try {
        conn.reader.push(EMPTY, (frame) => this.onFrame(conn, frame));
      } catch {
        // framing lost in what it left: nothing more to apply
      }
      this.replies = [];
    }
    conn.closing = true;
    this.disarm(conn);
    this.stats.connections = this.conns.size;
    const owner = conn.owner;
    this.options.log?.debug({ connection: conn.id, owner: owner?.name }, 'producer disconnected');
    if (owner !== null) this.tree.depart(conn, owner);
    this.journalChanges();
  }
}

const EMPTY = Buffer.alloc(0);

/** Counters at 0; backlogBytes is read from the connections when it is read. */
function serverStats(conns: ReadonlySet<Connection>): ProducerServerStats {
  return {
    connections: 0, accepted: 0, refused: 0, timedOut: 0, frames: 0, updates: 0, errors: 0, closedForProtocolErrors: 0, throttled: 0,
    get backlogBytes() {
      let bytes = 0;
      for (const conn of conns) bytes += conn.reader.buffered;
      return bytes;
    },
  };
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
