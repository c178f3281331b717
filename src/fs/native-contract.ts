/**
 * The contract with the native binding, seen from TypeScript. Its one definition is in C
 * (native/contract.h): the binding exports every code, flag and layout as `contract`, and the
 * wrapper (native.ts) reads the numbers from there. What TypeScript cannot read at run time are the
 * names it is written against and the arguments each event carries; they are declared here and
 * {@link checkContract} compares them with the binding's when it is loaded, so that a binding built
 * from other sources fails at once, saying what differs, rather than answering the wrong request.
 */
/** Request kinds counted by the session's statistics, in the binding's order (STATSFS_OPS). */
export const OP_NAMES = [
  'lookup', 'forget', 'getattr', 'setattr', 'open', 'read', 'write', 'flush',
  'release', 'opendir', 'readdir', 'releasedir', 'statfs', 'other',
] as const;
export type OpName = (typeof OP_NAMES)[number];

/** The statistics after the per-kind request and error counters (STATSFS_GAUGES). */
export const GAUGE_NAMES = ['bytesRead', 'openFiles', 'openDirs', 'inFlight', 'snapshotBytes', 'overBudget'] as const;
export type GaugeName = (typeof GAUGE_NAMES)[number];

/**
 * Each event the binding dispatches, with the arguments after (event, id) as "name:type"
 * (STATSFS_EVENTS). The handler types of native.ts are derived from these lists.
 */
export const EVENT_ARGS = {
  lookup: ['parent:number', 'name:string'],
  getattr: ['ino:number'],
  setattr: ['ino:number', 'valid:number', 'size:number', 'mode:number', 'uid:number', 'gid:number'],
  opendir: ['ino:number'],
  open: ['ino:number', 'flags:number', 'uid:number'],
  write: ['ino:number', 'data:Buffer', 'offset:number', 'accepted:number'],
  forget: ['pairs:Float64Array'],
  ended: [],
  log: ['level:number', 'line:string'],
  sent: ['mark:number'],
} as const;
export type EventName = keyof typeof EVENT_ARGS;

interface ArgTypes {
  number: number;
  string: string;
  Buffer: Buffer;
  Float64Array: Float64Array;
}
type ArgOf<S> = S extends `${string}:${infer T extends keyof ArgTypes}` ? ArgTypes[T] : never;
type ArgsOf<T extends readonly string[]> = { -readonly [I in keyof T]: ArgOf<T[I]> };
/** The arguments of each event after (event, id), typed from EVENT_ARGS. */
export type EventArgs = { [K in EventName]: ArgsOf<(typeof EVENT_ARGS)[K]> };

/** Indices into the attributes Float64Array of replyEntry, replyAttr and serveStored (STATSFS_ATTR). */
export const ATTR_FIELDS = ['ino', 'mode', 'nlink', 'size', 'uid', 'gid', 'mtimeMs', 'ctimeMs', 'atimeMs'] as const;
/** Indices into replyOpendir's meta Float64Array (STATSFS_DIR_META). */
export const DIR_META_FIELDS = ['self', 'parent', 'uid', 'gid', 'entryTimeout', 'attrTimeout', 'cache'] as const;
/** The values of meta[dirMeta.cache] (STATSFS_DIR_CACHE): DirListing.cache. */
export const DIR_CACHE_NAMES = ['none', 'fresh', 'keep'] as const;
/** libfuse's FUSE_SET_ATTR_* bits in the `valid` argument of setattr (STATSFS_SETATTR). */
export const SETATTR_BITS = ['mode', 'uid', 'gid', 'size', 'atime', 'mtime', 'atimeNow', 'mtimeNow'] as const;
/** Flags of the binding's mount() (STATSFS_MOUNT_FLAGS). */
export const MOUNT_FLAGS = ['debug', 'forget'] as const;

/**
 * How the value arena (SlotArena, src/model/arena.ts) lays out its words, which the session thread
 * reads while the JS thread writes (STATSFS_ARENA): word `sequenceWord` is the write sequence, slot n
 * the words wordsPerSlot * n (low half) and the next (high half). Checked equal to the binding's, and
 * to SlotArena's by test/native-contract.test.ts. This module imports nothing, so that the wrapper
 * can be used on its own.
 */
export const ARENA_LAYOUT = { sequenceWord: 0, wordsPerSlot: 2, firstSlot: 1 } as const;

type Layout<F extends string> = Readonly<Record<F | 'length', number>>;
type Bits<F extends string> = Readonly<Record<F, number>>;

/** The binding's `contract` export, once checked. */
export interface Contract {
  readonly ops: readonly OpName[];
  /** Where each statistic sits in stats(h): requests and errors start blocks of OP_NAMES.length. */
  readonly stats: Layout<'requests' | 'errors' | GaugeName>;
  readonly events: Readonly<Record<EventName, { readonly code: number; readonly args: string }>> & { readonly length: number };
  readonly mountFlags: Bits<(typeof MOUNT_FLAGS)[number]>;
  readonly attr: Layout<(typeof ATTR_FIELDS)[number]>;
  readonly dirMeta: Layout<(typeof DIR_META_FIELDS)[number]>;
  readonly dirCache: Layout<(typeof DIR_CACHE_NAMES)[number]>;
  readonly setattr: Bits<(typeof SETATTR_BITS)[number]>;
  readonly arena: Readonly<Record<keyof typeof ARENA_LAYOUT, number>>;
}

/** Thrown when the binding does not match this file; the message lists every difference. */
export class ContractError extends Error {
  readonly code = 'ENOFUSE';
}

