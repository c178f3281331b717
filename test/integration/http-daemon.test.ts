/**
 * The real daemon serving /metrics: scraped over loopback with plain HTTP (a separate process: curl).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freeTcpPort } from '../helpers/ports.js';
import { sh, skipWithoutFuse, startDaemon, type Daemon } from '../helpers/mount.js';

describe.skipIf(skipWithoutFuse)('statsfs mount --http', { timeout: 60_000 }, () => {
  let d: Daemon;
  let url: string;
  beforeAll(async () => {
    const port = await freeTcpPort();
    url = `http://127.0.0.1:${port}/metrics`;
    d = await startDaemon(['--collectors', 'cpu,memory', '--http', `127.0.0.1:${port}`]);
  });
  afterAll(() => d?.cleanup());

  it('serves the tree in the Prometheus text format, with HELP and TYPE from the schema', () => {
    sh(`cat ${d.mountpoint}/statsfs/fuse/open/requests`);
    const r = sh(`curl -sS -D - ${url}`);
    expect(r.stdout).toMatch(/Content-Type: text\/plain; version=0\.0\.4/i);
    expect(r.stdout).toMatch(/^# TYPE node_cpu_seconds_total counter$/m);
    expect(r.stdout).toMatch(/^node_cpu_seconds_total\{cpu="0",mode="user"\} \d+(\.\d+)?$/m);
    expect(r.stdout).toMatch(/^# TYPE node_memory_MemTotal_bytes gauge$/m);
    expect(r.stdout).toMatch(/^statsfs_fuse_requests_total\{op="open"\} [1-9]\d*$/m);
  });

  it('negotiates OpenMetrics', () => {
    const r = sh(`curl -sS -D - -H 'Accept: application/openmetrics-text; version=1.0.0' ${url}`);
    expect(r.stdout).toMatch(/Content-Type: application\/openmetrics-text/i);
    expect(r.stdout.trimEnd().endsWith('# EOF')).toBe(true);
  });
});
