import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { waitFor } from '../../helpers/wait.js';
import { Source } from '../../../src/model/index.js';
import {
  FrameReader,
  Op,
  PayloadWriter,
  RemoveKind,
  UpdateOp,
  decodeHelloOk,
  decodeReply,
  decodeValuesOk,
  encodeAttach,
  encodeDefine,
  encodeDetach,
  encodeFrame,
  encodeHello,
  encodePing,
  encodeRemove,
  encodeRemovePath,
  encodeSource,
  encodeUpdate,
  encodeValues,
  type DecodedReply,
  type WireValueSpec,
} from '../../../src/protocol/protocol.js';
import { ProducerServer, type ProducerServerOptions } from '../../../src/producers/socket-server.js';

/** A producer speaking the raw protocol: send frames, await replies by request id. */
class Raw {
  private readonly reader = new FrameReader(1 << 24);
  private readonly waiting = new Map<number, (r: DecodedReply) => void>();
  readonly unsolicited: DecodedReply[] = [];
  closed: Promise<void>;
  private id = 100;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) =>
      this.reader.push(chunk, (f) => {
        const r = decodeReply(f);
        const w = this.waiting.get(r.id);
        this.waiting.delete(r.id);
        if (w) w(r);
        else this.unsolicited.push(r);
      }),
    );
    socket.on('error', () => undefined);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static async connect(path: string): Promise<Raw> {
    const socket = net.connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new Raw(socket);
  }

  static async open(path: string, hello: { owner?: string; keep?: boolean } = {}): Promise<Raw> {
    const raw = await Raw.connect(path);
    const r = await raw.call((id) => encodeHello(id, hello));
    expect(r.ok).toBe(true);
    return raw;
  }

  nextId(): number {
    return ++this.id;
  }

  call(make: (id: number) => Buffer): Promise<DecodedReply> {
    const id = this.nextId();
    const p = new Promise<DecodedReply>((resolve) => this.waiting.set(id, resolve));
    this.socket.write(make(id));
    return p;
  }

  async ok(make: (id: number) => Buffer): Promise<void> {
    const r = await this.call(make);
    if (!r.ok) throw new Error(`${r.code}: ${r.message}`);
  }

  async fails(make: (id: number) => Buffer, code: string): Promise<string> {
    const r = await this.call(make);
    expect(r.ok, `expected ${code}`).toBe(false);
    expect(r.code).toBe(code);
    return r.message;
  }

  async close(): Promise<void> {
    this.socket.end();
    await this.closed;
  }
}

const SPECS: WireValueSpec[] = [
  { name: 'requests', type: 'u64', aggr: 'sum' },
  { name: 'temp', type: 's16', aggr: 'max', floating: true, unit: 'celsius' },
  { name: 'state', type: 'u8', floating: true, enum: ['down', 'up'] },
];

let dir: string;
let root: Source;
let server: ProducerServer;
let sock: string;

async function start(options: Partial<ProducerServerOptions> = {}): Promise<void> {
  server = new ProducerServer(root, { path: sock, ...options });
  await server.listen();
}

/** Resolves once the server has noticed everything it will notice (closed sockets included). */
const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 30));

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'statsfs-producers-'));
  sock = join(dir, 'statsfs.sock');
  root = Source.root();
});

