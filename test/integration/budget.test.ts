/**
 * Issue 11, item 2: memory held for readers is bounded. Through the real daemon and a real mount: open
 * snapshots per user (EMFILE beyond --snapshot-budget, counted in statsfs/fuse/snapshot_refusals) and
 * /metrics scrapes at once (503 beyond --http-max-scrapes, counted in statsfs/http/refused).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync } from 'node:fs';
import { once } from 'node:events';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeTcpPort } from '../helpers/ports.js';
import { MetricsServer } from '../../src/export/http.js';
import { Schema, Source } from '../../src/model/index.js';
import { ROOT, sh, skipWithoutFuse, startDaemon, waitFor, type Daemon } from '../helpers/mount.js';

const isRoot = process.getuid?.() === 0;
/** Runs a shell command as nobody when we are root (another user of the mount), else as ourselves. */
const asOther = (command: string) => sh(isRoot ? `setpriv --reuid=65534 --regid=65534 --clear-groups bash -c '${command}'` : command);

/** A process that opens `path` until refused, then closes and reopens one handle per "cycle" line. */
function holder(path: string): { child: ChildProcess; next(): Promise<string>; send(line: string): void } {
  const child = spawn('python3', ['-c', `
import errno, os, sys
fds = []
def try_open():
    try:
        fds.append(os.open(sys.argv[1], os.O_RDONLY)); return "ok"
    except OSError as e:
        return errno.errorcode[e.errno]
while len(fds) < 1000:
    r = try_open()
    if r != "ok": break
print(len(fds), r, flush=True)
for line in sys.stdin:
    os.close(fds.pop())
    print(try_open(), flush=True)
`, path], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    child,
    next: async () => (await lines.next()).value as string,
    send: (line) => child.stdin!.write(`${line}\n`),
  };
}

describe.skipIf(skipWithoutFuse)('snapshot budget per user through the real daemon', { timeout: 60_000 }, () => {
  let d: Daemon;
  let m: string;
  beforeAll(async () => {
    d = await startDaemon(['--no-collectors', '--snapshot-budget', '100000']);
    m = d.mountpoint;
    chmodSync(dirname(m), 0o755); // so that another user reaches the mount
  }, 30_000);
  afterAll(() => d?.cleanup());

  it('opens of .snapshot.json are refused with EMFILE once the budget is held, counted, and freed on close', async () => {
    const h = holder(`${m}/.snapshot.json`);
    try {
      const [held, errno] = (await h.next()).split(' ');
      expect(errno).toBe('EMFILE');
      expect(Number(held)).toBeGreaterThanOrEqual(2);
      expect(Number(held)).toBeLessThan(100); // each is larger than 1 KB
      // what is left of the budget still serves small reads
      expect(sh(`cat ${m}/statsfs/fuse/snapshot_refusals`).stdout).toBe('1\n');
      if (isRoot) {
        // another user is not: the budget is per uid
        const other = asOther(`cat ${m}/statsfs/fuse/snapshot_refusals ${m}/statsfs/fuse/open_files`);
        expect(other.stderr).toBe('');
        expect(other.stdout.split('\n').slice(0, 2).map(Number)).toEqual([1, Number(held)]); // open_files is read before its own handle exists
        expect(asOther(`head -c 1 ${m}/.snapshot.json`).stdout).toBe('{');
      }
      // closing a handle gives its bytes back: the next open succeeds
      h.send('cycle');
      expect(await h.next()).toBe('ok');
    } finally {
      h.child.stdin!.end();
      await once(h.child, 'exit');
    }
    // every handle released (the gauge is read before its own handle exists): all of the budget is back
    expect(sh(`cat ${m}/statsfs/fuse/snapshot_bytes`).stdout).toBe('0\n');
    const h2 = holder(`${m}/.snapshot.json`);
    try {
      const [held2, errno2] = (await h2.next()).split(' ');
      expect(errno2).toBe('EMFILE');
      expect(Number(held2)).toBeGreaterThanOrEqual(2);
    } finally {
      h2.child.stdin!.end();
      await once(h2.child, 'exit');
    }
    expect(sh(`cat ${m}/statsfs/fuse/snapshot_refusals`).stdout).toBe('2\n');
  });

  // .snapshot.bin is streamed into the binding (the stream's fill refuses every piece when the file is refused)
  it.each(['.snapshot.json', '.snapshot.bin'])('opens of %s from 40 threads at once are held to the same budget', (file) => {
    const r = sh(`python3 -c '
import errno, os, sys, threading
fds, errs, lock = [], [], threading.Lock()
def one():
    try:
        fd = os.open(sys.argv[1], os.O_RDONLY)
        with lock: fds.append(fd)
    except OSError as e:
        with lock: errs.append(errno.errorcode[e.errno])
ts = [threading.Thread(target=one) for _ in range(40)]
[t.start() for t in ts]; [t.join() for t in ts]
print(len(fds), " ".join(sorted(set(errs))), len(errs))' ${m}/${file}`);
    expect(r.stderr).toBe('');
    const [held, codes, refused] = r.stdout.trim().split(' ');
    expect(Number(held)).toBeGreaterThanOrEqual(2);
    expect(Number(held)).toBeLessThan(file === '.snapshot.json' ? 20 : 30); // the binary file is the smaller
    expect(codes).toBe('EMFILE');
    expect(Number(held) + Number(refused)).toBe(40);
  });
});

