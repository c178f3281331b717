/**
 * Who owns what on the producer socket: an owner (a name given in HELLO, or one anonymous connection) and
 * the nodes it created, a connection's handles and how they are bound and freed, and what a value costs
 * against an owner's cap.
 */
import type net from 'node:net';
import type { Schema, Source, ValueGroup } from '../model/index.js';
import type { FrameReader } from '../protocol/protocol.js';

/** What a named producer (or an anonymous connection) owns. */
export class Owner {
  readonly sources = new Set<Source>();
  readonly groups = new Set<ValueGroup>();
  readonly conns = new Set<Connection>();
  valueSlots = 0;
  constructor(readonly name: string | null) {}

  get label(): string {
    return this.name ?? 'an anonymous producer';
  }
}

/** One producer connection: its framing and timers, its owner and the handles it bound. */
export class Connection {
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
  /** Reading is paused until the producer reads its replies (a 'drain' listener is set). */
  awaitingDrain = false;

  constructor(
    readonly id: number,
    readonly socket: net.Socket,
    readonly reader: FrameReader,
  ) {}

  get handleCount(): number {
    return this.sources.size + this.schemas.size + this.groups.size;
  }
}

/** Binds `handle` to `target` in `map`, recording it in `back` (target -> its handles). */
export function bindHandle<T>(map: Map<number, T>, back: Map<T, number[]>, handle: number, target: T): void {
  const old = map.get(handle);
  if (old !== undefined) unbindHandle(map, back, handle, old);
  map.set(handle, target);
  const handles = back.get(target);
  if (handles === undefined) back.set(target, [handle]);
  else handles.push(handle);
}

export function unbindHandle<T>(map: Map<number, T>, back: Map<T, number[]>, handle: number, target: T): void {
  map.delete(handle);
  const handles = back.get(target);
  if (handles === undefined) return;
  const i = handles.indexOf(handle);
  if (i >= 0) handles.splice(i, 1);
  if (handles.length === 0) back.delete(target);
}

/** Frees every handle bound to `target` (it was removed). */
export function unbindTarget<T>(map: Map<number, T>, back: Map<T, number[]>, target: T): void {
  const handles = back.get(target);
  if (handles === undefined) return;
  back.delete(target);
  for (const h of handles) map.delete(h);
}

/**
 * What one histogram counts for against the values cap: its buckets take up to 16 KiB (2,048 u64 counts),
 * typically 3 KiB, where a value takes 8 bytes; so the default cap holds at most 15,625 histograms of one
 * owner (256 MiB at worst) instead of a million (16 GiB).
 */
export const HISTOGRAM_VALUE_COST = 64;

/** Values a group of this schema counts for against the values cap. */
export function valueCost(schema: Schema): number {
  return schema.hasHistograms ? schema.size + schema.defs.filter((d) => d.histogram).length * (HISTOGRAM_VALUE_COST - 1) : schema.size;
}