afterEach(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('socket', () => {
  it('is created with mode 0600, and 0660 with a group', async () => {
    await start();
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    expect(statSync(sock).isSocket()).toBe(true);
    await server.close();
    await start({ group: process.getgid!() });
    expect(statSync(sock).mode & 0o777).toBe(0o660);
    expect(statSync(sock).gid).toBe(process.getgid!());
  });

  it('replaces a stale socket, refuses a live one with EADDRINUSE and leaves other files alone', async () => {
    // a stale socket: bound by a process that ended without removing it, as a killed daemon leaves it
    const bound = spawnSync('python3', ['-c', 'import socket,sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])', sock]);
    expect(bound.status).toBe(0);
    expect(statSync(sock).isSocket()).toBe(true);
    await start();
    const raw = await Raw.open(sock);
    await raw.ok((id) => encodePing(id));
    await raw.close();

    const second = new ProducerServer(Source.root(), { path: sock });
    await expect(second.listen()).rejects.toMatchObject({ code: 'EADDRINUSE' });
    // the live daemon still works
    const again = await Raw.open(sock);
    await again.ok((id) => encodePing(id));
    await again.close();

    const file = join(dir, 'plain');
    writeFileSync(file, 'x');
    await expect(new ProducerServer(Source.root(), { path: file }).listen()).rejects.toMatchObject({ code: 'EEXIST' });
  });

  it('removes the socket file on close', async () => {
    await start();
    await server.close();
    expect(() => statSync(sock)).toThrow();
  });
});

describe('handshake and errors', () => {
  it('requires HELLO first, negotiates the version and reports the limits', async () => {
    await start({ maxFrameBytes: 4096, maxSourcesPerConnection: 7 });
    const a = await Raw.connect(sock);
    const r = await a.call((id) => encodePing(id));
    expect(r).toMatchObject({ ok: false, code: 'EPROTO' });
    await a.closed;

    const b = await Raw.connect(sock);
    const bad = await b.call((id) => encodeHello(id, { minVersion: 4, maxVersion: 9 }));
    expect(bad).toMatchObject({ ok: false, code: 'EPROTONOSUPPORT' });
    await b.closed;

    const c = await Raw.connect(sock);
    const good = await c.call((id) => encodeHello(id, { minVersion: 1, maxVersion: 9 }));
    expect(good.ok).toBe(true);
    expect(decodeHelloOk(good.payload)).toMatchObject({ version: 3, maxFrameBytes: 4096, maxSources: 7 });
    await c.fails((id) => encodeHello(id), 'EPROTO'); // only once
    await c.ok((id) => encodePing(id));
    await c.close();

    // header flags must be 0 in HELLO too: EINVAL, and a refused HELLO closes the connection
    const d = await Raw.connect(sock);
    const flagged = encodeHello(d.nextId() + 1);
    flagged.writeUInt16LE(1, 6);
    expect(await d.call(() => flagged)).toMatchObject({ ok: false, code: 'EINVAL' });
    await d.closed;
  });

  it('answers bad requests with an error and keeps the connection usable', async () => {
    await start();
    const p = await Raw.open(sock);
    await p.fails((id) => encodeFrame(0x55, id), 'ENOSYS');
    await p.fails((id) => encodeFrame(Op.SOURCE, id, Buffer.from([1, 2, 3])), 'EINVAL');
    await p.fails((id) => encodeFrame(Op.PING, id, Buffer.from([1])), 'EINVAL');
    await p.fails((id) => encodeFrame(Op.PING, id, undefined, 7), 'EPROTO'); // another version
    const flagged = encodePing(p.nextId() + 1);
    flagged.writeUInt16LE(1, 6);
    await p.fails(() => flagged, 'EINVAL');
    // invalid UTF-8 in a path
    await p.fails((id) => new PayloadWriter().u32(1).u32(0).u8(0).u16(2).u8(0xff).u8(0xfe).frame(Op.SOURCE, id), 'EINVAL');
    await p.fails((id) => encodeSource(id, 0, 0, 'x'), 'EINVAL'); // handle 0 is reserved
    await p.fails((id) => encodeSource(id, 1, 99, 'x'), 'ENOENT'); // no such parent
    await p.fails((id) => encodeUpdate(id, [{ group: 5, index: 0, op: UpdateOp.SET, value: 1 }]), 'ENOENT');
    await p.ok((id) => encodePing(id));
    expect(root.subordinates).toHaveLength(0);
    await p.close();
  });

  it('validates names', async () => {
    await start();
    const p = await Raw.open(sock);
    for (const bad of ['..', '.', 'a//b', '/a', 'a/', 'x\u0001y', 'nul\u0000', 'n'.repeat(100), '']) {
      await p.fails((id) => encodeSource(id, 1, 0, bad), 'EINVAL');
    }
    await p.fails((id) => encodeDefine(id, 1, [{ name: 'a/b', type: 'u64' }]), 'EINVAL');
    await p.fails((id) => encodeDefine(id, 1, [{ name: '..', type: 'u64' }]), 'EINVAL');
    await p.fails((id) => encodeDefine(id, 1, [{ name: 'a', type: 'u64' }, { name: 'a', type: 'u64' }]), 'EINVAL');
    await p.fails((id) => encodeDefine(id, 1, [{ name: 'a', type: 'u64', unit: 'x\ny' }]), 'EINVAL');
    await p.fails((id) => encodeDefine(id, 1, [{ name: 'a', type: 'u64', enum: ['ok', 'b\u0007'] }]), 'EINVAL');
    await p.fails((id) => encodeDefine(id, 1, [{ name: 'a', type: 'u64', mode: 0o1777 }]), 'EINVAL');
    await p.ok((id) => encodeSource(id, 1, 0, 'n'.repeat(99)));
    const bad = await Raw.connect(sock);
    expect(await bad.call((id) => encodeHello(id, { owner: 'a/b' }))).toMatchObject({ ok: false, code: 'EINVAL' });
    await bad.closed;
    await p.close();
  });

  it('refuses a frame over the size limit with EMSGSIZE and closes; caps sources and handles', async () => {
    await start({ maxFrameBytes: 1024, maxSourcesPerConnection: 3, maxHandlesPerConnection: 5 });
    const p = await Raw.open(sock);
    p.socket.write(encodeSource(1, 1, 0, 'x'.repeat(50) + '/y'.repeat(600)));
    await p.closed;
    // the frame was refused from its length alone, before its id was read
    expect(p.unsolicited).toMatchObject([{ ok: false, code: 'EMSGSIZE', id: 0 }]);

    const q = await Raw.open(sock);
    await q.fails((id) => encodeSource(id, 1, 0, 'a/b/c/d'), 'EDQUOT');
    expect(root.subordinates).toHaveLength(0); // refused as a whole
    await q.ok((id) => encodeSource(id, 1, 0, 'a/b/c'));
    await q.fails((id) => encodeSource(id, 2, 1, 'd'), 'EDQUOT');
    await q.ok((id) => encodeDefine(id, 2, [{ name: 'v', type: 'u8' }]));
    await q.ok((id) => encodeDefine(id, 3, [{ name: 'v', type: 'u8' }]));
    await q.ok((id) => encodeDefine(id, 4, [{ name: 'v', type: 'u8' }]));
    await q.ok((id) => encodeDefine(id, 5, [{ name: 'v', type: 'u8' }]));
    await q.fails((id) => encodeDefine(id, 6, [{ name: 'v', type: 'u8' }]), 'EDQUOT');
    await q.ok((id) => encodePing(id));
    await q.close();
  });

  it('refuses a frame whose length is below the header', async () => {
    await start();
    const p = await Raw.open(sock);
    const frame = Buffer.alloc(8);
    frame.writeUInt32LE(3, 0);
    p.socket.write(frame);
    await p.closed;
    expect(p.unsolicited[0]).toMatchObject({ ok: false, code: 'EPROTO' });
  });
});

async function publish(p: Raw, path: string, handles = { schema: 1, source: 2, group: 3 }): Promise<void> {
  await p.ok((id) => encodeDefine(id, handles.schema, SPECS));
  await p.ok((id) => encodeSource(id, handles.source, 0, path));
  await p.ok((id) => encodeValues(id, handles.group, handles.source, handles.schema));
}

describe('the tree', () => {
  it('creates sources, values and aggregates, and applies updates exactly', async () => {
    await start();
    const p = await Raw.open(sock);
    await publish(p, 'app/eth0');
    await p.ok((id) => encodeSource(id, 10, 0, 'app'));
    await p.ok((id) => encodeValues(id, 11, 10, 1, { aggregate: true }));
    await p.ok((id) => encodeSource(id, 12, 10, 'eth1'));
    await p.ok((id) => encodeValues(id, 13, 12, 1));
    await p.ok((id) => encodeSource(id, 14, 10, 'ghost', { hidden: true }));
    await p.ok((id) => encodeValues(id, 15, 14, 1));
    await p.ok((id) =>
      encodeUpdate(id, [
        { group: 3, index: 0, op: UpdateOp.SET, value: 2n ** 63n },
        { group: 3, index: 0, op: UpdateOp.ADD, value: 5 },
        { group: 13, index: 0, op: UpdateOp.ADD, value: 10 },
        { group: 15, index: 0, op: UpdateOp.ADD, value: 100 },
        { group: 3, index: 1, op: UpdateOp.SET, value: -40 },
        { group: 13, index: 1, op: UpdateOp.SET, value: 70000 }, // s16 wraps: 70000 - 65536
        { group: 15, index: 1, op: UpdateOp.SET, value: 3 },
        { group: 3, index: 2, op: UpdateOp.SET, value: 1 },
        { group: 13, index: 2, op: UpdateOp.SET, value: 7 },
      ]),
    );
    const app = root.subordinate('app')!;
    const eth0 = app.subordinate('eth0')!;
    expect(eth0.getValue('requests')).toBe(2n ** 63n + 5n);
    expect(eth0.getValue('temp')).toBe(-40n);
    expect(app.subordinate('eth1')!.getValue('temp')).toBe(4464n);
    expect(app.subordinate('ghost')).toBeUndefined(); // hidden
    expect(app.getValue('requests')).toBe(2n ** 63n + 115n); // the hidden source counts
    expect(app.getValue('temp')).toBe(4464n);
    const found = eth0.findValue('state')!;
    expect(found.group.render('state')).toBe('up\n');
    expect(app.subordinate('eth1')!.findValue('state')!.group.render('state')).toBe('7\n');
    expect(found.def.mode).toBe(0o444);
    expect(eth0.findValue('requests')!.def.mode).toBe(0o644);
    expect(eth0.findValue('temp')!.def.unit).toBe('celsius');
    // -(2^53) is exact as a double but not a safe integer: it must travel as a bigint, not fail mid-batch
    await p.ok((id) =>
      encodeUpdate(id, [
        { group: 13, index: 0, op: UpdateOp.SET, value: -(2n ** 53n) },
        { group: 15, index: 0, op: UpdateOp.SET, value: -(2n ** 53n) + 1n },
      ]),
    );
    expect(app.subordinate('eth1')!.getValue('requests')).toBe(2n ** 64n - 2n ** 53n);
    // updates to aggregates are refused
    await p.fails((id) => encodeUpdate(id, [{ group: 11, index: 0, op: UpdateOp.SET, value: 1 }]), 'EPERM');
    await p.close();
  });

  it('shares identical definitions between producers, so their values aggregate together', async () => {
    await start();
    const a = await Raw.open(sock, { owner: 'a' });
    const b = await Raw.open(sock, { owner: 'b' });
    await publish(a, 'a1');
    await a.ok((id) => encodeValues(id, 4, 2, 1, { aggregate: true }));
    await a.ok((id) => encodeSource(id, 5, 2, 'sub'));
    await publish(b, 'b1');
    await a.ok((id) => encodeUpdate(id, [{ group: 3, index: 0, op: UpdateOp.SET, value: 1 }]));
    await b.ok((id) => encodeUpdate(id, [{ group: 3, index: 0, op: UpdateOp.SET, value: 2 }]));
    expect(root.subordinate('a1')!.getValue('requests')).toBe(1n);
    expect(root.subordinate('a1')!.findValue('requests')!.group.schema).toBe(root.subordinate('b1')!.findValue('requests')!.group.schema);
    await a.close();
    await b.close();
  });

  it('attaches and detaches subordinates, hidden ones too', async () => {
    await start();
    const p = await Raw.open(sock);
    await publish(p, 'top');
    await p.ok((id) => encodeValues(id, 4, 2, 1, { aggregate: true }));
    await p.ok((id) => encodeSource(id, 5, 0, 'loose', { detached: true }));
    await p.ok((id) => encodeValues(id, 6, 5, 1));
    await p.ok((id) => encodeUpdate(id, [{ group: 6, index: 0, op: UpdateOp.SET, value: 40 }]));
    expect(root.subordinate('loose')).toBeUndefined();
    await p.ok((id) => encodeAttach(id, 2, 5));
    const top = root.subordinate('top')!;
    expect(top.subordinate('loose')!.getValue('requests')).toBe(40n);
    await p.fails((id) => encodeAttach(id, 0, 5), 'EEXIST'); // attached already
    await p.ok((id) => encodeDetach(id, 5));
    expect(top.subordinate('loose')).toBeUndefined();
    await p.fails((id) => encodeDetach(id, 5), 'ENOENT');
    await p.ok((id) => encodeSource(id, 7, 0, 'secret', { detached: true, hidden: true }));
    await p.ok((id) => encodeValues(id, 8, 7, 1));
    await p.ok((id) => encodeUpdate(id, [{ group: 8, index: 0, op: UpdateOp.SET, value: 2 }]));
    await p.ok((id) => encodeAttach(id, 2, 7));
    expect(top.subordinate('secret')).toBeUndefined();
    expect(top.getValue('requests')).toBe(2n);
    await p.ok((id) => encodeAttach(id, 2, 5));
    expect(top.getValue('requests')).toBe(42n);
    await p.fails((id) => encodeAttach(id, 5, 2), 'EEXIST'); // top is attached (and a cycle)
    await p.close();
  });

  it('removes sources, groups and definitions by handle and by path', async () => {
    await start();
    const p = await Raw.open(sock);
    await publish(p, 'x/y');
    await p.ok((id) => encodeSource(id, 4, 0, 'x/z'));
    await p.ok((id) => encodeValues(id, 5, 4, 1));
    await p.ok((id) => encodeRemove(id, RemoveKind.GROUP, 5));
    expect(root.subordinate('x')!.subordinate('z')!.valueGroups).toHaveLength(0);
    await p.fails((id) => encodeUpdate(id, [{ group: 5, index: 0, op: UpdateOp.SET, value: 1 }]), 'ENOENT');
    await p.ok((id) => encodeRemovePath(id, 'x/y/requests'));
    expect(root.subordinate('x')!.subordinate('y')!.valueGroups).toHaveLength(0);
    await p.fails((id) => encodeRemovePath(id, 'x/y/nothing'), 'ENOENT');
    await p.ok((id) => encodeRemovePath(id, 'x/z'));
    expect(root.subordinate('x')!.subordinate('z')).toBeUndefined();
    await p.fails((id) => encodeRemove(id, RemoveKind.SOURCE, 4), 'ENOENT'); // z went
    await p.ok((id) => encodeRemove(id, RemoveKind.SOURCE, 2));
    expect(root.subordinate('x')!.subordinate('y')).toBeUndefined();
    await p.fails((id) => encodeRemove(id, RemoveKind.SOURCE, 0), 'EPERM');
    await p.ok((id) => encodeRemove(id, RemoveKind.SCHEMA, 1));
    await p.fails((id) => encodeValues(id, 9, 0, 1), 'EPERM');
    await p.ok((id) => encodeSource(id, 2, 0, 'x/again')); // a handle of a removed source may be bound again
    await p.close();
  });
});

describe('ownership', () => {
  it('lets no producer change or remove what another owns', async () => {
    await start();
    root.addSubordinate(new Source('daemon'));
    const a = await Raw.open(sock, { owner: 'alice' });
    const b = await Raw.open(sock);
    await publish(a, 'alice/web');
    await b.ok((id) => encodeDefine(id, 1, SPECS));
    expect(await b.fails((id) => encodeSource(id, 1, 0, 'alice/web/x'), 'EPERM')).toMatch(/alice/);
    await b.fails((id) => encodeSource(id, 1, 0, 'alice/web'), 'EPERM');
    await b.fails((id) => encodeSource(id, 1, 0, 'alice'), 'EPERM');
    await b.fails((id) => encodeSource(id, 1, 0, 'daemon/mine'), 'EPERM');
    await b.fails((id) => encodeRemovePath(id, 'alice/web'), 'EPERM');
    await b.fails((id) => encodeRemovePath(id, 'alice/web/requests'), 'EPERM');
    await b.fails((id) => encodeRemovePath(id, 'daemon'), 'EPERM');
    await b.fails((id) => encodeValues(id, 1, 0, 1), 'EPERM'); // the root is the daemon's
    await b.ok((id) => encodeSource(id, 1, 0, 'bob'));
    await b.fails((id) => encodeAttach(id, 1, 2), 'ENOENT'); // handles are per connection
    // a second connection of alice may adopt and change alice's nodes
    const a2 = await Raw.open(sock, { owner: 'alice' });
    await publish(a2, 'alice/web', { schema: 7, source: 8, group: 9 });
    await a2.ok((id) => encodeUpdate(id, [{ group: 9, index: 0, op: UpdateOp.ADD, value: 3 }]));
    expect(root.subordinate('alice')!.subordinate('web')!.getValue('requests')).toBe(3n);
    await a.close();
    await settle();
    expect(root.subordinate('alice')).toBeDefined(); // alice is still connected through a2
    await a2.close();
    await settle();
    expect(root.subordinate('alice')).toBeUndefined();
    expect(root.subordinate('bob')).toBeDefined();
    await b.close();
    await settle();
    expect(root.subordinates.map((s) => s.name)).toEqual(['daemon']);
  });

  it('removes what a connection created when it disconnects, with its storage', async () => {
    await start();
    const p = await Raw.open(sock);
    await publish(p, 'gone/a/b');
    await p.ok((id) => encodeSource(id, 20, 0, 'loose', { detached: true }));
    const group = root.subordinate('gone')!.subordinate('a')!.subordinate('b')!.valueGroups[0];
    await p.ok((id) => encodeUpdate(id, [{ group: 3, index: 0, op: UpdateOp.SET, value: 9 }]));
    p.socket.destroy(); // abrupt
    await settle();
    expect(root.subordinates).toHaveLength(0);
    expect(group.get('requests')).toBe(0n); // storage released
  });

  it('keeps the nodes of a KEEP connection; the same owner adopts them later, others cannot touch them', async () => {
    await start();
    const p = await Raw.open(sock, { owner: 'cron', keep: true });
    await publish(p, 'jobs/backup');
    await p.ok((id) => encodeUpdate(id, [{ group: 3, index: 0, op: UpdateOp.SET, value: 5 }]));
    await p.ok((id) => encodeSource(id, 20, 0, 'loose', { detached: true }));
    await p.close();
    await settle();
    const backup = root.subordinate('jobs')!.subordinate('backup')!;
    expect(backup.getValue('requests')).toBe(5n);

    const other = await Raw.open(sock, { owner: 'other', keep: true });
    await other.fails((id) => encodeRemovePath(id, 'jobs'), 'EPERM');
    await other.close();

    const again = await Raw.open(sock, { owner: 'cron' });
    await publish(again, 'jobs/backup');
    await again.ok((id) => encodeUpdate(id, [{ group: 3, index: 0, op: UpdateOp.ADD, value: 1 }]));
    expect(backup.getValue('requests')).toBe(6n);
    expect(backup.valueGroups).toHaveLength(1); // adopted, not added twice
    await again.close(); // not KEEP: now it goes
    await settle();
    expect(root.subordinate('jobs')).toBeUndefined();
  });

  it('tells a version 2 producer whether VALUES adopted a group, with its current values; version 1 gets an empty OK', async () => {
    await start();
    const p = await Raw.open(sock, { owner: 'app', keep: true });
    await p.ok((id) => encodeDefine(id, 1, SPECS));
    await p.ok((id) => encodeSource(id, 2, 0, 'kept'));
    const made = await p.call((id) => encodeValues(id, 3, 2, 1));
    expect(decodeValuesOk(made.payload)).toEqual({ adopted: false, values: [] });
    await p.ok((id) => encodeUpdate(id, [{ group: 3, index: 0, op: UpdateOp.SET, value: 2n ** 64n - 1n }, { group: 3, index: 1, op: UpdateOp.SET, value: -5 }]));
    await p.close();
    await settle();
    const q = await Raw.open(sock, { owner: 'app' });
    await q.ok((id) => encodeDefine(id, 1, SPECS));
    await q.ok((id) => encodeSource(id, 2, 0, 'kept'));
    const adopted = await q.call((id) => encodeValues(id, 3, 2, 1));
    // i64 bit patterns, as in UPDATE: 2^64−1 reads as −1 until the producer applies the type
    expect(decodeValuesOk(adopted.payload)).toEqual({ adopted: true, values: [-1n, -5n, 0n] });
    await q.close();

    const v1 = await Raw.connect(sock);
    const hello = await v1.call((id) => encodeHello(id, { minVersion: 1, maxVersion: 1 }));
    expect(decodeHelloOk(hello.payload).version).toBe(1);
    const frame = (op: number, id: number, payload: Buffer): Buffer => {
      const f = encodeFrame(op, id, payload);
      f[4] = 1; // version 1 in the header
      return f;
    };
    const define = encodeDefine(0, 1, SPECS);
    await v1.ok((id) => frame(Op.DEFINE, id, define.subarray(12)));
    await v1.ok((id) => frame(Op.SOURCE, id, encodeSource(0, 2, 0, 'old').subarray(12)));
    const r = await v1.call((id) => frame(Op.VALUES, id, encodeValues(0, 3, 2, 1).subarray(12)));
    expect(r).toMatchObject({ ok: true, payload: Buffer.alloc(0) });
    await v1.close();
  });

  it('keeps everything with keepOnDisconnect', async () => {
    await start({ keepOnDisconnect: true });
    const p = await Raw.open(sock);
    await publish(p, 'stays');
    await p.close();
    await settle();
    expect(root.subordinate('stays')).toBeDefined();
  });
});

describe('atomic batches', () => {
  it('applies a batch with a bad entry not at all', async () => {
    await start();
    const p = await Raw.open(sock);
    await publish(p, 's');
    const msg = await p.fails(
      (id) =>
        encodeUpdate(id, [
          { group: 3, index: 0, op: UpdateOp.SET, value: 1 },
          { group: 3, index: 1, op: UpdateOp.SET, value: 1 },
          { group: 3, index: 9, op: UpdateOp.SET, value: 1 },
        ]),
      'ENOENT',
    );
    expect(msg).toMatch(/update 2/);
    const s = root.subordinate('s')!;
    expect(s.getValue('requests')).toBe(0n);
    expect(s.getValue('temp')).toBe(0n);
    const bad = encodeUpdate(p.nextId() + 1, [
      { group: 3, index: 0, op: UpdateOp.SET, value: 1 },
      { group: 3, index: 0, op: 7, value: 1 },
    ]);
    await p.fails(() => bad, 'EINVAL');
    expect(s.getValue('requests')).toBe(0n);
    await p.close();
  });

  it('never lets a reader see half a batch', async () => {
    await start();
    const p = await Raw.open(sock);
    await p.ok((id) => encodeDefine(id, 1, [{ name: 'a', type: 'u64' }, { name: 'b', type: 'u64' }]));
    await p.ok((id) => encodeSource(id, 2, 0, 'pair'));
    await p.ok((id) => encodeValues(id, 3, 2, 1));
    const pair = root.subordinate('pair')!;
    let samples = 0;
    let torn = 0;
    let stop = false;
    const sample = (): void => {
      if (pair.getValue('a') !== pair.getValue('b')) torn++;
      samples++;
      if (!stop) setImmediate(sample);
    };
    setImmediate(sample);
    // 2,000 batches, each moving a and b together, written in chunks that split frames anywhere
    const frames: Buffer[] = [];
    for (let i = 1; i <= 2000; i++) {
      const entries = [];
      for (let k = 0; k < 50; k++) entries.push({ group: 3, index: 0, op: UpdateOp.ADD, value: 1 });
      for (let k = 0; k < 50; k++) entries.push({ group: 3, index: 1, op: UpdateOp.ADD, value: 1 });
      frames.push(encodeUpdate(10_000 + i, entries));
    }
    const all = Buffer.concat(frames);
    for (let at = 0; at < all.length; at += 7919) {
      p.socket.write(all.subarray(at, at + 7919));
      if (at % (7919 * 20) === 0) await new Promise((r) => setImmediate(r));
    }
    await p.ok((id) => encodePing(id));
    stop = true;
    expect(pair.getValue('a')).toBe(100_000n);
    expect(pair.getValue('b')).toBe(100_000n);
    expect(samples).toBeGreaterThan(10);
    expect(torn).toBe(0);
    await p.close();
  });
});

/** File descriptors this process holds (the server runs in it; the peers below run in another process). */
function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/**
 * A separate process (python3) that, once go() is called, opens `n` connections to `path` and then never reads
 * and never closes them until it is killed (as a hostile or hung peer does).
 */
async function holder(path: string, n: number): Promise<{ child: ChildProcess; go(): Promise<void> }> {
  const child = spawn('python3', [
    '-c',
    `import socket, sys
print('up', flush=True)
sys.stdin.readline()
conns = []
for i in range(${n}):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sys.argv[1])
    conns.append(s)
print('ready', flush=True)
sys.stdin.read()`,
    path,
  ]);
  let out = '';
  const line = (text: string): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const onData = (x: Buffer): void => {
        out += x.toString();
        if (out.includes(text)) {
          child.stdout!.off('data', onData);
          resolve();
        }
      };
      child.stdout!.on('data', onData);
      child.once('exit', (code) => reject(new Error(`python exited ${code}`)));
    });
  await line('up');
  return {
    child,
    go: () => {
      child.stdin!.write('go\n');
      return line('ready');
    },
  };
}

