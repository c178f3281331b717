#!/usr/bin/env node
/**
 * Load test: many readers hammer one statsfs file through the real daemon, while the daemon's memory, threads
 * and throughput are sampled every round.
 *
 *   node scripts/load.mjs [--readers 64] [--seconds 60] [--round 10] [--file statsfs/fuse/open/requests] [--json]
 *
 * Builds scripts/load/reader.c with gcc into a temp dir, mounts the built daemon (dist/, see `npm run build`)
 * as a separate process on a fresh temp mountpoint, runs the readers (open + read-until-EOF + close in a loop)
 * against <mountpoint>/<file>, and samples the daemon's VmRSS and thread count from /proc at every round.
 * Prints a table and a verdict (read errors, RSS drift after warm-up, throughput drift), or with --json one
 * JSON object on stdout (progress always goes to stderr).
 *
 * Exit status: 0 when the load ran, even if a target was missed (misses are reported, not failed); 1 when it
 * could not run (no gcc, build or mount failure, the daemon died); 2 on bad usage; 130 when interrupted.
 * The daemon is always stopped with SIGTERM and the mount checked (lazily detached if one is left).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, rmdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const READER_SOURCE = join(ROOT, 'scripts', 'load', 'reader.c');
const DAEMON = join(ROOT, 'bin', 'statsfs.js');

/** Targets: a miss is reported in the verdict, never turned into a failing exit status. */
const TARGET_RSS_DRIFT_PCT = 10; // RSS may grow at most this much over the second half of the run
const TARGET_THROUGHPUT_DROP_PCT = 20; // throughput may fall at most this much from the first round to the last

const MOUNT_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 10_000;
const READER_GRACE_MS = 30_000; // beyond --seconds, before the readers are killed

class Failure extends Error {}

