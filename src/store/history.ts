import type { Database, Statement } from 'better-sqlite3';

/** A message as the history shows it (messages, without its bytes). */
export interface MessageRecord {
  queueId: string;
  receivedAt: string;
  mailFrom: string;
  clientIp: string;
  clientHelo: string | null;
  authUser: string | null;
  protocol: string;
  size: number;
  /** The Message-ID header, without <>. */
  messageId: string | null;
  fromDomain: string | null;
  subject: string | null;
  campaignId: string | null;
}

export interface RecipientRecord {
  address: string;
  domain: string;
  status: string;
  attempts: number;
  nextAttemptAt: string | null;
  lastReply: string | null;
  updatedAt: string;
}

/** One try at one host (attempts): what the MX said, as the classifier read it. */
export interface AttemptRecord {
  startedAt: string;
  durationMs: number;
  mxHost: string | null;
  mxIp: string | null;
  localIp: string | null;
  mailFrom: string | null;
  outcome: string;
  code: number | null;
  enhancedCode: string | null;
  text: string | null;
  severity: string | null;
  bounceType: string | null;
  category: string | null;
}

export interface EventRow {
  id: number;
  at: string;
  event: string;
  reason: string | null;
  source: string | null;
  severity: string | null;
  bounceType: string | null;
  category: string | null;
  code: number | null;
  enhancedCode: string | null;
  detail: string | null;
  address: string | null;
  queueId: string;
  reportId: number | null;
  localIp: string | null;
  mxHost: string | null;
  /** Who caused an operator's event (held, released, deleted, an operator bounce): cli:<user>, api:<token name>, panel:<token name>. */
  actor: string | null;
}

/**
 * An event of another node (store.shared.url, other_node_events): its message and recipient are
 * in that node's store, so it comes with what the history shows of them, and no ids of this store.
 */
export type OtherNodeEventRow = Omit<EventRow, 'id' | 'reportId'> & {
  /** store.shared.nodeName of the node it happened on. */
  node: string;
  mailFrom: string;
  subject: string | null;
};

/** The other nodes' events a search can ask for: by recipient address, by queue id, or both. */
export interface OtherNodeEventFilter {
  recipient?: string;
  queueId?: string;
}

/** One webhook POST owed for an event to one endpoint, and how it went (webhook_deliveries). */
export interface WebhookDeliveryRecord {
  eventId: number;
  /** As configured: it may hold credentials, so mask it (webhooks/redact-url.ts) before showing it. */
  endpointUrl: string;
  status: string;
  attempts: number;
  nextAttemptAt: string;
  lastHttpStatus: number | null;
  lastError: string | null;
  updatedAt: string;
}

/** A recipient with everything that happened to it. */
export interface RecipientStory {
  recipient: RecipientRecord;
  tries: AttemptRecord[];
  events: EventRow[];
  webhookDeliveries: WebhookDeliveryRecord[];
  /** Its events still in the webhook outbox, not yet turned into deliveries (a moment, normally). */
  eventsInOutbox: number[];
}

/** A message and the story of (some of) its recipients. */
export interface MessageStory {
  message: MessageRecord;
  recipients: RecipientStory[];
  /** All its recipients, also those not in `recipients`. */
  recipientsTotal: number;
}

export interface EventFilter {
  /** A normalised address. */
  recipient?: string;
  /** messages.id */
  messageId?: number;
}

const MESSAGE_COLUMNS = `
  id, queue_id AS queueId, received_at AS receivedAt, mail_from AS mailFrom, client_ip AS clientIp,
  client_helo AS clientHelo, auth_user AS authUser, protocol, size, message_id_header AS messageId,
  from_domain AS fromDomain, subject, campaign_id AS campaignId`;

const RECIPIENT_COLUMNS = `
  id, address, domain, status, attempts, next_attempt_at AS nextAttemptAt, last_reply AS lastReply, updated_at AS updatedAt`;

const EVENT_COLUMNS = `
  e.id, e.at, e.event, e.reason, e.source, e.severity, e.bounce_type AS bounceType, e.category, e.code,
  e.enhanced_code AS enhancedCode, e.detail, r.address, m.queue_id AS queueId, e.report_id AS reportId,
  e.local_ip AS localIp, e.mx_host AS mxHost, e.actor`;

type WithId<T> = T & { id: number };

