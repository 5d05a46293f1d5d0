import type { DeliveryConfig } from '../config/schema.js';
import { endsWithLabels } from './shaping-rules.js';
import { SlidingWindow } from './sliding-window.js';

/** Why a transaction may not start yet, and when it may. */
export interface LimitHold {
  until: number;
  /** For the held recipients' last reply: "sender domain news.example is at its limit of 100 per hour". */
  reason: string;
  /** The limit that holds it (for heldUntil). */
  limit: CountedLimit;
}

/** One configured limit and the starts it has counted. */
export class CountedLimit {
  private readonly minute = new SlidingWindow(60_000);
  private readonly hour = new SlidingWindow(3_600_000);
  /** The next free slot for a held batch (see heldUntil). */
  private nextHeldSlot = 0;

  constructor(
    readonly subject: string,
    private readonly perMinute: number | null,
    private readonly perHour: number | null,
  ) {}

  hold(now: number): LimitHold | null {
    if (this.perMinute !== null && this.minute.count(now) >= this.perMinute) return { until: this.minute.freeAt(this.perMinute), reason: `${this.subject} is at its limit of ${this.perMinute} per minute`, limit: this };
    if (this.perHour !== null && this.hour.count(now) >= this.perHour) return { until: this.hour.freeAt(this.perHour), reason: `${this.subject} is at its limit of ${this.perHour} per hour`, limit: this };
    return null;
  }

  /** Held batches come back spaced at the allowed rate from `freeAt`, not all at once (as ShapedDestination.holdUntil). */
  heldUntil(now: number, freeAt: number): number {
    const spacing = Math.max(this.perMinute === null ? 0 : 60_000 / this.perMinute, this.perHour === null ? 0 : 3_600_000 / this.perHour);
    const slot = Math.max(freeAt, this.nextHeldSlot, now);
    this.nextHeldSlot = slot + spacing;
    return slot;
  }

  count(now: number): void {
    if (this.perMinute !== null) this.minute.add(now);
    if (this.perHour !== null) this.hour.add(now);
  }
}

const NONE: CountedLimit[] = [];

/**
 * delivery.sendingLimits: rates per envelope sender domain and per source address, whatever the
 * destination (the shaping rules limit per destination). A transaction starts only when every
 * limit that applies to it has room; the first sender domain limit that matches applies (a
 * subdomain's own entry before its parent's, if listed first), and the source address's.
 * Lives on the delivery stage's thread only, like the shaper: counts start again at a restart.
 */
export class SendingLimits {
  private readonly senderDomains: Array<{ domain: string; limit: CountedLimit }>;
  private readonly sources = new Map<string, CountedLimit>();

  constructor(settings: Pick<DeliveryConfig, 'sendingLimits'>) {
    this.senderDomains = [];
    for (const entry of settings.sendingLimits) {
      if (entry.senderDomain !== undefined) {
        const domain = entry.senderDomain.toLowerCase().replace(/\.$/, '');
        this.senderDomains.push({ domain, limit: new CountedLimit(`sender domain ${domain}`, entry.messagesPerMinute, entry.messagesPerHour) });
      } else if (entry.localAddress !== undefined && !this.sources.has(entry.localAddress)) {
        this.sources.set(entry.localAddress, new CountedLimit(`source address ${entry.localAddress}`, entry.messagesPerMinute, entry.messagesPerHour));
      }
    }
  }

  get hasLimits(): boolean {
    return this.senderDomains.length > 0 || this.sources.size > 0;
  }

  /** The source address's own hold, without counting: for choosing among a pool's addresses. */
  sourceHold(localIp: string | null, now: number): LimitHold | null {
    return localIp === null ? null : (this.sources.get(localIp)?.hold(now) ?? null);
  }

  /** null when a transaction from `mailFrom` via `localIp` may start now; else the hold that ends last. */
  hold(mailFrom: string, localIp: string | null, now: number): LimitHold | null {
    let longest: LimitHold | null = null;
    for (const limit of this.limitsOf(mailFrom, localIp)) {
      const hold = limit.hold(now);
      if (hold && (!longest || hold.until > longest.until)) longest = hold;
    }
    return longest;
  }

  /** When a batch held by `hold` at `now` is due again. */
  heldUntil(hold: LimitHold, now: number): number {
    return hold.limit.heldUntil(now, hold.until);
  }

  /** Counts a transaction that starts now against every limit that applies to it. */
  count(mailFrom: string, localIp: string | null, now: number): void {
    for (const limit of this.limitsOf(mailFrom, localIp)) limit.count(now);
  }

  private limitsOf(mailFrom: string, localIp: string | null): CountedLimit[] {
    if (!this.hasLimits) return NONE;
    const limits: CountedLimit[] = [];
    const at = mailFrom.lastIndexOf('@');
    if (at !== -1) {
      const domain = mailFrom.slice(at + 1).toLowerCase();
      const entry = this.senderDomains.find((e) => endsWithLabels(domain, e.domain));
      if (entry) limits.push(entry.limit);
    }
    const source = localIp === null ? undefined : this.sources.get(localIp);
    if (source) limits.push(source);
    return limits;
  }
}
