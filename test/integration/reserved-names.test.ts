/**
 * The snapshot files' names are refused wherever a name is made (item 11 of the hardening issue): a source or
 * value called .snapshot would otherwise shadow the snapshot file of its directory.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, sh, skipWithoutFuse, startDaemon, type Daemon } from '../helpers/mount.js';

describe.skipIf(skipWithoutFuse)('reserved names through the real daemon', { timeout: 60_000 }, () => {
  let d: Daemon;
  let m: string;
  let socket: string;
  beforeAll(async () => {
    d = await startDaemon(['--no-collectors']);
    m = d.mountpoint;
    socket = `${m}/../producers.sock`;
  });
  afterAll(() => d?.cleanup());

  const statsfs = (args: string) => sh(`node ${BIN} ${args} --socket ${socket}`);

  it('a producer cannot name a source or a value .snapshot, .snapshot.json or .snapshot.bin', () => {
    expect(statsfs('set app/hits 7').status).toBe(0);
    for (const name of ['.snapshot', '.snapshot.json', '.snapshot.bin']) {
      const asSource = statsfs(`set app/${name}/x 1`);
      expect(asSource.status).not.toBe(0);
      expect(asSource.stderr).toMatch(/EINVAL/);
      const asValue = statsfs(`set app/${name} 1`);
      expect(asValue.status).not.toBe(0);
      expect(asValue.stderr).toMatch(/EINVAL/);
    }
    // the snapshot files are still the snapshots
    expect(sh(`cat ${m}/app/.snapshot`).stdout).toBe('hits 7\n');
    expect(JSON.parse(sh(`cat ${m}/app/.snapshot.json`).stdout).count).toBe(1);
    expect(sh(`ls -A ${m}/app`).stdout).toBe('hits\n');
  });
});
