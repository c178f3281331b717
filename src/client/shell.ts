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
 * same way, else EEXIST. Values are decimal (optionally negative) or 0x hexadecimal, exact to 64 bits,
 * and must fit the type (`set`: its range; `add`: a delta of at most its span): nothing wraps silently.
 */
import { connect, StatsClientError, type ClientValueSpec, type ValueTypeName } from './index.js';
import { isSignedType, TYPE_BITS, TYPE_CODES } from '../protocol/protocol.js';

/** What set and add can publish: the integer types (a histogram is observed, not set). */
type IntegerTypeName = Exclude<ValueTypeName, 'histogram'>;
const INTEGER_TYPES = TYPE_CODES.filter((t): t is IntegerTypeName => t !== 'histogram');

export const SHELL_OWNER = 'shell';

/** One option of a shell command: `--name <value>` takes a value, `--name` is a flag. Drives parsing and help. */
export interface ShellOption {
  flags: string;
  description: string;
}

export interface ShellCommandInfo {
  name: 'set' | 'add' | 'rm';
  args: string;
  description: string;
  options: readonly ShellOption[];
}

const SOCKET_OPTION: ShellOption = {
  flags: '--socket <path>',
  description: "the daemon's producer socket (default as for mount)",
};
const VALUE_OPTIONS: readonly ShellOption[] = [
  { flags: '--type <type>', description: `value type when created: ${INTEGER_TYPES.join(', ')} (default u64)` },
  { flags: '--floating', description: 'a level (gauge), read-only in the filesystem, rather than a count' },
  { flags: '--unit <unit>', description: 'unit shown in the definition' },
  { flags: '--description <text>', description: 'description of the value' },
  { flags: '--owner <name>', description: `owner of what the command creates (default ${SHELL_OWNER}); kept after the command ends` },
  SOCKET_OPTION,
];

/** What the CLI registers: one entry per command. */
export const SHELL_COMMANDS: readonly ShellCommandInfo[] = Object.freeze([
  {
    name: 'set',
    args: '<path> <number>',
    description: 'set a value in the running daemon, creating it (and its sources) if needed',
    options: VALUE_OPTIONS,
  },
  {
    name: 'add',
    args: '<path> <number>',
    description: 'add to a value in the running daemon (a negative number subtracts), creating it if needed',
    options: VALUE_OPTIONS,
  },
  {
    name: 'rm',
    args: '<path>',
    description: 'remove a source (with everything below it) or a value created by shell commands, or a StatsD metric or prefix',
    options: [{ flags: '--owner <name>', description: `owner that created it (default ${SHELL_OWNER})` }, SOCKET_OPTION],
  },
] as const);

/** A mistake in the command line: one line, then "see --help"; exit status 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  constructor(
    message: string,
    /** The command whose --help to point to ('' for the program). */
    readonly command = '',
  ) {
    super(message);
  }
}

/** What follows a usage error: where the whole usage is. */
export function seeHelp(command: string): string {
  return `(see 'statsfs ${command ? `${command} ` : ''}--help')`;
}

interface Parsed {
  command: 'set' | 'add' | 'rm';
  positional: string[];
  type: IntegerTypeName;
  floating: boolean;
  unit?: string;
  description?: string;
  owner: string;
  socket?: string;
  help: boolean;
}

function parse(argv: readonly string[]): Parsed {
  const [command, ...rest] = argv;
  const info = SHELL_COMMANDS.find((c) => c.name === command);
  if (!info) throw new UsageError(`unknown command ${JSON.stringify(command ?? '')}: use set, add or rm`);
  const usage = (message: string) => new UsageError(message, info.name);
  const out: Parsed = { command: info.name, positional: [], type: 'u64', floating: false, owner: SHELL_OWNER, help: false };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i];
    if (arg === '--') {
      out.positional.push(...rest.slice(i + 1));
      break;
    }
    if (arg === '--help' || arg === '-h') {
      out.help = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      out.positional.push(arg); // a negative number too
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    const option = info.options.find((o) => o.flags.split(' ')[0] === name);
    if (!option) throw usage(`unknown option ${name}`);
    let value: string | undefined;
    if (option.flags.includes('<')) {
      value = eq < 0 ? rest[++i] : arg.slice(eq + 1);
      if (value === undefined) throw usage(`${name} needs a value: ${option.flags}`);
    } else if (eq >= 0) throw usage(`${name} takes no value`);
    switch (name) {
      case '--type':
        if (!(INTEGER_TYPES as readonly string[]).includes(value!)) throw usage(`unknown type ${JSON.stringify(value)}: use ${INTEGER_TYPES.join(', ')}`);
        out.type = value as IntegerTypeName;
        break;
      case '--floating':
        out.floating = true;
        break;
      case '--unit':
        out.unit = value;
        break;
      case '--description':
        out.description = value;
        break;
      case '--owner':
        out.owner = value!;
        break;
      case '--socket':
        out.socket = value;
        break;
    }
  }
  if (out.help) return out;
  if (out.positional.length !== (info.name === 'rm' ? 1 : 2)) throw usage(`${info.name} takes ${info.args}`);
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

