/**
 * The command line as a user meets it: bin/statsfs.js in a separate process, against the real daemon where a
 * command needs one. Help and usage errors, exact range checks of `set`/`add`, and errors that name their cause.
 */
import { spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, isMounted, ROOT, sh, skipWithoutFuse, startDaemon, tempDir, type Daemon } from '../helpers/mount.js';

const statsfs = (args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20000 });

/** One line on stderr, nothing on stdout. */
function oneLine(r: { stderr: string; stdout: string }): string {
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(/^statsfs: [^\n]+\n$/);
  return r.stderr;
}

describe('statsfs command line: help, version, usage errors', () => {
  it('--version prints the package version', () => {
    const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    for (const flag of ['--version', '-V']) {
      const r = statsfs([flag]);
      expect(r.status).toBe(0);
      expect(r.stdout).toBe(`statsfs ${version}\n`);
    }
  });

  it('mount --help shows each option once, defaults as words (no JSON), the socket default once', () => {
    const r = statsfs(['mount', '--help']);
    expect(r.status).toBe(0);
    const help = r.stdout;
    expect(help).not.toMatch(/[[{]"/); // no JSON dump of the collectors
    expect(help).toMatch(/--collectors <list> +.*\(default net,cpu,block,memory,cgroup,system,filesystem,pressure\)/);
    expect(help.match(/--socket <path> .*/)![0].match(/default/g)).toHaveLength(1);
    for (const flag of ['--cache-seconds', '--allow-other', '--no-allow-other', '--collectors', '--socket', '--http', '--statsd', '--log-level']) {
      expect(help.split('\n').filter((line) => line.trimStart().startsWith(`${flag} `))).toHaveLength(1);
    }
  });

  it('set and add usage name <path> <number>; rm names <path>', () => {
    expect(statsfs(['set', '--help']).stdout).toMatch(/^statsfs set <path> <number> \[options\]/);
    expect(statsfs(['add', '--help']).stdout).toMatch(/^statsfs add <path> <number> \[options\]/);
    expect(statsfs(['rm', '--help']).stdout).toMatch(/^statsfs rm <path> \[options\]/);
    expect(statsfs(['set', '--help']).stdout).toMatch(/--type <type> /);
  });

  it('a usage error is one line that points to --help, exit 2, never the whole help', () => {
    for (const [args, want] of [
      [['mount', '--bogus'], /unknown option '--bogus'.*see 'statsfs mount --help'/],
      [['mount', '--cache-seconds', 'soon'], /--cache-seconds.*see 'statsfs mount --help'/],
      [['frob'], /unknown command 'frob'.*see 'statsfs --help'/],
      [['--bogus'], /unknown option '--bogus'.*see 'statsfs --help'/],
      [['set', 'a/b'], /set takes <path> <number>.*see 'statsfs set --help'/],
      [['set', 'a/b', '1', '--bogus'], /unknown option --bogus.*see 'statsfs set --help'/],
      [['set', 'a/b', '1', '--type=u128'], /unknown type "u128".*see 'statsfs set --help'/],
      [['rm'], /rm takes <path>.*see 'statsfs rm --help'/],
    ] as const) {
      const r = statsfs([...args]);
      expect(r.status, args.join(' ')).toBe(2);
      expect(oneLine(r)).toMatch(want);
    }
  });

  it("the README's Command line block is exactly `statsfs --help`", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const block = /## Command line\n\n```\n([\s\S]*?)```/.exec(readme);
    expect(block).not.toBeNull();
    const r = statsfs(['--help']);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(block![1]);
    // and every command's own help is its part of that text
    for (const command of ['mount', 'set', 'add', 'rm']) expect(r.stdout).toContain(statsfs([command, '--help']).stdout);
  });
});

describe.skipIf(skipWithoutFuse)('statsfs set/add/rm against the real daemon', { timeout: 60_000 }, () => {
  let d: Daemon;
  let m: string;
  let sock: string;
  const shell = (args: string[]) => statsfs([...args, '--socket', sock]);
  beforeAll(async () => {
    d = await startDaemon(['--no-collectors']);
    m = d.mountpoint;
    sock = join(m, '..', 'producers.sock');
  });
  afterAll(() => d?.cleanup());

  it('out-of-range numbers are refused with one line and exit 2; nothing is created', () => {
    for (const args of [
      ['set', 'r/neg', '-1'], // u64 by default
      ['set', 'r/u8', '300', '--type', 'u8'],
      ['set', 'r/u8', '256', '--type=u8'],
      ['set', 'r/s8', '128', '--type', 's8'],
      ['set', 'r/s8', '-129', '--type', 's8'],
      ['set', 'r/u64', '18446744073709551616'],
      ['set', 'r/u64', '0x10000000000000000'],
      ['set', 'r/s64', '9223372036854775808', '--type', 's64'],
      ['set', 'r/s64', '-9223372036854775809', '--type', 's64'],
      ['set', 'r/b', '2', '--type', 'bool'],
      ['add', 'r/u8', '256', '--type', 'u8'],
      ['add', 'r/u8', '-256', '--type', 'u8'],
      ['add', 'r/u64', '18446744073709551616'],
    ]) {
      const r = shell(args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(oneLine(r), args.join(' ')).toMatch(/out of range/);
    }
    expect(sh(`ls ${m}`).stdout).toBe('statsfs\n');
  });

  it('the limits themselves are accepted exactly, and --type=T works like --type T', () => {
    const ok = (args: string[], want: string) => {
      const r = shell(args);
      expect(r.stderr, args.join(' ')).toBe('');
      expect(r.status, args.join(' ')).toBe(0);
      expect(sh(`cat ${m}/${args[1]}`).stdout).toBe(want);
    };
    ok(['set', 'r/u64', '18446744073709551615'], '18446744073709551615\n');
    ok(['set', 'r/s64', '-9223372036854775808', '--type', 's64'], '-9223372036854775808\n');
    ok(['set', 'r/s64b', '0x7fffffffffffffff', '--type', 's64'], '9223372036854775807\n');
    ok(['set', 'r/u8', '255', '--type=u8'], '255\n');
    ok(['add', 'r/u8', '-255', '--type=u8'], '0\n');
    ok(['set', 'r/s8', '-128', '--type', 's8'], '-128\n');
    ok(['rm', 'r'], '');
  });

  it('a producer refused at the connection cap is told so, not "is the daemon running?"', async () => {
    const held: Socket[] = [];
    let refused = 0;
    try {
      // fill the daemon's connection cap; the first refusal tells us it is full
      while (refused === 0 && held.length < 5000) {
        const s = netConnect(sock);
        s.on('error', () => {});
        s.on('data', () => refused++);
        s.on('close', () => refused++);
        held.push(s);
        if (held.length % 64 === 0) await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, 200));
      expect(refused).toBeGreaterThan(0);
      for (const args of [['set', 'cap/v', '1'], ['rm', 'cap']]) {
        const r = shell(args);
        expect(r.status).toBe(1);
        expect(oneLine(r)).toMatch(/refused.*too many producer connections/);
        expect(r.stderr).not.toMatch(/is the daemon running/);
      }
    } finally {
      for (const s of held) s.destroy();
    }
  });
});

describe.skipIf(skipWithoutFuse)('start-up errors that name their cause', { timeout: 60_000 }, () => {
  const mountFails = (args: string[]) => {
    const dir = tempDir();
    const mnt = join(dir, 'm');
    mkdirSync(mnt);
    try {
      const r = statsfs(['mount', mnt, '--no-collectors', '--no-state', '--socket', join(dir, 'p.sock'), ...args]);
      expect(isMounted(mnt)).toBe(false);
      expect(r.status).toBe(1);
      // the log may have said what started before; the error is the last line, and only it is not JSON
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines.filter((l) => !l.startsWith('{'))).toHaveLength(1);
      return oneLine({ stdout: r.stdout, stderr: `${lines.at(-1)}\n` });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('--http on a port in use names the option and the address', async () => {
    const busy: Server = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as { port: number }).port;
    try {
      expect(mountFails(['--http', `127.0.0.1:${port}`])).toMatch(new RegExp(`--http 127\\.0\\.0\\.1:${port} is in use`));
    } finally {
      busy.close();
    }
  });

  it('--statsd on a UDP port in use names the option and the address', async () => {
    const busy = createSocket('udp4');
    await new Promise<void>((r) => busy.bind(0, '127.0.0.1', r));
    const port = busy.address().port;
    try {
      expect(mountFails(['--statsd', `127.0.0.1:${port}`])).toMatch(new RegExp(`--statsd 127\\.0\\.0\\.1:${port} is in use`));
    } finally {
      busy.close();
    }
  });

  it('a socket in a missing directory says that the directory is missing', () => {
    expect(mountFails(['--socket', '/nonexistent-b2/nope/p.sock'])).toMatch(/--socket \/nonexistent-b2\/nope\/p\.sock: the directory \/nonexistent-b2\/nope does not exist/);
    expect(mountFails(['--statsd-socket', '/nonexistent-b2/nope/s.sock'])).toMatch(/--statsd-socket \/nonexistent-b2\/nope\/s\.sock: the directory \/nonexistent-b2\/nope does not exist/);
  });
});
