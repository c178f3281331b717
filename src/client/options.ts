/** The options of connect() and the value specs of define(): what the caller gives the client, checked here. */
import { defaultSocketPath, type WireType, type WireValueSpec } from '../protocol/protocol.js';
import type { StatsClientError } from './errors.js';

/** One value of a definition, as the daemon's Schema takes it (without custom types or show functions). */
export interface ClientValueSpec extends Omit<WireValueSpec, 'type'> {
  /** Default 'u64'. */
  type?: WireType;
}

export interface ConnectOptions {
  /** The daemon's socket, as `statsfs mount --socket` (default: defaultSocketPath()). */
  socket?: string;
  /** @deprecated the old name of `socket`. */
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

const OPTIONS: ReadonlySet<string> = new Set(['socket', 'path', 'owner', 'keep', 'flushIntervalMs', 'maxBatch', 'batch', 'reconnect', 'onError']);

/** The socket path of `options`; TypeError for an unknown option or two different socket paths. */
export function checkOptions(options: ConnectOptions): string {
  if (typeof options !== 'object' || options === null) throw new TypeError('connect(): options must be an object');
  for (const key of Object.keys(options)) {
    if (!OPTIONS.has(key)) throw new TypeError(`connect(): unknown option "${key}" (known: ${[...OPTIONS].join(', ')})`);
  }
  if (options.socket !== undefined && options.path !== undefined && options.socket !== options.path) {
    throw new TypeError('connect(): give the socket once, as `socket` (`path` is its deprecated alias)');
  }
  const socket = options.socket ?? options.path;
  if (socket !== undefined && typeof socket !== 'string') throw new TypeError('connect(): `socket` must be a path');
  return socket ?? defaultSocketPath();
}
