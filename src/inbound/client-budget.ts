import ipaddr from 'ipaddr.js';

export interface ClientBudgetSettings {
  /** Reports one client may have stored in any minute; 0: no limit. */
  maxReportsPerMinute: number;
  /** Bytes of reports one client may have stored in any hour; 0: no limit. */
  maxBytesPerHour: number;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;

/**
 * How much one client may store through the inbound listener: reports per minute and bytes per
 * hour, over sliding windows, so one sender cannot fill the disk. The listener answers a client
 * over either with 451 4.7.1: a real MTA keeps the report and tries again later, nothing is lost.
 *
 * A client is its IPv4 address, or its IPv6 /64 (one host usually has a whole /64 to itself, so
 * counting single IPv6 addresses would let it take a fresh one per report). Kept in memory: a
 * restart forgets the counts, which costs at most one more window's worth.
 */
export class ClientBudget {
  /** Per client: when each stored report came and its size, oldest first, at most an hour old. */
  private readonly stored = new Map<string, Array<{ at: number; bytes: number }>>();
  private lastSweep = 0;

  constructor(private readonly settings: ClientBudgetSettings) {}

  /** Why this client may not send another report now (at MAIL FROM), or null when it may. */
  refusal(clientIp: string, now = Date.now()): string | null {
    return this.check(this.history(clientKey(clientIp), now), 0, now);
  }

  /**
   * Counts a report of `bytes` against its client and returns null, or returns why it may not be
   * stored and counts nothing. Counted before the report is committed, so parallel connections
   * of one client cannot all pass on the same budget.
   */
  take(clientIp: string, bytes: number, now = Date.now()): string | null {
    const key = clientKey(clientIp);
    const history = this.history(key, now);
    const refused = this.check(history, bytes, now);
    if (refused !== null) return refused;
    history.push({ at: now, bytes });
    this.stored.set(key, history);
    this.sweep(now);
    return null;
  }

  private check(history: Array<{ at: number; bytes: number }>, bytes: number, now: number): string | null {
    const { maxReportsPerMinute, maxBytesPerHour } = this.settings;
    if (maxReportsPerMinute > 0 && history.filter((entry) => entry.at > now - MINUTE_MS).length >= maxReportsPerMinute) {
      return `too many reports from your address (inbound.maxReportsPerClientPerMinute is ${maxReportsPerMinute}), try again later`;
    }
    const used = history.reduce((sum, entry) => sum + entry.bytes, 0);
    const over = bytes === 0 ? used >= maxBytesPerHour : used + bytes > maxBytesPerHour;
    if (maxBytesPerHour > 0 && over) {
      return `too many bytes of reports from your address this hour (inbound.maxBytesPerClientPerHour is ${maxBytesPerHour}), try again later`;
    }
    return null;
  }

  private history(key: string, now: number): Array<{ at: number; bytes: number }> {
    const history = this.stored.get(key) ?? [];
    while (history.length > 0 && (history[0] as { at: number }).at <= now - HOUR_MS) history.shift();
    return history;
  }

  /** Forgets clients silent for an hour, at most once a minute, so the map does not grow for ever. */
  private sweep(now: number): void {
    if (now - this.lastSweep < MINUTE_MS) return;
    this.lastSweep = now;
    for (const [key, history] of this.stored) {
      if ((history.at(-1)?.at ?? 0) <= now - HOUR_MS) this.stored.delete(key);
    }
  }
}

/** The address a budget is kept for: IPv4 as is (also when IPv4-mapped), IPv6 by its /64. */
export function clientKey(clientIp: string): string {
  if (!ipaddr.isValid(clientIp)) return clientIp;
  const address = ipaddr.process(clientIp);
  if (address.kind() === 'ipv4') return address.toString();
  const parts = (address as ipaddr.IPv6).parts.slice(0, 4);
  return `${parts.map((part) => part.toString(16)).join(':')}::/64`;
}
