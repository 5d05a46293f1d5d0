import type { Database, Statement } from 'better-sqlite3';
import type { Classification } from '../bounces/classifier.js';
import type { Config } from '../config/load.js';
import { withoutCommitSync } from '../store/database.js';
import { writeTransaction } from '../store/write-lock.js';
import { GroupCommit } from '../store/group-commit.js';
import { recentContentOf, type RecentContent } from '../store/recent-content.js';
import { RecipientWriter, type RecipientStatus } from '../store/recipient-writer.js';
import { storeHealthOf, type StoreProblem } from '../store/store-health.js';
import type { WalSync } from '../store/wal-sync.js';
import { SuppressionLists } from '../suppressions/lists.js';
import { SuppressionPolicy } from '../suppressions/policy.js';
import { isExpired, nextRetry } from './retry-policy.js';
import type { BatchReport, DeliveryBatch, HostTry, RecipientOutcome } from './send-batch.js';
import { localFailure } from './failure.js';
import type { DestinationPause } from './shaper.js';

interface DueRow {
  id: number;
  messageId: number;
  address: string;
  domain: string;
  attempts: number;
  queueId: string;
  mailFrom: string;
  authUser: string | null;
  receivedAt: string;
}

/** How far a claim reads past domains at their share before it reads domain by domain instead. */
const SCAN_ROWS_PER_CLAIMED_ROW = 8;

/** authUser: the submission AUTH user, for delivery.ipPoolRules (null: an allowNetworks client). */
export type ClaimedBatch = Omit<DeliveryBatch, 'content'> & { authUser: string | null };

export interface EventFields {
  event: 'delivered' | 'temporary_fail' | 'permanent_fail';
  reason?: 'bounced' | 'blocked' | 'expired' | 'suppressed' | null;
  detail: string | null;
  classification: Classification | null;
  /** The try the event is about: where it went out from and to. */
  at?: HostTry;
}

/** Counts of what a claim did with the due recipients it found. */
export interface ClaimResult {
  batches: ClaimedBatch[];
  suppressed: number;
  expired: number;
}

/**
 * The delivery stage's reads and writes of recipient state. Every change of a recipient's status
 * is written in one transaction with its event (and attempts, and suppression), so the status
 * always agrees with the history.
 */
export class DeliveryState {
  private readonly scanDue: Statement;
  private readonly pendingDomains: Statement;
  private readonly dueOfDomain: Statement;
  private readonly insertAttempt: Statement;
  /** The one writer of recipients and events (store/recipient-writer.ts). */
  private readonly recipients: RecipientWriter;
  private readonly selectContent: Statement;
  private readonly savePause: Statement;
  private readonly selectPauses: Statement;
  private readonly pauseTransaction: (pause: DestinationPause, domains: readonly string[], now: Date) => number;
  private readonly suppressions: SuppressionLists;
  private readonly claimTransaction: (now: Date, perDomain: number, limit: number) => ClaimResult;
  private readonly results: GroupCommit<{ batch: DeliveryBatch; report: BatchReport; now: Date }>;
  private readonly policy: SuppressionPolicy;
  private readonly recent: RecentContent;
  /** List-Unsubscribe names one recipient, so with it each transaction carries one recipient. */
  private readonly batchSize: number;

