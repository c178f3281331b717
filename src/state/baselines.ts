/**
 * Baselines of cleared kernel counters (`echo 0 > net/eth0/rx_bytes`): kept by path and value name, so a
 * clear outlives a restart of the daemon. Not a reboot: the kernel's counters start again from zero then,
 * so baselines saved under another boot id are dropped, and so is one above the counter's value now.
 */
import { readFileSync } from 'node:fs';
import { LiveValues, type Source } from '../model/index.js';
import type { StatePart } from './keeper.js';

/** Saved: the boot they belong to, and (source path, value name, baseline as decimal) triples. */
interface BaselinesState {
  bootId: string;
  baselines: [string, string, string][];
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

/** The daemon's own statistics (statsfs/) count this process's work: their baselines mean nothing after a restart. */
const SKIP = new Set(['statsfs']);

export function baselinesPart(root: Source): StatePart & { skipped: number } {
  const part = {
    skipped: 0,
    generation: () => 0, // baselines change only by clears, which the keeper counts for every part
    save(): BaselinesState {
      const baselines: [string, string, string][] = [];
      const walk = (src: Source): void => {
        for (const g of src.valueGroups) {
          const base = g.objectBase;
          if (base instanceof LiveValues) for (const [name, v] of base.baselineEntries()) baselines.push([src.path, name, v.toString()]);
        }
        for (const sub of src.subordinates) if (src !== root || !SKIP.has(sub.name)) walk(sub);
      };
      walk(root);
      return { bootId: bootId(), baselines };
    },
    everything(): BaselinesState {
      return part.save();
    },
    replay(data: unknown): void {
      part.restore(data);
    },
    restore(data: unknown): void {
      const saved = data as BaselinesState;
      if (saved.bootId !== bootId()) return; // rebooted: the kernel's counters started again
      for (const [path, name, text] of saved.baselines) {
        let src: Source | undefined = root;
        for (const p of path === '' ? [] : path.split('/')) src = src?.subordinate(p);
        const found = src?.findValue(name);
        const base = found?.group.objectBase;
        const baseline = BigInt(text);
        if (!(base instanceof LiveValues) || SKIP.has(path.split('/')[0]) || baseline > BigInt(base.read(name))) {
          part.skipped++;
          continue;
        }
        base.restoreBaseline(name, baseline);
      }
    },
  };
  return part;
}
