/** The Unix-socket listener shared by the producer socket and StatsD: groups through NSS, one stale-socket rule. */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { listenUnix, resolveGroup } from '../../../src/producers/unix-socket.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'unix-socket-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** The name NSS gives the process's group (what `--socket-group <name>` would say). */
const ownGroupName = (): string => execFileSync('getent', ['group', String(process.getgid!())], { encoding: 'utf8' }).split(':')[0];

describe('resolveGroup', () => {
  it('takes gids as they are and looks names up with getent', async () => {
    expect(await resolveGroup(1234)).toBe(1234);
    expect(await resolveGroup('1234')).toBe(1234);
    expect(await resolveGroup(ownGroupName())).toBe(process.getgid!());
  });

  it('an unknown name is ENOENT', async () => {
    await expect(resolveGroup('no-such-group-statsfs')).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('listenUnix', () => {
  it('gives the socket a group named through NSS, mode 0660', async () => {
    const path = join(dir, 's');
    const server = net.createServer();
    await listenUnix(server, path, { group: ownGroupName(), option: '--socket' });
    try {
      expect(statSync(path).mode & 0o777).toBe(0o660);
      expect(statSync(path).gid).toBe(process.getgid!());
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('names the option in what it refuses', async () => {
    const path = join(dir, 'plain');
    writeFileSync(path, 'x');
    await expect(listenUnix(net.createServer(), path, { option: '--statsd-socket' })).rejects.toMatchObject({
      code: 'EEXIST',
      message: expect.stringContaining('--statsd-socket'),
    });
  });
});
