/**
 * Errors of the model carry the errno name the original API returned (-EEXIST, -ENOENT, -EPERM) or EINVAL
 * for input it would not have accepted, so the filesystem adapter and the producer protocol can pass the
 * same code on without translating messages.
 */
export type StatsErrorCode = 'EEXIST' | 'ENOENT' | 'EPERM' | 'EINVAL';

export class StatsError extends Error {
  override readonly name = 'StatsError';
  constructor(
    readonly code: StatsErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Longest source or value name, as in the original (a 100-byte buffer with its NUL). */
export const NAME_MAX = 99;

/**
 * Names every source's directory already shows: its snapshot files (SNAPSHOT_FILES, src/export/snapshot-files.ts). A source or
 * value of such a name would shadow the file, so it is refused wherever a name is made.
 */
export const RESERVED_NAMES: ReadonlySet<string> = new Set(['.snapshot', '.snapshot.json', '.snapshot.bin']);

/**
 * Names become path components, so they must be usable as one: not empty, not '.' or '..' or reserved, no
 * '/', no NUL and no control characters (they would corrupt `ls` output and line-based formats).
 */
export function validateName(name: string, what: string): void {
  const problem = nameProblem(name, what);
  if (problem !== null) throw new StatsError('EINVAL', problem);
}

/** Whether `name` can be a source's or value's name: validateName() as a test, for a caller that skips such names. */
export function isValidName(name: string): boolean {
  return nameProblem(name, 'a') === null;
}

/** Why `name` cannot be a path component (a message naming it as `what`), or null when it can. */
export function nameProblem(name: string, what: string): string | null {
  if (typeof name !== 'string' || name.length === 0) return `${what} name must be a non-empty string`;
  if (name.length > NAME_MAX) return `${what} name "${name.slice(0, 20)}…" is longer than ${NAME_MAX} characters`;
  if (name === '.' || name === '..') return `${what} name may not be "${name}"`;
  if (RESERVED_NAMES.has(name)) return `${what} name "${name}" is reserved for the snapshot file of every directory`;
  if (/[/\u0000-\u001f\u007f]/.test(name)) return `${what} name ${JSON.stringify(name)} contains '/' or a control character`;
  return null;
}
