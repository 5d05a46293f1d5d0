import PQueue from 'p-queue';
import { returnPathFor, type VerpSettings } from '../bounces/verp.js';
import type { Config } from '../config/load.js';
import { hasListUnsubscribe, listUnsubscribeHeaders, type UnsubscribeSettings } from '../unsubscribe/index.js';
import type { Logger } from '../logger.js';
import type { ClaimedBatch, DeliveryState } from './delivery-state.js';
import type { DkimSigner } from './dkim-signing.js';
import { localFailure } from './failure.js';
import { IpPools, type SendingSource } from './ip-pools.js';
import type { NextHopLookup, NextHopResolver } from './next-hop.js';
import type { BatchReport, DeliveryBatch } from './send-batch.js';
import type { BatchSender } from './sender.js';
import { SendingLimits } from './sending-limits.js';
import { Shaper, type ShapedDestination } from './shaper.js';
import { headersToStrip, stripHeaderFields } from './strip-headers.js';
import type { TlsPolicies } from './tls-policies.js';

/**
 * Picks due recipients from the store and sends them. Two limits apply (p-queue): at most
 * delivery.concurrency transactions at once overall, and at most delivery.perDomainConcurrency
 * per recipient domain. A batch waits for its domain's slot before it asks for a global one, so a
 * slow domain holds only its own slots and the rest of the queue keeps moving.
 */
export class DeliveryScheduler {
  private readonly global: PQueue;
  private readonly domains = new Map<string, PQueue>();
  private readonly maxInFlight: number;
  private inFlight = 0;
  /** Reports of finished transactions waiting for their commit (see dispatch). */
  private readonly recording = new Set<Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private tickScheduled = false;
  private stopped = false;
  /** Control headers left out of the bytes sent (delivery.stripHeaders), resolved once. */
  private readonly strippedHeaders: ReadonlySet<string>;
  /** delivery.ipPools and ipPoolRules: the source address and EHLO name of each transaction. */
  private readonly ipPools: IpPools;
  /** delivery.sendingLimits: rates per envelope sender domain and per source address. */
  private readonly limits: SendingLimits;

  constructor(
    private readonly config: Config,
    private readonly state: DeliveryState,
    private readonly nextHops: NextHopResolver,
    private readonly sender: BatchSender,
    private readonly verp: VerpSettings,
    private readonly unsubscribe: UnsubscribeSettings,
    private readonly log: Logger,
    /** Signs the bytes sent (DKIM); null: nothing is signed (dkim.enabled false). */
    private readonly dkim: DkimSigner | null = null,
    /** Traffic shaping per provider (config/shaping.json); no rules: every destination as before. */
    private readonly shaper: Shaper = new Shaper([]),
    /** delivery.tls and MTA-STS; null: opportunistic TLS everywhere, as before they existed. */
    private readonly tlsPolicies: TlsPolicies | null = null,
  ) {
    this.global = new PQueue({ concurrency: config.delivery.concurrency });
    // Claimed work waiting in the queues keeps every slot busy without claiming the whole spool.
    this.maxInFlight = config.delivery.concurrency * 2;
    this.ipPools = new IpPools(config.delivery);
    this.limits = new SendingLimits(config.delivery);
    // A header that picks an IP pool is a control header too: the recipient never sees it.
    this.strippedHeaders = new Set([...headersToStrip(config.delivery.stripHeaders, config.submission.campaignHeader), ...this.ipPools.headerNames]);
  }

  start(): void {
    const recovered = this.state.recoverInFlight();
    if (recovered > 0) this.log.warn({ recipients: recovered }, 'recipients left "sending" by the last run are queued again (at-least-once)');
    if (this.shaper.hasRules) for (const pause of this.state.activePauses()) this.shaper.restore(pause);
    this.timer = setInterval(() => this.wake(), this.config.delivery.pollIntervalMs);
    this.timer.unref();
    this.wake();
  }

  /** Looks for due work soon (new mail was committed, a batch finished, or the poll timer fired). */
  wake(): void {
    if (this.stopped || this.tickScheduled) return;
    this.tickScheduled = true;
    setImmediate(() => {
      this.tickScheduled = false;
      this.tick();
    });
  }

