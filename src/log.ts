/**
 * What every part of statsfs logs through: the daemon passes its pino logger (src/daemon/logger.ts), a
 * library program any object with these four methods. The one logging interface of the project.
 */
export interface Log {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** Logs nothing: the default of servers given no log. */
export const SILENT_LOG: Log = { debug() {}, info() {}, warn() {}, error() {} };