async function holdConnections(path: string, n: number): Promise<ChildProcess> {
  const h = await holder(path, n);
  await h.go();
  return h.child;
}


describe('denial of service', () => {
  it('releases the descriptor of every connection refused at the cap, even from a peer that never closes', async () => {
    await start({ maxConnections: 2 });
    const a = await Raw.open(sock);
    const b = await Raw.open(sock);
    const { child: peer, go } = await holder(sock, 300);
    const baseline = fdCount();
    try {
      await go();
      await waitFor('300 refusals', () => server.stats.refused === 300);
      // the refused peers are told EBUSY, then their connection is closed after a short grace
      await waitFor(`the refused connections' descriptors to be released (baseline ${baseline}, now ${fdCount()})`, () => fdCount() <= baseline);
      expect(server.stats.accepted).toBe(302);
      expect(server.stats.connections).toBe(2);
    } finally {
      peer.kill('SIGKILL');
    }
    // the accepted producers were not disturbed
    await a.ok((id) => encodePing(id));
    await b.ok((id) => encodePing(id));
    const c = await Raw.connect(sock);
    expect(await c.closed.then(() => c.unsolicited)).toMatchObject([{ ok: false, code: 'EBUSY', id: 0 }]);
    await a.close();
    await b.close();
  });

  it('closes a connection that says no HELLO or leaves a frame unfinished, not an idle producer; counts them', async () => {
    await start({ helloTimeoutMs: 300, frameTimeoutMs: 300, maxConnections: 3 });
    // three peers that never say HELLO take every slot: a producer is refused until they time out
    const idle = await holdConnections(sock, 3);
    try {
      await waitFor('3 connections', () => server.stats.connections === 3);
      const refused = await Raw.connect(sock);
      await refused.closed;
      expect(refused.unsolicited).toMatchObject([{ ok: false, code: 'EBUSY' }]);
      await waitFor('the idle connections to time out', () => server.stats.connections === 0);
      expect(server.stats.timedOut).toBe(3);
    } finally {
      idle.kill('SIGKILL');
    }
    // an established producer idle between frames stays connected
    const producer = await Raw.open(sock);
    await new Promise((r) => setTimeout(r, 900));
    await producer.ok((id) => encodePing(id));
    // a frame started but never finished: closed with ETIMEDOUT
    const ping = encodePing(producer.nextId());
    producer.socket.write(ping.subarray(0, 7));
    await producer.closed;
    expect(producer.unsolicited).toMatchObject([{ ok: false, code: 'ETIMEDOUT', id: 0 }]);
    // half a HELLO
    const half = await Raw.connect(sock);
    half.socket.write(encodeHello(1).subarray(0, 10));
    await half.closed;
    expect(half.unsolicited).toMatchObject([{ ok: false, code: 'ETIMEDOUT' }]);
    expect(server.stats.timedOut).toBe(5);
    expect(server.stats.refused).toBe(1);
  });

  it('frees the handles of removed sources and groups: a connection can create and remove sources forever', async () => {
    await start({ maxHandlesPerConnection: 10 });
    const p = await Raw.open(sock);
    await p.ok((id) => encodeDefine(id, 1, [{ name: 'v', type: 'u64' }]));
    for (let i = 0; i < 300; i++) {
      const h = 1000 + i * 10; // fresh handle numbers every round
      await p.ok((id) => encodeSource(id, h, 0, `churn${i}/a`));
      await p.ok((id) => encodeValues(id, h + 1, h, 1));
      await p.ok((id) => encodeSource(id, h + 2, h, 'below'));
      await p.ok((id) => encodeValues(id, h + 3, h + 2, 1));
      await p.ok((id) => encodeUpdate(id, [{ group: h + 3, index: 0, op: UpdateOp.ADD, value: 1 }]));
      if (i % 2 === 0) await p.ok((id) => encodeRemovePath(id, `churn${i}`));
      else await p.ok((id) => encodeRemove(id, RemoveKind.SOURCE, h));
      // what went below the removed source is gone for this connection too
      await p.fails((id) => encodeUpdate(id, [{ group: h + 3, index: 0, op: UpdateOp.ADD, value: 1 }]), 'ENOENT');
      if (i % 2 === 1) await p.ok((id) => encodeRemovePath(id, `churn${i}`)); // the intermediate source
    }
    expect(root.subordinates).toHaveLength(0);
    await p.close();
  });
});