  /**
   * Stops claiming and drops the claimed batches that have not started (their recipients are
   * queued again by the caller); lets the transactions under way finish, up to the timeout.
   */
  async stop(timeoutMs: number): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const queue of this.domains.values()) queue.clear();
    this.global.clear();
    const idle = this.global.onIdle().then(() => false);
    const timedOut = await Promise.race([idle, new Promise<boolean>((resolve) => setTimeout(() => resolve(true), timeoutMs).unref())]);
    if (timedOut) this.log.warn({ transactions: this.global.pending }, 'transactions still under way at shutdown are sent again at the next start');
    // Outcomes of the transactions that ended: committed (or failed) before the store closes.
    await Promise.allSettled([...this.recording]);
    await this.sender.close();
  }

  private tick(): void {
    const capacity = this.maxInFlight - this.inFlight;
    if (this.stopped || capacity <= 0) return;
    // Mail sent now could not be recorded, and would be sent again once the store is back.
    if (this.state.storeProblem()) return;
    const perDomain = this.config.delivery.perDomainConcurrency * this.config.delivery.batchSize * 2;
    let claim;
    try {
      claim = this.state.claimDue(new Date(), perDomain, capacity);
    } catch (error) {
      this.log.error({ err: error }, 'could not read due recipients from the store; retrying at the next poll');
      return;
    }
    if (claim.suppressed || claim.expired) this.log.info({ suppressed: claim.suppressed, expired: claim.expired }, 'recipients dropped before sending');
    for (const batch of claim.batches) this.dispatch(batch);
  }

  /**
   * A batch holds its domain's and the global slot only while its SMTP transaction runs; its
   * report is committed after the slots are free. Holding them through the commit (the outcome
   * group commit's delay and its fsync) left each slot idle for that long after every message:
   * with 20 per domain, that was the end-to-end limit for one busy route. The batch still counts
   * against maxInFlight until its outcome is committed, and its recipients stay "sending" in the
   * store until then, so nothing is claimed twice and nothing counts as delivered before its commit.
   */
  private dispatch(batch: ClaimedBatch): void {
    this.inFlight++;
    const domainQueue = this.domainQueue(batch.domain);
    domainQueue
      .add(() => this.route(batch))
      .then((sent) => sent?.recorded)
      .catch((error: unknown) => this.log.error({ err: error, queueId: batch.queueId }, 'delivery of a batch failed unexpectedly; it is retried after a restart'))
      .finally(() => {
        this.inFlight--;
        // Claim again once half the slots are free: fewer, larger claims mean fewer commits.
        if (this.inFlight <= this.maxInFlight / 2) this.wake();
      });
  }

  /**
   * The next hop, the source address, then the slots: a destination under a shaping rule first
   * waits for one of its maxConnections, then for its rate; then the sending limits of the
   * envelope sender's domain and of the source address. Held back (paused, or over a rate), the
   * batch is not sent and its recipients are due when it may go.
   */
  private async route(batch: ClaimedBatch): Promise<{ recorded: Promise<void> } | null> {
    const found = await this.nextHops.lookup(batch.domain);
    // The recipient domain's TLS policy (delivery.tls, MTA-STS) narrows the next hop's hosts and
    // sets the TLS it needs; a domain whose policy no host can meet fails here, deferred.
    const lookup = 'failure' in found || !this.tlsPolicies ? found : await this.tlsPolicies.apply(batch.domain, found.nextHop);
    // Stopping while the lookup ran: left "sending", queued again by the stage's stop.
    if (this.stopped) return null;
    // Read once, when first needed: by a header rule of the IP pools, or by the send.
    let stored: StoredContent | null = null;
    const content = (): StoredContent => (stored ??= this.state.contentOf(batch.messageId, batch.recipients.length));
    return this.sendFrom(batch, lookup, content, true);
  }

  /** The slots and limits of the source address chosen now (see route). */
  private async sendFrom(batch: ClaimedBatch, lookup: NextHopLookup, content: () => StoredContent, mayChooseAgain: boolean): Promise<{ recorded: Promise<void> } | null> {
    const route = this.chooseSource(batch, lookup, content);
    const { source, destination, alternatives } = route;
    if (!destination) {
      const now = Date.now();
      const limited = this.limits.hold(batch.mailFrom, source.localIp, now);
      if (limited) return { recorded: this.record(...this.held(batch, new Date(this.limits.heldUntil(limited, now)), `held: ${limited.reason}`)) };
      this.limits.count(batch.mailFrom, source.localIp, now);
      return this.global.add(() => this.sendAndRecord(batch, lookup, route, content));
    }
    return destination.gate.add(() => {
      if (this.stopped) return null;
      const now = Date.now();
      // Paused while the batch waited for this gate: another address of its pool may be free.
      // Its gate slot is given back at once; the batch counts as in flight until it is recorded.
      if (mayChooseAgain && alternatives > 1 && now < destination.pausedUntil) {
        return { recorded: this.sendFrom(batch, lookup, content, false).then(async (sent) => { await sent?.recorded; }) };
      }
      const limited = this.limits.hold(batch.mailFrom, source.localIp, now);
      if (limited) return { recorded: this.record(...this.held(batch, new Date(this.limits.heldUntil(limited, now)), `held: ${limited.reason}`)) };
      const freeAt = destination.admit(now);
      if (freeAt !== null) {
        const until = destination.holdUntil(now, freeAt);
        const paused = destination.pause !== null && until <= destination.pausedUntil;
        return { recorded: this.record(...this.held(batch, new Date(until), paused ? `held: ${destination.name} is paused (${destination.pause?.reaction})` : `held: ${destination.name} is at its rate`)) };
      }
      this.limits.count(batch.mailFrom, source.localIp, now);
      return this.global.add(() => this.sendAndRecord(batch, lookup, route, content));
    });
  }

  /**
   * The source address of a transaction: the first of its pool, in turn, whose way to the
   * destination is neither paused nor at the address's sending limit; all of them are: the one
   * free soonest (its destination's admit or the limits then hold the batch until then).
   */
  private chooseSource(batch: ClaimedBatch, lookup: NextHopLookup, content: () => StoredContent): Route {
    const sources = this.ipPools.sourcesFor(batch, () => content().raw);
    const now = Date.now();
    let soonest: Route | null = null;
    let soonestFree = Infinity;
    for (const source of sources) {
      const destination = this.shaper.destinationOf(batch.domain, lookup, source.localIp);
      const free = Math.max(destination && destination.pausedUntil > now ? destination.pausedUntil : 0, this.limits.sourceHold(source.localIp, now)?.until ?? 0);
      if (free === 0) return { source, destination, alternatives: sources.length };
      if (free < soonestFree) {
        soonest = { source, destination, alternatives: sources.length };
        soonestFree = free;
      }
    }
    return soonest as Route;
  }

  /** A batch held back by a pause or a rate: unsent, due at `until`, `text` its last reply. */
  private held(batch: ClaimedBatch, until: Date, text: string): [DeliveryBatch, BatchReport] {
    const failure = localFailure('temporary', 'other', text);
    const at = { startedAt: new Date(), durationMs: 0, mxHost: null, mxIp: null, localIp: null };
    const outcomes = batch.recipients.map((r) => ({ recipientId: r.id, delivered: false as const, failure, at, retryInNewTransaction: false, notBefore: until, held: true }));
    return [{ ...batch, content: Buffer.alloc(0) }, { failedHosts: [], outcomes }];
  }

  /**
   * Sends, then starts the outcome's commit without waiting for it (wrapped, so the queue's task
   * ends with the transaction). The commit is tracked before the task ends, so stop(), which
   * waits for the queue to be idle, then for the tracked commits, never misses one.
   */
  private async sendAndRecord(batch: ClaimedBatch, lookup: NextHopLookup, route: Route, content: () => StoredContent): Promise<{ recorded: Promise<void> } | null> {
    const sent = await this.send(batch, lookup, route, content());
    if (!sent) return null;
    if (route.destination) this.reactTo(route.destination, sent.report, route.alternatives);
    return { recorded: this.record(sent.batch, sent.report) };
  }

  /**
   * A throttling reply the destination's rule names: the destination is paused (its waiting mail
   * due at the pause's end, the store told for the queue view) and slowed down; this batch's
   * deferred recipients are due at the end of the pause too.
   */
  private reactTo(destination: ShapedDestination, report: BatchReport, alternatives: number): void {
    const throttling = this.shaper.throttlingIn(destination, report);
    if (!throttling) return;
    const { reaction, failure } = throttling;
    const reply = [failure.code, failure.enhancedCode, failure.text].filter((part) => part !== null && part !== '').join(' ');
    const pause = destination.throttled(Date.now(), reaction, reply);
    // Alone in its pool, this batch's recipients wait for the pause too; with other source
    // addresses they keep their own retry time, and go out from another address.
    if (alternatives <= 1) for (const outcome of report.outcomes) if (!outcome.delivered) outcome.notBefore = pause.pausedUntil;
    let deferred = 0;
    try {
      // With other source addresses in the pool, the waiting mail goes out from those instead.
      deferred = this.state.pauseDestination(pause, alternatives > 1 ? [] : [...destination.domains]);
    } catch (error) {
      // The pause holds in memory all the same; only the queue view and a restart miss it.
      this.log.error({ err: error, destination: pause.destination }, 'could not record a paused destination in the store');
    }
    this.log.warn(
      { destination: pause.destination, until: pause.pausedUntil.toISOString(), reaction: reaction.name, reply, rateFactor: destination.rateFactor, deferred },
      'destination paused by traffic shaping: it asked us to slow down',
    );
  }

  private record(batch: DeliveryBatch, report: BatchReport): Promise<void> {
    const recorded = this.state.record(batch, report).then(() => {
      this.log.debug({ queueId: batch.queueId, domain: batch.domain, recipients: batch.recipients.length }, 'batch done');
    });
    const tracked = recorded.finally(() => this.recording.delete(tracked));
    this.recording.add(tracked);
    return tracked;
  }

  private domainQueue(domain: string): PQueue {
    let queue = this.domains.get(domain);
    if (!queue) {
      queue = new PQueue({ concurrency: this.config.delivery.perDomainConcurrency });
      const created = queue;
      created.on('idle', () => {
        if (this.domains.get(domain) === created && created.size === 0 && created.pending === 0) this.domains.delete(domain);
      });
      this.domains.set(domain, queue);
    }
    return queue;
  }

  /** The SMTP transaction (or the routing failure) of one batch; null when the shutdown cut it. */
  private async send(claimed: ClaimedBatch, lookup: NextHopLookup, { source, destination }: Route, { received, raw: stored }: StoredContent): Promise<{ batch: DeliveryBatch; report: BatchReport } | null> {
    // The signed return path names the transaction's first recipient; a delayed bounce for any
    // of its recipients comes back to it and is matched by address within the message. Mail
    // submitted with the null sender <> (itself a bounce) keeps <>, so bounces never loop.
    const firstRecipient = claimed.recipients[0]?.id ?? 0;
    const mailFrom = claimed.mailFrom === '' ? '' : returnPathFor(this.verp, firstRecipient);
    // Before signing: the signature must cover the bytes that actually leave.
    const raw = stripHeaderFields(stored, this.strippedHeaders);
    const listUnsubscribe = this.unsubscribe.enabled && !hasListUnsubscribe(raw) ? [listUnsubscribeHeaders(this.unsubscribe, firstRecipient)] : [];
    const unsigned = Buffer.concat([...listUnsubscribe, received, raw]);
    // Signed last, so the signature covers the List-Unsubscribe fields added here (RFC 8058 3.1).
    const content = this.dkim ? await this.dkim.sign(unsigned, claimed.queueId) : unsigned;
    const batch = { ...claimed, mailFrom, content };
    const localIp = source.localIp;
    let report: BatchReport;
    if ('failure' in lookup) {
      const at = { startedAt: new Date(), durationMs: 0, mxHost: null, mxIp: null, localIp };
      report = { failedHosts: [], outcomes: batch.recipients.map((r) => ({ recipientId: r.id, delivered: false as const, failure: lookup.failure, at, retryInNewTransaction: false })) };
    } else {
      // A shaping rule's messages per connection, carried to the pool with the next hop.
      const nextHop = destination ? { ...lookup.nextHop, maxMessagesPerConnection: destination.rule.messagesPerConnection } : lookup.nextHop;
      report = await this.sender.send(batch, nextHop, source).catch((error: Error) => {
        const at = { startedAt: new Date(), durationMs: 0, mxHost: null, mxIp: null, localIp };
        const failure = localFailure('temporary', 'other', `internal error while sending: ${error.message}`);
        return { failedHosts: [], outcomes: batch.recipients.map((r) => ({ recipientId: r.id, delivered: false as const, failure, at, retryInNewTransaction: false })) };
      });
    }
    if (this.stopped && report.outcomes.every((outcome) => !outcome.delivered && outcome.failure.severity === 'temporary')) {
      // Cut by the shutdown (or deferred while stopping): left "sending", the batch is queued
      // again by the stage's stop without counting an attempt against its recipients.
      this.log.debug({ queueId: batch.queueId }, 'batch cut by the shutdown; queued again');
      return null;
    }
    return { batch, report };
  }
}

/** The stored message as delivery reads it: our Received field and the bytes received. */
type StoredContent = { received: Buffer; raw: Buffer };

/** Where a batch goes from: its source address, the destination that shapes it, and the size of its pool. */
interface Route {
  source: SendingSource;
  destination: ShapedDestination | null;
  /** Source addresses the batch could have used: with more than one, a pause does not defer the waiting mail. */
  alternatives: number;
}
