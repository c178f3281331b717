import { defineConfig } from 'vitest/config';
import type { File, Task } from 'vitest';

/** Ends the run with the plain "N passed, N failed, N skipped" line that any CI log reader understands. */
class SummaryLine {
  onFinished(files: File[] = []): void {
    const counts = { pass: 0, fail: 0, skip: 0 };
    const walk = (task: Task): void => {
      if (task.type === 'suite') task.tasks.forEach(walk);
      else if (task.result?.state === 'pass') counts.pass++;
      else if (task.result?.state === 'fail') counts.fail++;
      else counts.skip++;
    };
    files.forEach(walk);
    // a file that failed to load has no tests but must count as a failure
    counts.fail += files.filter((f) => f.result?.state === 'fail' && f.tasks.length === 0).length;
    process.stdout.write(`\n${counts.pass} passed, ${counts.fail} failed, ${counts.skip} skipped\n`);
  }
}

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    reporters: ['default', new SummaryLine()],
    // mount tests spawn daemons and shell tools: keep them from starving each other on 2 cores
    maxWorkers: 2,
    testTimeout: 30_000,
  },
});
