/**
 * The producer wire protocol: framing and the encoding of every request and reply. Pure functions and
 * small stateful codecs over buffers, no I/O; docs/protocol.md is the normative description. This module
 * is its entry: codes.ts (versions, opcodes, codes), frames.ts (framing, payloads, 64-bit values),
 * requests.ts (requests and their decoding), request-encoders.ts, replies.ts.
 *
 * Why binary and length-prefixed rather than a text line protocol: the target is a million updates a
 * second from one producer. A text line needs a scan for the newline, a split, a lookup of the value by
 * name and a decimal parse (with BigInt for anything beyond 2^53) per update. Here an update is a fixed
 * 16-byte record (u32 group handle, u16 value index, u8 op, u8 reserved, i64 value, little-endian) inside
 * one UPDATE frame carrying any number of them: the server reads four integers per update at fixed offsets
 * and never looks at a name after the definitions, which are sent once and referred to by small integer
 * handles the producer chooses itself (so definitions, sources and updates can be pipelined without
 * waiting for replies). A 4-byte length prefix makes framing one read: no escaping, no scanning, and a
 * frame that claims more than the limit is refused before a byte of it is buffered.
 *
 * Frame (all integers little-endian):
 *
 *   u32 length    bytes after this field (8 + payload)
 *   u8  version   PROTOCOL_VERSION (the negotiated one; HELLO always carries 1)
 *   u8  opcode    Op.* for requests, Reply.OK / Reply.ERROR for replies
 *   u16 flags     0 in version 1
 *   u32 id        chosen by the producer, echoed in the reply
 *   ...           payload
 */
export * from './codes.js';
export * from './frames.js';
export * from './requests.js';
export * from './request-encoders.js';
export * from './replies.js';
