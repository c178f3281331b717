/**
 * The layers point one way (docs/architecture.md): every import between folders of src/ is one the table
 * below allows, so no folder-level cycle can come back unnoticed.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers/mount.js';

/** What each part of src/ may import besides itself. cli.ts and index.ts, at the top, may import anything. */
// log.ts and net.ts sit below every server: one logging interface, and listen-as-a-promise for the
// servers of export/ (/metrics) and producers/ (the producer socket, StatsD), which may not import each other.
const ALLOWED: Record<string, readonly string[]> = {
  'log.ts': [],
  'net.ts': [],
  model: [],
  protocol: [],
  collectors: ['model', 'log.ts'],
  fs: ['model', 'log.ts'],
  export: ['model', 'log.ts', 'net.ts'],
  producers: ['model', 'protocol', 'log.ts', 'net.ts'],
  state: ['model', 'log.ts'],
  client: ['protocol'],
  top: ['client'],
  daemon: ['model', 'protocol', 'collectors', 'fs', 'export', 'producers', 'state', 'log.ts'],
};

const SRC = join(ROOT, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** The part of src/ a path is in: its first folder, or the file itself at the top. */
const partOf = (path: string): string => relative(SRC, path).split('/')[0];

describe('architecture', () => {
  it('every import between parts of src/ goes down the layers', () => {
    const wrong: string[] = [];
    for (const file of sources(SRC)) {
      const from = partOf(file);
      if (from === 'cli.ts' || from === 'index.ts') continue;
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import\()\s*'(\.{1,2}\/[^']+)'/g)) {
        const to = partOf(normalize(join(dirname(file), m[1])).replace(/\.js$/, '.ts'));
        if (to === from) continue;
        expect(ALLOWED[from], `${from} is not in the table`).toBeDefined();
        if (!ALLOWED[from].includes(to)) wrong.push(`${relative(ROOT, file)} imports ${m[1]} (${from} -> ${to})`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('every part of src/ is in the table', () => {
    const parts = new Set(sources(SRC).map(partOf));
    parts.delete('cli.ts');
    parts.delete('index.ts');
    expect([...parts].sort()).toEqual(Object.keys(ALLOWED).sort());
  });
});
