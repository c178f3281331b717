// Memory under the two denial-of-service attacks of issue 11 (item 2), against the real daemon:
//   [DOS_STEPS=handles,parallel,scrapes] node scripts/dos-memory.mjs [extra daemon options...]
// Builds a tree of 200,000 values over the producer socket, then (1) holds 150 open .snapshot.json handles
// in this one process, then (2) makes 50 /metrics requests that never read their response. Prints the
// daemon's RSS (VmRSS, and VmHWM: its peak) after each step, and what the opens and scrapes got.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '../dist/src/client/index.js';

const SOURCES = 2000, PER_SOURCE = 100, HANDLES = 150, SCRAPES = 50;
const dir = mkdtempSync(join(tmpdir(), 'statsfs-dos-'));
const mnt = join(dir, 'mnt');
const sock = join(dir, 'producers.sock');
const port = 20000 + (process.pid % 20000);
mkdirSync(mnt);
const daemon = spawn(process.execPath, [new URL('../bin/statsfs.js', import.meta.url).pathname, 'mount', mnt, '--no-collectors', '--no-state',
  '--socket', sock, '--http', `127.0.0.1:${port}`, '--log-level', 'warn', ...process.argv.slice(2)], { stdio: ['ignore', 'inherit', 'inherit'] });
const mib = (kb) => `${(kb / 1024).toFixed(0)} MiB`;
const rss = () => {
  const status = readFileSync(`/proc/${daemon.pid}/status`, 'utf8');
  const field = (name) => Number(new RegExp(`${name}:\\s+(\\d+)`).exec(status)[1]);
  return `RSS ${mib(field('VmRSS'))} (peak ${mib(field('VmHWM'))})`;
};
const cleanup = () => {
  daemon.kill('SIGTERM');
};
process.on('exit', cleanup);
try {
  for (let i = 0; ; i++) {
    try {
      readFileSync(join(mnt, 'statsfs/fuse/open_files'));
      break;
    } catch {
      if (i > 200) throw new Error('the daemon did not mount');
      await sleep(50);
    }
  }
  const client = await connect({ path: sock, owner: 'dos' });
  const schema = client.define(Array.from({ length: PER_SOURCE }, (_, i) => ({ name: `v${i}` })));
  for (let s = 0; s < SOURCES; s++) {
    const g = client.source(`load/s${s}`).values(schema);
    for (let i = 0; i < PER_SOURCE; i++) g.set(i, BigInt(s * PER_SOURCE + i));
    if (s % 100 === 99) await client.flush();
  }
  await client.flush();
  await sleep(1000);
  console.log(`tree of ${SOURCES * PER_SOURCE} values: ${rss()}`);

  const steps = (process.env.DOS_STEPS ?? 'handles,scrapes').split(',');
  if (steps.includes('handles')) {
    const fds = [];
    const refused = {};
    for (let i = 0; i < HANDLES; i++) {
      try {
        fds.push(openSync(join(mnt, '.snapshot.json'), 'r'));
      } catch (err) {
        refused[err.code] = (refused[err.code] ?? 0) + 1;
      }
    }
    await sleep(1000);
    console.log(`${HANDLES} opens of .snapshot.json: ${fds.length} held, refused ${JSON.stringify(refused)}: ${rss()}`);
    for (const fd of fds) closeSync(fd);
    await sleep(1000);
    console.log(`handles closed: ${rss()}`);
  }
  if (steps.includes('parallel')) {
    // the same opens, from 150 threads at once: every one of them is rendered before any is charged
    const py = spawn('python3', ['-c', `
import errno, os, sys, threading
fds, errs, lock = [], {}, threading.Lock()
def one():
    try:
        fd = os.open(sys.argv[1], os.O_RDONLY)
        with lock: fds.append(fd)
    except OSError as e:
        with lock: errs[errno.errorcode[e.errno]] = errs.get(errno.errorcode[e.errno], 0) + 1
ts = [threading.Thread(target=one) for _ in range(${HANDLES})]
[t.start() for t in ts]; [t.join() for t in ts]
print(len(fds), "held, refused", errs, flush=True)
sys.stdin.read()
`, join(mnt, '.snapshot.json')], { stdio: ['pipe', 'pipe', 'inherit'] });
    const [line] = await once(createInterface({ input: py.stdout }), 'line');
    console.log(`${HANDLES} opens of .snapshot.json at once: ${line}: ${rss()}`);
    py.stdin.end();
    await once(py, 'exit');
    await sleep(1000);
    console.log(`handles closed: ${rss()}`);
  }
  if (steps.includes('scrapes')) {
    const statuses = {};
    const sockets = [];
    for (let i = 0; i < SCRAPES; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => {});
      s.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n');
      s.once('data', (d) => {
        const status = /^HTTP\/1\.1 (\d+)/.exec(d.toString('latin1'))?.[1] ?? '?';
        statuses[status] = (statuses[status] ?? 0) + 1;
        s.pause(); // and never read again
      });
      sockets.push(s);
    }
    // every response has begun (each after its capture) or been refused, then the renders fill the buffers
    for (let t = 0; t < 180 && Object.values(statuses).reduce((a, b) => a + b, 0) < SCRAPES; t++) await sleep(500);
    await sleep(5000);
    console.log(`${SCRAPES} scrapes that do not read: status ${JSON.stringify(statuses)}: ${rss()}`);
    for (const s of sockets) s.destroy();
  }
  await client.close();
} finally {
  daemon.kill('SIGTERM');
  await new Promise((r) => daemon.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
