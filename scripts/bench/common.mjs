// Shared helpers of the benchmark suite: building the C programs, running the processes under test (each
// benchmark's subject and baseline run in processes of their own, never in the driver), waiting for mounts,
// alternating rounds, statistics and the rows of the report.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const HERE = join(ROOT, 'scripts', 'bench');
/** Compiled programs go here (ignored by git and eslint). */
export const BUILD_DIR = join(ROOT, '.bench');

/** Thrown when a benchmark cannot run; the report says why. */
export class CannotRun extends Error {}

export const say = (msg) => process.stderr.write(`bench: ${msg}\n`);
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The value k of source i in the export and memory trees: counters past 2^32, as byte counts are, so
 * both 32-bit halves of the stored words are in use. prom-client gets the same numbers. */
export const valueOf = (i, k) => i * 1_000_003 + k * 4_294_967_311;

// ---- building ----

const built = new Map();

/** Compiles scripts/bench/<name>.c once per run; with fuse, against libfuse3 via pkg-config. */
export function buildC(name, { fuse = false } = {}) {
  if (built.has(name)) return built.get(name);
  mkdirSync(BUILD_DIR, { recursive: true });
  const out = join(BUILD_DIR, name);
  let flags = [];
  if (fuse) {
    const pc = spawnSync('pkg-config', ['--cflags', '--libs', 'fuse3'], { encoding: 'utf8' });
    if (pc.error || pc.status !== 0) throw new CannotRun(`pkg-config --cflags --libs fuse3 failed: ${pc.error?.message ?? pc.stderr.trim()} (install libfuse3-dev)`);
    flags = pc.stdout.trim().split(/\s+/);
  }
  const cc = spawnSync('gcc', ['-O2', '-std=gnu11', '-Wall', '-Wextra', '-Wno-unused-parameter', '-o', out, join(HERE, `${name}.c`), ...flags, '-lpthread'], { encoding: 'utf8' });
  if (cc.error || cc.status !== 0) throw new CannotRun(`gcc could not build ${name}.c: ${cc.error?.message ?? cc.stderr.trim()}`);
  built.set(name, out);
  return out;
}

/** dist/src must exist: every Node program under test imports the compiled library. */
export function requireBuild() {
  if (!existsSync(join(ROOT, 'dist', 'src', 'index.js'))) throw new CannotRun("statsfs is not built: run 'npm run build' (npx tsc -p tsconfig.json)");
}

// ---- mounts ----

/** The type of the topmost filesystem mounted at path, per /proc/mounts, or null. */
export function mountType(path) {
  const unescape = (s) => s.replace(/\\([0-7]{3})/g, (_m, o) => String.fromCharCode(parseInt(o, 8)));
  let type = null;
  for (const line of readFileSync('/proc/mounts', 'utf8').split('\n')) {
    const f = line.split(' ');
    if (f.length > 2 && unescape(f[1]) === path) type = f[2];
  }
  return type;
}

export const isMounted = (path) => mountType(path) !== null;

/** Detaches whatever is still mounted at path (lazily, so a busy mount cannot block the run). */
export function forceUnmount(path) {
  if (!isMounted(path)) return;
  const r = spawnSync('fusermount3', ['-u', '-z', path]);
  if (r.status !== 0 || isMounted(path)) spawnSync('umount', ['-l', path]);
}

// ---- processes ----

/** Processes started and not yet exited, mountpoints and temp dirs in use, for the last-resort cleanup at exit. */
const running = new Set();
const mountpoints = new Set();
const tempDirs = new Set();

/**
 * Everything a benchmark starts: processes, mountpoints, temp dirs. close() tears it all down in reverse
 * order (SIGTERM, then SIGKILL; a mount left behind is detached), whether the benchmark ended well or not.
 */
export class Scope {
  #undo = [];

  /** Runs fn at close, in reverse order with the rest (a setting to put back). */
  defer(fn) {
    this.#undo.push(async () => fn());
  }

