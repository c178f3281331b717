import { appendFileSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Schema, Source } from '../../../src/model/index.js';
import { LOCK_FILE, StateKeeper, StateRefused, STATE_FILE, type StatePart } from '../../../src/state/keeper.js';
import { baselinesPart } from '../../../src/state/baselines.js';
import { counterType, LiveValues } from '../../../src/model/live.js';

function recordingLog() {
  const lines: { level: string; obj: object; msg: string }[] = [];
  const at = (level: string) => (obj: object, msg: string) => void lines.push({ level, obj, msg });
  return { lines, log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } };
}

/** A part holding one value, counting its changes. */
function box(initial: unknown): StatePart & { value: unknown; changes: number } {
  const b = {
    value: initial,
    changes: 0,
    save: () => b.value,
    restore: (v: unknown) => void (b.value = v),
    generation: () => b.changes,
  };
  return b;
}

describe('StateKeeper', () => {
  it('a checkpoint is restored into the part of the same name; parts no one registered are kept', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'statsfs-keeper-'));
    const k1 = new StateKeeper(Source.root(), dir, recordingLog().log);
    k1.open();
    const a = box({ n: '18446744073709551615' });
    await k1.register('a', a);
    await k1.register('gone', box([1, 2]));
    await k1.close();
    expect(k1.stats).toMatchObject({ checkpoints: 1, fsyncs: 2 });
    expect(readdirSync(dir)).toEqual([STATE_FILE]);

    const k2 = new StateKeeper(Source.root(), dir, recordingLog().log);
    k2.open();
    const a2 = box(null);
    await k2.register('a', a2);
    expect(a2.value).toEqual({ n: '18446744073709551615' });
    await k2.close(); // 'gone' was not registered this time: it stays in the file
    const k3 = new StateKeeper(Source.root(), dir, recordingLog().log);
    k3.open();
    const gone = box(null);
    await k3.register('gone', gone);
    expect(gone.value).toEqual([1, 2]);
  });

  it('a corrupt file is moved aside with one error line; a newer one is refused and left alone', () => {
    const dir = mkdtempSync(join(tmpdir(), 'statsfs-keeper-'));
    writeFileSync(join(dir, STATE_FILE), 'SFSSTATE and then garbage');
    const { lines, log } = recordingLog();
    const k = new StateKeeper(Source.root(), dir, log);
    k.open();
    expect(lines.filter((l) => l.level === 'error')).toHaveLength(1);
    expect(lines[0].msg).toMatch(/corrupt: moved aside/);
    expect(k.stats.corruptMovedAside).toBe(1);
    expect(readdirSync(dir).filter((f) => !f.startsWith('statsfs.journal.') && f !== LOCK_FILE)).toEqual([expect.stringMatching(/^statsfs\.state\.corrupt-/)]);

    const newer = Buffer.alloc(20);
    newer.write('SFSSTATE', 'latin1');
    newer.writeUInt32LE(7, 8); // format 7, an empty body
    writeFileSync(join(dir, STATE_FILE), newer);
    expect(() => new StateKeeper(Source.root(), dir, log).open()).toThrow(StateRefused);
    expect(readFileSync(join(dir, STATE_FILE))).toEqual(newer);
  });

  it('journal records survive a keeper that never closed (kill -9), in order, up to a torn tail', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'statsfs-keeper-'));
    const k1 = new StateKeeper(Source.root(), dir, recordingLog().log);
    k1.open();
    const a = box(0);
    a.replay = (v) => void (a.value = v);
    await k1.register('a', a);
    await k1.checkpoint(); // a = 0, then a journal file for what follows
    k1.append('a', 1);
    k1.append('a', 2);
    expect(k1.stats.journalRecords).toBe(2);
    // never closed; and a record cut short at the end, as a power loss could leave
    const journal = readdirSync(dir).find((f) => f.startsWith('statsfs.journal.'))!;
    appendFileSync(join(dir, journal), Buffer.from([9, 0, 0, 0, 1, 2]));
    const { lines, log } = recordingLog();
    const k2 = new StateKeeper(Source.root(), dir, log);
    k2.open();
    const seen: unknown[] = [];
    const a2 = box(null);
    a2.replay = (v) => void seen.push(v);
    await k2.register('a', a2);
    expect([a2.value, seen]).toEqual([0, [1, 2]]);
    expect(k2.stats).toMatchObject({ journalReplayed: 2, journalTorn: 1 });
    expect(lines.filter((l) => /torn/.test(l.msg))).toHaveLength(1);
    // new records go to a later file, never after the torn one; a checkpoint then drops the old ones
    k2.append('a', 3);
    await k2.close();
    expect(readdirSync(dir)).toEqual([STATE_FILE]);
  });

  it('a part whose restore throws is logged and counted; the others are restored', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'statsfs-keeper-'));
    const k1 = new StateKeeper(Source.root(), dir, recordingLog().log);
    k1.open();
    await k1.register('a', box(1));
    await k1.register('b', box(2));
    await k1.close();
    const { lines, log } = recordingLog();
    const k2 = new StateKeeper(Source.root(), dir, log);
    k2.open();
    await k2.register('a', { ...box(0), restore: () => { throw new Error('no'); } });
    const b = box(0);
    await k2.register('b', b);
    expect(b.value).toBe(2);
    expect(k2.stats.loadFailures).toBe(1);
    expect(lines.some((l) => l.level === 'error' && /could not restore/.test(l.msg))).toBe(true);
  });

  it("a cleared counter's baseline is restored by path, unless above the counter now (it was reset)", () => {
    let raw = 1000n;
    const make = () => {
      const root = Source.root();
      const net = new Source('net');
      root.addSubordinate(net);
      net.addValues(new Schema([{ name: 'rx', type: counterType }]), { base: new LiveValues(() => raw) });
      return root;
    };
    const first = make();
    first.subordinate('net')!.clear('rx');
    raw = 1500n;
    expect(first.subordinate('net')!.getValue('rx')).toBe(500n);
    const saved = JSON.parse(JSON.stringify(baselinesPart(first).save()));
    expect(saved.baselines).toEqual([['net', 'rx', '1000']]);
    const second = make();
    baselinesPart(second).restore(saved);
    expect(second.subordinate('net')!.getValue('rx')).toBe(500n);
    raw = 10n; // the kernel's counter started again: the baseline no longer applies
    const third = make();
    const part = baselinesPart(third);
    part.restore(saved);
    expect(part.skipped).toBe(1);
    expect(third.subordinate('net')!.getValue('rx')).toBe(10n);
  });
});
