#!/usr/bin/env node
// The benchmark suite: every benchmark against its baseline in the same run, written to BENCHMARKS.md.
//
//   npm run bench                       quick mode (a few minutes on 2 cores)
//   npm run bench -- --full             more and longer rounds
//   npm run bench -- --only cat,ls      some benchmarks only (cat, ls, aggregate, memory, ingest, export, host, histogram, statsd, fairness)
//   npm run bench -- --out <file>       write the report elsewhere (default BENCHMARKS.md at the repo root)
//
// Progress goes to stderr. Exit status 0 when every benchmark ran, whether or not it met its target; 1 when
// one could not run (the report then says why, and still holds the others); 2 on bad usage.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, release, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CannotRun, ROOT, say, Scope } from './bench/common.mjs';

const BENCHMARKS = ['cat', 'ls', 'aggregate', 'memory', 'ingest', 'export', 'host', 'histogram', 'statsd', 'fairness'];

let opts;
try {
  opts = parseArgs({
    options: { full: { type: 'boolean', default: false }, only: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } },
  }).values;
} catch (err) {
  say(err.message);
  process.exit(2);
}
if (opts.help) {
  process.stdout.write('usage: node scripts/bench.mjs [--full] [--only cat,ls,aggregate,memory,ingest,export,host,histogram,statsd,fairness] [--out BENCHMARKS.md]\n');
  process.exit(0);
}
const selected = opts.only ? opts.only.split(',').map((s) => s.trim()).filter(Boolean) : BENCHMARKS;
const unknown = selected.filter((n) => !BENCHMARKS.includes(n));
if (unknown.length) {
  say(`unknown benchmark ${unknown.join(', ')}: choose among ${BENCHMARKS.join(', ')}`);
  process.exit(2);
}
const outFile = resolve(opts.out ?? join(ROOT, 'BENCHMARKS.md'));
const mode = opts.full ? 'full' : 'quick';

// Ctrl-C or a kill: exit through process.exit so that the helpers' exit hook stops children and detaches mounts.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.once(sig, () => process.exit(130));

const started = new Date();
const results = [];
let elapsed = 0;

// ---- the report ----

function sh(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch {
    return 'unknown';
  }
}

function machine() {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? 'unknown';
  const pkg = (p) => JSON.parse(readFileSync(join(ROOT, 'node_modules', p, 'package.json'), 'utf8')).version;
  return [
    ['CPU', `${model}, ${availableParallelism()} cores`],
    ['memory', `${(totalmem() / 2 ** 30).toFixed(1)} GiB`],
    ['kernel', `Linux ${release()}`],
    ['Node.js', process.version],
    ['libfuse', `${sh('pkg-config', ['--modversion', 'fuse3'])} (${sh('fusermount3', ['-V'])})`],
    ['C compiler', sh('gcc', ['-dumpfullversion']).replace(/^/, 'gcc ')],
    ['prom-client', pkg('prom-client')],
    ['hdr-histogram-js', pkg('hdr-histogram-js')],
  ];
}

const cell = (s) => String(s ?? '').replace(/\|/g, '\\|');
const verdict = (met) => (met === true ? 'met' : met === false ? '**not met**' : '');
const table = (head, rows) => [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(cell).join(' | ')} |`)].join('\n');

function report() {
  const out = [];
  out.push('# statsfs benchmarks', '');
  out.push(
    `Written by \`npm run bench\` (scripts/bench.mjs) in **${mode} mode** on ${started.toISOString().replace(/\.\d+Z$/, 'Z')}, ` +
      `in ${Math.floor(elapsed / 60)} min ${Math.round(elapsed % 60)} s. Do not edit by hand: rerun \`npm run bench\` ` +
      '(or `npm run bench -- --full` for more and longer rounds).',
    '',
  );
  out.push('## Machine', '', table(['', ''], machine()), '');

  const summary = [];
  for (const r of results) {
    if (r.error) summary.push([r.mod.title, '', '', `could not run: ${r.error}`]);
    else for (const row of r.rows.filter((x) => x.met !== null)) summary.push([r.mod.title, row.subject, row.target, `${row.ratio || row.median}: ${verdict(row.met)}`]);
  }
  out.push('## Summary', '', table(['benchmark', 'measure', 'target', 'result'], summary), '');

  out.push(
    '## Method',
    '',
    '- Subject and baseline run **side by side in the same run**, each in a process of its own (the statsfs daemon, a Node program mounting a tree with the library, the C baseline, prom-client), never in the driver.',
    '- Throughput and time figures alternate subject and baseline round by round (A B A B …), so machine noise falls on both; the table gives the **median** over rounds and the min – max (with the number of rounds in brackets).',
    '- A ratio is a ratio of medians, oriented so that above 1 means statsfs is better; the range next to it is the min – max of the per-round ratios (subject and baseline of the same round).',
    '- Native clients: the file loops are run by scripts/bench/reader.c, the C baseline filesystem is scripts/bench/basefs.c (libfuse3 low-level API, same timeouts, readdirplus, direct_io and per-open snapshot as statsfs: see the comment at its top). Both are built by the script with gcc and `pkg-config fuse3`.',
    '- A missed target is reported, not fatal: the script fails only when a benchmark cannot run.',
    '',
  );

  BENCHMARKS.filter((n) => selected.includes(n)).forEach((name) => {
    const r = results.find((x) => x.mod.name === name);
    out.push(`## ${BENCHMARKS.indexOf(name) + 1}. ${r.mod.title}`, '');
    if (r.error) {
      out.push(`**could not run: ${r.error}**`, '');
      return;
    }
    out.push(table(['measure', 'median', 'min – max (n)', 'ratio', 'target', 'result'], r.rows.map((x) => [x.subject, x.median, x.range, x.ratio, x.target, verdict(x.met)])), '');
    for (const n of r.notes ?? []) out.push(`- ${n}`);
    out.push(`- Took ${r.seconds.toFixed(0)} s.`, '');
  });
  return out.join('\n');
}

async function main() {
  for (const name of selected) {
    const mod = await import(`./bench/${name}.mjs`);
    const scope = new Scope();
    const t0 = performance.now();
    say(`== ${mod.title} (${mode})`);
    try {
      const r = await mod.run({ full: opts.full, scope });
      results.push({ mod, ...r });
    } catch (err) {
      const reason = err instanceof CannotRun ? err.message : (err?.stack ?? String(err));
      say(`${mod.title}: could not run: ${reason}`);
      results.push({ mod, error: reason.split('\n')[0] });
    } finally {
      await scope.close();
    }
    results.at(-1).seconds = (performance.now() - t0) / 1000;
    say(`${mod.title}: ${results.at(-1).seconds.toFixed(0)} s`);
  }
  elapsed = (Date.now() - started.getTime()) / 1000;

  writeFileSync(outFile, report());
  say(`wrote ${outFile} (${Math.floor(elapsed / 60)} min ${Math.round(elapsed % 60)} s)`);
  process.exitCode = results.some((r) => r.error) ? 1 : 0;
}

await main();
