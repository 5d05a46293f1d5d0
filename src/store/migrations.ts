import type { Database } from 'better-sqlite3';
import { OperatorError } from '../errors.js';

/**
 * Schema versions, applied in order inside one transaction each; `PRAGMA user_version` records the
 * last one applied. Never edit a released migration: add the next one.
 *
 * Times are ISO-8601 UTC text with milliseconds (2026-11-22T20:33:31.123Z): they sort and compare
 * as text, and an operator reading the database with sqlite3 sees them as they are.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE messages (
    id                INTEGER PRIMARY KEY,
    queue_id          TEXT NOT NULL UNIQUE,   -- the id in "250 2.0.0 Ok: queued as <queue_id>"
    received_at       TEXT NOT NULL,
    mail_from         TEXT NOT NULL,          -- envelope sender; '' for the null sender <>
    client_ip         TEXT NOT NULL,
    client_helo       TEXT,
    auth_user         TEXT,                   -- NULL when relayed for an allowNetworks client
    protocol          TEXT NOT NULL,          -- ESMTP, ESMTPS, ESMTPA or ESMTPSA (RFC 3848)
    size              INTEGER NOT NULL,       -- bytes of raw
    message_id_header TEXT,                   -- the Message-ID header, without <>
    from_domain       TEXT,                   -- domain of the From header, lower case
    subject           TEXT,
    campaign_id       TEXT,                   -- from the configured campaign header
    received_header   TEXT NOT NULL,          -- the Received header Rebound adds in front of raw
    raw               BLOB NOT NULL           -- the message exactly as the client sent it
  );
  CREATE INDEX messages_by_received_at ON messages (received_at);

  CREATE TABLE recipients (
    id              INTEGER PRIMARY KEY,
    message_id      INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    address         TEXT NOT NULL,            -- normalised: domain lower case, IDN as punycode
    domain          TEXT NOT NULL,
    status          TEXT NOT NULL,            -- queued, sending, deferred, delivered, bounced, expired, suppressed
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,                     -- when the scheduler may pick it; NULL once final
    last_reply      TEXT,                     -- the last SMTP reply or error about this recipient
    updated_at      TEXT NOT NULL
  );
  CREATE INDEX recipients_by_message ON recipients (message_id);
  CREATE INDEX recipients_by_address ON recipients (address);
  CREATE INDEX recipients_due ON recipients (next_attempt_at) WHERE status IN ('queued', 'deferred');

  CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    at           TEXT NOT NULL,
    event        TEXT NOT NULL,               -- accepted, delivered, temporary_fail, permanent_fail, complained
    message_id   INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    recipient_id INTEGER REFERENCES recipients (id) ON DELETE CASCADE,
    detail       TEXT                         -- what the event is about, in words (a reply, a reason)
  );
  CREATE INDEX events_by_recipient ON events (recipient_id);
  CREATE INDEX events_by_message ON events (message_id);

  -- "What happened to mail for x@y?": SELECT * FROM v_recipient_history WHERE address = 'x@y';
  CREATE VIEW v_recipient_history AS
  SELECT r.address, e.at, e.event, e.detail, r.status AS current_status, r.attempts,
         m.queue_id, m.mail_from, m.message_id_header, m.subject, m.received_at
    FROM events e
    JOIN recipients r ON r.id = e.recipient_id
    JOIN messages m ON m.id = r.message_id;
  `,
  `
  -- One row per try at one host for one recipient: a dispatch that fails over from one MX to the
  -- next leaves a row for each host. recipients.attempts counts dispatches.
  CREATE TABLE attempts (
    id            INTEGER PRIMARY KEY,
    recipient_id  INTEGER NOT NULL REFERENCES recipients (id) ON DELETE CASCADE,
    message_id    INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    started_at    TEXT NOT NULL,
    duration_ms   INTEGER NOT NULL,
    mx_host       TEXT,                     -- the MX (or route) host name tried
    mx_ip         TEXT,                     -- the address connected to
    local_ip      TEXT,                     -- our source address (delivery.localAddresses)
    outcome       TEXT NOT NULL,            -- delivered, temporary_fail, permanent_fail
    code          INTEGER,                  -- SMTP reply code; NULL for connection or DNS errors
    enhanced_code TEXT,
    text          TEXT,                     -- the reply or error, as the remote side said it
    severity      TEXT,                     -- temporary | permanent (NULL when delivered)
    bounce_type   TEXT,                     -- hard | soft
    category      TEXT                      -- one of the 17 bounce categories
  );
  CREATE INDEX attempts_by_recipient ON attempts (recipient_id);
  CREATE INDEX attempts_by_started_at ON attempts (started_at);

  -- Classified events: what the remote side said, as the classifier read it.
  ALTER TABLE events ADD COLUMN source TEXT;         -- immediate | delayed
  ALTER TABLE events ADD COLUMN reason TEXT;         -- permanent_fail: bounced | expired | suppressed
  ALTER TABLE events ADD COLUMN severity TEXT;
  ALTER TABLE events ADD COLUMN bounce_type TEXT;
  ALTER TABLE events ADD COLUMN category TEXT;
  ALTER TABLE events ADD COLUMN code INTEGER;
  ALTER TABLE events ADD COLUMN enhanced_code TEXT;
  CREATE INDEX events_by_at ON events (at);

  -- Addresses that are not sent to. type: bounces (hard bounces), complaints, unsubscribes.
  CREATE TABLE suppressions (
    id            INTEGER PRIMARY KEY,
    address       TEXT NOT NULL,            -- normalised like recipients.address
    type          TEXT NOT NULL,
    source        TEXT NOT NULL,            -- immediate | delayed | manual | import
    code          INTEGER,
    enhanced_code TEXT,
    text          TEXT,
    category      TEXT,
    queue_id      TEXT,                     -- the message the evidence came from
    first_at      TEXT NOT NULL,
    last_at       TEXT NOT NULL,
    count         INTEGER NOT NULL DEFAULT 1,
    UNIQUE (address, type)
  );

  DROP VIEW v_recipient_history;
  CREATE VIEW v_recipient_history AS
  SELECT r.address, e.at, e.event, e.reason, e.category, e.code, e.enhanced_code, e.detail,
         r.status AS current_status, r.attempts, m.queue_id, m.mail_from, m.message_id_header,
         m.subject, m.received_at
    FROM events e
    JOIN recipients r ON r.id = e.recipient_id
    JOIN messages m ON m.id = r.message_id;
  `,
  `
  -- Values Rebound makes for itself once and keeps, such as the return-path secret.
  CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );

  -- Every report that reached the inbound listener, committed before its 250 and kept whole, so
  -- a report is never lost even when the parser fails on it (rebound reparse runs it again).
  CREATE TABLE inbound_reports (
    id           INTEGER PRIMARY KEY,
    received_at  TEXT NOT NULL,
    client_ip    TEXT NOT NULL,
    client_helo  TEXT,
    mail_from    TEXT NOT NULL,
    rcpt_to      TEXT NOT NULL,             -- the envelope recipients, comma-separated
    recipient_id INTEGER REFERENCES recipients (id) ON DELETE SET NULL, -- named by the VERP token
    size         INTEGER NOT NULL,
    raw          BLOB NOT NULL,
    parse_status TEXT NOT NULL DEFAULT 'pending', -- pending | parsed | failed
    parse_error  TEXT,
    kind         TEXT,                      -- bounce | delay | complaint | autoreply | delivered | unknown
    format       TEXT,                      -- which reader recognised it (rfc3464, arf, exim, ...)
    parsed_at    TEXT,
    applied_at   TEXT,                      -- when its outcome was written to recipients/events
    outcome      TEXT                       -- what applying it did, in words
  );
  CREATE INDEX inbound_reports_by_status ON inbound_reports (parse_status);

  ALTER TABLE attempts ADD COLUMN mail_from TEXT;            -- the return path used
  ALTER TABLE events ADD COLUMN report_id INTEGER REFERENCES inbound_reports (id);
  `,
  `
  -- Where the failing (or delivering) transaction went out from and to: the bounces report groups
  -- by the sending IP. For a delayed report, the attempt that delivered the message.
  ALTER TABLE events ADD COLUMN local_ip TEXT;
  ALTER TABLE events ADD COLUMN mx_host TEXT;

  ALTER TABLE suppressions ADD COLUMN reason TEXT;          -- an operator's words (manual, import)

  -- Overrides every suppression list: an address, or a whole domain.
  CREATE TABLE allowlist (
    id         INTEGER PRIMARY KEY,
    value      TEXT NOT NULL UNIQUE,        -- a normalised address, or a domain (lower case, punycode)
    kind       TEXT NOT NULL,               -- address | domain
    reason     TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
  );

  -- Every add to and removal from a suppression list or the allowlist: who, when, why.
  CREATE TABLE suppression_audit (
    id      INTEGER PRIMARY KEY,
    at      TEXT NOT NULL,
    action  TEXT NOT NULL,                  -- add | remove
    list    TEXT NOT NULL,                  -- bounces | complaints | unsubscribes | allowlist
    address TEXT NOT NULL,
    actor   TEXT NOT NULL,                  -- relay (immediate/delayed bounces), cli, api:<token name>, import
    reason  TEXT
  );
  CREATE INDEX suppression_audit_by_address ON suppression_audit (address);

  -- The webhook outbox: one row per event a webhook may be about, written by this trigger in the
  -- same transaction as the event (and so as the state change that caused it). The webhook
  -- sender reads it afterwards, never on the delivery path.
  CREATE TABLE webhook_outbox (
    id         INTEGER PRIMARY KEY,
    event_id   INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    fanned_out INTEGER NOT NULL DEFAULT 0   -- 1 once a webhook_deliveries row exists per endpoint
  );
  CREATE INDEX webhook_outbox_pending ON webhook_outbox (id) WHERE fanned_out = 0;
  CREATE TRIGGER events_into_webhook_outbox AFTER INSERT ON events
    WHEN NEW.event IN ('delivered', 'temporary_fail', 'permanent_fail', 'complained', 'unsubscribed')
  BEGIN
    INSERT INTO webhook_outbox (event_id, created_at) VALUES (NEW.id, NEW.at);
  END;

  -- One row per (event, endpoint): what the sender must POST, and how it went.
  CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    event_id        INTEGER NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    endpoint_url    TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending', -- pending | delivered | rejected (406) | failed (gave up)
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_http_status INTEGER,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
  );
  CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

  -- Every POST tried.
  CREATE TABLE webhook_attempts (
    id          INTEGER PRIMARY KEY,
    delivery_id INTEGER NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    at          TEXT NOT NULL,
    http_status INTEGER,                    -- NULL when no response came
    error       TEXT,
    duration_ms INTEGER NOT NULL
  );

  -- Views for operators reading the store with sqlite3 (docs/operators.md).
  CREATE VIEW v_queue AS
  SELECT m.queue_id, m.received_at, m.mail_from, r.address, r.domain, r.status, r.attempts,
         r.next_attempt_at, r.last_reply
    FROM recipients r JOIN messages m ON m.id = r.message_id
   WHERE r.status IN ('queued', 'sending', 'deferred');

  CREATE VIEW v_suppressions AS
  SELECT s.address, s.type, s.source, s.category, s.code, s.enhanced_code, s.text, s.reason, s.queue_id,
         s.first_at, s.last_at, s.count,
         EXISTS (SELECT 1 FROM allowlist a
                  WHERE a.value = s.address
                     OR (a.kind = 'domain' AND a.value = substr(s.address, instr(s.address, '@') + 1))) AS allowlisted
    FROM suppressions s;

  CREATE VIEW v_bounces AS
  SELECT e.at, e.source, e.severity, e.bounce_type, e.category, e.code, e.enhanced_code, e.detail AS text,
         e.local_ip, e.mx_host, r.address, r.domain AS recipient_domain, m.queue_id, m.from_domain,
         m.campaign_id, m.subject
    FROM events e
    JOIN recipients r ON r.id = e.recipient_id
    JOIN messages m ON m.id = e.message_id
   WHERE e.event IN ('permanent_fail', 'temporary_fail') AND coalesce(e.reason, '') <> 'suppressed';
  `,
  `
  -- Lookups by parent row, and the cascades from events, without scanning whole tables.
  CREATE INDEX webhook_outbox_by_event ON webhook_outbox (event_id);
  CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);
  CREATE INDEX webhook_attempts_by_delivery ON webhook_attempts (delivery_id);
  CREATE INDEX attempts_by_message ON attempts (message_id);
  CREATE INDEX suppressions_by_last_at ON suppressions (last_at);
  -- Lets /metrics count recipients in flight without a table scan.
  CREATE INDEX recipients_sending ON recipients (id) WHERE status = 'sending';
  -- The bounces report reads failures by time (measured: a month of 400k events, 614 ms -> 373 ms).
  CREATE INDEX events_failures_by_at ON events (at) WHERE event IN ('permanent_fail', 'temporary_fail');
  `,
  `
  -- Retention (src/store/retention.ts): a finished message's body is dropped after
  -- store.retention.bodyDays (raw becomes empty, size keeps the original), and its whole history
  -- after store.retention.historyDays.
  ALTER TABLE messages ADD COLUMN body_dropped_at TEXT;
  CREATE INDEX messages_with_body ON messages (received_at) WHERE body_dropped_at IS NULL;
  CREATE INDEX inbound_reports_by_received_at ON inbound_reports (received_at);
  CREATE INDEX events_by_report ON events (report_id) WHERE report_id IS NOT NULL;
  -- Claims read due mail domain by domain when one domain's backlog is ahead of the rest
  -- (DeliveryState.dueRowsDomainByDomain).
  CREATE INDEX recipients_due_by_domain ON recipients (domain, next_attempt_at) WHERE status IN ('queued', 'deferred');
  -- The dispatch a delivery outcome is about, as recipients.attempts counts them (webhooks'
  -- attempt-no); NULL on events written before this column, and on delayed ones.
  ALTER TABLE events ADD COLUMN attempt_no INTEGER;
  `,
  `
  -- The reports start-up takes up again (ReportStore.unappliedIds): found without reading every
  -- row, whose raw bytes come before applied_at.
  CREATE INDEX inbound_reports_unapplied ON inbound_reports (id) WHERE applied_at IS NULL AND parse_status <> 'failed';
  `,
  `
  -- The bounces report tells blocks from bounces: v_bounces gains the event's reason (bounced,
  -- blocked, expired; NULL for a temporary_fail), appended so older column positions hold.
  DROP VIEW v_bounces;
  CREATE VIEW v_bounces AS
  SELECT e.at, e.source, e.severity, e.bounce_type, e.category, e.code, e.enhanced_code, e.detail AS text,
         e.local_ip, e.mx_host, r.address, r.domain AS recipient_domain, m.queue_id, m.from_domain,
         m.campaign_id, m.subject, e.reason
    FROM events e
    JOIN recipients r ON r.id = e.recipient_id
    JOIN messages m ON m.id = e.message_id
   WHERE e.event IN ('permanent_fail', 'temporary_fail') AND coalesce(e.reason, '') <> 'suppressed';
  `,
  `
  -- Operator queue actions (src/store/queue-actions.ts), as Postfix's postsuper -h/-H/-d: a
  -- recipient can be 'held' (never claimed by delivery until released) or 'deleted' (taken out
  -- of the queue unsent, kept for history); an operator bounce ends it 'bounced'. Their events
  -- are held, released, deleted and permanent_fail (source 'operator'), and name who did it.
  ALTER TABLE events ADD COLUMN actor TEXT;       -- cli:<os user> | api:<token name>; NULL for the relay's own events

  -- Every queue action: who, when, what, on which selection, and how many recipients it changed.
  CREATE TABLE queue_audit (
    id              INTEGER PRIMARY KEY,
    at              TEXT NOT NULL,
    action          TEXT NOT NULL,            -- hold | release | delete | bounce
    selector        TEXT NOT NULL,            -- queue-ids | domain | sender
    value           TEXT NOT NULL,            -- the queue ids (comma-separated), the domain, or the sender ('<>': the null sender)
    actor           TEXT NOT NULL,            -- cli:<os user> | api:<token name>
    recipients      INTEGER NOT NULL,         -- recipients changed
    skipped_sending INTEGER NOT NULL          -- recipients left alone because delivery was sending them
  );
  CREATE INDEX queue_audit_by_at ON queue_audit (at);

  -- Held recipients by domain, for release/delete/bounce by domain and the held count in /metrics.
  CREATE INDEX recipients_held ON recipients (domain) WHERE status = 'held';

  -- Held mail is still in the queue.
  DROP VIEW v_queue;
  CREATE VIEW v_queue AS
  SELECT m.queue_id, m.received_at, m.mail_from, r.address, r.domain, r.status, r.attempts,
         r.next_attempt_at, r.last_reply
    FROM recipients r JOIN messages m ON m.id = r.message_id
   WHERE r.status IN ('queued', 'sending', 'deferred', 'held');

  -- The history says who acted (appended, so older column positions hold).
  DROP VIEW v_recipient_history;
  CREATE VIEW v_recipient_history AS
  SELECT r.address, e.at, e.event, e.reason, e.category, e.code, e.enhanced_code, e.detail,
         r.status AS current_status, r.attempts, m.queue_id, m.mail_from, m.message_id_header,
         m.subject, m.received_at, e.source, e.actor
    FROM events e
    JOIN recipients r ON r.id = e.recipient_id
    JOIN messages m ON m.id = r.message_id;

  -- An operator's bounce is no reply from any MX: the bounces report leaves it out, as it leaves
  -- out suppressed drops.
  DROP VIEW v_bounces;
  CREATE VIEW v_bounces AS
  SELECT e.at, e.source, e.severity, e.bounce_type, e.category, e.code, e.enhanced_code, e.detail AS text,
         e.local_ip, e.mx_host, r.address, r.domain AS recipient_domain, m.queue_id, m.from_domain,
         m.campaign_id, m.subject, e.reason
    FROM events e
    JOIN recipients r ON r.id = e.recipient_id
    JOIN messages m ON m.id = e.message_id
   WHERE e.event IN ('permanent_fail', 'temporary_fail') AND coalesce(e.reason, '') <> 'suppressed'
     AND coalesce(e.source, '') <> 'operator';
  `,
  `
  -- One endpoint's pending deliveries without reading the others': the panel's Webhooks page counts
  -- each endpoint's backlog (measured with 280,000 pending over two endpoints: 140 ms grouped by
  -- URL through webhook_deliveries_due -> 6 ms per endpoint), and the sender's due query
  -- (WebhookStore.due) reads just that endpoint's rows.
  CREATE INDEX webhook_deliveries_pending_by_endpoint ON webhook_deliveries (endpoint_url, next_attempt_at) WHERE status = 'pending';
  `,
  `
  -- DKIM keys per signing domain (rebound dkim add|rotate|activate|remove). The delivery stage
  -- signs with the active ones; the private key leaves this table only into its memory.
  CREATE TABLE dkim_keys (
    id           INTEGER PRIMARY KEY,
    domain       TEXT NOT NULL,            -- the signing domain (d=): lower case, IDN as punycode
    selector     TEXT NOT NULL,            -- s=; the record is <selector>._domainkey.<domain>
    algorithm    TEXT NOT NULL CHECK (algorithm IN ('rsa-2048', 'ed25519')),
    private_key  TEXT NOT NULL,            -- PKCS#8 PEM; never logged, printed or served
    public_key   TEXT NOT NULL,            -- the p= value of the DNS record
    state        TEXT NOT NULL CHECK (state IN ('active', 'pending', 'retired')),
    created_at   TEXT NOT NULL,
    activated_at TEXT,                     -- when it last began to sign
    retired_at   TEXT,                     -- when a newer key took over (kept until removed)
    UNIQUE (domain, selector)
  );
  -- One signing key per domain and algorithm: RSA and Ed25519 side by side sign twice.
  CREATE UNIQUE INDEX dkim_keys_one_active ON dkim_keys (domain, algorithm) WHERE state = 'active';
  `,
  `
  -- Destinations (a traffic shaping rule's MX hosts, config/shaping.json) that asked us to slow
  -- down: no connection to them until paused_until. Written by the delivery stage, read by
  -- rebound queue and GET /v1/queue, and at start so a pause outlives a restart.
  CREATE TABLE destination_pauses (
    destination  TEXT PRIMARY KEY,          -- the rule's name (gmail, outlook, ...)
    paused_at    TEXT NOT NULL,
    paused_until TEXT NOT NULL,
    reaction     TEXT NOT NULL,             -- the rule's name for the reply (Gmail rate limit)
    reason       TEXT NOT NULL              -- the reply as the host gave it
  );
  `,
  `
  -- Mailgun's control headers, read at submission (submission/sender-controls.ts). Tags get a
  -- table of their own, one row per message and tag, so the bounces report can filter and group
  -- by tag through an index; mail without tags writes no row. Variables are one JSON object's text.
  ALTER TABLE messages ADD COLUMN variables TEXT;
  CREATE TABLE message_tags (
    message_id INTEGER NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,             -- lower case, printable ASCII, at most 128 characters
    PRIMARY KEY (message_id, tag)
  ) WITHOUT ROWID;
  CREATE INDEX message_tags_by_tag ON message_tags (tag, message_id);

  -- The message's row id, for the report's tag filter and group (appended: older positions hold).
  DROP VIEW v_bounces;
  CREATE VIEW v_bounces AS
  SELECT e.at, e.source, e.severity, e.bounce_type, e.category, e.code, e.enhanced_code, e.detail AS text,
         e.local_ip, e.mx_host, r.address, r.domain AS recipient_domain, m.queue_id, m.from_domain,
         m.campaign_id, m.subject, e.reason, m.id AS message_id
    FROM events e
    JOIN recipients r ON r.id = e.recipient_id
    JOIN messages m ON m.id = e.message_id
   WHERE e.event IN ('permanent_fail', 'temporary_fail') AND coalesce(e.reason, '') <> 'suppressed'
     AND coalesce(e.source, '') <> 'operator';
  `,
  `
  -- MTA-STS policies (RFC 8461) of recipient domains, kept for their max_age so a restart (or an
  -- attacker who blocks the policy fetch) does not lose them (RFC 8461 5.1).
  CREATE TABLE mta_sts_policies (
    domain      TEXT PRIMARY KEY,          -- the recipient domain, lower case
    policy_id   TEXT NOT NULL,             -- id= of the _mta-sts TXT record it was fetched for
    mode        TEXT NOT NULL CHECK (mode IN ('enforce', 'testing', 'none')),
    mx          TEXT NOT NULL,             -- JSON array of the mx patterns
    max_age     INTEGER NOT NULL,          -- seconds
    fetched_at  TEXT NOT NULL,
    expires_at  INTEGER NOT NULL           -- unix ms: fetched (or last confirmed) + max_age
  );
  `,
  `
  -- Changes to the suppression lists, the allowlist and DKIM keys waiting to be shipped to the
  -- shared store (store.shared.url, PostgreSQL; src/shared/). Written (store/shared-outbox.ts) in the transaction
  -- of the change itself, by whichever process made it (the relay, the CLI), once the store is
  -- shared (settings 'shared.enabled'); the running relay ships them and deletes them after.
  CREATE TABLE shared_outbox (
    id     INTEGER PRIMARY KEY,
    uid    TEXT NOT NULL,                  -- random: the shared store keeps a change once, however often it is shipped
    at     TEXT NOT NULL,
    change TEXT NOT NULL                   -- JSON: a ListChange or a DkimKeysChange
  );
  `,
  `
  -- Reports this node's MX took for another node's return-path token (store.shared.url), waiting
  -- to be shipped to rebound_forwarded_reports. Written in the transaction that stores the report
  -- (inbound/report-store.ts); the running relay ships them and deletes them after.
  CREATE TABLE forward_outbox (
    id          INTEGER PRIMARY KEY,
    uid         TEXT NOT NULL,             -- random: the shared store keeps a report once, however often it is shipped
    to_node     TEXT NOT NULL,
    received_at TEXT NOT NULL,
    mail_from   TEXT NOT NULL,
    rcpt_to     TEXT NOT NULL,             -- JSON array of the envelope recipients
    raw         BLOB NOT NULL
  );
  `,
  `
  -- The other nodes' events (store.shared.url): a read cache of rebound_events, filled by
  -- src/shared/event-sync.ts, so the bounces report and the panel's overview count every node's
  -- mail. Each row carries what the reads need of its message and recipient, which stay in the
  -- other node's store. This node's own events stay in events only.
  CREATE TABLE other_node_events (
    version           INTEGER PRIMARY KEY,   -- rebound_events.version
    node              TEXT NOT NULL,         -- store.shared.nodeName of the node it happened on
    at                TEXT NOT NULL,
    event             TEXT NOT NULL,
    source            TEXT,
    reason            TEXT,
    severity          TEXT,
    bounce_type       TEXT,
    category          TEXT,
    code              INTEGER,
    enhanced_code     TEXT,
    detail            TEXT,
    local_ip          TEXT,
    mx_host           TEXT,
    actor             TEXT,
    address           TEXT,
    domain            TEXT,
    queue_id          TEXT NOT NULL,
    mail_from         TEXT NOT NULL,
    from_domain       TEXT,
    campaign_id       TEXT,
    subject           TEXT,
    message_id_header TEXT,
    tags              TEXT NOT NULL          -- JSON array of the message's tags
  );
  CREATE INDEX other_node_events_by_at ON other_node_events (at);
  CREATE INDEX other_node_events_failures_by_at ON other_node_events (at) WHERE event IN ('permanent_fail', 'temporary_fail');
  CREATE INDEX other_node_events_by_address ON other_node_events (address);

  -- Every node's bounces: other_node_events joins the view (their message_id is NULL, their tags
  -- in other_tags; node is NULL for this node's own). Appended columns: older positions hold.
  DROP VIEW v_bounces;
  CREATE VIEW v_bounces AS
  SELECT e.at, e.source, e.severity, e.bounce_type, e.category, e.code, e.enhanced_code, e.detail AS text,
         e.local_ip, e.mx_host, r.address, r.domain AS recipient_domain, m.queue_id, m.from_domain,
         m.campaign_id, m.subject, e.reason, m.id AS message_id, NULL AS node, NULL AS other_tags
    FROM events e
    JOIN recipients r ON r.id = e.recipient_id
    JOIN messages m ON m.id = e.message_id
   WHERE e.event IN ('permanent_fail', 'temporary_fail') AND coalesce(e.reason, '') <> 'suppressed'
     AND coalesce(e.source, '') <> 'operator'
  UNION ALL
  SELECT o.at, o.source, o.severity, o.bounce_type, o.category, o.code, o.enhanced_code, o.detail,
         o.local_ip, o.mx_host, o.address, o.domain, o.queue_id, o.from_domain,
         o.campaign_id, o.subject, o.reason, NULL, o.node, o.tags
    FROM other_node_events o
   WHERE o.event IN ('permanent_fail', 'temporary_fail') AND coalesce(o.reason, '') <> 'suppressed'
     AND coalesce(o.source, '') <> 'operator' AND o.address IS NOT NULL;
  `,
];

export class SchemaTooNewError extends OperatorError {
  override name = 'SchemaTooNewError';
}

export function migrate(db: Database): { from: number; to: number } {
  const from = db.pragma('user_version', { simple: true }) as number;
  if (from > MIGRATIONS.length) {
    throw new SchemaTooNewError(
      `the database is at schema version ${from}, newer than this Rebound knows (${MIGRATIONS.length}); upgrade Rebound or use another store.path`,
    );
  }
  for (let version = from + 1; version <= MIGRATIONS.length; version++) {
    const sql = MIGRATIONS[version - 1] as string;
    db.transaction(() => {
      db.exec(sql);
      db.pragma(`user_version = ${version}`);
    })();
  }
  return { from, to: MIGRATIONS.length };
}
