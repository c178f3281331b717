/**
 * `statsfs top` in a real terminal: tmux (a private server per run) runs it in a shell against the real
 * daemon, fed by a producer in another Node process that counts at a known rate; keys go in with
 * send-keys and the screen comes back with capture-pane.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BIN, ROOT, sh, skipWithoutFuse, startDaemon, tempDir, waitFor, type Daemon } from '../helpers/mount.js';

/** What the producer publishes; web/hits counts at RATE per second, on the producer's own clock. */
const RATE = 1000;
const PRODUCER = `
import { connect } from ${JSON.stringify(join(ROOT, 'dist/src/client/index.js'))};
const client = await connect({ path: process.argv[1] });
const schema = client.define([
  { name: 'errors', type: 'u64', aggr: 'sum' },
  { name: 'hits', type: 'u64', aggr: 'sum', unit: 'requests' },
  { name: 'queue', type: 'u32', aggr: 'max', floating: true },
]);
client.source('app').aggregates(schema);
const web = client.source('app/web').values(schema);
const db = client.source('app/db').values(schema);
web.set('queue', 17);
db.set('hits', 2);
db.set('queue', 9);
await client.flush();
const start = performance.now();
let hits = 0;
let errors = 0;
setInterval(() => {
  const s = (performance.now() - start) / 1000;
  const dueHits = Math.floor(s * ${RATE});
  const dueErrors = Math.floor(s * 10);
  if (dueHits > hits) web.add('hits', dueHits - hits);
  if (dueErrors > errors) web.add('errors', dueErrors - errors);
  hits = dueHits;
  errors = dueErrors;
}, 20);
process.stdout.write('ready\\n');
`;

/**
 * A tmux server of our own (its socket in this run's temporary folder, removed with it), one session
 * running an interactive shell in the repository.
 */
class Tmux {
  private readonly socket = join(tempDir('top-tmux-'), 'tmux.sock');