/**
 * Refuses a number the type cannot hold, rather than letting it wrap: `set` takes the type's range (bool 0
 * or 1); `add` a delta of at most the type's span either way (a negative one subtracts).
 */
export function checkRange(command: 'set' | 'add', type: IntegerTypeName, n: bigint): void {
  const bits = BigInt(TYPE_BITS[TYPE_CODES.indexOf(type)]);
  const signed = isSignedType(type);
  let lo: bigint;
  let hi: bigint;
  if (command === 'add') {
    hi = (1n << bits) - 1n;
    lo = -hi;
  } else if (signed) {
    hi = (1n << (bits - 1n)) - 1n;
    lo = -hi - 1n;
  } else {
    lo = 0n;
    hi = (1n << bits) - 1n;
  }
  if (n < lo || n > hi) {
    const what = command === 'add' ? `a delta for ${type} is ${lo} to ${hi}` : `${type} holds ${lo} to ${hi}`;
    throw new UsageError(`${n} is out of range: ${what}`, command);
  }
}

function normalize(path: string): string {
  return path.replace(/^\/+|\/+$/g, '');
}

/** The help of one shell command, from its table (the CLI's help and the README show the same lines). */
export function shellHelp(info: ShellCommandInfo, pad: number): string {
  const lines = [`statsfs ${info.name} ${info.args} [options]`, `  ${info.description}`];
  for (const o of info.options) lines.push(`  ${o.flags.padEnd(pad - 2)} ${o.description}`);
  return `${lines.join('\n')}\n`;
}

/**
 * Runs one shell command against the daemon at `socketPath` (or --socket); returns the exit status (0 done,
 * 1 refused or unreachable, 2 usage) after writing any error to stderr as one line. `help` prints --help.
 */
export async function shellCommand(argv: string[], socketPath: string, help?: () => string): Promise<number> {
  let parsed: Parsed;
  let number = 0n;
  try {
    parsed = parse(argv);
    if (parsed.help) {
      process.stdout.write(help?.() ?? shellHelp(SHELL_COMMANDS.find((c) => c.name === parsed.command)!, 24));
      return 0;
    }
    if (parsed.command !== 'rm') {
      number = parseInteger(parsed.positional[1]);
      checkRange(parsed.command, parsed.type, number);
    }
  } catch (err) {
    const known = SHELL_COMMANDS.some((c) => c.name === argv[0]) ? argv[0] : '';
    const see = seeHelp(err instanceof UsageError && err.command ? err.command : known);
    process.stderr.write(`statsfs: ${(err as Error).message} ${see}\n`);
    return 2;
  }
  const socket = parsed.socket ?? socketPath;
  const path = normalize(parsed.positional[0]);
  if (parsed.command !== 'rm' && !path.includes('/')) {
    process.stderr.write(`statsfs: ${path}: a value needs a source: give a path like dir/name\n`);
    return 2;
  }
  let client;
  // a refusal at the connection cap arrives as an error frame before the daemon closes the connection
  let refusal: StatsClientError | undefined;
  try {
    client = await connect({
      path: socket,
      owner: parsed.owner,
      keep: true,
      reconnect: false,
      onError: (e) => {
        if (e.code === 'EBUSY') refusal ??= e;
      },
    });
  } catch (err) {
    const e = err as StatsClientError;
    if (e.code === 'EBUSY' || refusal) {
      const why = (refusal ?? e).message.replace(/^[A-Za-z]+: /, '');
      process.stderr.write(`statsfs: the daemon at ${socket} refused the connection: ${why} [EBUSY]: try again when fewer producers are connected\n`);
    } else {
      process.stderr.write(`statsfs: ${e.message} (is the daemon running? statsfs mount --socket <path>)\n`);
    }
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
