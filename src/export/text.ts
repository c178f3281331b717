/**
 * `.snapshot`: every value of a snapshot as one line, `relative/path value\n`, in capture order (a source's
 * values, then its subordinates depth-first). The value is what reading the file shows, without its
 * newline: the show() text or the number ("%llu", or "%lld" for signed types).
 *
 * Escapes (as in /proc/self/mounts): in the path, space, backslash and control characters are written as
 * three-digit octal escapes (`\040`, `\134`, `\012`); in the value, backslash and control characters are
 * (a show() text "a\nb" is written `a\012b`); spaces in a value are kept. So a line splits at its first
 * space, and unescaping `\ooo` in both parts gives the path and the text back. Values whose getter threw
 * are not in the snapshot (Snapshot.failures; the JSON format lists them); a show() that throws is replaced
 * by the number.
 *
 * A histogram value is a directory in the filesystem: it is written as one line per file of it
 * (`latency/count 12`, … `latency/p99 4.8`, `latency/buckets 0 1\0121.0219 3`), as `cat` shows them.
 */
import { HISTOGRAM_FILES, histogramFileName, histogramFileText } from '../model/histogram.js';
import type { Snapshot } from '../model/snapshot.js';
import type { ValueDef } from '../model/schema.js';
import {
  BATCH,
  encodeDirs,
  escapePath,
  escapeValue,
  renderStream,
  renderSync,
  writeWord,
  type ByteWriter,
  type SliceOptions,
} from './common.js';

/** The whole text in one go (a million values take a few tenths of a second: use the sliced forms there). */
export function renderText(snapshot: Snapshot): Buffer {
  return renderSync((out) => textWork(snapshot, out));
}

/** The text in slices of at most maxSliceMs (default 10), yielding to the event loop between them. */
export function renderTextChunks(snapshot: Snapshot, options: SliceOptions = {}): AsyncGenerator<Buffer, void> {
  return renderStream((out) => textWork(snapshot, out), options);
}

const NEWLINE = 10;

/** Writes the lines into `out`, yielding after every batch of values. */
export function* textWork(snapshot: Snapshot, out: ByteWriter): Generator<void, void> {
  // Each directory prefix ("dir/") and each name ("name ") is escaped and encoded once.
  const prefixes = yield* encodeDirs(snapshot, { trailingSlash: true, escape: escapePath });
  const pool = prefixes.bytes;
  const starts = prefixes.starts;
  const names = new Map<ValueDef, Buffer>();
  const count = snapshot.count;
  for (let from = 0; from < count; from += BATCH) {
    const to = Math.min(count, from + BATCH);
    for (let i = from; i < to; i++) {
      const def = snapshot.def(i);
      let name = names.get(def);
      if (name === undefined) {
        name = Buffer.from(escapePath(def.name) + ' ', 'utf8');
        names.set(def, name);
      }
      const dir = snapshot.dirNumber(i);
      const histogram = snapshot.histogram(i);
      if (histogram !== null) {
        const prefix = pool.toString('utf8', starts[dir], starts[dir + 1]) + escapePath(def.name) + '/';
        for (const file of HISTOGRAM_FILES) out.string(`${prefix}${histogramFileName(file, def.suffix)} ${escapeValue(histogramFileText(histogram, file))}\n`);
        continue;
      }
      out.ensure(starts[dir + 1] - starts[dir] + name.length + 22);
      out.range(pool, starts[dir], starts[dir + 1]);
      out.bytes(name);
      const text = def.show === null ? null : shownText(snapshot, i);
      if (text === null) writeWord(out, snapshot.lo(i), snapshot.hi(i), def.type.signed);
      else out.string(text);
      out.ensure(1);
      out.buf[out.pos++] = NEWLINE;
    }
    yield;
  }
}

/** The escaped show() text; null when show() throws (the number is written instead). */
function shownText(snapshot: Snapshot, i: number): string | null {
  try {
    return escapeValue(snapshot.text(i));
  } catch {
    return null;
  }
}
