/**
 * The state file's format: a fixed header (magic, format version, body length, CRC-32 of the body) and a
 * JSON body. A file cut short, or changed by a single bit, fails the length or the checksum and is
 * refused whole: nothing of a state that cannot be trusted is loaded.
 */

/** "SFSSTATE": what every state file starts with. */
const MAGIC = Buffer.from('SFSSTATE', 'latin1');
/** The format this version writes and reads; a file of a higher one is refused (written by a newer statsfs). */
export const STATE_FORMAT = 1;
export const HEADER_BYTES = MAGIC.length + 12;

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as zlib and gzip compute it; Node 20's zlib has no crc32()). */
export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Encodes a state document: header and JSON body. */
export function encodeState(doc: object): Buffer {
  const body = Buffer.from(JSON.stringify(doc), 'utf8');
  const header = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(header, 0);
  header.writeUInt32LE(STATE_FORMAT, MAGIC.length);
  header.writeUInt32LE(body.length, MAGIC.length + 4);
  header.writeUInt32LE(crc32(body), MAGIC.length + 8);
  return Buffer.concat([header, body]);
}

export type Decoded =
  | { ok: true; doc: Record<string, unknown> }
  /** corrupt: not a state file, cut short or changed; newer: a later format, refused rather than lost. */
  | { ok: false; problem: 'corrupt' | 'newer'; message: string };

export function decodeState(buf: Buffer): Decoded {
  const corrupt = (message: string): Decoded => ({ ok: false, problem: 'corrupt', message });
  if (buf.length < HEADER_BYTES || !buf.subarray(0, MAGIC.length).equals(MAGIC)) return corrupt('not a statsfs state file (no SFSSTATE header)');
  const format = buf.readUInt32LE(MAGIC.length);
  const length = buf.readUInt32LE(MAGIC.length + 4);
  const whole = buf.length === HEADER_BYTES + length;
  if (format === 0 || format >= 0x10000) return corrupt(`format version ${format}`);
  // newer only when the rest of the header holds too: garbage after the magic is corrupt, not newer
  if (format > STATE_FORMAT && whole) return { ok: false, problem: 'newer', message: `written by a newer statsfs (state format ${format}; this version reads format ${STATE_FORMAT})` };
  if (!whole) return corrupt(`${buf.length - HEADER_BYTES} bytes of body where the header says ${length} (cut short or extended)`);
  const body = buf.subarray(HEADER_BYTES);
  if (crc32(body) !== buf.readUInt32LE(MAGIC.length + 8)) return corrupt('checksum mismatch');
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch (err) {
    return corrupt(`body is not JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return corrupt('body is not an object');
  return { ok: true, doc: doc as Record<string, unknown> };
}
