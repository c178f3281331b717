/**
 * The journal: what changed since the last checkpoint, appended as records before a producer's change is
 * acknowledged (and within the event-loop turn for StatsD). A record is written with one write(2): it is in
 * the kernel's page cache when the acknowledgement leaves, so a kill -9 or a crash of the daemon loses none;
 * the keeper fdatasyncs it every second, which bounds what a power loss or an OS crash can lose.
 *
 * Files `statsfs.journal.<epoch>`: the checkpoint names the epoch its journal starts at; older files go once
 * it is durable. A record: u32 length, u32 CRC-32 of the payload, payload (JSON [part, data]). Reading stops
 * at the first record that is cut short or fails its checksum (a torn tail).
 */
import { closeSync, fdatasync, openSync, readdirSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from './codec.js';

export const JOURNAL_PREFIX = 'statsfs.journal.';

/** The journal files in `dir`, by epoch, oldest first. */
export function journalFiles(dir: string): { epoch: number; path: string }[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith(JOURNAL_PREFIX) && /^\d+$/.test(f.slice(JOURNAL_PREFIX.length)))
    .map((f) => ({ epoch: Number(f.slice(JOURNAL_PREFIX.length)), path: join(dir, f) }))
    .sort((a, b) => a.epoch - b.epoch);
}

/** The records of a journal file, in order, up to the first one that is torn (its count in `torn`: 0 or 1). */
export function readJournal(path: string): { records: [string, unknown][]; torn: number } {
  const buf = readFileSync(path);
  const records: [string, unknown][] = [];
  let at = 0;
  while (at < buf.length) {
    if (at + 8 > buf.length) return { records, torn: 1 };
    const length = buf.readUInt32LE(at);
    const payload = buf.subarray(at + 8, at + 8 + length);
    if (payload.length !== length || crc32(payload) !== buf.readUInt32LE(at + 4)) return { records, torn: 1 };
    try {
      records.push(JSON.parse(payload.toString('utf8')) as [string, unknown]);
    } catch {
      return { records, torn: 1 };
    }
    at += 8 + length;
  }
  return { records, torn: 0 };
}

/** Encodes one record. */
export function journalRecord(part: string, data: unknown): Buffer {
  const body = JSON.stringify([part, data]);
  const length = Buffer.byteLength(body);
  const buf = Buffer.allocUnsafe(8 + length);
  buf.write(body, 8, 'utf8');
  buf.writeUInt32LE(length, 0);
  buf.writeUInt32LE(crc32(buf.subarray(8)), 4);
  return buf;
}

/** An open journal file, appended to synchronously. */
export class JournalFile {
  private fd: number;
  bytes = 0;
  /** Bytes made durable by the last fdatasync (sync()). */
  private syncedBytes = 0;
  private syncing: Promise<boolean> | null = null;
  private closeWhenSynced = false;

  constructor(
    readonly dir: string,
    readonly epoch: number,
  ) {
    this.fd = openSync(join(dir, `${JOURNAL_PREFIX}${epoch}`), 'a', 0o600);
  }

  append(record: Buffer): void {
    let off = 0;
    while (off < record.length) off += writeSync(this.fd, record, off);
    this.bytes += record.length;
  }

  /**
   * fdatasync off the event loop when something was appended since the last one; resolves true once what
   * was appended before the call is durable (false: nothing to do, or a sync already under way).
   */
  sync(): Promise<boolean> {
    if (this.syncing !== null || this.fd < 0 || this.bytes === this.syncedBytes) return Promise.resolve(false);
    const upTo = this.bytes;
    this.syncing = new Promise<boolean>((resolve) =>
      fdatasync(this.fd, (err) => {
        this.syncing = null;
        if (err === null) this.syncedBytes = upTo;
        if (this.closeWhenSynced) this.close();
        resolve(err === null);
      }),
    );
    return this.syncing;
  }

  /** Closes the file (once a sync under way has ended: its descriptor must not be reused meanwhile). */
  close(): void {
    if (this.syncing !== null) {
      this.closeWhenSynced = true;
      return;
    }
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}

/** Removes the journal files older than `epoch` (a durable checkpoint holds what they held). */
export function dropJournalsBefore(dir: string, epoch: number): void {
  for (const f of journalFiles(dir)) {
    if (f.epoch >= epoch) continue;
    try {
      unlinkSync(f.path);
    } catch {
      // gone already
    }
  }
}