  /** A fresh directory under the system temp dir (or under base). */
  tempDir(prefix = 'statsfs-bench-', base = tmpdir()) {
    const dir = mkdtempSync(join(base, prefix));
    tempDirs.add(dir);
    this.#undo.push(async () => {
      tempDirs.delete(dir);
      rmSync(dir, { recursive: true, force: true });
    });
    return dir;
  }

  /** A fresh, empty mountpoint; removed at close once nothing is mounted on it. */
  mountpoint() {
    const dir = mkdtempSync(join(tmpdir(), 'statsfs-bench-mnt-'));
    mountpoints.add(dir);
    this.#undo.push(async () => {
      mountpoints.delete(dir);
      forceUnmount(dir);
      try {
        rmdirSync(dir);
      } catch {
        // still busy: leave it rather than fail the run
      }
    });
    return dir;
  }

  /** A fresh directory on tmpfs: in /dev/shm when that is a tmpfs, else on a tmpfs mounted for the run. */
  async tmpfsDir() {
    if (mountType('/dev/shm') === 'tmpfs') return this.tempDir('statsfs-bench-', '/dev/shm');
    const dir = this.mountpoint();
    await mustRun('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'statsfs-bench', dir]);
    return dir;
  }

  /**
   * Starts a long-running process and resolves once ready(line) returns something truthy for a line of
   * its stdout or stderr (that value is returned as `ready`); stdin 'pipe' lets the caller command it. Rejects with the process's last messages if
   * it exits first or takes longer than timeoutMs.
   */
  start(name, cmd, args, { ready, timeoutMs = 120_000, mountpoint = null, env, stdin = 'ignore' } = {}) {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: [stdin, 'pipe', 'pipe'], env: env ?? process.env });
    const tail = [];
    const proc = { name, child, tail, exited: null };
    proc.exited = new Promise((res) => child.once('exit', (code, signal) => res({ code, signal })));
    running.add(child);
    proc.exited.then(() => running.delete(child));
    child.once('error', () => running.delete(child));
    this.#undo.push(() => stop(proc, mountpoint));
    return new Promise((resolveReady, reject) => {
      const timer = setTimeout(() => fail(`not ready within ${timeoutMs / 1000} s`), timeoutMs);
      const fail = (why) => {
        clearTimeout(timer);
        reject(new CannotRun(`${name}: ${why}${tail.length ? `; its last messages: ${tail.slice(-5).join(' | ')}` : ''}`));
      };
      let isReady = false;
      const onLine = (line) => {
        tail.push(line.slice(0, 400));
        if (tail.length > 50) tail.shift();
        if (isReady) return;
        const value = ready(line);
        if (value) {
          isReady = true;
          clearTimeout(timer);
          resolveReady({ ...proc, ready: value });
        }
      };
      createInterface({ input: child.stdout }).on('line', onLine);
      createInterface({ input: child.stderr }).on('line', onLine);
      child.once('error', (err) => fail(err.message));
      proc.exited.then(({ code, signal }) => isReady || fail(`exited (${code ?? signal}) before it was ready`));
    });
  }

  async close() {
    while (this.#undo.length) {
      try {
        await this.#undo.pop()();
      } catch (err) {
        say(`cleanup: ${err.message}`);
      }
    }
  }
}

async function stop(proc, mountpoint) {
  const { child } = proc;
  if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
    child.kill('SIGTERM');
    const done = await Promise.race([proc.exited, sleep(10_000).then(() => null)]);
    if (!done) {
      say(`${proc.name} did not stop within 10 s of SIGTERM: killing it`);
      child.kill('SIGKILL');
      await proc.exited;
    }
  }
  if (mountpoint) forceUnmount(mountpoint);
}

// Whatever escapes (an exception, Ctrl-C): never leave a process or a mount behind.
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
  for (const dir of mountpoints) {
    forceUnmount(dir);
    try {
      rmdirSync(dir);
    } catch {
      // still busy: leave it
    }
  }
  for (const dir of tempDirs) {
    try {
      rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    } catch {
      // a dying child may still be writing there: leave it
    }
  }
});

// ---- the processes under test ----

/**
 * The real daemon (bin/statsfs.js mount) on a fresh mountpoint, showing only its own statistics; in memory
 * unless `state` is true (then its state directory is a fresh one of the scope).
 */
export async function startDaemon(scope, { env, state = false } = {}) {
  const mnt = scope.mountpoint();
  const socket = join(scope.tempDir(), 'producers.sock');
  const stateArgs = state ? ['--state-dir', join(scope.tempDir(), 'state')] : ['--no-state'];
  const args = [join(ROOT, 'bin', 'statsfs.js'), 'mount', mnt, '--no-collectors', '--no-allow-other', '--socket', socket, ...stateArgs];
  const proc = await scope.start('statsfs daemon', process.execPath, args, { ready: (line) => line.includes('"msg":"mounted"'), mountpoint: mnt, env });
  return { ...proc, mnt, socket };
}

