/** Replies: OK, ERROR, the HELLO and VALUES replies; encoders for the server, decoders for the client. */
import { PROTOCOL_VERSION, ProtocolError, Reply } from './codes.js';
import { type Frame, PayloadReader, PayloadWriter, encodeFrame } from './frames.js';

// the payload of a reply that carries none
const EMPTY = Buffer.alloc(0);

// ---------------------------------------------------------------------------------------------------------
// Replies

export interface HelloReply {
  version: number;
  maxFrameBytes: number;
  maxSources: number;
  maxHandles: number;
  connection: number;
}

export function encodeOk(id: number, version = PROTOCOL_VERSION): Buffer {
  return encodeFrame(Reply.OK, id, EMPTY, version);
}

export function encodeHelloOk(id: number, hello: HelloReply): Buffer {
  return new PayloadWriter()
    .u8(hello.version)
    .u32(hello.maxFrameBytes)
    .u32(hello.maxSources)
    .u32(hello.maxHandles)
    .u32(hello.connection)
    .frame(Reply.OK, id, hello.version);
}

export function encodeError(id: number, code: string, message: string, version = PROTOCOL_VERSION): Buffer {
  // messages are for people: keep them short enough that a reply never nears a frame limit
  const text = message.length > 1000 ? message.slice(0, 1000) + '…' : message;
  return new PayloadWriter().str(code).str(text).frame(Reply.ERROR, id, version);
}

export interface DecodedReply {
  id: number;
  ok: boolean;
  code: string;
  message: string;
  /** The OK payload (HELLO's parameters), empty otherwise. */
  payload: Buffer;
}

export function decodeReply(frame: Frame): DecodedReply {
  if (frame.op === Reply.OK) {
    return { id: frame.id, ok: true, code: '', message: '', payload: frame.buf.subarray(frame.start, frame.end) };
  }
  if (frame.op === Reply.ERROR) {
    const r = new PayloadReader(frame.buf, frame.start, frame.end);
    const code = r.str('the error code');
    const message = r.str('the error message');
    return { id: frame.id, ok: false, code, message, payload: EMPTY };
  }
  throw new ProtocolError('EPROTO', `unexpected reply opcode 0x${frame.op.toString(16)}`, true);
}

/** The VALUES reply (version 2): whether an existing group was adopted, and then its current values. */
export interface ValuesReply {
  adopted: boolean;
  /** The stored values of an adopted group of values, in definition order (empty otherwise). */
  values: bigint[];
}

export function encodeValuesOk(id: number, reply: ValuesReply, version = PROTOCOL_VERSION): Buffer {
  const w = new PayloadWriter().u8(reply.adopted ? 1 : 0).u16(reply.values.length);
  for (const v of reply.values) w.i64(v);
  return w.frame(Reply.OK, id, version);
}

export function decodeValuesOk(payload: Buffer): ValuesReply {
  const r = new PayloadReader(payload, 0, payload.length);
  const adopted = r.u8('adopted') !== 0;
  const count = r.u16('value count');
  const values: bigint[] = [];
  for (let i = 0; i < count; i++) values.push(r.i64());
  r.done('VALUES reply');
  return { adopted, values };
}

export function decodeHelloOk(payload: Buffer): HelloReply {
  const r = new PayloadReader(payload, 0, payload.length);
  return { version: r.u8(), maxFrameBytes: r.u32(), maxSources: r.u32(), maxHandles: r.u32(), connection: r.u32() };
}
