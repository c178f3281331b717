/**
 * StatsD's transports: UDP datagrams, and a Unix stream socket carrying newline-terminated lines (Node has
 * no Unix datagram sockets) with its framing. What arrives is handed on as text to apply; this module knows
 * nothing of the tree.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import type { Log } from '../log.js';
import { whenListening } from '../net.js';
import { listenUnix } from './unix-socket.js';

/** Longest line accepted on the Unix stream socket (a UDP datagram is bounded by the protocol). */
export const STATSD_LINE_MAX = 65536;
/** Most simultaneous connections on the Unix socket; more are closed at once and counted. */
export const STATSD_MAX_CONNECTIONS = 256;

/** The counters the transports keep (part of StatsdStats). */
export interface StatsdTransportStats {
  packets: number;
  bytes: number;
  connections: number;
  refusedConnections: number;
  dropped: number;
  droppedLongLines: number;
}

/** Where the listeners hand what they receive. */
export interface StatsdReceiver {
  readonly stats: StatsdTransportStats;
  readonly log: Log;
  /** A datagram's payload (its bytes not counted yet). */
  ingest(data: Buffer): void;
  /** Whole lines from a stream connection (their bytes counted already). */
  ingestLines(data: Buffer): void;
  warnOnce(key: string, obj: object, msg: string): void;
}

/** A stream connection's framing state: the partial line it waits to complete, or a too-long one it skips. */
interface Conn {
  pending: Buffer | null;
  discarding: boolean;
}

export class StatsdListeners {
  private udp: dgram.Socket | null = null;
  private unix: net.Server | null = null;
  private readonly conns = new Set<net.Socket>();

  constructor(private readonly receiver: StatsdReceiver) {}

  /** rcvbuf: the receive buffer as the kernel counts it (SO_RCVBUF is asked half of it: the kernel doubles what it is asked); 0: the kernel's default. */
  async listenUdp(host: string, port: number, rcvbuf: number): Promise<{ address: string; port: number }> {
    const { receiver } = this;
    const socket = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4' });
    this.udp = socket;
    await whenListening(socket, (onListening) => socket.bind(port, host, onListening));
    socket.on('error', (err) => receiver.log.error({ err }, 'statsd UDP socket error'));
    socket.on('message', (msg) => {
      receiver.stats.packets++;
      receiver.ingest(msg);
    });
    try {
      if (rcvbuf > 0) socket.setRecvBufferSize(Math.max(1, Math.floor(rcvbuf / 2))); // bursts of datagrams while the loop is busy
    } catch {
      // refused: keep the kernel's default
    }
    const a = socket.address();
    // the kernel caps the buffer at twice net.core.rmem_max: the log says what it is
    receiver.log.info({ address: a.address, port: a.port, rcvbuf: socket.getRecvBufferSize() }, 'statsd listening on UDP');
    return { address: a.address, port: a.port };
  }

  async listenUnix(path: string): Promise<void> {
    const { receiver } = this;
    const server = net.createServer((conn) => this.accept(conn));
    server.maxConnections = STATSD_MAX_CONNECTIONS;
    server.on('drop', () => {
      receiver.stats.refusedConnections++;
      receiver.warnOnce('connection-cap', { max: STATSD_MAX_CONNECTIONS }, 'statsd Unix connection refused: too many open');
    });
    await listenUnix(server, path, { option: '--statsd-socket' });
    server.on('error', (err) => receiver.log.error({ err }, 'statsd Unix socket error'));
    this.unix = server;
    receiver.log.info({ path }, 'statsd listening on a Unix stream socket');
  }

  /** Stops listening (the Unix socket file goes with its server) and drops the stream connections. */
  async close(): Promise<void> {
    const udp = this.udp;
    const unix = this.unix;
    this.udp = null;
    this.unix = null;
    const waits: Promise<void>[] = [];
    if (udp !== null) {
      waits.push(
        new Promise((resolve) => {
          try {
            udp.close(() => resolve());
          } catch {
            resolve(); // never bound, or already closed
          }
        }),
      );
    }
    if (unix !== null) {
      for (const conn of this.conns) conn.destroy();
      waits.push(new Promise((resolve) => unix.close(() => resolve())));
    }
    await Promise.all(waits);
  }

  private accept(conn: net.Socket): void {
    this.receiver.stats.connections++;
    this.conns.add(conn);
    const state: Conn = { pending: null, discarding: false };
    conn.on('data', (chunk: Buffer) => this.streamChunk(state, chunk));
    conn.on('end', () => {
      if (state.pending !== null && !state.discarding) this.receiver.ingestLines(state.pending);
      state.pending = null;
    });
    conn.on('error', (err) => this.receiver.log.debug({ err }, 'statsd Unix connection error'));
    conn.on('close', () => this.conns.delete(conn));
  }

  /** Newline framing: whole lines are ingested, the tail waits for the next chunk. */
  private streamChunk(state: Conn, chunk: Buffer): void {
    this.receiver.stats.bytes += chunk.length;
    let buf = chunk;
    if (state.discarding) {
      const nl = buf.indexOf(10);
      if (nl < 0) return;
      state.discarding = false;
      buf = buf.subarray(nl + 1);
    }
    if (state.pending !== null) {
      buf = Buffer.concat([state.pending, buf]);
      state.pending = null;
    }
    const last = buf.lastIndexOf(10);
    if (last >= 0) {
      this.receiver.ingestLines(buf.subarray(0, last + 1));
      buf = buf.subarray(last + 1);
    }
    if (buf.length > STATSD_LINE_MAX) {
      this.receiver.stats.dropped++;
      this.receiver.stats.droppedLongLines++;
      this.receiver.warnOnce('line-cap', { bytes: buf.length }, `statsd line over ${STATSD_LINE_MAX} bytes dropped`);
      state.discarding = true;
    } else if (buf.length > 0) {
      state.pending = Buffer.from(buf); // a copy: the chunk's memory is not held
    }
  }
}
