import { word } from './word.js';

/**
 * Every value type by name; a type's position is its code wherever one is written: the producer protocol
 * (src/protocol/, and the client that shares it) and `.snapshot.bin` (export/binary.ts, and the client's
 * reader). The protocol and the reader depend on nothing of the model, so they keep lists of their own,
 * which a unit test (test/unit/code-lists.test.ts) checks against this one.
 */
export const TYPE_CODES = ['u8', 's8', 'u16', 's16', 'u32', 's32', 'u64', 's64', 'bool', 'histogram'] as const;

/** The original's value types. Narrow types wrap like the C type; signed ones are kept sign-extended. */
export type StandardTypeName = Exclude<(typeof TYPE_CODES)[number], 'histogram'>;

/**
 * A custom type reads its value from the group's base (the original's custom get/clear/sign): use it for
 * values that live elsewhere, such as a kernel counter parsed at read time.
 */
export interface CustomType<Base = unknown> {
  readonly name: string;
  readonly signed: boolean;
  get(base: Base, name: string): bigint | number | boolean;
  /** Without clear the value is read-only (0444) and clearing it is EPERM. */
  clear?(base: Base, name: string): void;
}

export interface ValueType {
  readonly name: string;
  readonly signed: boolean;
  /** 1 for bool, else the width in bits; 64 for custom types. */
  readonly bits: number;
  readonly custom: CustomType<any> | null; // eslint-disable-line @typescript-eslint/no-explicit-any
}

function standard(name: StandardTypeName, bits: number, signed: boolean): ValueType {
  return Object.freeze({ name, bits, signed, custom: null });
}

export const TYPES: Readonly<Record<StandardTypeName, ValueType>> = Object.freeze({
  u8: standard('u8', 8, false),
  s8: standard('s8', 8, true),
  u16: standard('u16', 16, false),
  s16: standard('s16', 16, true),
  u32: standard('u32', 32, false),
  s32: standard('s32', 32, true),
  u64: standard('u64', 64, false),
  s64: standard('s64', 64, true),
  bool: standard('bool', 1, false),
});

/**
 * A distribution (see Histogram): its word is the observation count; the buckets live beside the arena.
 * Not a StandardTypeName: it has no C type and nothing narrows to it.
 */
export const HISTOGRAM_TYPE: ValueType = Object.freeze({ name: 'histogram', bits: 64, signed: false, custom: null });

export function customType(custom: CustomType<any>): ValueType { // eslint-disable-line @typescript-eslint/no-explicit-any
  return Object.freeze({ name: custom.name, bits: 64, signed: custom.signed, custom });
}

/**
 * Truncates the word in `word` to the type's width, as storing into the C type would, and sign-extends it
 * back to 64 bits for signed types, which is what the original read back for aggregation.
 */
export function narrow(type: ValueType): void {
  switch (type.bits) {
    case 64:
      return;
    case 1:
      word.lo = word.lo !== 0 || word.hi !== 0 ? 1 : 0;
      word.hi = 0;
      return;
    case 32:
      word.hi = type.signed && word.lo >= 0x80000000 ? 0xffffffff : 0;
      return;
    default: {
      const shift = 32 - type.bits;
      if (type.signed) {
        const v = (word.lo << shift) >> shift;
        word.lo = v >>> 0;
        word.hi = v < 0 ? 0xffffffff : 0;
      } else {
        word.lo = (word.lo << shift) >>> shift;
        word.hi = 0;
      }
    }
  }
}
