/**
 * The update batch's values as the client keeps them: a value (number or bigint), updates not sent yet folded
 * into one (Op), and the walk over an UPDATE frame's entries that applies them to the mirrors or keeps them.
 */
import { HEADER_BYTES, UPDATE_ENTRY_BYTES, UpdateOp, wordValue } from '../protocol/protocol.js';

export type Value = number | bigint;

/** Updates to one value not yet sent, folded into one: SET v (then ADDs folded in) or ADD d. */
export interface Op {
  set: boolean;
  v: bigint;
}

export function fold(a: Op | undefined, set: boolean, v: bigint): Op {
  if (set) return { set: true, v };
  if (a === undefined) return { set: false, v };
  return { set: a.set, v: BigInt.asIntN(64, a.v + v) };
}

export function asValue(v: bigint): Value {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

export function checkValue(v: Value): Value {
  if (typeof v === 'bigint') return v;
  if (!Number.isSafeInteger(v)) throw new RangeError(`${v} is not a safe integer: pass 64-bit quantities as bigint`);
  return v;
}

/**
 * Calls `each` per entry of an UPDATE frame with its i64 field as a value (0 for OBSERVE, whose field is a
 * double: read it at `at + 8`).
 */
export function forEachUpdate(frame: Buffer, each: (group: number, index: number, op: number, value: Value, at: number) => void): void {
  const count = frame.readUInt32LE(HEADER_BYTES);
  for (let k = 0, at = HEADER_BYTES + 4; k < count; k++, at += UPDATE_ENTRY_BYTES) {
    const op = frame[at + 6];
    each(frame.readUInt32LE(at), frame.readUInt16LE(at + 4), op, op === UpdateOp.OBSERVE ? 0 : wordValue(frame.readUInt32LE(at + 8), frame.readUInt32LE(at + 12)), at);
  }
}
