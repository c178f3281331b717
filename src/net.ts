/**
 * Starting a listener as a promise, shared by the servers of several layers (the producer socket and StatsD
 * in producers/, /metrics in export/), which may not import one another: like log.ts, it sits below them all.
 */
import type { EventEmitter } from 'node:events';

/**
 * Calls `start` (a listen() or bind() given `onListening` as its callback) and resolves once the server
 * listens, or rejects with the error that stopped it. Only that first error is taken here: install the
 * server's own 'error' handler once this resolves.
 */
export function whenListening(server: EventEmitter, start: (onListening: () => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    start(() => {
      server.off('error', reject);
      resolve();
    });
  });
}