/** tree.mjs (the library program) with the given shape, mounted on a fresh mountpoint; `ready` is its JSON. */
export async function startTree(scope, args, { timeoutMs } = {}) {
  const mnt = scope.mountpoint();
  const json = (line) => line.startsWith('ready ') && JSON.parse(line.slice(6));
  const stdin = args.includes('--control') ? 'pipe' : 'ignore';
  const proc = await scope.start('statsfs library program (tree.mjs)', process.execPath, [join(HERE, 'tree.mjs'), ...args, '--mount', mnt], { ready: json, mountpoint: mnt, stdin, timeoutMs });
  return { ...proc, mnt };
}

/** Sends a --control command to tree.mjs and resolves with its answer: { expected: root value_0 (a bigint), ms: its writes' time }. */
export function treeCommand(tree, command) {
  let waiting = answerQueues.get(tree.child);
  if (waiting === undefined) {
    const queue = (waiting = []);
    answerQueues.set(tree.child, queue);
    createInterface({ input: tree.child.stdout }).on('line', (line) => {
      const [word, expected, ms] = line.split(' ');
      if (word === 'done') queue.shift()?.({ expected: BigInt(expected), ms: Number(ms) });
    });
  }
  return new Promise((resolveDone) => {
    waiting.push(resolveDone);
    tree.child.stdin.write(`${command}\n`);
  });
}
const answerQueues = new WeakMap();

/** basefs.c, the C baseline, on a fresh mountpoint. */
export async function startBasefs(scope, args = []) {
  const mnt = scope.mountpoint();
  const proc = await scope.start(`basefs ${args.join(' ')}`.trim(), buildC('basefs', { fuse: true }), [mnt, ...args], { ready: (line) => line === 'ready', mountpoint: mnt });
  return { ...proc, mnt };
}

