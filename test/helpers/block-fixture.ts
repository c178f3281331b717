/**
 * The block collector tests' fixture: /proc/diskstats and /sys/block in the kernel's formats under a
 * temporary directory, and the helpers that the unit and the scale tests share.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLOCK_FIELD_NAMES } from '../../src/collectors/block.js';
import type { Source } from '../../src/model/index.js';

/** 17 values, distinct per device and per field, so that a wrong column shows. */
export function fieldsFor(seed: number): bigint[] {
  return BLOCK_FIELD_NAMES.map((_, i) => BigInt(seed) * 100n + BigInt(i + 1));
}

export interface Dev {
  major: number;
  minor: number;
  /** The kernel's name, as diskstats prints it ('/' included). */
  name: string;
  fields: bigint[];
  /** The disk it is a partition of (kernel name). */
  partOf?: string;
  /** Not in /sys/block (a hidden disk). */
  hidden?: boolean;
}

export class BlockFixture {
  readonly root = mkdtempSync(join(tmpdir(), 'statsfs-block-'));
  readonly proc = join(this.root, 'proc');
  readonly sys = join(this.root, 'sys');
  readonly devs = new Map<string, Dev>();
  /** Fields per line after the name: 11 (before 4.18), 15 (4.18) or 17 (5.5+). */
  width = 17;
  private minor = 0;

  constructor() {
    mkdirSync(this.proc, { recursive: true });
    mkdirSync(join(this.sys, 'block'), { recursive: true });
    this.write();
  }

  private sysName = (name: string) => name.replaceAll('/', '!');
  private devDir = (disk: string) => join(this.sys, 'devices', 'virtual', 'block', this.sysName(disk));

  disk(name: string, fields: bigint[], { hidden = false } = {}): void {
    this.devs.set(name, { major: 8, minor: (this.minor += 16), name, fields, hidden });
    if (hidden) return;
    mkdirSync(this.devDir(name), { recursive: true });
    writeFileSync(join(this.devDir(name), 'size'), '1000\n');
    symlinkSync(join('..', 'devices', 'virtual', 'block', this.sysName(name)), join(this.sys, 'block', this.sysName(name)));
  }

  partition(disk: string, name: string, fields: bigint[]): void {
    const d = this.devs.get(disk)!;
    this.devs.set(name, { major: d.major, minor: d.minor + 1 + [...this.devs.values()].filter((x) => x.partOf === disk).length, name, fields, partOf: disk });
    const dir = join(this.devDir(disk), this.sysName(name));
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'partition'), '1\n');
  }

  remove(name: string): void {
    const d = this.devs.get(name)!;
    this.devs.delete(name);
    if (d.partOf !== undefined) rmSync(join(this.devDir(d.partOf), this.sysName(name)), { recursive: true });
    else {
      unlinkSync(join(this.sys, 'block', this.sysName(name)));
      rmSync(this.devDir(name), { recursive: true });
    }
  }

  /** As block/genhd.c prints it: "%4d %7d %s %lu %lu %lu %u %lu %lu %lu %u %u %u %u %lu %lu %lu %u %lu %u". */
  write(): void {
    let text = '';
    for (const d of this.devs.values()) {
      text += `${String(d.major).padStart(4)} ${String(d.minor).padStart(7)} ${d.name} ${d.fields.slice(0, this.width).join(' ')}\n`;
    }
    writeFileSync(join(this.proc, 'diskstats'), text);
  }

  set(name: string, field: string, value: bigint): void {
    this.devs.get(name)!.fields[BLOCK_FIELD_NAMES.indexOf(field)] = value;
    this.write();
  }

  cleanup(): void {
    rmSync(this.root, { recursive: true, force: true });
  }
}

export const names = (src: Source) => src.visibleSubordinates().map((s) => s.name).sort();
export const field = (name: string) => BLOCK_FIELD_NAMES.indexOf(name);
