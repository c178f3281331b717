/**
 * The services a daemon runs beside the mount, chosen on the command line: producers that feed the tree
 * (StatsD) and exporters that serve it. Each is closed when the daemon stops. One that cannot start ends the
 * start with one line naming its option and address.
 */
import { InvalidArgumentError } from 'commander';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Source } from '../model/index.js';
import { MetricsServer } from '../export/http.js';
import { ProducerServer } from '../producers/socket-server.js';
import { loadAddon } from '../fs/mount.js';
import { StatsdServer } from '../producers/statsd.js';
import { statsdBinding } from '../producers/statsd-native.js';
import type { KeptState } from '../producers/producer-tree.js';
import type { SavedMetric } from '../producers/statsd-tree.js';
import type { StateKeeper } from '../state/keeper.js';
import { UserError, type Service } from './daemon.js';
import type { Logger } from './logger.js';
import { producerServerSource, statsdSource } from './self-stats.js';

export interface ServiceFlags {
  /** The producer socket's path, or false for none. */
  socket: string | false;
  socketGroup?: string;
  keepOnDisconnect?: boolean;
  statsd?: { host: string; port: number };
  statsdSocket?: string;
  /** The StatsD UDP socket's receive buffer in bytes, as the kernel counts it. */
  statsdRcvbuf?: number;
  /** Remove a StatsD metric not updated for this many seconds (0 or absent: never). */
  statsdExpire?: number;
  /** Serve /metrics (Prometheus text or OpenMetrics) here. */
  http?: { host: string; port: number };
  /** Scrapes of /metrics served at once (beyond: 503). */
  httpMaxScrapes?: number;
}

/** Parses host:port (IPv6 as [::1]:8125) for commander. */
export function hostPort(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new InvalidArgumentError('expected host:port, e.g. 127.0.0.1:8125 or [::1]:8125');
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

const address = (at: { host: string; port: number }): string => (at.host.includes(':') ? `[${at.host}]:${at.port}` : `${at.host}:${at.port}`);

/** A socket path whose directory is missing cannot be bound: say so (the kernel's errno does not). */
function checkSocketDir(option: string, path: string): void {
  const dir = dirname(resolve(path));
  if (!existsSync(dir)) throw new UserError(`${option} ${path}: the directory ${dir} does not exist: create it or choose another path`);
}

/** Turns a listen error into one line that names the option and the address it was given. */
function listenFailure(err: unknown, option: string, at: string): unknown {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'EADDRINUSE':
      return new UserError(`${option} ${at} is in use: stop what listens there, or choose another ${option.includes('socket') ? 'path' : 'port'}`);
    case 'EADDRNOTAVAIL':
      return new UserError(`${option} ${at}: no such address on this machine`);
    case 'EACCES':
    case 'EPERM':
      return new UserError(
        `${option} ${at}: permission denied${option.includes('socket') ? ` (on ${dirname(resolve(at))})` : ' (ports below 1024 need root)'}`,
      );
    default:
      return new UserError(`${option} ${at}: ${(err as Error).message}`);
  }
}

/** Listens, naming the option and the address in what an error says. */
async function listen<T>(option: string, at: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    throw listenFailure(err, option, at);
  }
}

/** Each service's statistics go under statsfs/ (the daemon's own, made before the services start). */
/**
 * What the services own goes in the state directory when there is one (`state`): each restores before it
 * listens, so a producer that reconnects finds what it kept.
 */
export async function startServices(root: Source, flags: ServiceFlags, log: Logger, state: StateKeeper | null = null): Promise<Service[]> {
  const services: Service[] = [];
  const self = root.subordinate('statsfs');
  let statsd: StatsdServer | null = null;
  try {
    if (flags.socket !== false) checkSocketDir('--socket', flags.socket);
    if (flags.statsdSocket !== undefined) checkSocketDir('--statsd-socket', flags.statsdSocket);
    if (flags.socket !== false) {
      const producers = new ProducerServer(root, {
        path: flags.socket,
        group: flags.socketGroup,
        keepOnDisconnect: flags.keepOnDisconnect,
        // `statsfs rm` of a StatsD metric: the receiver removes what it keeps
        removeKept: (path) => statsd?.removePath(path) ?? false,
        journal: state ?? undefined,
        log: log.child({ service: 'producers' }),
      });
      self?.addSubordinate(producerServerSource(producers.stats));
      services.push(producers);
      await state?.register('producers', {
        save: () => producers.saveKept(),
        restore: (saved) => producers.restoreKept(saved as KeptState),
        generation: () => producers.keptChanges,
        replay: (data) => producers.replayKept(data),
        everything: () => ({ kept: producers.saveKept() }),
      });
      await listen('--socket', flags.socket, () => producers.listen()); // each server logs its own start
    }
    if (flags.statsd || flags.statsdSocket) {
      statsd = new StatsdServer(root, {
        udp: flags.statsd && { ...flags.statsd, rcvbuf: flags.statsdRcvbuf },
        unixPath: flags.statsdSocket,
        expireSeconds: flags.statsdExpire,
        // UDP received and parsed by a thread of the binding: see src/producers/statsd-native.ts
        native: flags.statsd ? statsdBinding(loadAddon()) : undefined,
        journal: state ?? undefined,
        log: log.child({ service: 'statsd' }),
      });
      self?.addSubordinate(statsdSource(statsd));
      services.push(statsd);
      const receiver = statsd;
      await state?.register('statsd', {
        save: () => receiver.saveMetrics(),
        restore: (saved) => receiver.restoreMetrics(saved as SavedMetric[]),
        generation: () => receiver.changes,
        replay: (data) => receiver.replayJournal(data as { all: SavedMetric[] }),
        everything: () => ({ all: receiver.saveMetrics() }),
      });
      await statsd.listen().catch((err: unknown) => {
        // one server, two listeners: the UDP bind fails in 'bind', the Unix socket in 'listen'
        const udp = (err as NodeJS.ErrnoException).syscall === 'bind' && flags.statsd;
        throw udp ? listenFailure(err, '--statsd', address(udp)) : listenFailure(err, '--statsd-socket', flags.statsdSocket ?? '');
      });
    }
    if (flags.http) {
      const metrics = new MetricsServer(root, { ...flags.http, maxScrapes: flags.httpMaxScrapes, log: log.child({ service: 'http' }) });
      services.push(metrics);
      root.subordinate('statsfs')?.addSubordinate(metrics.selfStats());
      await listen('--http', address(flags.http), () => metrics.listen());
    }
  } catch (err) {
    await Promise.allSettled(services.map((s) => s.close()));
    throw err;
  }
  return services;
}
