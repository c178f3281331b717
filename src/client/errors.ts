/** The one error type of the producer client. */
/** An error reply from the daemon (code is an errno name such as EPERM), or ENOTCONN/ECONNRESET. */
export class StatsClientError extends Error {
  override readonly name = 'StatsClientError';
  constructor(
    readonly code: string,
    message: string,
    /** What was asked: 'SOURCE myapp/web', 'UPDATE', … */
    readonly request = '',
  ) {
    super(request ? `${request}: ${message}` : message);
  }
}