const isIndex = (v: unknown, below: number): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) < below;
const isBit = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0 && ((v as number) & ((v as number) - 1)) === 0;
const show = (v: unknown): string => (typeof v === 'string' ? JSON.stringify(v) : String(v));

/** Collects what differs between the binding's contract and this file's expectations. */
class Differences {
  readonly found: string[] = [];

  /** `v` as an object, or undefined (a difference) when it is none: then its fields go unchecked. */
  object(path: string, v: unknown): Record<string, unknown> | undefined {
    if (typeof v === 'object' && v !== null) return v as Record<string, unknown>;
    this.found.push(`${path} is missing`);
    return undefined;
  }

  /** Names mapped to indices into an array of `length`: each once, every index used. */
  layout(path: string, v: unknown, names: readonly string[]): void {
    const o = this.object(path, v);
    if (!o) return;
    if (o.length !== names.length) this.found.push(`${path}.length is ${show(o.length)}, expected ${names.length}`);
    this.distinct(path, names, (name) => (isIndex(o[name], names.length) ? (o[name] as number) : undefined), 'an index below length');
  }

  /** Names mapped to distinct single bits. */
  bits(path: string, v: unknown, names: readonly string[]): void {
    const o = this.object(path, v);
    if (o) this.distinct(path, names, (name) => (isBit(o[name]) ? (o[name] as number) : undefined), 'a single bit');
  }

  distinct(path: string, names: readonly string[], value: (name: string) => number | undefined, what: string): void {
    const seen = new Map<number, string>();
    for (const name of names) {
      const n = value(name);
      if (n === undefined) this.found.push(`${path}.${name} is not ${what}`);
      else if (seen.has(n)) this.found.push(`${path}.${name} and ${path}.${seen.get(n)} are both ${n}`);
      else seen.set(n, name);
    }
  }

  extra(path: string, o: Record<string, unknown>, names: readonly string[]): void {
    for (const key of Object.keys(o)) {
      if (key !== 'length' && !names.includes(key)) this.found.push(`${path}.${key} is not known here`);
    }
  }

  stats(v: unknown, ops: number): void {
    const o = this.object('stats', v);
    if (!o) return;
    const length = 2 * ops + GAUGE_NAMES.length;
    if (o.length !== length) this.found.push(`stats.length is ${show(o.length)}, expected ${length}`);
    // every statistic in exactly one place: requests and errors as blocks of `ops`
    const owner: (string | undefined)[] = new Array(length);
    const claim = (name: string, span: number): void => {
      const at = o[name];
      if (!isIndex(at, length - span + 1)) return void this.found.push(`stats.${name} is not an index in the statistics`);
      for (let i = at; i < at + span; i++) {
        if (owner[i] !== undefined) this.found.push(`stats.${name} overlaps stats.${owner[i]}`);
        owner[i] = name;
      }
    };
    claim('requests', ops);
    claim('errors', ops);
    for (const name of GAUGE_NAMES) claim(name, 1);
  }

  events(v: unknown): void {
    const o = this.object('events', v);
    if (!o) return;
    const names = Object.keys(EVENT_ARGS) as EventName[];
    if (o.length !== names.length) this.found.push(`events.length is ${show(o.length)}, expected ${names.length}`);
    this.extra('events', o, names);
    this.distinct('events', names, (name) => {
      const code = (o[name] as { code?: unknown } | undefined)?.code;
      return isIndex(code, names.length) ? code : undefined;
    }, 'an event with a code below events.length');
    for (const name of names) {
      const args = (o[name] as { args?: unknown } | undefined)?.args;
      const expected = EVENT_ARGS[name].join(' ');
      if (o[name] !== undefined && args !== expected) {
        this.found.push(`events.${name} carries (${show(args)}), expected (${expected})`);
      }
    }
  }
}

/**
 * Checks the binding's `contract` export against this file and returns it, or throws a
 * {@link ContractError} listing every difference (a binding built from other sources: rebuild it).
 */
export function checkContract(exported: unknown, file = 'statsfs_fuse.node'): Contract {
  const d = new Differences();
  const c = d.object('contract', exported);
  if (!c) throw new ContractError(`${file} exports no contract: it was built from other sources; rebuild it with npm run build:native`);
  const ops = c.ops;
  if (!Array.isArray(ops) || ops.length !== OP_NAMES.length || ops.some((op, i) => op !== OP_NAMES[i])) {
    d.found.push(`ops is ${JSON.stringify(ops)}, expected ${JSON.stringify(OP_NAMES)}`);
  }
  d.stats(c.stats, OP_NAMES.length);
  d.events(c.events);
  d.bits('mountFlags', c.mountFlags, MOUNT_FLAGS);
  d.layout('attr', c.attr, ATTR_FIELDS);
  d.layout('dirMeta', c.dirMeta, DIR_META_FIELDS);
  d.layout('dirCache', c.dirCache, DIR_CACHE_NAMES);
  d.bits('setattr', c.setattr, SETATTR_BITS);
  const arena = d.object('arena', c.arena) ?? {};
  for (const [name, want] of Object.entries(ARENA_LAYOUT)) {
    if (c.arena && arena[name] !== want) d.found.push(`arena.${name} is ${show(arena[name])}, expected ${want}`);
  }
  if (d.found.length > 0) {
    throw new ContractError(
      `${file} does not match src/fs/native-contract.ts (rebuild it with npm run build:native): ${d.found.join('; ')}`,
    );
  }
  return exported as Contract;
}