/** Runs a short command to completion: { code, stdout, stderr, ms }. Rejects if it cannot start. */
export function runCommand(cmd, args, { stdout = 'pipe', timeoutMs = 600_000 } = {}) {
  return new Promise((resolveRun, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', stdout, 'pipe'], timeout: timeoutMs });
    running.add(child);
    child.once('exit', () => running.delete(child));
    let out = '';
    let err = '';
    child.stdout?.setEncoding('utf8').on('data', (d) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
    child.once('error', reject);
    child.once('close', (code, signal) => resolveRun({ code: code ?? signal, stdout: out, stderr: err, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
  });
}

/** Like runCommand(), but a non-zero exit is a CannotRun naming the command. */
export async function mustRun(cmd, args, options) {
  const r = await runCommand(cmd, args, options);
  if (r.code !== 0) throw new CannotRun(`${cmd.split('/').pop()} ${args.join(' ')} failed (${r.code}): ${r.stderr.trim().slice(0, 300)}`);
  return r;
}

let ticksPerSecond = null;

/** CPU time (user + system, ms) each thread of a process has used so far, by thread id (10 ms ticks). */
export function threadCpuMs(pid) {
  ticksPerSecond ??= Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;
  const out = new Map();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // the command name may hold spaces
      out.set(Number(tid), ((Number(f[11]) + Number(f[12])) * 1000) / ticksPerSecond);
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

let devNull = null;
/** A file descriptor on /dev/null, for tools whose output must not be collected (ls). */
export function nullFd() {
  devNull ??= openSync('/dev/null', 'w');
  return devNull;
}
process.on('exit', () => devNull !== null && closeSync(devNull));

// ---- the C reader ----

/** Throughput: `procs` processes loop open+read+close on path for `seconds`, on the given CPUs if any. */
export async function readerOps(path, procs, seconds, { cpus = null } = {}) {
  const args = ['ops', String(seconds), String(procs), path];
  const r = cpus === null ? await mustRun(buildC('reader'), args) : await mustRun('taskset', ['-c', cpus, buildC('reader'), ...args]);
  const m = /ops (\d+) errors (\d+) seconds ([\d.]+)/.exec(r.stdout);
  if (!m) throw new CannotRun(`reader printed no result: ${r.stdout} ${r.stderr}`);
  return { ops: Number(m[1]), errors: Number(m[2]), seconds: Number(m[3]), perSec: Number(m[1]) / Number(m[3]) };
}

/** Latency: `count` timed open+read-to-EOF+close passes over paths, in ms, plus the bytes one pass read. */
export async function readerLatency(paths, count, warmup = 1) {
  const r = await mustRun(buildC('reader'), ['lat', String(count), String(warmup), ...paths]);
  const bytes = /bytes (\d+)/.exec(r.stdout);
  const us = /^us (.*)$/m.exec(r.stdout);
  if (!bytes || !us) throw new CannotRun(`reader printed no result: ${r.stdout} ${r.stderr}`);
  return { bytes: Number(bytes[1]), ms: us[1].trim().split(' ').map((x) => Number(x) / 1000) };
}

// ---- HTTP ----

/** GET a URL to the end of its body on a fresh connection: { ms, bytes, headers }. */
export function httpGet(url) {
  return new Promise((resolveGet, reject) => {
    const t0 = process.hrtime.bigint();
    get(url, { agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (chunk) => (bytes += chunk.length));
      res.once('end', () => {
        if (res.statusCode !== 200) reject(new CannotRun(`GET ${url}: HTTP ${res.statusCode}`));
        else resolveGet({ ms: Number(process.hrtime.bigint() - t0) / 1e6, bytes, headers: res.headers });
      });
      res.once('error', reject);
    }).once('error', reject);
  });
}

// ---- rounds and statistics ----

/**
 * Runs every contender once per round, in the same order (A B A B ...), so that whatever the machine does
 * meanwhile falls on all of them alike. Returns the samples by contender name.
 */
export async function alternate(what, rounds, contenders) {
  const samples = Object.fromEntries(contenders.map((c) => [c.name, []]));
  for (let r = 0; r < rounds; r++) {
    const got = [];
    for (const c of contenders) {
      const x = await c.run(r);
      samples[c.name].push(x);
      got.push(`${c.name} ${c.show ? c.show(x) : x}`);
    }
    say(`${what} round ${r + 1}/${rounds}: ${got.join(', ')}`);
  }
  return samples;
}

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function summary(xs) {
  return { n: xs.length, median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

// ---- formatting and rows ----

export function fmtNum(x, digits = 0) {
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** 3 significant digits, thousands separated: 12,300 / 1,230 / 123 / 12.3 / 1.23. */
export function fmt3(x) {
  const a = Math.abs(x);
  if (a >= 100) return fmtNum(Number(x.toPrecision(3)));
  return fmtNum(x, a >= 10 ? 1 : 2);
}

/** Rates: "12,300 ops/s", or "1.23 M values/s" from a million on. */
export const fmtRate = (unit) => (x) => (x >= 1e6 ? `${fmt3(x / 1e6)} M ${unit}/s` : `${fmt3(x)} ${unit}/s`);
export const fmtMs = (x) => `${fmt3(x)} ms`;
export const fmtBytes = (x) => `${fmt3(x)} B`;

/** "1.2 – 3.4 ms" when both ends have the same unit, else "1.2 ms – 3.4 s". */
function span(a, b) {
  const unit = (x) => x.slice(x.indexOf(' '));
  return unit(a) === unit(b) ? `${a.slice(0, a.indexOf(' '))} – ${b}` : `${a} – ${b}`;
}

/**
 * A measured row: median and min–max of the samples. Options: target (text), met (boolean) and note.
 */
export function measured(subject, samples, fmt, { target = '', met = null, note = '' } = {}) {
  const s = summary(samples);
  return { subject, median: fmt(s.median), range: s.n > 1 ? `${span(fmt(s.min), fmt(s.max))} (${s.n})` : `(${s.n})`, ratio: '', target, met, note, value: s.median };
}

/**
 * A comparison row: the ratio of the medians (higher is better for statsfs), with the per-round ratios of
 * paired rounds as the range.
 */
export function ratioRow(subject, ours, theirs, { lowerIsBetter = false, min = null } = {}) {
  const ratio = lowerIsBetter ? median(theirs) / median(ours) : median(ours) / median(theirs);
  const paired = ours.map((x, i) => (lowerIsBetter ? theirs[i] / x : x / theirs[i]));
  const r = (x) => `${x.toFixed(2)}×`;
  return {
    subject,
    median: '',
    range: paired.length > 1 ? `per round ${r(Math.min(...paired))} – ${r(Math.max(...paired))}` : '',
    ratio: r(ratio),
    target: min === null ? '' : `≥ ${min.toFixed(1)}×`,
    met: min === null ? null : ratio >= min,
    note: '',
    value: ratio,
  };
}
