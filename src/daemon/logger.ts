import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * Structured JSON on stderr (stdout stays free for commands that print results); readable lines when stderr
 * is a terminal. Synchronous, so the last lines before an exit are never lost.
 */
export function createLogger(level = 'info'): Logger {
  const options = { level, base: { pid: process.pid }, name: 'statsfs' };
  if (process.stderr.isTTY) return pino(options, pretty({ destination: 2, sync: true, ignore: 'pid,hostname,name' }));
  return pino(options, pino.destination({ fd: 2, sync: true }));
}
