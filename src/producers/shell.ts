/**
 * One-line commands for shell scripts: `statsfs set|add|rm …` publish into a running daemon.
 *
 * A shell command's connection ends as soon as the command does, so what it creates must outlive it:
 * these commands connect as the named owner "shell" (or --owner <name>) with KEEP. Everything created by
 * shell commands therefore belongs to that owner and stays until `statsfs rm` removes it (or the daemon
 * stops); other producers cannot change it, and shell commands cannot change theirs (EPERM).
 *
 *   statsfs set <path/value> <integer> [--type u64] [--floating] [--unit U] [--description D] [--owner shell]
 *   statsfs add <path/value> <integer> [same options]
 *   statsfs rm <path> [--owner shell]
 *
 * `set` and `add` create the source path and the value when missing (type u64, a cumulative count,
 * unless --type/--floating say otherwise); given again for an existing value they must describe it the
 * same way, else EEXIST. Values are decimal (optionally negative) or 0x hexadecimal, exact to 64 bits.
 */
import { connect, StatsClientError, type ClientValueSpec, type ValueTypeName } from '../client/index.js';
import { TYPE_CODES } from './protocol.js';

export const SHELL_OWNER = 'shell';

export interface ShellCommandInfo {
  name: string;
  args: string;
  description: string;
  options: readonly { flags: string; description: string }[];
}

const VALUE_OPTIONS = [
  { flags: '--type <type>', description: `value type when it is created: ${TYPE_CODES.join(', ')} (default u64)` },
  { flags: '--floating', description: 'a level (gauge), read-only in the filesystem, rather than a count' },
  { flags: '--unit <unit>', description: 'unit shown in the definition' },
  { flags: '--description <text>', description: 'description of the value' },
  { flags: '--owner <name>', description: `owner of what the command creates (default ${SHELL_OWNER}); kept after the command ends` },
] as const;

/** What the CLI registers: one entry per command. */
export const SHELL_COMMANDS: readonly ShellCommandInfo[] = Object.freeze([
  { name: 'set', args: '<path> <value>', description: 'set a value in the running daemon, creating it (and its sources) if needed', options: VALUE_OPTIONS },
  { name: 'add', args: '<path> <delta>', description: 'add to a value in the running daemon (a negative delta subtracts), creating it if needed', options: VALUE_OPTIONS },
  {
    name: 'rm',
    args: '<path>',
    description: 'remove a source (with everything below it) or a value created by shell commands',
    options: [{ flags: '--owner <name>', description: `owner that created it (default ${SHELL_OWNER})` }],
  },
]);

class UsageError extends Error {}

interface Parsed {
  command: string;
  positional: string[];
  type: ValueTypeName;
  floating: boolean;
  unit?: string;
  description?: string;
  owner: string;
}

function parse(argv: readonly string[]): Parsed {
  const [command, ...rest] = argv;
  if (command !== 'set' && command !== 'add' && command !== 'rm') throw new UsageError(`unknown command ${JSON.stringify(command ?? '')}: use set, add or rm`);
  const out: Parsed = { command, positional: [], type: 'u64', floating: false, owner: SHELL_OWNER };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    const value = (): string => {
      const v = rest[++i];
      if (v === undefined) throw new UsageError(`${arg} needs a value`);
      return v;
    };
    if (arg === '--type') {
      const t = value();
      if (!(TYPE_CODES as readonly string[]).includes(t)) throw new UsageError(`unknown type ${JSON.stringify(t)}: use ${TYPE_CODES.join(', ')}`);
      out.type = t as ValueTypeName;
    } else if (arg === '--floating') out.floating = true;
    else if (arg === '--unit') out.unit = value();
    else if (arg === '--description') out.description = value();
    else if (arg === '--owner') out.owner = value();
    else if (arg === '--') {
      out.positional.push(...rest.slice(i + 1));
      break;
    }
    else if (arg.startsWith('--')) throw new UsageError(`unknown option ${arg}`);
    else out.positional.push(arg);
  }
  const want = command === 'rm' ? 1 : 2;
  if (out.positional.length !== want) throw new UsageError(`${command} takes ${command === 'rm' ? '<path>' : '<path> <number>'}`);
  return out;
}

/** Decimal (with an optional sign) or 0x hexadecimal, exactly. */
export function parseInteger(text: string): bigint {
  if (/^[-+]?\d+$/.test(text)) return BigInt(text);
  if (/^[-+]?0x[0-9a-f]+$/i.test(text)) {
    const neg = text.startsWith('-');
    const v = BigInt(text.replace(/^[-+]/, ''));
    return neg ? -v : v;
  }
  throw new UsageError(`${JSON.stringify(text)} is not an integer`);
}

function normalize(path: string): string {
  return path.replace(/^\/+|\/+$/g, '');
}

/**
 * Runs one shell command against the daemon at `socketPath`; returns the exit status (0 done, 1 refused
 * or unreachable, 2 usage) after writing any error to stderr.
 */
export async function shellCommand(argv: string[], socketPath: string): Promise<number> {
  let parsed: Parsed;
  let number = 0n;
  try {
    parsed = parse(argv);
    if (parsed.command !== 'rm') number = parseInteger(parsed.positional[1]);
  } catch (err) {
    process.stderr.write(`statsfs: ${(err as Error).message}\n`);
    return 2;
  }
  const path = normalize(parsed.positional[0]);
  if (parsed.command !== 'rm' && !path.includes('/')) {
    process.stderr.write(`statsfs: ${path}: a value needs a source: give a path like dir/name\n`);
    return 2;
  }
  let client;
  try {
    client = await connect({ path: socketPath, owner: parsed.owner, keep: true, reconnect: false });
  } catch (err) {
    process.stderr.write(`statsfs: ${(err as Error).message} (is the daemon running? statsfs mount --socket <path>)\n`);
    return 1;
  }
  try {
    if (parsed.command === 'rm') await client.removePath(path);
    else {
      const cut = path.lastIndexOf('/');
      const spec: ClientValueSpec = { name: path.slice(cut + 1), type: parsed.type, floating: parsed.floating };
      if (parsed.unit !== undefined) spec.unit = parsed.unit;
      if (parsed.description !== undefined) spec.description = parsed.description;
      const values = client.source(path.slice(0, cut)).values(client.define([spec]));
      if (parsed.command === 'set') values.set(0, number);
      else values.add(0, number);
      await client.flush();
    }
    return 0;
  } catch (err) {
    const e = err as StatsClientError;
    const hint = e.code === 'EEXIST' && parsed.command !== 'rm' ? ' (give the same --type and --floating as when it was created)' : '';
    process.stderr.write(`statsfs: ${path}: ${e.message}${e.code ? ` [${e.code}]` : ''}${hint}\n`);
    return 1;
  } finally {
    await client.close();
  }
}