describe('turns', () => {
  it('serves every connection with a backlog to its last frame, also when a turn ends before it comes', async () => {
    await start();
    const a = await Raw.open(sock);
    const b = await Raw.open(sock);
    // every turn is over after one frame: connections with a backlog get one frame a turn, in turn
    let clock = performance.now();
    const now = vi.spyOn(performance, 'now').mockImplementation(() => (clock += 10));
    try {
      const pings = (p: Raw, n: number) => Buffer.concat(Array.from({ length: n }, () => encodePing(p.nextId())));
      // written at once: both connections hold a backlog together, and a finishes first
      a.socket.write(pings(a, 5));
      b.socket.write(pings(b, 20));
      // the replies, to no call of Raw's, land in `unsolicited`
      const answered = () => a.unsolicited.length + b.unsolicited.length;
      await waitFor(`every ping answered (${answered()} of 25)`, () => answered() === 25, 3000);
      expect([...a.unsolicited, ...b.unsolicited].every((r) => r.ok)).toBe(true);
      expect(server.stats.throttled).toBeGreaterThan(0);
    } finally {
      now.mockRestore();
    }
    await a.close();
    await b.close();
  });

  it('answers the frames before a fatal one first: the replies of a turn are written together, in order', async () => {
    await start();
    const p = await Raw.open(sock);
    const pings = [p.nextId(), p.nextId()];
    const broken = Buffer.alloc(8); // a length below the header: framing is lost
    broken.writeUInt32LE(3, 0);
    p.socket.write(Buffer.concat([...pings.map((id) => encodePing(id)), broken]));
    await p.closed;
    expect(p.unsolicited.map((r) => [r.id, r.ok, r.code])).toEqual([[pings[0], true, ''], [pings[1], true, ''], [0, false, 'EPROTO']]);
  });
});
