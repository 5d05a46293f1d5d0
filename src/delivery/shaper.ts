import PQueue from 'p-queue';
import type { Classification } from '../bounces/classifier.js';
import type { NextHopLookup } from './next-hop.js';
import type { BatchReport } from './send-batch.js';
import { endsWithLabels, type ShapingRule } from './shaping-rules.js';
import { SlidingWindow } from './sliding-window.js';

/** A destination's pause as the store keeps it for `rebound queue` and GET /v1/queue. */
export interface DestinationPause {
  destination: string;
  pausedUntil: Date;
  /** The reply that caused it, as the host gave it. */
  reason: string;
  /** The reaction's name in the rule ("Gmail rate limit"). */
  reaction: string;
}

/** Domains remembered per destination, to defer their waiting mail when it pauses. */
const MAX_DOMAINS_PER_DESTINATION = 10_000;
/** Host names remembered as matching no rule or a rule; past this the memo starts again. */
const MAX_MEMO = 50_000;

/** How a destination sent from one source address is named: in pauses, logs and held replies. */
const VIA = ' via ';

/**
 * One rule's destination, as reached from one source address when delivery.localAddresses or an
 * IP pool gives several (a provider throttles per sending IP, so each address gets the rule's
 * limits and its own pause; KumoMTA's egress path): its gate (maxConnections), rate windows,
 * pause and slow-down.
 */
export class ShapedDestination {
  /** The rule's name, or "gmail via 192.0.2.10" for one source address's share. */
  readonly name: string;
  /** Transactions under way at once: at most the rule's maxConnections. */
  readonly gate: PQueue;
  readonly domains = new Set<string>();
  pausedUntil = 0;
  pause: DestinationPause | null = null;
  /** The share of the rule's rates allowed now: 1, or less after throttling replies. */
  rateFactor = 1;
  private lastThrottleAt = 0;
  /** The next free slot for a held batch (see holdUntil). */
  private nextHeldSlot = 0;
  private readonly minute = new SlidingWindow(60_000);
  private readonly hour = new SlidingWindow(3_600_000);

  constructor(
    readonly rule: ShapingRule,
    readonly localIp: string | null = null,
  ) {
    this.name = localIp === null ? rule.name : `${rule.name}${VIA}${localIp}`;
    this.gate = new PQueue({ concurrency: rule.maxConnections });
  }

  /**
   * null when a transaction may start now (and counts it), else when one may: the end of a pause,
   * or when the oldest start in a full minute or hour leaves it.
   */
  admit(now: number): number | null {
    if (now < this.pausedUntil) return this.pausedUntil;
    this.recover(now);
    const perMinute = this.limit(this.rule.messagesPerMinute);
    const perHour = this.limit(this.rule.messagesPerHour);
    if (perMinute !== null && this.minute.count(now) >= perMinute) return this.minute.freeAt(perMinute);
    if (perHour !== null && this.hour.count(now) >= perHour) return this.hour.freeAt(perHour);
    if (perMinute !== null) this.minute.add(now);
    if (perHour !== null) this.hour.add(now);
    return null;
  }

  /**
   * When a batch held back at `now` (admit said `freeAt`) is due again: the held batches are
   * spaced at the allowed rate from there, so they come back about as fast as they can go
   * rather than all at once, each to be held again.
   */
  holdUntil(now: number, freeAt: number): number {
    const perMinute = this.limit(this.rule.messagesPerMinute);
    const perHour = this.limit(this.rule.messagesPerHour);
    const spacing = Math.max(perMinute === null ? 0 : 60_000 / perMinute, perHour === null ? 0 : 3_600_000 / perHour);
    const slot = Math.max(freeAt, this.nextHeldSlot, now);
    this.nextHeldSlot = slot + spacing;
    return slot;
  }

  /** The rate the rule allows now: its own, times the slow-down, at least 1. */
  limit(ruleLimit: number | null): number | null {
    return ruleLimit === null ? null : Math.max(1, Math.floor(ruleLimit * this.rateFactor));
  }

  /** A throttling reply: no connection until the pause ends, then the slower rate. */
  throttled(now: number, reaction: ShapingRule['reactions'][number], reply: string): DestinationPause {
    this.pausedUntil = Math.max(this.pausedUntil, now + reaction.pauseSeconds * 1000);
    this.rateFactor = Math.max(this.rateFactor * reaction.rateFactor, 1 / 1024);
    this.lastThrottleAt = now;
    this.pause = { destination: this.name, pausedUntil: new Date(this.pausedUntil), reason: reply, reaction: reaction.name };
    return this.pause;
  }

