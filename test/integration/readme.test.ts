/**
 * The README's Library API example, run as written: its code block is copied into a program beside a
 * node_modules/statsfs that points at this checkout, started in a separate process, read with cat, and
 * stopped with SIGINT and SIGTERM, which must unmount.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { forceUnmount, isMounted, ROOT, sh, skipWithoutFuse, tempDir, waitFor } from '../helpers/mount.js';

function readmeBlock(after: string): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const at = readme.indexOf(after);
  expect(at).toBeGreaterThan(0);
  const block = /```js\n([\s\S]*?)```/.exec(readme.slice(at));
  expect(block).not.toBeNull();
  return block![1];
}

describe.skipIf(skipWithoutFuse)('README examples', { timeout: 60_000 }, () => {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`the Library API example mounts as written, serves, and unmounts on ${signal}`, async () => {
      const dir = tempDir();
      mkdirSync(join(dir, 'node_modules'));
      symlinkSync(ROOT, join(dir, 'node_modules', 'statsfs'));
      writeFileSync(join(dir, 'example.mjs'), readmeBlock('## Library API'));
      const m = join(dir, 'mystats'); // not created: the example must create it
      const child = spawn(process.execPath, ['example.mjs', m], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      try {
        await waitFor(`the example to mount (output: ${out})`, () => isMounted(m));
        expect(sh(`cat ${m}/net/eth0/state`).stdout).toBe('up\n');
        expect(sh(`cat ${m}/net/rx_bytes`).stdout).toBe('9223372036854775808\n');
        child.kill(signal);
        expect(await exited).toBe(0);
        expect(isMounted(m)).toBe(false);
      } finally {
        child.kill('SIGKILL');
        forceUnmount(m);
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});
