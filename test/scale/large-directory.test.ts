/**
 * Creating a source costs the same beside 100 siblings as beside 100,000 (hardening item 4: each new name
 * scanned every sibling for a hidden one of the same name, so 10,000 new sources beside 90,000 took 5.9 s
 * through the daemon and held its loop 3.2 s). A scale test of complexity, not speed: it compares the cost
 * of the same work in a small and a large directory in one process, with a wide margin for a noisy machine.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type StatsClient } from '../../src/client/index.js';
import { Source } from '../../src/model/index.js';
import { ProducerServer } from '../../src/producers/socket-server.js';

describe('sources in a large directory', { timeout: 120_000 }, () => {
  let dir: string;
  let server: ProducerServer;
  let client: StatsClient;
  let root: Source;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'statsfs-large-'));
    root = Source.root();
    server = new ProducerServer(root, { path: join(dir, 'p.sock'), maxSourcesPerConnection: 1_000_000 });
    await server.listen();
    client = await connect({ path: join(dir, 'p.sock') });
  });
  afterAll(async () => {
    await client?.close();
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Milliseconds to create `count` new sources under `parent`, best of the rounds. */
  async function create(parent: string, count: number, round: number): Promise<number> {
    const t0 = performance.now();
    for (let i = 0; i < count; i++) client.source(`${parent}/r${round}_${i}`);
    await client.flush();
    return performance.now() - t0;
  }

  it('beside 100,000 siblings costs about what it costs beside 100', async () => {
    client.source('small');
    for (let i = 0; i < 100; i++) client.source(`small/s${i}`);
    client.source('large');
    for (let i = 0; i < 100_000; i++) client.source(`large/s${i}`);
    // one hidden sibling in each, so the lookup for hidden names is exercised
    client.source('small/h', { hidden: true });
    client.source('large/h', { hidden: true });
    await client.flush();
    let small = Infinity;
    let large = Infinity;
    for (let round = 0; round < 3; round++) {
      small = Math.min(small, await create('small', 2000, round));
      large = Math.min(large, await create('large', 2000, round));
    }
    expect(root.subordinate('large')!.subordinates.length).toBe(100_000 + 1 + 3 * 2000);
    // linear in the siblings it was 10-20 times slower; O(1) per name it is within noise
    expect(large, `small ${small.toFixed(0)} ms, large ${large.toFixed(0)} ms`).toBeLessThan(small * 4 + 50);
  });
});