const say = (line) => process.stderr.write(`load: ${line}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function usage() {
  return 'usage: node scripts/load.mjs [--readers 64] [--seconds 60] [--round 10] [--file statsfs/fuse/open/requests] [--json]';
}

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      readers: { type: 'string', default: '64' },
      seconds: { type: 'string', default: '60' },
      round: { type: 'string' },
      file: { type: 'string', default: 'statsfs/fuse/open/requests' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  const number = (name, text, integer) => {
    const n = Number(text);
    if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
      throw new Failure(`--${name} must be a positive ${integer ? 'whole ' : ''}number, not '${text}'`);
    }
    return n;
  };
  const readers = number('readers', values.readers, true);
  if (readers > 4096) throw new Failure('--readers must be at most 4096');
  const seconds = number('seconds', values.seconds, false);
  // Default rounds of 10 s; a short run gets 5 rounds instead, so there is something to compare.
  const round = values.round !== undefined ? number('round', values.round, false) : seconds >= 30 ? 10 : Math.max(1, seconds / 5);
  const file = values.file.replace(/^\/+/, '');
  if (file.split('/').includes('..')) throw new Failure('--file must be a path inside the mount (no ..)');
  return { readers, seconds, round: Math.min(round, seconds), file, json: values.json };
}

/** The mountpoints in /proc/self/mountinfo (field 5, octal escapes undone). */
function mountpoints() {
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' ')[4].replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))));
}

const isMounted = (dir) => mountpoints().includes(dir);

/** VmRSS (MB) and thread count of a live process, or null once it is gone. */
function sampleProcess(pid) {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rssKb = Number(/^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]);
    const threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1]);
    return { rssMB: rssKb / 1024, threads };
  } catch {
    return null;
  }
}

/** A child process with its exit as a promise; stderr lines are forwarded with a prefix and kept. */
function launch(command, args, prefix, keep) {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const exited = new Promise((res) => {
    child.on('error', (err) => res({ code: null, signal: null, error: err }));
    child.on('exit', (code, signal) => res({ code, signal, error: null }));
  });
  let alive = true;
  void exited.then(() => (alive = false));
  createInterface({ input: child.stderr }).on('line', (line) => {
    if (keep.length < 20) keep.push(line);
    process.stderr.write(`${prefix}: ${line}\n`);
  });
  return { child, exited, isAlive: () => alive };
}

function signal(proc, sig) {
  try {
    if (proc?.isAlive()) proc.child.kill(sig);
  } catch {
    // already gone
  }
}

/** Waits for a process to exit, or null after ms. */
async function waitExit(proc, ms) {
  let timer;
  const timeout = new Promise((r) => (timer = setTimeout(() => r(null), ms)));
  try {
    return await Promise.race([proc.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function buildReader(dir) {
  const probe = spawnSync('gcc', ['--version'], { stdio: 'ignore' });
  if (probe.error) throw new Failure(`gcc not found (${probe.error.code}): install a C compiler (e.g. 'apt-get install gcc') to build the load generator`);
  const out = join(dir, 'reader');
  const build = spawnSync('gcc', ['-O2', '-Wall', '-Wextra', '-std=gnu11', '-o', out, READER_SOURCE], { encoding: 'utf8' });
  if (build.status !== 0) {
    process.stderr.write(build.stderr ?? '');
    throw new Failure(`could not build ${READER_SOURCE} with gcc (exit ${build.status})`);
  }
  return out;
}

const fmt = (n, digits = 1) => (n === null || n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(digits));
const signed = (n, digits = 1) => (n === null || Number.isNaN(n) ? 'n/a' : `${n >= 0 ? '+' : ''}${n.toFixed(digits)}`);

function summarize(state) {
  const { opts, rows } = state;
  const s = {
    ran: rows.length > 0,
    readers: opts.readers,
    seconds: opts.seconds,
    roundSeconds: opts.round,
    file: opts.file,
    interrupted: state.interrupted,
    idle: state.idle,
    rounds: rows,
    totals: state.totals,
    firstErrors: state.readerMessages.slice(0, 5),
    daemonMessages: state.daemonMessages,
    problems: state.problems,
    verdict: null,
  };
  const totalErrors = state.totals?.errors ?? rows.reduce((a, r) => a + r.errors, 0);
  const last = rows.at(-1);
  // Drift is judged over the second half of the run: in the first half V8's young generation grows once to
  // its working size under this allocation rate (a step of ~18 MB at 64 readers, measured), while a leak
  // keeps growing to the end. With fewer than 3 rounds round 1 is the base.
  const base = rows.length >= 3 ? rows[Math.floor(rows.length / 2)] : rows[0];
  const rss =
    base && last && base !== last && base.rssMB !== null && last.rssMB !== null
      ? { fromRound: base.round, toRound: last.round, fromMB: base.rssMB, toMB: last.rssMB, mb: last.rssMB - base.rssMB, pct: ((last.rssMB - base.rssMB) / base.rssMB) * 100, warmupExcluded: rows.length >= 3 }
      : null;
  if (rss) rss.ok = rss.pct <= TARGET_RSS_DRIFT_PCT;
  const first = rows[0];
  const tput =
    first && last && first !== last && first.opsPerSec > 0
      ? { fromRound: first.round, toRound: last.round, from: first.opsPerSec, to: last.opsPerSec, pct: ((last.opsPerSec - first.opsPerSec) / first.opsPerSec) * 100 }
      : null;
  if (tput) tput.ok = tput.pct >= -TARGET_THROUGHPUT_DROP_PCT;
  const threads = rows.filter((r) => r.threads !== null).map((r) => r.threads);
  s.verdict = {
    errors: { total: totalErrors, target: 0, ok: totalErrors === 0 },
    rssDrift: rss && { ...rss, targetPct: TARGET_RSS_DRIFT_PCT },
    throughputDrift: tput && { ...tput, targetDropPct: TARGET_THROUGHPUT_DROP_PCT },
    threads: threads.length ? { first: threads[0], last: threads.at(-1), min: Math.min(...threads), max: Math.max(...threads) } : null,
    daemonStop: state.stop,
  };
  return s;
}

function printReport(s) {
  const out = [];
  const head = ['round', 'secs', 'ops/s', 'errors', 'RSS MB', 'threads'];
  const body = s.rounds.map((r) => [
    `${r.round}${r.round === 1 && s.rounds.length >= 3 ? '*' : ''}`,
    fmt(r.seconds, 1),
    fmt(r.opsPerSec, 0),
    String(r.errors),
    fmt(r.rssMB, 1),
    r.threads === null ? 'n/a' : String(r.threads),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
  out.push(`statsfs load: ${s.readers} readers on ${s.file} for ${s.seconds} s, rounds of ${s.roundSeconds} s${s.interrupted ? ' (interrupted)' : ''}`);
  if (s.idle) out.push(`idle before load: RSS ${fmt(s.idle.rssMB)} MB, ${s.idle.threads} threads`);
  out.push(line(head));
  for (const b of body) out.push(line(b));
  if (s.rounds.length >= 3) out.push('(* warm-up round; RSS drift is measured over the second half)');
  const v = s.verdict;
  const mark = (ok) => (ok ? 'ok' : 'MISSED');
  out.push('verdict:');
  const t = s.totals;
  out.push(`  read errors:      ${v.errors.total} of ${t ? t.ops + t.errors : '?'} cycles  ${mark(v.errors.ok)} (target 0)`);
  if (v.rssDrift) {
    const r = v.rssDrift;
    out.push(`  RSS drift:        ${signed(r.mb)} MB (${signed(r.pct)}%), ${fmt(r.fromMB)} -> ${fmt(r.toMB)} MB, round ${r.toRound} vs ${r.fromRound}${r.warmupExcluded ? '' : ' (too few rounds to skip warm-up)'}  ${mark(r.ok)} (target <= +${r.targetPct}%)`);
  } else {
    out.push('  RSS drift:        n/a (needs at least 2 rounds)');
  }
  if (v.throughputDrift) {
    const d = v.throughputDrift;
    out.push(`  throughput drift: ${signed(d.pct)}%, ${fmt(d.from, 0)} -> ${fmt(d.to, 0)} ops/s, round ${d.toRound} vs ${d.fromRound}  ${mark(d.ok)} (target >= -${d.targetDropPct}%)`);
  } else {
    out.push('  throughput drift: n/a (needs at least 2 rounds)');
  }
  if (v.threads) out.push(`  daemon threads:   ${v.threads.first} -> ${v.threads.last} (min ${v.threads.min}, max ${v.threads.max})`);
  if (v.daemonStop) {
    const d = v.daemonStop;
    const how = d.signal ? `killed by ${d.signal}` : `exit ${d.exitCode}`;
    out.push(`  daemon stop:      ${d.wasAlive ? 'SIGTERM' : 'already dead'} -> ${how}, ${d.mountLeft ? 'a mount was left (lazily detached)' : 'no mount left'}  ${mark(d.exitCode === 0 && !d.mountLeft)}`);
  }
  if (s.firstErrors.length) out.push(`  first errors:     ${s.firstErrors.join(' | ')}`);
  for (const p of s.problems) out.push(`  problem:          ${p}`);
  process.stdout.write(`${out.join('\n')}\n`);
}

async function run(opts, state) {
  if (!existsSync(join(ROOT, 'dist', 'src', 'cli.js'))) throw new Failure("statsfs is not built: run 'npm run build' in the statsfs directory first");
  state.workDir = mkdtempSync(join(tmpdir(), 'statsfs-load-'));
  const reader = buildReader(state.workDir);
  state.mountpoint = realpathSync(mkdtempSync(join(tmpdir(), 'statsfs-load-mnt-')));

  say(`mounting the daemon on ${state.mountpoint}`);
  state.daemon = launch(process.execPath, [DAEMON, 'mount', state.mountpoint, '--no-state', '--log-level', 'warn'], 'daemon', state.daemonMessages);
  const deadline = Date.now() + MOUNT_TIMEOUT_MS;
  while (!isMounted(state.mountpoint)) {
    if (state.interrupted) return;
    if (!state.daemon.isAlive()) {
      const e = await state.daemon.exited;
      throw new Failure(`the daemon exited before mounting (${e.error ? e.error.message : `exit ${e.code ?? e.signal}`}): see its messages above`);
    }
    if (Date.now() > deadline) throw new Failure(`the daemon did not mount ${state.mountpoint} within ${MOUNT_TIMEOUT_MS / 1000} s`);
    await sleep(50);
  }
  const target = join(state.mountpoint, opts.file);
  try {
    if (!statSync(target).isFile()) throw new Failure(`${opts.file} is not a file in the mounted tree: pick a value file such as statsfs/fuse/open/requests`);
  } catch (err) {
    if (err instanceof Failure) throw err;
    throw new Failure(`cannot use ${opts.file} in the mounted tree (${err.code ?? err.message}): pick a value file such as statsfs/fuse/open/requests`);
  }
  const pid = state.daemon.child.pid;
  await sleep(200);
  state.idle = sampleProcess(pid);

  say(`${opts.readers} readers on ${opts.file} for ${opts.seconds} s (rounds of ${opts.round} s)`);
  state.reader = launch(reader, [target, String(opts.readers), String(opts.seconds), String(opts.round)], 'reader', state.readerMessages);
  let prev = { elapsed: 0, ops: 0, errors: 0 };
  createInterface({ input: state.reader.child.stdout }).on('line', (line) => {
    const f = line.trim().split(/\s+/);
    if (f[0] === 'R') {
      const sample = sampleProcess(pid);
      const [round, elapsed, ops, errors] = [Number(f[1]), Number(f[2]), Number(f[3]), Number(f[4])];
      const secs = elapsed - prev.elapsed;
      const row = {
        round,
        seconds: secs,
        ops: ops - prev.ops,
        opsPerSec: secs > 0 ? (ops - prev.ops) / secs : 0,
        errors: errors - prev.errors,
        rssMB: sample?.rssMB ?? null,
        threads: sample?.threads ?? null,
      };
      prev = { elapsed, ops, errors };
      state.rows.push(row);
      say(`round ${round}: ${fmt(row.opsPerSec, 0)} ops/s, ${row.errors} errors, RSS ${fmt(row.rssMB)} MB, ${row.threads ?? 'n/a'} threads`);
      if (!sample && !state.problems.some((p) => p.startsWith('the daemon was gone'))) state.problems.push(`the daemon was gone at round ${round}`);
    } else if (f[0] === 'DONE') {
      state.totals = { elapsed: Number(f[1]), ops: Number(f[2]), errors: Number(f[3]), abnormalChildren: Number(f[4]) };
    }
  });

  let result = await waitExit(state.reader, (opts.seconds * 1000) + READER_GRACE_MS);
  if (!result) {
    state.problems.push(`the readers did not finish within ${opts.seconds} s + ${READER_GRACE_MS / 1000} s: stopped them`);
    signal(state.reader, 'SIGTERM');
    result = (await waitExit(state.reader, 5000)) ?? (signal(state.reader, 'SIGKILL'), await state.reader.exited);
  }
  await sleep(50); // let the last stdout lines arrive
  if (result.error) throw new Failure(`could not start the readers: ${result.error.message}`);
  if (state.rows.length === 0 && !state.interrupted) throw new Failure(`the readers did not run (exit ${result.code ?? result.signal}): see their messages above`);
  if (state.totals?.abnormalChildren) state.problems.push(`${state.totals.abnormalChildren} reader processes exited abnormally`);
  if (!state.daemon.isAlive()) state.problems.push('the daemon died during the load');
}

/** Stops readers and daemon (SIGTERM first), makes sure no mount is left, removes the temp dirs. */
async function cleanup(state) {
  if (state.reader?.isAlive()) {
    signal(state.reader, 'SIGTERM');
    if (!(await waitExit(state.reader, 5000))) signal(state.reader, 'SIGKILL');
  }
  if (state.daemon) {
    const wasAlive = state.daemon.isAlive();
    signal(state.daemon, 'SIGTERM');
    let e = await waitExit(state.daemon, STOP_TIMEOUT_MS);
    if (!e) {
      state.problems.push(`the daemon did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGTERM: killed it`);
      signal(state.daemon, 'SIGKILL');
      e = await state.daemon.exited;
    }
    const mountLeft = state.mountpoint ? isMounted(state.mountpoint) : false;
    if (mountLeft) {
      const r = spawnSync('fusermount3', ['-u', '-z', state.mountpoint], { encoding: 'utf8' });
      if (r.status !== 0) spawnSync('umount', ['-l', state.mountpoint]);
      if (isMounted(state.mountpoint)) state.problems.push(`could not detach the mount at ${state.mountpoint}: run 'fusermount3 -u -z ${state.mountpoint}'`);
    }
    state.stop = { exitCode: e.code, signal: e.signal, wasAlive, mountLeft };
  }
  if (state.workDir) rmSync(state.workDir, { recursive: true, force: true });
  if (state.mountpoint && !isMounted(state.mountpoint)) {
    try {
      rmdirSync(state.mountpoint);
    } catch {
      // not empty or gone: leave it
    }
  }
}

async function main() {
  let opts;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (err) {
    say(`${err.message}\n${usage()}`);
    return 2;
  }
  if (!opts) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  const state = { opts, rows: [], totals: null, idle: null, problems: [], readerMessages: [], daemonMessages: [], interrupted: false, stop: null };
  const onSignal = (sig) => {
    if (state.interrupted) return;
    state.interrupted = true;
    say(`${sig}: stopping`);
    signal(state.reader, 'SIGTERM'); // the readers report their partial round and exit; cleanup follows
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  // Last resort if something escapes: never leave a daemon or a mount behind.
  process.on('exit', () => {
    signal(state.reader, 'SIGKILL');
    if (state.daemon?.isAlive()) signal(state.daemon, 'SIGKILL');
    if (state.mountpoint && isMounted(state.mountpoint)) spawnSync('fusermount3', ['-u', '-z', state.mountpoint]);
  });

  let failure = null;
  try {
    await run(opts, state);
  } catch (err) {
    failure = err instanceof Failure ? err.message : `unexpected error: ${err?.stack ?? err}`;
  } finally {
    await cleanup(state);
  }
  if (failure) {
    say(failure);
    if (opts.json) process.stdout.write(`${JSON.stringify({ ...summarize(state), ran: false, failure })}\n`);
    return 1;
  }
  const summary = summarize(state);
  if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else printReport(summary);
  if (state.interrupted) return 130;
  return summary.ran && !state.problems.some((p) => p.startsWith('the daemon died')) ? 0 : 1;
}

process.exitCode = await main();
