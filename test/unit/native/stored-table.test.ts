/**
 * The registry of values the FUSE session thread answers by itself (native/stored_table.h) against a
 * reference model, in C, built here with AddressSanitizer and UndefinedBehaviorSanitizer: a lost entry
 * would only make reads slower through the mount, so it is checked where it can be seen.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, tempDir } from '../../helpers/mount.js';

describe('native stored-value registry', () => {
  it('finds what was put, forgets what was removed, through growth and backward-shift deletion', () => {
    const exe = join(tempDir(), 'stored_table_test');
    const cc = spawnSync('gcc', ['-O1', '-g', '-Wall', '-Wextra', '-Werror', '-fsanitize=address,undefined', '-fno-sanitize-recover=all',
      '-o', exe, join(ROOT, 'test/native/stored_table_test.c')], { encoding: 'utf8' });
    expect(cc.stderr).toBe('');
    expect(cc.status).toBe(0);
    const run = spawnSync(exe, { encoding: 'utf8', timeout: 60_000 });
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^ok 800000 \d+\n$/);
    expect(run.status).toBe(0);
  });
});
