/**
 * An idle daemon runs nothing: building the host collectors and the daemon's own statistics starts no timer
 * and no sampler; reading the event-loop maximum starts its sampler, which stops by itself a minute after
 * the last read. (CPU while idle is measured beside node_exporter by `npm run bench -- --only host`.)
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { COLLECTORS, collectorOptions } from '../../../src/collectors/index.js';
import { createSelfStats } from '../../../src/daemon/self-stats.js';
import { captureSnapshot, Source } from '../../../src/model/index.js';

const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('an idle daemon', () => {
  afterEach(() => vi.useRealTimers());

  it('starts no timer for its collectors and statistics, only while the event-loop maximum is being read', () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    const before = vi.getTimerCount();
    const root = Source.root();
    for (const c of COLLECTORS) root.addSubordinate(c.create(collectorOptions()));
    const self = createSelfStats(null);
    root.addSubordinate(self);
    captureSnapshot(root, (def) => def.name !== 'event_loop_delay_max_us'); // a scrape that does not ask for it
    expect(vi.getTimerCount()).toBe(before);

    const process = self.subordinate('process')!;
    expect(process.getValue('event_loop_delay_max_us')).toBe(0n); // the first read starts the sampler
    expect(vi.getTimerCount()).toBe(before + 1);
    vi.advanceTimersByTime(50_000);
    process.getValue('event_loop_delay_max_us'); // read again: sampling goes on
    vi.advanceTimersByTime(50_000);
    expect(vi.getTimerCount()).toBe(before + 1);
    vi.advanceTimersByTime(30_000); // a minute after the last read it stops
    expect(vi.getTimerCount()).toBe(before);
  });

  it('leaves no real timer behind after building everything', () => {
    const before = timers();
    const root = Source.root();
    for (const c of COLLECTORS) root.addSubordinate(c.create(collectorOptions()));
    root.addSubordinate(createSelfStats(null));
    captureSnapshot(root, (def) => def.name !== 'event_loop_delay_max_us');
    expect(timers()).toBe(before);
  });
});