/**
 * What happened to a message and its recipients, read from the store: the message, each
 * recipient's tries, events and the webhook deliveries of those events (the `v_recipient_history`
 * story). The API (/v1/queue/:queueId, /v1/events) and the panel's history page both read it
 * here. Every read goes through an index: messages by queue_id (unique), recipients by message or
 * address, attempts and events by recipient or message, webhook rows by event.
 */
export class MessageHistory {
  private readonly messageByQueueId: Statement;
  private readonly messageByRowId: Statement;
  private readonly rowIdOfQueueId: Statement;
  private readonly recipientsOfMessage: Statement;
  private readonly recipientsOfMessageAt: Statement;
  private readonly recipientCount: Statement;
  private readonly triesOfRecipient: Statement;
  private readonly eventsOfRecipient: Statement;
  private readonly deliveriesOfRecipient: Statement;
  private readonly outboxOfRecipient: Statement;
  private readonly anyRecipient: Statement;
  private readonly eventPages: Record<'recipient' | 'message' | 'both', { count: Statement; page: Statement }>;
  private readonly otherNodePages: Record<'recipient' | 'message' | 'both', { count: Statement; page: Statement }>;

  constructor(db: Database) {
    this.messageByQueueId = db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE queue_id = ?`);
    this.messageByRowId = db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE id = ?`);
    this.rowIdOfQueueId = db.prepare('SELECT id FROM messages WHERE queue_id = ?').pluck();
    this.recipientsOfMessage = db.prepare(`SELECT ${RECIPIENT_COLUMNS} FROM recipients WHERE message_id = ? ORDER BY id LIMIT ?`);
    this.recipientsOfMessageAt = db.prepare(`SELECT ${RECIPIENT_COLUMNS} FROM recipients WHERE message_id = ? AND address = ? ORDER BY id`);
    this.recipientCount = db.prepare('SELECT count(*) FROM recipients WHERE message_id = ?').pluck();
    this.triesOfRecipient = db.prepare(`
      SELECT started_at AS startedAt, duration_ms AS durationMs, mx_host AS mxHost, mx_ip AS mxIp, local_ip AS localIp,
             mail_from AS mailFrom, outcome, code, enhanced_code AS enhancedCode, text, severity, bounce_type AS bounceType, category
        FROM attempts WHERE recipient_id = ? ORDER BY id`);
    this.eventsOfRecipient = db.prepare(`
      SELECT ${EVENT_COLUMNS}
        FROM events e JOIN messages m ON m.id = e.message_id LEFT JOIN recipients r ON r.id = e.recipient_id
       WHERE e.recipient_id = ? ORDER BY e.at, e.id`);
    this.deliveriesOfRecipient = db.prepare(`
      SELECT d.event_id AS eventId, d.endpoint_url AS endpointUrl, d.status, d.attempts, d.next_attempt_at AS nextAttemptAt,
             d.last_http_status AS lastHttpStatus, d.last_error AS lastError, d.updated_at AS updatedAt
        FROM events e JOIN webhook_deliveries d ON d.event_id = e.id
       WHERE e.recipient_id = ? ORDER BY e.at, e.id, d.id`);
    this.outboxOfRecipient = db
      .prepare('SELECT o.event_id FROM events e JOIN webhook_outbox o ON o.event_id = e.id WHERE e.recipient_id = ? AND o.fanned_out = 0 ORDER BY o.id')
      .pluck();
    this.anyRecipient = db.prepare('SELECT 1 FROM recipients WHERE address = ? LIMIT 1').pluck();

