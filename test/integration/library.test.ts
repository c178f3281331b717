/**
 * A Node program builds its own tree with the library API and mounts it in-process
 * (test/fixtures/library-tree.mjs); this process drives the mount with real tools and a second Node
 * process, and steers the tree over the fixture's stdin.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFixture, type Fixture } from '../helpers/fixture.js';
import { isMounted, sh, skipWithoutFuse, waitFor } from '../helpers/mount.js';

const U64_MAX = 2n ** 64n - 1n;

describe.skipIf(skipWithoutFuse)('library: a program mounts its own tree in-process', { timeout: 60_000 }, () => {
  let fixture: Fixture;
  let m: string;
  const command = (line: string) => fixture.command(line);

  beforeAll(async () => {
    fixture = await startFixture('library-tree.mjs');
    m = fixture.m;
  });
  afterAll(() => fixture?.cleanup());

  it('ls enumerates visible sources and values; hidden sources are not shown', () => {
    expect(sh(`ls ${m}`).stdout).toBe('broken\nnet\n');
    expect(sh(`ls ${m}/net`).stdout).toBe('errors\neth0\neth1\nrx_bytes\nstate\ntemperature\ntx_bytes\n');
    expect(sh(`ls ${m}/net/vf0`).stderr).toMatch(/No such file or directory/);
    expect(sh(`stat -c '%n %a' ${m}/net/eth0/rx_bytes ${m}/net/eth0/state ${m}/net/tx_bytes`).stdout.replaceAll(`${m}/`, '')).toBe(
      'net/eth0/rx_bytes 644\nnet/eth0/state 444\nnet/tx_bytes 644\n',
    );
  });

  it('64-bit values are exact, narrow types are signed, show() names the value', () => {
    expect(sh(`cat ${m}/net/eth0/rx_bytes`).stdout).toBe(`${U64_MAX}\n`);
    expect(sh(`cat ${m}/net/eth1/rx_bytes`).stdout).toBe(`${2n ** 53n + 1n}\n`);
    expect(sh(`cat ${m}/net/eth0/temperature`).stdout).toBe('-40\n');
    expect(sh(`cat ${m}/net/eth0/state ${m}/net/eth1/state`).stdout).toBe('up\ndown\n');
  });

  it('aggregates cover every subordinate, hidden ones included: sum wraps at 2^64, max is signed, count_zero counts', () => {
    // (2^64 - 1) + (2^53 + 1) + 5 wraps to 2^53 + 5
    expect(sh(`cat ${m}/net/rx_bytes`).stdout).toBe(`${2n ** 53n + 5n}\n`);
    expect(sh(`cat ${m}/net/tx_bytes`).stdout).toBe('60\n');
    expect(sh(`cat ${m}/net/temperature`).stdout).toBe('75\n');
    expect(sh(`cat ${m}/net/errors`).stdout).toBe('2\n');
  });

  it('a value read again after it changes shows the new value', async () => {
    expect(await command('set eth1 tx_bytes 21')).toBe('ok');
    expect(sh(`cat ${m}/net/eth1/tx_bytes ${m}/net/tx_bytes`).stdout).toBe('21\n61\n');
  });

  it('echo 0 > an aggregate clears every matching value below it; bad input changes nothing', async () => {
    expect(sh(`echo 7 > ${m}/net/tx_bytes`).stderr).toMatch(/Invalid argument/);
    expect(sh(`cat ${m}/net/tx_bytes`).stdout).toBe('61\n');
    expect(sh(`echo 0 > ${m}/net/tx_bytes`).status).toBe(0);
    expect(sh(`cat ${m}/net/tx_bytes ${m}/net/eth0/tx_bytes ${m}/net/eth1/tx_bytes`).stdout).toBe('0\n0\n0\n');
    expect(sh(`echo 0 > ${m}/net/temperature`).stderr).toMatch(/Permission denied/);
    expect(sh(`cat ${m}/net/eth0/rx_bytes`).stdout).toBe(`${U64_MAX}\n`);
  });

  it('a getter that throws gives EIO to the reader and the program goes on serving', async () => {
    const r = sh(`cat ${m}/broken/value`);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Input\/output error/);
    expect(await command('errors')).toMatch(/getter exploded/);
    expect(sh(`cat ${m}/net/eth0/temperature`).stdout).toBe('-40\n');
  });

  it('a file held open across the removal of its source still reads its snapshot; the path is gone', async () => {
    const reader = spawn(process.execPath, [
      '-e',
      `const fs = require('fs');
       const fd = fs.openSync(${JSON.stringify(`${m}/net/eth1/rx_bytes`)}, 'r');
       process.stdout.write('opened\\n');
       process.stdin.once('data', () => {
         const buf = Buffer.alloc(64);
         const n = fs.readSync(fd, buf, 0, 64, 0);
         process.stdout.write(buf.subarray(0, n));
         fs.closeSync(fd);
         process.exit(0);
       });`,
    ]);
    const out = createInterface({ input: reader.stdout });
    const next = () => new Promise<string>((resolve) => out.once('line', resolve));
    expect(await next()).toBe('opened');
    expect(await command('remove eth1')).toBe('ok');
    expect(sh(`cat ${m}/net/eth1/rx_bytes`).stderr).toMatch(/No such file or directory/);
    expect(sh(`ls ${m}/net`).stdout).not.toMatch(/eth1/);
    reader.stdin.write('go\n');
    expect(await next()).toBe(`${2n ** 53n + 1n}`);
  });

  it('sources added at run time appear at once, and their values aggregate', async () => {
    expect(sh(`ls ${m}/net/eth2`).stderr).toMatch(/No such file or directory/); // caches a negative entry
    expect(await command('add eth2')).toBe('ok');
    expect(sh(`cat ${m}/net/eth2/rx_bytes`).stdout).toBe('7\n');
    expect(sh(`ls ${m}/net`).stdout).toMatch(/eth2/);
    // eth0 + vf0 + eth2 after eth1 went away: (2^64 - 1) + 5 + 7 wraps to 11
    expect(sh(`cat ${m}/net/rx_bytes`).stdout).toBe('11\n');
  });

  it('unmount() from the program leaves no mount', async () => {
    expect(await command('unmount')).toBe('ok');
    await waitFor('the unmount', () => !isMounted(m));
  });
});
