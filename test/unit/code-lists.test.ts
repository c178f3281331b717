/**
 * The value types and aggregations have one definition, the model's (TYPE_CODES in model/types.ts,
 * AGGREGATIONS in model/schema.ts): a name's position is its code. The producer protocol and the client's
 * snapshot reader depend on nothing of the model (docs/architecture.md), so they keep copies; this checks
 * the copies, and the reader's binary layout against the writer's.
 */
import { describe, expect, it } from 'vitest';
import { BINARY_FORMAT } from '../../src/client/snapshot-reader.js';
import { BINARY_LAYOUT } from '../../src/export/binary.js';
import { AGGREGATIONS } from '../../src/model/schema.js';
import { HISTOGRAM_TYPE, TYPE_CODES, TYPES, type StandardTypeName } from '../../src/model/types.js';
import { AGGR_CODES, isSignedType, TYPE_BITS, TYPE_CODES as WIRE_TYPE_CODES } from '../../src/protocol/protocol.js';

const modelBits = TYPE_CODES.map((name) => (name === 'histogram' ? HISTOGRAM_TYPE : TYPES[name as StandardTypeName]).bits);
const modelSigned = TYPE_CODES.map((name) => (name === 'histogram' ? HISTOGRAM_TYPE : TYPES[name as StandardTypeName]).signed);

describe('type and aggregation codes', () => {
  it('the model lists every standard type, then histogram', () => {
    expect(TYPE_CODES.filter((t) => t !== 'histogram')).toEqual(Object.keys(TYPES));
    expect(TYPE_CODES.at(-1)).toBe('histogram');
  });

  it('the protocol (and so the client) has the model codes, widths and signedness', () => {
    expect(WIRE_TYPE_CODES).toEqual(TYPE_CODES);
    expect(TYPE_BITS).toEqual(modelBits);
    expect(WIRE_TYPE_CODES.map(isSignedType)).toEqual(modelSigned);
    expect(AGGR_CODES).toEqual(AGGREGATIONS);
  });

  it("the snapshot reader has the model's codes and the writer's layout", () => {
    const { typeNames, typeBits, aggregations, ...layout } = BINARY_FORMAT;
    expect(typeNames).toEqual(TYPE_CODES);
    expect(typeBits).toEqual(modelBits);
    expect(aggregations).toEqual(AGGREGATIONS);
    expect(layout).toEqual(BINARY_LAYOUT);
  });
});
