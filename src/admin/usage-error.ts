/**
 * A request an admin action refuses as asked, before doing anything: a replay without a filter, a
 * webhook registration without a public URL, a backfill of a source that is not configured. Not a
 * ConnectorError: nothing failed, the request was incomplete. The CLI prints the message and exits 2;
 * the dashboard's admin routes answer 400 with it.
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
