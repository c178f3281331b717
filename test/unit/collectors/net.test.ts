/**
 * The net collector against fixture trees written in the kernel's formats: /proc/net/dev as
 * dev_seq_printf_stats prints it (with its summed columns) and /sys/class/net/<if>/statistics/<counter>.
 */
import { rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { collectorOptions, type CollectorOptions } from '../../../src/collectors/common.js';
import { NET_COUNTER_NAMES, NET_VALUE_NAMES, netCollector } from '../../../src/collectors/net.js';
import { Source, StatsError } from '../../../src/model/index.js';
import { countersFor, NetFixture, U64 } from '../../helpers/net-fixture.js';

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
const names = (src: Source) => src.visibleSubordinates().map((s) => s.name).sort();

function expectEnoent(fn: () => unknown): void {
  let error: unknown;
  try {
    fn();
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(StatsError);
  expect((error as StatsError).code).toBe('ENOENT');
}

describe('net collector', () => {
  it('shows the 24 counters of every interface under their sysfs names, each from the right column or file, and the combined columns', () => {
    fx.add('lo', countersFor(1));
    fx.add('eth0', countersFor(2));
    fx.writeNetDev();
    const net = netCollector.create(options);
    expect(net.name).toBe('net');
    expect(names(net)).toEqual(['eth0', 'lo']);
    for (const [name, counters] of fx.ifaces) {
      const src = net.subordinate(name)!;
      expect(src.visibleValues().map((v) => v.def.name).sort()).toEqual([...NET_VALUE_NAMES].sort());
      for (const counter of NET_COUNTER_NAMES) expect(src.getValue(counter), `${name}/${counter}`).toBe(counters[counter]);
      // /proc/net/dev's drop, frame and carrier columns, as node_exporter exports them
      const c = counters;
      expect(src.getValue('rx_drop')).toBe(c.rx_dropped + c.rx_missed_errors);
      expect(src.getValue('rx_frame')).toBe(c.rx_length_errors + c.rx_over_errors + c.rx_crc_errors + c.rx_frame_errors);
      expect(src.getValue('tx_carrier')).toBe(c.tx_carrier_errors + c.tx_aborted_errors + c.tx_window_errors + c.tx_heartbeat_errors);
    }
    // the names, in rtnl_link_stats64 order
    expect(NET_COUNTER_NAMES).toEqual([
      'rx_packets', 'tx_packets', 'rx_bytes', 'tx_bytes', 'rx_errors', 'tx_errors', 'rx_dropped', 'tx_dropped', 'multicast',
      'collisions', 'rx_length_errors', 'rx_over_errors', 'rx_crc_errors', 'rx_frame_errors', 'rx_fifo_errors',
      'rx_missed_errors', 'tx_aborted_errors', 'tx_carrier_errors', 'tx_fifo_errors', 'tx_heartbeat_errors',
      'tx_window_errors', 'rx_compressed', 'tx_compressed', 'rx_nohandler',
    ]);
    for (const { def } of net.subordinate('eth0')!.visibleValues()) {
      expect(def.mode, def.name).toBe(0o644);
      expect(def.unit, def.name).not.toBe('');
      expect(def.description, def.name).not.toBe('');
    }
    for (const { def, group } of net.visibleValues()) {
      expect(group.isAggregate).toBe(true);
      expect(def.aggr).toBe('sum');
    }
    // rx "drop" in /proc/net/dev is rx_dropped + rx_missed_errors: rx_dropped is the sysfs file's
    expect(net.subordinate('eth0')!.getValue('rx_dropped')).toBe(2007n);
  });

  it('sums every counter at net/, exactly beyond 2^53 and wrapping at 2^64', () => {
    fx.add('a', countersFor(1));
    fx.add('b', { ...countersFor(2), rx_bytes: 2n ** 63n + 1n, rx_crc_errors: 2n ** 53n + 1n, tx_bytes: U64 - 1n });
    fx.add('c', { ...countersFor(3), rx_bytes: 2n ** 63n + 3n, rx_crc_errors: 2n ** 53n + 3n, tx_bytes: 5n });
    fx.writeNetDev();
    const net = netCollector.create(options);
    for (const counter of NET_COUNTER_NAMES) {
      let sum = 0n;
      for (const c of fx.ifaces.values()) sum += c[counter];
      expect(net.getValue(counter), counter).toBe(BigInt.asUintN(64, sum));
    }
    expect(net.getValue('rx_bytes')).toBe(BigInt.asUintN(64, 2n ** 64n + 4n + countersFor(1).rx_bytes)); // wrapped
    expect(net.getValue('rx_crc_errors')).toBe(2n ** 54n + 4n + countersFor(1).rx_crc_errors);
    expect(net.getValue('tx_bytes')).toBe(4n + countersFor(1).tx_bytes);
    expect(net.subordinate('b')!.getValue('rx_bytes')).toBe(2n ** 63n + 1n);
  });

  it('clearing a counter records a baseline: reads and the sum at net/ show the delta since', () => {
    fx.add('eth0', countersFor(1));
    fx.add('eth1', countersFor(2));
    fx.writeNetDev();
    const net = netCollector.create(options);
    const eth0 = net.subordinate('eth0')!;
    const rx0 = fx.ifaces.get('eth0')!.rx_bytes;
    const rx1 = fx.ifaces.get('eth1')!.rx_bytes;
    eth0.clear('rx_bytes');
    eth0.clear('rx_crc_errors'); // a sysfs counter
    expect(eth0.getValue('rx_bytes')).toBe(0n);
    expect(eth0.getValue('rx_crc_errors')).toBe(0n);
    expect(net.getValue('rx_bytes')).toBe(rx1);

    fx.ifaces.get('eth0')!.rx_bytes += 1500n;
    fx.writeNetDev();
    fx.set('eth0', 'rx_crc_errors', fx.ifaces.get('eth0')!.rx_crc_errors + 7n);
    later();
    expect(eth0.getValue('rx_bytes')).toBe(1500n);
    expect(eth0.getValue('rx_crc_errors')).toBe(7n);
    expect(net.getValue('rx_bytes')).toBe(1500n + rx1);
    expect(net.getValue('tx_bytes')).toBe(fx.ifaces.get('eth0')!.tx_bytes + fx.ifaces.get('eth1')!.tx_bytes);

    // clearing the aggregate clears every interface's
    net.clear('rx_bytes');
    expect(net.getValue('rx_bytes')).toBe(0n);
    fx.ifaces.get('eth1')!.rx_bytes += 10n;
    fx.writeNetDev();
    later();
    expect(net.getValue('rx_bytes')).toBe(10n);
    expect(net.subordinate('eth1')!.getValue('rx_bytes')).toBe(10n);
    expect(rx0).toBeGreaterThan(0n);
  });

  it('one read serves the burst: within the window a changed file is not re-read; after it, it is', () => {
    fx.add('eth0', countersFor(1));
    fx.writeNetDev();
    const net = netCollector.create(options);
    const eth0 = net.subordinate('eth0')!;
    const c = fx.ifaces.get('eth0')!;
    const rx = c.rx_bytes;
    const crc = c.rx_crc_errors;
    expect(eth0.getValue('rx_bytes')).toBe(rx);
    expect(eth0.getValue('rx_crc_errors')).toBe(crc);

    c.rx_bytes = rx + 100n;
    c.tx_packets += 1n;
    fx.writeNetDev();
    fx.set('eth0', 'rx_crc_errors', crc + 1n);
    clock += 249;
    expect(eth0.getValue('rx_bytes')).toBe(rx);
    expect(eth0.getValue('rx_crc_errors')).toBe(crc);
    // a value not read before in this window still comes from the same parse of /proc/net/dev
    expect(eth0.getValue('tx_packets')).toBe(c.tx_packets - 1n);
    expect(net.getValue('rx_bytes')).toBe(rx);

    clock += 1;
    expect(eth0.getValue('rx_bytes')).toBe(rx + 100n);
    expect(eth0.getValue('rx_crc_errors')).toBe(crc + 1n);
    expect(eth0.getValue('tx_packets')).toBe(c.tx_packets);
  });

  it('interfaces appear and disappear at run time; a read of a gone one is ENOENT', () => {
    fx.add('eth0', countersFor(1));
    fx.writeNetDev();
    const net = netCollector.create(options);
    expect(names(net)).toEqual(['eth0']);
    const eth0 = net.subordinate('eth0')!;

    fx.add('veth7', countersFor(7));
    fx.writeNetDev();
    expect(names(net)).toEqual(['eth0']); // within the window
    later();
    expect(names(net)).toEqual(['eth0', 'veth7']);
    expect(net.getValue('rx_bytes')).toBe(countersFor(1).rx_bytes + countersFor(7).rx_bytes);
    expect(net.subordinate('veth7')!.getValue('rx_crc_errors')).toBe(countersFor(7).rx_crc_errors);

    fx.remove('eth0');
    fx.writeNetDev();
    later();
    expectEnoent(() => eth0.getValue('rx_bytes'));
    expectEnoent(() => eth0.getValue('rx_crc_errors'));
    expect(names(net)).toEqual(['veth7']);
    expect(net.subordinate('eth0')).toBeUndefined();
    expect(net.getValue('rx_bytes')).toBe(countersFor(7).rx_bytes);
    expect(net.getValue('rx_crc_errors')).toBe(countersFor(7).rx_crc_errors);

    // back under the same name: a new interface, counting from its own counters, no old baseline
    fx.add('eth0', countersFor(3));
    fx.writeNetDev();
    later();
    expect(names(net)).toEqual(['eth0', 'veth7']);
    expect(net.subordinate('eth0')).not.toBe(eth0);
    expect(net.subordinate('eth0')!.getValue('rx_bytes')).toBe(countersFor(3).rx_bytes);
    expectEnoent(() => eth0.getValue('rx_bytes')); // the old source stays gone
  });

  it('an interface whose sysfs files vanish before /proc/net/dev is re-read is ENOENT, and the next listing drops it', () => {
    fx.add('eth0', countersFor(1));
    fx.add('eth1', countersFor(2));
    fx.writeNetDev();
    const net = netCollector.create(options);
    const eth1 = net.subordinate('eth1')!;
    fx.remove('eth1'); // /proc/net/dev not rewritten and its parse still fresh
    clock += 10;
    expectEnoent(() => eth1.getValue('rx_missed_errors'));
    expect(names(net)).toEqual(['eth0']);
    expect(net.getValue('rx_missed_errors')).toBe(countersFor(1).rx_missed_errors);
  });

  it('lists only real interfaces: not bonding_masters, not names missing from /proc/net/dev, not names the model rejects', () => {
    fx.add('eth0', countersFor(1));
    fx.add('ghost', countersFor(2));
    fx.notInProc.add('ghost');
    const long = 'x'.repeat(100);
    fx.add(long, countersFor(3));
    fx.writeNetDev();
    writeFileSync(join(fx.sys, 'class', 'net', 'bonding_masters'), 'bond0\n');
    const net = netCollector.create(options);
    expect(names(net)).toEqual(['eth0']);
    expect(net.getValue('rx_bytes')).toBe(countersFor(1).rx_bytes);
  });

  it('a counter file this kernel does not have reads 0 (rx_nohandler before Linux 4.6)', () => {
    fx.add('eth0', countersFor(1));
    fx.writeNetDev();
    unlinkSync(join(fx.sys, 'devices', 'virtual', 'net', 'eth0', 'statistics', 'rx_nohandler'));
    const net = netCollector.create(options);
    expect(net.subordinate('eth0')!.getValue('rx_nohandler')).toBe(0n);
    expect(net.getValue('rx_nohandler')).toBe(0n);
    expect(net.subordinate('eth0')!.getValue('rx_over_errors')).toBe(countersFor(1).rx_over_errors);
  });

  it('without /proc/net/dev or /sys/class/net, net/ is empty and its sums are 0', () => {
    rmSync(join(fx.proc, 'net', 'dev'));
    const net = netCollector.create(options);
    expect(names(net)).toEqual([]);
    expect(net.getValue('rx_bytes')).toBe(0n);
    const bare = netCollector.create(collectorOptions({ procRoot: fx.proc, sysRoot: join(fx.root, 'nowhere'), now: () => clock }));
    expect(names(bare)).toEqual([]);
  });
});
