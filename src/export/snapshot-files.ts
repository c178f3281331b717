import type { SnapshotRenderer } from '../model/index.js';
import { renderBinaryStream } from './binary.js';
import { gatherChunks } from './common.js';
import { renderJsonChunks } from './json.js';
import { renderTextChunks } from './text.js';

/**
 * In every directory, hidden from ls: the subtree captured at one instant when the file is opened, as
 * "path value" lines, as self-describing JSON, or in the binary layout of docs/snapshot-formats.md.
 */
export const SNAPSHOT_FILES: Readonly<Record<string, SnapshotRenderer>> = Object.freeze({
  // chunks, not joined: the binding copies them in pieces, so even 200 MB of JSON holds the loop briefly
  '.snapshot': (snapshot) => gatherChunks(renderTextChunks(snapshot)),
  '.snapshot.json': (snapshot) => gatherChunks(renderJsonChunks(snapshot)),
  '.snapshot.bin': renderBinaryStream,
});
