/**
 * The services a daemon runs beside the mount, chosen on the command line: producers that feed the tree
 * (StatsD) and exporters that serve it. Each is closed when the daemon stops.
 */
import { InvalidArgumentError } from 'commander';
import type { Source } from '../model/index.js';
import { MetricsServer } from '../export/http.js';
import { ProducerServer } from '../producers/socket-server.js';
import { StatsdServer } from '../producers/statsd.js';
import type { Service } from './daemon.js';
import type { Logger } from './logger.js';
import { producerServerSource, statsdSource } from './self-stats.js';

export interface ServiceFlags {
  /** The producer socket's path, or false for none. */
  socket: string | false;
  socketGroup?: string;
  keepOnDisconnect?: boolean;
  statsd?: { host: string; port: number };
  statsdSocket?: string;
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

/** Each service's statistics go under statsfs/ (the daemon's own, made before the services start). */
export async function startServices(root: Source, flags: ServiceFlags, log: Logger): Promise<Service[]> {
  const services: Service[] = [];
  const self = root.subordinate('statsfs');
  let statsd: StatsdServer | null = null;
  try {
    if (flags.socket !== false) {
      const producers = new ProducerServer(root, {
        path: flags.socket,
        group: flags.socketGroup,
        keepOnDisconnect: flags.keepOnDisconnect,
        // `statsfs rm` of a StatsD metric: the receiver removes what it keeps
        removeKept: (path) => statsd?.removePath(path) ?? false,
        log: log.child({ service: 'producers' }),
      });
      self?.addSubordinate(producerServerSource(producers.stats));
      await producers.listen();
      services.push(producers);
      log.info({ socket: flags.socket }, 'producer socket listening');
    }
    if (flags.statsd || flags.statsdSocket) {
      statsd = new StatsdServer(root, {
        udp: flags.statsd,
        unixPath: flags.statsdSocket,
        expireSeconds: flags.statsdExpire,
        log: log.child({ service: 'statsd' }),
      });
      self?.addSubordinate(statsdSource(statsd));
      services.push(statsd);
      const at = await statsd.listen();
      log.info({ ...at, socket: flags.statsdSocket }, 'StatsD listening');
    }
    if (flags.http) {
      const metrics = new MetricsServer(root, { ...flags.http, maxScrapes: flags.httpMaxScrapes, log: log.child({ service: 'http' }) });
      services.push(metrics);
      root.subordinate('statsfs')?.addSubordinate(metrics.selfStats());
      const at = await metrics.listen();
      log.info(at, 'serving /metrics');
    }
  } catch (err) {
    await Promise.allSettled(services.map((s) => s.close()));
    throw err;
  }
  return services;
}