  run(...args: string[]): string {
    const r = spawnSync('tmux', ['-S', this.socket, '-f', '/dev/null', ...args], { encoding: 'utf8', cwd: ROOT });
    if (r.status !== 0) throw new Error(`tmux ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  }

  start(columns: number, rows: number): void {
    this.run('new-session', '-d', '-s', 'top', '-x', String(columns), '-y', String(rows), "env PS1='$ ' bash --norc --noprofile -i");
  }

  /** Types a command line and presses Enter. */
  command(line: string): void {
    this.run('send-keys', '-t', 'top', '-l', line);
    this.run('send-keys', '-t', 'top', 'Enter');
  }

  keys(...keys: string[]): void {
    this.run('send-keys', '-t', 'top', ...keys);
  }

  screen(): string {
    return this.run('capture-pane', '-p', '-J', '-t', 'top');
  }

  /** Whether the pane shows the alternate screen (the view is up). */
  alternate(): boolean {
    return this.run('display', '-p', '-t', 'top', '#{alternate_on}').trim() === '1';
  }

  async waitFor(what: string, check: (screen: string) => boolean, ms = 15000): Promise<string> {
    let screen = '';
    try {
      await waitFor(what, () => check((screen = this.screen())), ms);
    } catch (err) {
      throw new Error(`${(err as Error).message}; the screen was:\n${screen}`);
    }
    return screen;
  }

  kill(): void {
    spawnSync('tmux', ['-S', this.socket, 'kill-server']);
    rmSync(dirname(this.socket), { recursive: true, force: true });
  }
}

/** "1.00k/s" -> 1000, "12.5/s" -> 12.5, "–" -> NaN. */
function perSecond(cell: string): number {
  const m = /^(-?[\d.]+)([kMG]?)\/s$/.exec(cell);
  if (!m) return NaN;
  return Number(m[1]) * ({ '': 1, k: 1e3, M: 1e6, G: 1e9 } as Record<string, number>)[m[2]];
}

/** The cells of the row named `name` on the screen: [name, ...the rest split on runs of spaces]. */
function rowOf(screen: string, name: string): string[] | null {
  const line = screen.split('\n').find((l) => new RegExp(`^[▸ ] ${name} `).test(l));
  return line ? line.slice(2).trim().split(/ {2,}/) : null;
}

describe.skipIf(skipWithoutFuse)('statsfs top in tmux against the real daemon', { timeout: 120_000 }, () => {
  let d: Daemon;
  let m: string;
  let producer: ChildProcess;
  const tmux = new Tmux();
  const opens = (): number => Number(readFileSync(join(m, 'statsfs/fuse/open/requests'), 'utf8'));

  beforeAll(async () => {
    d = await startDaemon(['--no-collectors']);
    m = d.mountpoint;
    producer = spawn(process.execPath, ['--input-type=module', '-e', PRODUCER, join(m, '..', 'producers.sock')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    producer.stdout!.setEncoding('utf8').on('data', (s: string) => (out += s));
    await waitFor('the producer', () => out.includes('ready'));
    tmux.start(80, 24);
  });
  afterEach(async () => {
    // a test that failed half-way leaves no view behind for the next one to type into
    if (!tmux.alternate()) return;
    tmux.keys('C-c');
    await tmux.waitFor('the shell', () => !tmux.alternate());
  });
  afterAll(() => {
    tmux.kill();
    producer?.kill();
    d?.cleanup();
  });

  it('shows the tree; the producer\'s counter at its rate (±10%), its aggregate too; Enter opens, ← goes up', async () => {
    tmux.command(`node ${BIN} top --mount ${m}`);
    let screen = await tmux.waitFor('the tree', (s) => /▸ app/.test(s) && /▸ statsfs/.test(s));
    expect(tmux.alternate()).toBe(true);
    expect(screen.split('\n')[0]).toMatch(/^ statsfs top {2}\S*\/mnt +\d+ values · every 1s · sort name {2}\d\d:\d\d:\d\d *$/);

    tmux.keys('Enter'); // app is the first row
    screen = await tmux.waitFor('app', (s) => /▸ web/.test(s) && /▸ db/.test(s) && rowOf(s, 'hits') !== null);
    expect(screen.split('\n')[0]).toMatch(/\/mnt\/app /);
    // the aggregate over web and db: marked, and counting at web's rate once two captures are in
    screen = await tmux.waitFor('the aggregate rate', (s) => perSecond(rowOf(s, 'hits')?.[3] ?? '') > 0);
    expect(rowOf(screen, 'hits')!.slice(0, 2)).toEqual(['hits', 'Σ']);
    expect(rowOf(screen, 'queue')!.slice(0, 3)).toEqual(['queue', 'max', '17']);

    tmux.keys('j', 'Right'); // web, opened with →
    screen = await tmux.waitFor('web', (s) => /\/mnt\/app\/web /.test(s.split('\n')[0]) && rowOf(s, 'hits') !== null);
    const rates: number[] = [];
    for (let k = 0; k < 3; k++) {
      await new Promise((r) => setTimeout(r, 1100));
      const cells = rowOf(tmux.screen(), 'hits')!;
      expect(cells[0]).toBe('hits');
      rates.push(perSecond(cells[2]));
    }
    // the rate of three refreshes in a row: their median within 10% of the producer's (one refresh may
    // catch a producer that the shared machine stalled for a moment), none negative
    const median = [...rates].sort((x, y) => x - y)[1];
    expect(Math.abs(median - RATE) / RATE).toBeLessThanOrEqual(0.1);
    for (const rate of rates) expect(rate).toBeGreaterThanOrEqual(0);
    expect(rowOf(tmux.screen(), 'queue')!.slice(0, 2)).toEqual(['queue', '17']);

    tmux.keys('BSpace'); // back to app, with web selected (the graph is the selected row's)
    screen = await tmux.waitFor('app again', (s) => /^─ web /m.test(s));
    expect(screen.split('\n')[0]).toMatch(/\/mnt\/app /);
    tmux.keys('Left');
    screen = await tmux.waitFor('the root', (s) => /^─ app /m.test(s) && /▸ statsfs/.test(s));
    tmux.keys('Left');
    await tmux.waitFor('a word about the top', (s) => /this is the top of the mount/.test(s));

    tmux.keys('q');
    screen = await tmux.waitFor('the shell', (s) => /^\$ *$/m.test(s));
    expect(tmux.alternate()).toBe(false);
    expect(screen).toMatch(/^\$ node \S+ top --mount \S+\n\$ *\n*$/);
  });

  it('/ filters, s sorts by name, value and rate', async () => {
    tmux.command(`clear; node ${BIN} top --mount ${m} app/db`);
    let screen = await tmux.waitFor('db', (s) => rowOf(s, 'queue') !== null);
    const names = (s: string): string[] => ['errors', 'hits', 'queue'].filter((n) => rowOf(s, n)).sort((a, b) => s.indexOf(`  ${a} `) - s.indexOf(`  ${b} `));
    expect(names(screen)).toEqual(['errors', 'hits', 'queue']);
    tmux.keys('s');
    screen = await tmux.waitFor('sort by value', (s) => /sort value/.test(s.split('\n')[0]));
    expect(names(screen)).toEqual(['queue', 'hits', 'errors']); // 9, 2, 0

    tmux.keys('/', 'u', 'e');
    screen = await tmux.waitFor('the filter', (s) => /filter "ue"/.test(s) && rowOf(s, 'hits') === null);
    expect(rowOf(screen, 'queue')).not.toBeNull();
    tmux.keys('Enter');
    await tmux.waitFor('the filter kept', (s) => /filter "ue"/.test(s.split('\n')[0]) && !/filter: ue/.test(s));
    tmux.keys('Escape');
    await tmux.waitFor('the filter dropped', (s) => !/filter "/.test(s) && rowOf(s, 'hits') !== null);

    tmux.keys('BSpace', 'j', 'Enter'); // web: errors counts at 10/s, hits at 1000/s
    screen = await tmux.waitFor('web by value', (s) => /\/mnt\/app\/web /.test(s.split('\n')[0]) && rowOf(s, 'hits') !== null);
    tmux.keys('s');
    screen = await tmux.waitFor('sort by rate', (s) => /sort rate/.test(s.split('\n')[0]) && perSecond(rowOf(s, 'errors')?.at(2) ?? '') > 0);
    expect(names(screen)).toEqual(['hits', 'errors', 'queue']);
    tmux.keys('s');
    screen = await tmux.waitFor('sort by name', (s) => /sort name/.test(s.split('\n')[0]));
    expect(names(screen)).toEqual(['errors', 'hits', 'queue']);
    tmux.keys('C-c');
    await tmux.waitFor('the shell', (s) => !/statsfs top {2}/.test(s));
    expect(tmux.alternate()).toBe(false);
  });

  it('c clears a counter after y, keeps it after another key, refuses a level; no negative rate after the clear', async () => {
    tmux.command(`clear; node ${BIN} top --mount ${m} app/web -d 0.5`);
    await tmux.waitFor('web', (s) => perSecond(rowOf(s, 'hits')?.at(2) ?? '') > 0);
    tmux.keys('G'); // queue, the last row: a level
    tmux.keys('c');
    await tmux.waitFor('the refusal', (s) => /queue cannot be cleared: it is a level/.test(s));
    expect(sh(`cat ${m}/app/web/queue`).stdout).toBe('17\n');

    tmux.keys('k', 'c'); // hits
    await tmux.waitFor('the question', (s) => /clear app\/web\/hits\? y clears, any other key keeps it/.test(s));
    tmux.keys('n');
    await tmux.waitFor('not cleared', (s) => /not cleared/.test(s));
    const before = BigInt(sh(`cat ${m}/app/web/hits`).stdout.trim());
    expect(before).toBeGreaterThan(1000n);

    tmux.keys('c');
    await tmux.waitFor('the question', (s) => /clear app\/web\/hits\?/.test(s));
    tmux.keys('y');
    await tmux.waitFor('cleared', (s) => /cleared app\/web\/hits/.test(s));
    expect(BigInt(sh(`cat ${m}/app/web/hits`).stdout.trim())).toBeLessThan(before);
    // the refreshes after the clear: a gap (–) or the rate again, never a negative number
    const seen: string[] = [];
    await tmux.waitFor('the rate back', (s) => {
      const cell = rowOf(s, 'hits')?.[2] ?? '';
      seen.push(cell);
      return perSecond(cell) > 0 && seen.length > 1;
    });
    for (const cell of seen) expect(cell.startsWith('-')).toBe(false);
    tmux.keys('q');
    await tmux.waitFor('the shell', (s) => !/statsfs top {2}/.test(s));
  });

  it('p pauses: no snapshot is opened while paused but one of a source opened meanwhile; ? shows the keys', async () => {
    tmux.command(`clear; node ${BIN} top --mount ${m} app -d 0.2`);
    await tmux.waitFor('app', (s) => rowOf(s, 'hits') !== null);
    tmux.keys('p');
    await tmux.waitFor('paused', (s) => /PAUSED/.test(s.split('\n')[0]));
    await new Promise((r) => setTimeout(r, 300)); // a refresh under way when p came has ended
    const a = opens();
    await new Promise((r) => setTimeout(r, 1500));
    expect(opens() - a).toBe(1); // the read of the counter itself, nothing else
    // a source opened while paused is read once, and stays as it was read
    tmux.keys('Enter');
    await tmux.waitFor('db, paused', (s) => /\/mnt\/app\/db /.test(s.split('\n')[0]) && rowOf(s, 'queue')?.[1] === '9');
    const b = opens();
    expect(b - a).toBe(1 + 1 + 1);
    await new Promise((r) => setTimeout(r, 1000));
    expect(opens() - b).toBe(1);
    tmux.keys('BSpace');
    await tmux.waitFor('app, paused', (s) => /\/mnt\/app /.test(s.split('\n')[0]) && rowOf(s, 'hits') !== null);
    tmux.keys('p');
    await tmux.waitFor('running', (s) => !/PAUSED/.test(s.split('\n')[0]));
    const c = opens();
    await new Promise((r) => setTimeout(r, 1000));
    expect(opens() - c - 1).toBeGreaterThanOrEqual(3); // refreshing again, every 0.2 s (less the read of the counter)

    tmux.keys('?');
    let screen = await tmux.waitFor('the help', (s) => /Keys/.test(s));
    expect(screen).toMatch(/← Backspace {2}h +go up to the parent source/);
    expect(screen).toMatch(/q {2}Ctrl-C +quit/);
    tmux.keys('x');
    screen = await tmux.waitFor('the view', (s) => !/Keys/.test(s) && rowOf(s, 'hits') !== null);
    tmux.keys('q');
    await tmux.waitFor('the shell', (s) => !/statsfs top {2}/.test(s));
  });

  it('follows a resize, from 80×24 to 120×40 and back', async () => {
    tmux.command(`clear; node ${BIN} top --mount ${m} app`);
    let screen = await tmux.waitFor('app', (s) => rowOf(s, 'hits') !== null);
    expect(screen.split('\n')[0].length).toBeLessThanOrEqual(80);
    tmux.run('resize-window', '-t', 'top', '-x', '120', '-y', '40');
    screen = await tmux.waitFor('the larger frame', (s) => s.split('\n')[0].trimEnd().length > 100 && /q quit/.test(s.split('\n')[39] ?? ''));
    tmux.run('resize-window', '-t', 'top', '-x', '80', '-y', '24');
    screen = await tmux.waitFor('the smaller frame', (s) => /q quit/.test(s.split('\n')[23] ?? '') && s.split('\n')[0].trimEnd().length <= 80);
    tmux.keys('q');
    await tmux.waitFor('the shell', (s) => !/statsfs top {2}/.test(s));
  });

  it('restores the terminal on Ctrl-C (status 0), on SIGTERM (143) and after a crash (1, with the error)', async () => {
    tmux.command(`clear; node ${BIN} top --mount ${m}; echo status=$?`);
    await tmux.waitFor('the view', (s) => /▸ app/.test(s));
    tmux.keys('C-c');
    let screen = await tmux.waitFor('the shell', (s) => /status=0/.test(s));
    expect(tmux.alternate()).toBe(false);

    tmux.command(`clear; node ${BIN} top --mount ${m}; echo status=$?`);
    await tmux.waitFor('the view', (s) => /▸ app/.test(s));
    const shell = tmux.run('display', '-p', '-t', 'top', '#{pane_pid}').trim();
    const pid = Number(spawnSync('pgrep', ['-P', shell], { encoding: 'utf8' }).stdout.trim());
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, 'SIGTERM');
    screen = await tmux.waitFor('the shell', (s) => /status=143/.test(s));
    expect(tmux.alternate()).toBe(false);
    expect(screen).not.toMatch(/statsfs top {2}/);

    // a real uncaught exception in the running view, thrown by a module loaded ahead of the CLI
    const crash = `data:text/javascript,setTimeout(()=>{throw new Error("boom in a timer")},2500)`;
    tmux.command(`clear; node --import '${crash}' ${BIN} top --mount ${m}; echo status=$?`);
    await tmux.waitFor('the view', (s) => /▸ app/.test(s));
    screen = await tmux.waitFor('the shell', (s) => /status=1$/m.test(s));
    expect(tmux.alternate()).toBe(false);
    expect(screen).toMatch(/statsfs top: Error: boom in a timer/);
    expect(screen).not.toMatch(/ statsfs top {2}\//);
  });

  it('without a terminal (or with --once) prints one refresh as text, with rates, from two captures', () => {
    const a = opens();
    const r = sh(`node ${BIN} top --mount ${m} app -d 0.5 | grep hits`);
    const b = opens();
    expect(b - a).toBe(3); // two captures of app, and the read of the counter
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines.map((l) => l.split(/ {2,}/)[0])).toEqual(['hits', 'web/hits', 'db/hits']);
    const web = lines[1].split(/ {2,}/);
    expect(Math.abs(perSecond(web[2]) - RATE) / RATE).toBeLessThanOrEqual(0.1);
    expect(web[3]).toBe('requests');
    expect(sh(`node ${BIN} top --mount ${m} --once app/db -d 0.1`).stdout).toMatch(/^PATH +AGG +VALUE +RATE +UNIT\nerrors +0 +0\/s\nhits +2 +0\/s +requests\nqueue +9\n$/);
  });

  it('says what to do when there is no mount or no such source', () => {
    const missing = sh(`node ${BIN} top --mount ${m}/nowhere --once`);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toBe(`statsfs: ${m}/nowhere is not a statsfs mount: start one with 'statsfs mount ${m}/nowhere', or give --mount <dir>\n`);
    const source = sh(`node ${BIN} top --mount ${m} --once app/nope`);
    expect(source.stderr).toBe(`statsfs: no source "app/nope" under ${m}: 'ls ${m}' shows what there is\n`);
    expect(sh(`node ${BIN} top --mount ${m} -d 0`).stderr).toMatch(/expected a number of seconds, 0.1 or more/);
  });
});