describe.skipIf(skipWithoutFuse)('concurrent /metrics scrapes of the real daemon', { timeout: 120_000 }, () => {
  let d: Daemon;
  let port: number;
  let producer: ChildProcess;
  beforeAll(async () => {
    port = await freeTcpPort();
    d = await startDaemon(['--no-collectors', '--http', `127.0.0.1:${port}`, '--http-max-scrapes', '2']);
    // about 12 MB of exposition: more than a client that does not read and the kernel's buffers take
    producer = spawn(process.execPath, [join(ROOT, 'test/fixtures/wide-tree.mjs'), join(d.mountpoint, '..', 'producers.sock'), '1500', '60', '90'], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const [line] = (await once(createInterface({ input: producer.stdout! }), 'line')) as string[];
    expect(line).toBe('ready');
  }, 60_000);
  afterAll(async () => {
    if (producer && producer.exitCode === null) {
      producer.stdin!.end();
      await once(producer, 'exit');
    }
    d?.cleanup();
  });

  it('answers 503 beyond the most scrapes at once while slow clients do not read, and counts it', async () => {
    // two clients that send a request and never read the response (a 4 KB receive buffer)
    const slow = spawn('python3', ['-c', `
import socket, sys, time
socks = []
for _ in range(2):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", int(sys.argv[1])))
    s.sendall(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    socks.append(s)
print("sent", flush=True)
sys.stdin.read()
`, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await once(createInterface({ input: slow.stdout! }), 'line');
      const inFlight = () => sh(`cat ${d.mountpoint}/statsfs/http/in_flight`).stdout;
      await waitFor('both slow scrapes in flight', () => inFlight() === '2\n');
      const third = sh(`curl -s -o /dev/null -D - http://127.0.0.1:${port}/metrics`);
      expect(third.stdout).toMatch(/^HTTP\/1\.1 503/);
      expect(third.stdout).toMatch(/retry-after: 1/i);
      expect(sh(`cat ${d.mountpoint}/statsfs/http/refused`).stdout).toBe('1\n');
    } finally {
      slow.stdin!.end();
      await once(slow, 'exit');
    }
    // the slow clients gone, their slots are free again
    await waitFor('the slow scrapes to end', () => sh(`cat ${d.mountpoint}/statsfs/http/in_flight`).stdout === '0\n');
    const again = sh(`curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:${port}/metrics`);
    expect(again.stdout).toBe('200');
  });
});

describe('a /metrics client that takes nothing', { timeout: 60_000 }, () => {
  it('is dropped after stallMs, counted, and its slot is free again', async () => {
    // about 12 MB of exposition, as above, in this process
    const root = Source.root();
    const schema = new Schema(Array.from({ length: 60 }, (_, i) => ({ name: `v${i}_`.padEnd(90, 'x'), type: 'u64' as const })));
    const load = new Source('load');
    root.addSubordinate(load);
    for (let s = 0; s < 1500; s++) {
      const src = new Source(`s${s}`);
      load.addSubordinate(src);
      src.addValues(schema).set(0, s);
    }
    const server = new MetricsServer(root, { host: '127.0.0.1', port: 0, maxScrapes: 1, stallMs: 500 });
    const { port } = await server.listen();
    const slow = spawn('python3', ['-c', `
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
print("sent", flush=True)
sys.stdin.read()
`, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await once(createInterface({ input: slow.stdout! }), 'line');
      await waitFor('the stalled scrape to be dropped', () => server.stats.stalled === 1, 30_000);
      await waitFor('its slot to be free', () => server.stats.inFlight === 0);
      // counted when the render next looks, a turn or a drain after the slot was freed
      await waitFor('the scrape to be counted as aborted', () => server.stats.aborted === 1);
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      expect(res.status).toBe(200);
      expect((await res.text()).length).toBeGreaterThan(10_000_000);
    } finally {
      slow.stdin!.end();
      await once(slow, 'exit');
      await server.close();
    }
  });
});
