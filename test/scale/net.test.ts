/**
 * The net collector at scale: 1,000 interfaces, exact sums beyond 2^53 and wrapping at 2^64 (moved from the
 * unit suite, test/unit/collectors/net.test.ts, for its run time).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { collectorOptions, type CollectorOptions } from '../../src/collectors/common.js';
import { netCollector } from '../../src/collectors/net.js';
import { countersFor, NetFixture, U64 } from '../helpers/net-fixture.js';

let fx: NetFixture;
let clock: number;
let options: CollectorOptions;

beforeEach(() => {
  fx = new NetFixture();
  clock = 0;
  options = collectorOptions({ procRoot: fx.proc, sysRoot: fx.sys, freshnessMs: 250, now: () => clock });
});
afterEach(() => fx.cleanup());

const later = () => (clock += 1000);

describe('net collector', () => {
  it('1,000 interfaces: exact sums beyond 2^53 (wrapping at 2^64), and listing + aggregating stays cheap', () => {
    const n = 1000;
    let rx = 0n;
    let dropped = 0n;
    for (let i = 0; i < n; i++) {
      // every tenth interface carries more than 2^53 bytes, two of them near 2^64
      const rxBytes = i % 10 === 0 ? 2n ** 53n + BigInt(i) * 1_000_003n : BigInt(i) * 1_234_567n + 1n;
      const c = { ...countersFor(i), rx_bytes: i === 500 || i === 501 ? U64 - 1000n - BigInt(i) : rxBytes };
      // statistics files: only the one summed below (24,000 files take seconds on a slow /tmp)
      fx.add(`veth${i}`, c, { files: ['rx_dropped'] });
      rx += c.rx_bytes;
      dropped += c.rx_dropped;
    }
    fx.writeNetDev();
    expect(rx).toBeGreaterThan(U64); // the sum must wrap
    const net = netCollector.create(options);

    const t0 = performance.now();
    const listed = net.visibleSubordinates();
    const t1 = performance.now();
    const total = net.getValue('rx_bytes');
    const t2 = performance.now();
    const totalDropped = net.getValue('rx_dropped'); // 1,000 sysfs files
    const t3 = performance.now();
    clock += 1; // same window: served from the parse and the cached files
    net.getValue('rx_bytes');
    net.getValue('rx_dropped');
    const t4 = performance.now();

    expect(listed).toHaveLength(n);
    expect(total).toBe(BigInt.asUintN(64, rx));
    expect(totalDropped).toBe(dropped);
    expect(net.subordinate('veth10')!.getValue('rx_bytes')).toBe(2n ** 53n + 10_000_030n);
    console.log(
      `net, ${n} interfaces: first listing ${(t1 - t0).toFixed(1)} ms, net/rx_bytes ${(t2 - t1).toFixed(1)} ms, ` +
        `net/rx_dropped (sysfs) ${(t3 - t2).toFixed(1)} ms, both again in the window ${(t4 - t3).toFixed(1)} ms`,
    );

    // one interface gone, one new: the sum follows
    fx.remove('veth500');
    fx.add('veth1000', countersFor(1000));
    fx.writeNetDev();
    later();
    expect(net.visibleSubordinates()).toHaveLength(n);
    expect(net.getValue('rx_bytes')).toBe(BigInt.asUintN(64, rx - (U64 - 1500n) + countersFor(1000).rx_bytes));
  });
});