  constructor(
    private readonly db: Database,
    private readonly config: Config,
    walSync: WalSync | null = null,
  ) {
    this.suppressions = new SuppressionLists(db);
    this.recent = recentContentOf(db);
    this.policy = new SuppressionPolicy(config.suppression.categories);
    this.batchSize = config.unsubscribe.enabled ? 1 : config.delivery.batchSize;
    // Due recipients, oldest due first, read in the order of the recipients_due index, so a claim
    // reads about as many rows as it takes however long the queue is.
    this.scanDue = db.prepare(`
      SELECT r.id, r.message_id AS messageId, r.address, r.domain, r.attempts, m.queue_id AS queueId,
             m.mail_from AS mailFrom, m.auth_user AS authUser, m.received_at AS receivedAt
        FROM recipients r JOIN messages m ON m.id = r.message_id
       WHERE r.status IN ('queued', 'deferred') AND r.next_attempt_at <= ?
       ORDER BY r.next_attempt_at, r.id`);
    // Domains with queued or deferred mail, one index seek each (a skip scan of
    // recipients_due_by_domain), and one domain's due rows in due order: for when the rows in
    // front are mostly of domains already at their share (one domain's backlog ahead of the rest).
    this.pendingDomains = db.prepare(`
      WITH RECURSIVE d(domain) AS (
        SELECT (SELECT min(domain) FROM recipients WHERE status IN ('queued', 'deferred'))
        UNION ALL
        SELECT (SELECT min(domain) FROM recipients WHERE status IN ('queued', 'deferred') AND domain > d.domain)
          FROM d WHERE d.domain IS NOT NULL)
      SELECT domain FROM d WHERE domain IS NOT NULL`).pluck();
    this.dueOfDomain = db.prepare(`
      SELECT r.id, r.message_id AS messageId, r.address, r.domain, r.attempts, m.queue_id AS queueId,
             m.mail_from AS mailFrom, m.auth_user AS authUser, m.received_at AS receivedAt, r.next_attempt_at AS due
        FROM recipients r JOIN messages m ON m.id = r.message_id
       WHERE r.domain = ? AND r.status IN ('queued', 'deferred') AND r.next_attempt_at <= ?
       ORDER BY r.next_attempt_at, r.id
       LIMIT ?`);
    this.recipients = RecipientWriter.of(db);
    this.insertAttempt = db.prepare(`
      INSERT INTO attempts (recipient_id, message_id, started_at, duration_ms, mx_host, mx_ip, local_ip, mail_from, outcome,
                            code, enhanced_code, text, severity, bounce_type, category)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.selectContent = db.prepare('SELECT received_header AS receivedHeader, raw FROM messages WHERE id = ?');
    this.savePause = db.prepare(`
      INSERT INTO destination_pauses (destination, paused_at, paused_until, reaction, reason) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (destination) DO UPDATE SET paused_at = excluded.paused_at, paused_until = excluded.paused_until,
                                              reaction = excluded.reaction, reason = excluded.reason`);
    this.selectPauses = db.prepare(`
      SELECT destination, paused_until AS pausedUntil, reaction, reason FROM destination_pauses WHERE paused_until > ?`);
    this.pauseTransaction = writeTransaction(db, (pause: DestinationPause, domains: readonly string[], now: Date) => {
      const until = pause.pausedUntil.toISOString();
      const at = now.toISOString();
      this.savePause.run(pause.destination, at, until, pause.reaction, pause.reason);
      let deferred = 0;
      for (const domain of domains) deferred += this.recipients.postponeDomain(domain, until, at);
      return deferred;
    });
    this.claimTransaction = writeTransaction(db, (now: Date, perDomain: number, limit: number) => this.claim(now, perDomain, limit));
    // Outcomes wait up to 10 ms for others to share their commit (one fsync): measured, this
    // took the end-to-end bench from 916 to 979 msg/s; nothing waits on them but the next claim.
    this.results = new GroupCommit(db, ({ batch, report, now }) => this.writeReport(batch, report, now), { maxBatch: 512, delayMs: 10, walSync });
  }

  /**
   * After a crash, recipients left "sending" may or may not have reached their MX; they are sent
   * again (at-least-once), so a crash can duplicate at most the batches that were in flight.
   */
  recoverInFlight(now = new Date()): number {
    const at = now.toISOString();
    return this.recipients.requeueSending(at);
  }

  /**
   * Takes due recipients for sending: suppressed ones are dropped, expired ones failed, the rest
   * batched. A claim that only marks recipients "sending" needs no fsync of its own: lost in a
   * crash, they are queued again at start, exactly as recoverInFlight would do; the next FULL
   * commit (mail accepted, an outcome) makes it durable anyway. The drops a claim also makes
   * (suppressed, expired) are decided from the store alone, so a lost one is made again, the
   * same way, at the next start.
   */
  /** Why the store cannot record outcomes now (StoreHealth logs it), null when it can. */
  storeProblem(): StoreProblem | null {
    return storeHealthOf(this.db)?.problem() ?? null;
  }

  claimDue(now: Date, perDomain: number, limit: number): ClaimResult {
    return withoutCommitSync(this.db, this.config.store.synchronous, () => this.claimTransaction(now, perDomain, limit));
  }

  /**
   * The bytes to send for a batch of `recipients` of the message: our Received header, then the
   * message exactly as received; from memory when the spool has just committed it.
   */
  contentOf(messageId: number, recipients = 1): { received: Buffer; raw: Buffer } {
    const row = this.recent.take(messageId, recipients) ?? (this.selectContent.get(messageId) as { receivedHeader: string; raw: Buffer });
    return { received: Buffer.from(row.receivedHeader, 'latin1'), raw: row.raw };
  }

  /**
   * A destination paused (traffic shaping): the pause is kept for the queue view and the next
   * start, and the waiting mail of its domains is due at its end, so claims pass it by meanwhile.
   * Returns how many recipients were put back.
   */
  pauseDestination(pause: DestinationPause, domains: readonly string[], now = new Date()): number {
    return this.pauseTransaction(pause, domains, now);
  }

  /** Pauses still running at `now`, to carry them over a restart. */
  activePauses(now = new Date()): DestinationPause[] {
    const rows = this.selectPauses.all(now.toISOString()) as Array<{ destination: string; pausedUntil: string; reaction: string; reason: string }>;
    return rows.map((row) => ({ ...row, pausedUntil: new Date(row.pausedUntil) }));
  }

  /** Records a batch's outcome durably; resolves once committed. */
  record(batch: DeliveryBatch, report: BatchReport, now = new Date()): Promise<void> {
    return this.results.add({ batch, report, now });
  }

  close(): void {
    this.results.close();
  }

  private claim(now: Date, perDomain: number, limit: number): ClaimResult {
    const at = now.toISOString();
    const rows = this.dueRows(at, perDomain, limit);
    const batches: ClaimedBatch[] = [];
    const openBatch = new Map<string, ClaimedBatch>();
    let suppressed = 0;
    let expired = 0;
    for (const row of rows) {
      const receivedAt = new Date(row.receivedAt);
      const list = this.suppressions.suppressionFor(row.address);
      if (list !== null) {
        this.finish(row.id, row.messageId, 'suppressed', row.attempts, null, at, {
          event: 'permanent_fail',
          reason: 'suppressed',
          detail: `not sent: the address is on the ${list} suppression list`,
          classification: null,
        });
        suppressed++;
        continue;
      }
      if (isExpired(this.config.delivery.retry, receivedAt, now)) {
        const failure = localFailure('permanent', 'message-expired', `not sent: older than delivery.retry.maxAgeSeconds (${this.config.delivery.retry.maxAgeSeconds} s)`, null, '4.4.7');
        this.finish(row.id, row.messageId, 'expired', row.attempts, failure.text, at, { event: 'permanent_fail', reason: 'expired', detail: failure.text, classification: failure });
        expired++;
        continue;
      }
      this.recipients.markSending(row.id, at);
      // One transaction per message and domain, up to delivery.batchSize recipients.
      const key = `${row.messageId}|${row.domain}`;
      let batch = openBatch.get(key);
      if (!batch || batch.recipients.length >= this.batchSize) {
        batch = { messageId: row.messageId, queueId: row.queueId, domain: row.domain, mailFrom: row.mailFrom, authUser: row.authUser, receivedAt, recipients: [] };
        openBatch.set(key, batch);
        batches.push(batch);
      }
      batch.recipients.push({ id: row.id, address: row.address, attempts: row.attempts });
    }
    return { batches, suppressed, expired };
  }

  /**
   * Up to `limit` due rows, oldest due first, at most `perDomain` of one domain, so one busy
   * domain cannot fill a whole claim. Reads in due order and stops once it has enough; if the
   * rows in front are mostly of domains already at their share, it reads domain by domain
   * instead rather than read on through one domain's backlog.
   */
  private dueRows(at: string, perDomain: number, limit: number): DueRow[] {
    const scanBudget = limit * SCAN_ROWS_PER_CLAIMED_ROW;
    const picked: DueRow[] = [];
    const takenPerDomain = new Map<string, number>();
    let scanned = 0;
    for (const row of this.scanDue.iterate(at) as IterableIterator<DueRow>) {
      if (picked.length >= limit) break;
      if (++scanned > scanBudget) return this.dueRowsDomainByDomain(at, perDomain, limit);
      const taken = takenPerDomain.get(row.domain) ?? 0;
      if (taken >= perDomain) continue;
      takenPerDomain.set(row.domain, taken + 1);
      picked.push(row);
    }
    return picked;
  }

  /** The same choice, read domain by domain: each domain's oldest due rows, then the oldest of all. */
  private dueRowsDomainByDomain(at: string, perDomain: number, limit: number): DueRow[] {
    const share = Math.min(perDomain, limit);
    const rows: Array<DueRow & { due: string }> = [];
    for (const domain of this.pendingDomains.all() as string[]) rows.push(...(this.dueOfDomain.all(domain, at, share) as Array<DueRow & { due: string }>));
    rows.sort((a, b) => (a.due < b.due ? -1 : a.due > b.due ? 1 : a.id - b.id));
    return rows.slice(0, limit);
  }

  private finish(recipientId: number, messageId: number, status: RecipientStatus, attempts: number, lastReply: string | null, at: string, fields: EventFields): void {
    this.recipients.change(recipientId, { status, attempts, nextAttemptAt: null, lastReply, at });
    this.writeEvent(messageId, recipientId, at, fields, attempts);
  }

  /** attemptNo: the dispatch the event is about, as recipients.attempts counts them. */
  private writeEvent(messageId: number, recipientId: number, at: string, fields: EventFields, attemptNo: number): void {
    this.recipients.event({
      event: fields.event,
      at,
      messageId,
      recipientId,
      detail: fields.detail,
      source: 'immediate',
      reason: fields.reason ?? null,
      classification: fields.classification,
      localIp: fields.at?.localIp ?? null,
      mxHost: fields.at?.mxHost ?? null,
      attemptNo,
    });
  }

  private writeAttempt(batch: DeliveryBatch, recipientId: number, at: HostTry, outcome: string, classification: Classification | null, reply: string | null): void {
    this.insertAttempt.run(
      recipientId,
      batch.messageId,
      at.startedAt.toISOString(),
      at.durationMs,
      at.mxHost,
      at.mxIp,
      at.localIp,
      batch.mailFrom,
      outcome,
      classification?.code ?? (reply ? Number(reply.slice(0, 3)) || null : null),
      classification?.enhancedCode ?? null,
      classification?.text ?? reply,
      classification?.severity ?? null,
      classification?.type ?? null,
      classification?.category ?? null,
    );
  }

  private writeReport(batch: DeliveryBatch, report: BatchReport, now: Date): void {
    const at = now.toISOString();
    for (const { at: hostTry, failure } of report.failedHosts) {
      for (const recipient of batch.recipients) this.writeAttempt(batch, recipient.id, hostTry, 'temporary_fail', failure, null);
    }
    const attemptsBefore = new Map(batch.recipients.map((r) => [r.id, r.attempts]));
    const addressOf = new Map(batch.recipients.map((r) => [r.id, r.address]));
    for (const outcome of report.outcomes) {
      const attempts = (attemptsBefore.get(outcome.recipientId) ?? 0) + 1;
      this.writeOutcome(batch, outcome, attempts, addressOf.get(outcome.recipientId) ?? '', now, at);
    }
  }

  private writeOutcome(batch: DeliveryBatch, outcome: RecipientOutcome, attempts: number, address: string, now: Date, at: string): void {
    const { recipientId } = outcome;
    if (outcome.delivered) {
      this.writeAttempt(batch, recipientId, outcome.at, 'delivered', null, outcome.reply);
      this.finish(recipientId, batch.messageId, 'delivered', attempts, outcome.reply, at, { event: 'delivered', detail: outcome.reply, classification: null, at: outcome.at });
      return;
    }
    const { failure } = outcome;
    const reply = describe(failure);
    if (failure.severity === 'permanent') {
      this.writeAttempt(batch, recipientId, outcome.at, 'permanent_fail', failure, null);
      // A block (hard, but about the sender or the message) ends the recipient like a bounce;
      // only the event's reason and the bounces list tell them apart.
      const reason = this.policy.reasonOf(failure);
      this.finish(recipientId, batch.messageId, 'bounced', attempts, reply, at, { event: 'permanent_fail', reason, detail: reply, classification: failure, at: outcome.at });
      if (this.policy.suppresses(failure)) {
        this.suppressions.add({ address, type: 'bounces', source: 'immediate', evidence: failure, queueId: batch.queueId, at, actor: 'relay' });
      }
      return;
    }
    if (outcome.held) {
      // Held back by traffic shaping or a sending limit, never sent: nothing happened to it, so
      // no attempt and no event; only due later, when it may go. A reply the recipient already
      // has is kept (it is what a host said); one that has none gets why it waits.
      this.recipients.holdBack(recipientId, attempts - 1 === 0 ? 'queued' : 'deferred', (outcome.notBefore ?? now).toISOString(), reply, at);
      return;
    }
    this.writeAttempt(batch, recipientId, outcome.at, 'temporary_fail', failure, null);
    if (outcome.retryInNewTransaction) {
      // Not the recipient's failure: the host wants fewer recipients per transaction. Due now,
      // and the attempt does not count against the recipient.
      this.recipients.change(recipientId, { status: 'deferred', attempts: attempts - 1, nextAttemptAt: at, lastReply: reply, at });
      // Part of the same dispatch as the new transaction that follows: it carries its number.
      this.writeEvent(batch.messageId, recipientId, at, { event: 'temporary_fail', detail: reply, classification: failure, at: outcome.at }, attempts);
      return;
    }
    const decision = nextRetry(this.config.delivery.retry, attempts, batch.receivedAt, now);
    if (decision.retry) {
      // A throttling reply paused the destination: not before the pause ends.
      const due = outcome.notBefore && outcome.notBefore > decision.at ? outcome.notBefore : decision.at;
      this.recipients.change(recipientId, { status: 'deferred', attempts, nextAttemptAt: due.toISOString(), lastReply: reply, at });
      this.writeEvent(batch.messageId, recipientId, at, { event: 'temporary_fail', detail: reply, classification: failure, at: outcome.at }, attempts);
      return;
    }
    const expiry = localFailure('permanent', 'message-expired', `${decision.reason}; last: ${reply}`, failure.code, failure.enhancedCode);
    this.finish(recipientId, batch.messageId, 'expired', attempts, reply, at, { event: 'permanent_fail', reason: 'expired', detail: expiry.text, classification: expiry, at: outcome.at });
  }
}

/** A classification as one line for last_reply and event detail: "550 5.1.1 text". */
function describe(failure: Classification): string {
  return [failure.code, failure.enhancedCode, failure.text].filter((part) => part !== null && part !== '').join(' ');
}
