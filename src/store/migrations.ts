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
