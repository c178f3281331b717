#!/usr/bin/env node
// Thin launcher: the CLI lives in src/cli.ts, compiled to dist/ by `npm run setup`.
import { existsSync } from 'node:fs';

const cli = new URL('../dist/src/cli.js', import.meta.url);
if (!existsSync(cli)) {
  process.stderr.write("statsfs: not built yet: run 'npm run setup' in the statsfs directory first\n");
  process.exit(1);
}
const { main } = await import(cli.href);
const code = await main(process.argv);
// Done (a daemon has unmounted and closed its services): a peer still holding a connection open must not
// keep the process alive. Output to a pipe may still be queued (a reader slower than us): let it out first.
const flushed = (stream) => new Promise((resolve) => stream.write('', resolve));
await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
process.exit(code);
