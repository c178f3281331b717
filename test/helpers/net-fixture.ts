/**
 * The net collector tests' fixture: /proc/net/dev and /sys/class/net in the kernel's formats under a
 * temporary directory, and the helpers that the unit and the scale tests share.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NET_COUNTER_NAMES } from '../../src/collectors/net.js';

export type Counters = Record<string, bigint>;

export const U64 = 2n ** 64n;

/** All 24 counters, distinct per interface and per counter, so that a wrong mapping shows. */
export function countersFor(seed: number, scale = 1n): Counters {
  const c: Counters = {};
  NET_COUNTER_NAMES.forEach((name, i) => (c[name] = (BigInt(seed) * 1000n + BigInt(i + 1)) * scale));
  return c;
}

const pad = (v: bigint, w: number) => v.toString().padStart(w);

/** One line of /proc/net/dev, exactly as net/core/net-procfs.c prints it. */
function netDevLine(name: string, s: Counters): string {
  const cols: [bigint, number][] = [
    [s.rx_bytes, 7], [s.rx_packets, 7], [s.rx_errors, 4], [s.rx_dropped + s.rx_missed_errors, 4], [s.rx_fifo_errors, 4],
    [s.rx_length_errors + s.rx_over_errors + s.rx_crc_errors + s.rx_frame_errors, 5], [s.rx_compressed, 10], [s.multicast, 9],
    [s.tx_bytes, 8], [s.tx_packets, 7], [s.tx_errors, 4], [s.tx_dropped, 4], [s.tx_fifo_errors, 4], [s.collisions, 5],
    [s.tx_carrier_errors + s.tx_aborted_errors + s.tx_window_errors + s.tx_heartbeat_errors, 7], [s.tx_compressed, 10],
  ];
  return `${name.padStart(6)}: ${cols.map(([v, w]) => pad(BigInt.asUintN(64, v), w)).join(' ')}\n`;
}

const HEADER =
  'Inter-|   Receive                                                |  Transmit\n' +
  ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n';

export class NetFixture {
  readonly root = mkdtempSync(join(tmpdir(), 'statsfs-net-'));
  readonly proc = join(this.root, 'proc');
  readonly sys = join(this.root, 'sys');
  readonly ifaces = new Map<string, Counters>();
  /** Interfaces whose /proc/net/dev line is left out (sysfs only). */
  readonly notInProc = new Set<string>();

  constructor() {
    mkdirSync(join(this.proc, 'net'), { recursive: true });
    mkdirSync(join(this.sys, 'class', 'net'), { recursive: true });
    mkdirSync(join(this.sys, 'devices', 'virtual', 'net'), { recursive: true });
    this.writeNetDev();
  }

  /** As the kernel does: the device directory under devices/, a symlink in class/net. */
  /** `files`: which statistics files to write (default all 24; the scale test writes fewer to stay quick on a slow disk). */
  add(name: string, counters: Counters, { sysfs = true, files }: { sysfs?: boolean; files?: string[] } = {}): void {
    this.ifaces.set(name, counters);
    if (sysfs) {
      const dir = join(this.sys, 'devices', 'virtual', 'net', name);
      mkdirSync(join(dir, 'statistics'), { recursive: true });
      symlinkSync(join('..', '..', 'devices', 'virtual', 'net', name), join(this.sys, 'class', 'net', name));
      for (const [k, v] of Object.entries(counters)) if (!files || files.includes(k)) writeFileSync(join(dir, 'statistics', k), `${v}\n`);
    }
  }

  set(name: string, counter: string, value: bigint): void {
    this.ifaces.get(name)![counter] = value;
    writeFileSync(join(this.sys, 'devices', 'virtual', 'net', name, 'statistics', counter), `${value}\n`);
  }

  remove(name: string): void {
    this.ifaces.delete(name);
    unlinkSync(join(this.sys, 'class', 'net', name));
    rmSync(join(this.sys, 'devices', 'virtual', 'net', name), { recursive: true });
  }

  writeNetDev(): void {
    let text = HEADER;
    for (const [name, c] of this.ifaces) if (!this.notInProc.has(name)) text += netDevLine(name, c);
    writeFileSync(join(this.proc, 'net', 'dev'), text);
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}
