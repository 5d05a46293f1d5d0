/**
 * The bytes of message content held in memory at once, across all connections of one listener.
 * Both SMTP listeners keep each message (or report) whole in memory until it is committed (the
 * store keeps it as one BLOB), so without a bound, maxClients × maxMessageSize bytes (25 GB by
 * default on submission) could be asked for.
 * A transaction that would go over the budget is refused with 451 4.3.1 and the client tries
 * again later, as Postfix answers 452 4.3.1 when its queue is short of space.
 */
export class ByteBudget {
  private used = 0;

  constructor(readonly limit: number) {}

  /** Bytes held now. */
  get inUse(): number {
    return this.used;
  }

  /** Takes `bytes` from the budget; false (and nothing taken) when they do not fit. */
  take(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  giveBack(bytes: number): void {
    this.used -= bytes;
  }
}