  /** Each recoverAfterSeconds without a throttling reply doubles a slowed-down rate, up to the rule's. */
  private recover(now: number): void {
    if (this.rateFactor >= 1) return;
    const periodMs = this.rule.recoverAfterSeconds * 1000;
    const since = now - Math.max(this.lastThrottleAt, this.pausedUntil);
    if (since < periodMs) return;
    const doublings = Math.floor(since / periodMs);
    this.rateFactor = Math.min(1, this.rateFactor * 2 ** Math.min(doublings, 11));
    this.lastThrottleAt = now - (since % periodMs);
    if (this.rateFactor >= 1) this.lastThrottleAt = 0;
  }
}

/**
 * Traffic shaping per provider (config/shaping.json): which rule a batch's next hop falls under,
 * and the state of each rule's destination. Lives on the delivery stage's thread only.
 */
export class Shaper {
  private readonly destinations = new Map<string, ShapedDestination>();
  /** host name or "@domain" → the rule that matches it, or null for none (most hosts). */
  private readonly memo = new Map<string, ShapingRule | null>();

  constructor(private readonly rules: readonly ShapingRule[]) {}

  get hasRules(): boolean {
    return this.rules.length > 0;
  }

  /**
   * The destination of a batch for `domain` going to `lookup`'s hosts from `localIp` (null: the
   * operating system's choice); null when no rule matches.
   */
  destinationOf(domain: string, lookup: NextHopLookup, localIp: string | null = null): ShapedDestination | null {
    if (this.rules.length === 0) return null;
    let rule = this.matchDomain(domain);
    if (!rule && 'nextHop' in lookup) {
      for (const host of lookup.nextHop.hosts) {
        rule = this.matchHost(host.name.toLowerCase());
        if (rule) break;
      }
    }
    if (!rule) return null;
    const destination = this.destinationFor(rule, localIp);
    if (destination.domains.size < MAX_DOMAINS_PER_DESTINATION) destination.domains.add(domain);
    return destination;
  }

  /** A pause read back from the store at start: it still holds after a restart. */
  restore(pause: DestinationPause): void {
    const via = pause.destination.indexOf(VIA);
    const ruleName = via === -1 ? pause.destination : pause.destination.slice(0, via);
    const rule = this.rules.find((r) => r.name === ruleName);
    if (!rule) return;
    const destination = this.destinationFor(rule, via === -1 ? null : pause.destination.slice(via + VIA.length));
    destination.pausedUntil = pause.pausedUntil.getTime();
    destination.pause = pause;
    // Still paused: it comes back slowed down, as it would have without the restart.
    destination.rateFactor = Math.min(...rule.reactions.map((r) => r.rateFactor), 1);
  }

  /** The first failure in a batch's report that a reaction of the rule names, and that reaction. */
  throttlingIn(destination: ShapedDestination, report: BatchReport): { reaction: ShapingRule['reactions'][number]; failure: Classification } | null {
    const failures: Classification[] = report.failedHosts.map((f) => f.failure);
    for (const outcome of report.outcomes) if (!outcome.delivered) failures.push(outcome.failure);
    for (const failure of failures) {
      if (failure.severity !== 'temporary' || failure.code === null) continue;
      const reaction = destination.rule.reactions.find((r) => matches(r, failure));
      if (reaction) return { reaction, failure };
    }
    return null;
  }

  private matchDomain(domain: string): ShapingRule | null {
    const key = `@${domain}`;
    const known = this.memo.get(key);
    if (known !== undefined) return known;
    return this.remember(key, this.rules.find((r) => r.domains.some((d) => endsWithLabels(domain, d))) ?? null);
  }

  private matchHost(host: string): ShapingRule | null {
    const known = this.memo.get(host);
    if (known !== undefined) return known;
    return this.remember(host, this.rules.find((r) => r.mxSuffixes.some((s) => endsWithLabels(host, s))) ?? null);
  }

  private remember(key: string, rule: ShapingRule | null): ShapingRule | null {
    if (this.memo.size >= MAX_MEMO) this.memo.clear();
    this.memo.set(key, rule);
    return rule;
  }

  private destinationFor(rule: ShapingRule, localIp: string | null): ShapedDestination {
    const name = localIp === null ? rule.name : `${rule.name}${VIA}${localIp}`;
    let destination = this.destinations.get(name);
    if (!destination) {
      destination = new ShapedDestination(rule, localIp);
      this.destinations.set(name, destination);
    }
    return destination;
  }
}

function matches(reaction: ShapingRule['reactions'][number], failure: Classification): boolean {
  if (reaction.codes && (failure.code === null || !reaction.codes.includes(failure.code))) return false;
  if (reaction.enhancedCode && failure.enhancedCode !== reaction.enhancedCode) return false;
  if (reaction.pattern && !reaction.pattern.test(failure.text)) return false;
  return true;
}