    // One statement per filter shape; both filters use an index (recipients_by_address, events_by_*).
    const filters = {
      recipient: 'e.recipient_id IN (SELECT id FROM recipients WHERE address = @recipient)',
      message: 'e.message_id = @messageId',
    };
    const eventStatements = (where: string) => ({
      count: db.prepare(`SELECT count(*) FROM events e WHERE ${where}`).pluck(),
      page: db.prepare(`
        SELECT ${EVENT_COLUMNS}
          FROM events e JOIN messages m ON m.id = e.message_id LEFT JOIN recipients r ON r.id = e.recipient_id
         WHERE ${where}
         ORDER BY e.at, e.id LIMIT @limit OFFSET @offset`),
    });
    this.eventPages = {
      recipient: eventStatements(filters.recipient),
      message: eventStatements(filters.message),
      both: eventStatements(`${filters.recipient} AND ${filters.message}`),
    };
    // Other nodes' events by address (other_node_events_by_address) or queue id (read whole: a
    // queue id names one node's message, asked for when this store has none by that id).
    const otherStatements = (where: string) => ({
      count: db.prepare(`SELECT count(*) FROM other_node_events WHERE ${where}`).pluck(),
      page: db.prepare(`
        SELECT node, at, event, reason, source, severity, bounce_type AS bounceType, category, code, enhanced_code AS enhancedCode,
               detail, address, queue_id AS queueId, mail_from AS mailFrom, subject, local_ip AS localIp, mx_host AS mxHost, actor
          FROM other_node_events WHERE ${where}
         ORDER BY at, version LIMIT @limit OFFSET @offset`),
    });
    this.otherNodePages = {
      recipient: otherStatements('address = @recipient'),
      message: otherStatements('queue_id = @queueId'),
      both: otherStatements('address = @recipient AND queue_id = @queueId'),
    };
  }

  /** Other nodes' events (store.shared.url) by recipient address, queue id or both, oldest first, one page of them. */
  otherNodeEvents(filter: OtherNodeEventFilter, limit: number, offset: number): { total: number; items: OtherNodeEventRow[] } {
    const shape = filter.recipient === undefined ? 'message' : filter.queueId === undefined ? 'recipient' : 'both';
    const statements = this.otherNodePages[shape];
    const params: Record<string, string> = {};
    if (filter.recipient !== undefined) params.recipient = filter.recipient;
    if (filter.queueId !== undefined) params.queueId = filter.queueId;
    const total = statements.count.get(params) as number;
    const items = statements.page.all({ ...params, limit, offset }) as OtherNodeEventRow[];
    return { total, items };
  }

  /** The message with this queue id, with its row id; undefined when there is none. */
  message(queueId: string): WithId<MessageRecord> | undefined {
    return this.messageByQueueId.get(queueId) as WithId<MessageRecord> | undefined;
  }

  /** messages.id of a queue id. */
  messageRowId(queueId: string): number | undefined {
    return this.rowIdOfQueueId.get(queueId) as number | undefined;
  }

  /** A message's recipients in the order they were given, at most `limit` of them. */
  recipients(messageRowId: number, limit = Number.MAX_SAFE_INTEGER): Array<WithId<RecipientRecord>> {
    return this.recipientsOfMessage.all(messageRowId, limit) as Array<WithId<RecipientRecord>>;
  }

  /** Every try for one recipient, oldest first. */
  tries(recipientRowId: number): AttemptRecord[] {
    return this.triesOfRecipient.all(recipientRowId) as AttemptRecord[];
  }

  /** True when the store has any mail to this (normalised) address. */
  hasMailTo(address: string): boolean {
    return this.anyRecipient.get(address) !== undefined;
  }

  /** Events by recipient address, by message, or both, oldest first, one page of them. */
  events(filter: EventFilter, limit: number, offset: number): { total: number; items: EventRow[] } {
    const shape = filter.recipient === undefined ? 'message' : filter.messageId === undefined ? 'recipient' : 'both';
    const statements = this.eventPages[shape];
    const params: Record<string, string | number> = {};
    if (filter.recipient !== undefined) params.recipient = filter.recipient;
    if (filter.messageId !== undefined) params.messageId = filter.messageId;
    const total = statements.count.get(params) as number;
    const items = statements.page.all({ ...params, limit, offset }) as EventRow[];
    return { total, items };
  }

  /**
   * One message and its recipients' stories: the recipients at `onlyAddress` when given, else
   * the first `maxRecipients` of them (a message can have thousands).
   */
  story(messageRowId: number, options: { onlyAddress?: string; maxRecipients: number }): MessageStory | undefined {
    const row = this.messageByRowId.get(messageRowId) as WithId<MessageRecord> | undefined;
    if (!row) return undefined;
    const { id, ...message } = row;
    const recipients =
      options.onlyAddress === undefined
        ? this.recipients(id, options.maxRecipients)
        : (this.recipientsOfMessageAt.all(id, options.onlyAddress) as Array<WithId<RecipientRecord>>).slice(0, options.maxRecipients);
    return {
      message,
      recipientsTotal: this.recipientCount.get(id) as number,
      recipients: recipients.map(({ id: recipientId, ...recipient }) => ({
        recipient,
        tries: this.tries(recipientId),
        events: this.eventsOfRecipient.all(recipientId) as EventRow[],
        webhookDeliveries: this.deliveriesOfRecipient.all(recipientId) as WebhookDeliveryRecord[],
        eventsInOutbox: this.outboxOfRecipient.all(recipientId) as number[],
      })),
    };
  }
}
