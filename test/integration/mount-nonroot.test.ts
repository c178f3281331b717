/**
 * `statsfs mount` by a user who is not root, for real: the daemon runs as `nobody` (setpriv drops every
 * privilege) and mounts through the setuid fusermount3, as on a desktop. Each case runs in a private mount
 * namespace (unshare -m) where /dev/fuse and /etc/fuse.conf are bind-mounted from files the test writes, so
 * that "/dev/fuse is root-only" and "/etc/fuse.conf lacks user_allow_other" are tested whatever the host has,
 * and nothing the test mounts is seen outside (the namespace, and its mounts, end with the script).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ROOT, skipWithoutFuse, tempDir } from '../helpers/mount.js';

const NOBODY = 65534;
const isRoot = process.getuid?.() === 0;
const tools = ['unshare', 'setpriv', 'mknod', 'fusermount3'].every((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0);
// CI runs as root with these tools: there the test must run, never skip
const skip = skipWithoutFuse || (process.env.CI !== 'true' && (!isRoot || !tools));

interface Setup {
  /** Mode of the /dev/fuse the daemon sees. */
  fuseMode: string;
  /** user_allow_other in the /etc/fuse.conf fusermount3 reads. */
  userAllowOther: boolean;
}

describe.skipIf(skip)('statsfs mount as a user who is not root (nobody, via setpriv and fusermount3)', { timeout: 60_000 }, () => {
  let t: string;
  beforeEach(() => {
    t = tempDir();
    chmodSync(t, 0o755);
    mkdirSync(join(t, 'm'));
    chownSync(join(t, 'm'), NOBODY, NOBODY);
    mkdirSync(join(t, 'rootdir')); // 0755 root: nobody cannot write there
    mkdirSync(join(t, 'run'));
    chownSync(join(t, 'run'), NOBODY, NOBODY);
  });
  afterEach(() => rmSync(t, { recursive: true, force: true }));

  /** Runs `body` (bash) in a private mount namespace; `$AS_NOBODY cmd…` runs cmd as nobody. */
  function inNamespace(setup: Setup, body: string): { status: number; stdout: string; stderr: string } {
    const script = `
      set -u
      mknod ${t}/fuse c 10 229 && chmod ${setup.fuseMode} ${t}/fuse && mount --bind ${t}/fuse /dev/fuse || exit 99
      printf '%s\\n' '# written by the test' ${setup.userAllowOther ? "'user_allow_other'" : "'#user_allow_other'"} > ${t}/fuse.conf
      mount --bind ${t}/fuse.conf /etc/fuse.conf || exit 99
      # the checkout may sit in folders only root can enter (or under a /tmp of its own): nobody runs it here
      mkdir -p ${t}/project && mount --bind ${ROOT} ${t}/project || exit 99
      T=${t}
      AS_NOBODY="setpriv --reuid=${NOBODY} --regid=${NOBODY} --clear-groups --inh-caps=-all env -i PATH=$PATH HOME=/ XDG_RUNTIME_DIR=$T/run"
      STATSFS="${process.execPath} $T/project/bin/statsfs.js mount --no-collectors --no-state"
      ${body}
    `;
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'bash', '-c', script], { encoding: 'utf8', timeout: 50_000 });
    expect(r.status, r.stderr).not.toBe(99);
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  /** Starts the daemon as nobody in the background, waits for "mounted" (or its exit), then runs `then`. */
  const serve = (args: string, then: string) => `
      $AS_NOBODY $STATSFS $T/m ${args} 2>$T/log &
      pid=$!
      for i in $(seq 150); do grep -q '"msg":"mounted"' $T/log && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
      ${then}
      kill -TERM $pid; wait $pid; echo "exit=$?"
      grep -q " $T/m " /proc/self/mountinfo && echo "still mounted" || echo "unmounted"
  `;
  const log = () => readFileSync(join(t, 'log'), 'utf8');
  const oneLine = (stderr: string) => {
    expect(stderr).toMatch(/^statsfs: [^\n]+\n$/);
    return stderr;
  };

  it('without user_allow_other, the default serves only the mounting user, with a one-line warning', () => {
    const r = inNamespace(
      { fuseMode: '0666', userAllowOther: false },
      serve('', `$AS_NOBODY ls $T/m; ls $T/m 2>&1 | sed 's/^/root: /'`),
    );
    expect(r.stdout).toMatch(/^statsfs\n/); // nobody sees the tree
    expect(r.stdout).toMatch(/root: .*Permission denied/); // no one else does, root included
    expect(r.stdout).toMatch(/exit=0\nunmounted\n$/);
    const warnings = log()
      .split('\n')
      .filter((l) => l.includes('"level":40'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/only .*user.*user_allow_other.*\/etc\/fuse\.conf/);
  });

  it('with user_allow_other in /etc/fuse.conf, the default serves every user', () => {
    const r = inNamespace({ fuseMode: '0666', userAllowOther: true }, serve('', `ls $T/m 2>&1 | sed 's/^/root: /'`));
    expect(r.stdout).toMatch(/^root: statsfs\n/);
    expect(r.stdout).toMatch(/exit=0\nunmounted\n$/);
    expect(log()).not.toMatch(/"level":40/);
  });

  it('--allow-other asked for explicitly without user_allow_other fails with one line naming /etc/fuse.conf', () => {
    const r = inNamespace({ fuseMode: '0666', userAllowOther: false }, `$AS_NOBODY $STATSFS $T/m --allow-other --socket $T/run/p.sock`);
    expect(r.status).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/--allow-other.*user_allow_other.*\/etc\/fuse\.conf/);
  });

  it('a mountpoint the user cannot write to gets an accurate hint', () => {
    const r = inNamespace({ fuseMode: '0666', userAllowOther: true }, `$AS_NOBODY $STATSFS $T/rootdir`);
    expect(r.status).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/no write permission on mountpoint .*rootdir.*(own|write)/);
    expect(r.stderr).not.toMatch(/unknown error/);
  });

  it('a /dev/fuse the user cannot open gets an accurate hint', () => {
    const r = inNamespace({ fuseMode: '0600', userAllowOther: true }, `$AS_NOBODY $STATSFS $T/m`);
    expect(r.status).toBe(1);
    expect(oneLine(r.stderr)).toMatch(/\/dev\/fuse.*permission denied.*chmod 0666 \/dev\/fuse/i);
    expect(r.stderr).not.toMatch(/modprobe|apt-get/);
  });
});
