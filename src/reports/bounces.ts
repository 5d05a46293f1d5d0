import type { Database, Statement } from 'better-sqlite3';
import { OperatorError } from '../errors.js';
import { MAX_TAG_LENGTH, tagKey, tagProblem } from '../store/message-tags.js';

/**
 * The bounces report: bounces in a period, for one campaign or all, grouped by the From domain,
 * the sending IP, the recipient domain, the category or the tag; one row per group and bounce
 * text, with the number of bounces. Grouped by tag, a bounce of a message with two tags counts in
 * both tags' rows (one without tags under "(none)"), so the rows' sum can exceed the bounces.
 * Read from the `v_bounces` view (migration 4, message_id added in 12, other nodes' bounces in 17): one row per
 * `permanent_fail` or `temporary_fail` event, suppressed drops left out; its reason tells a block
 * (hard, about the sender or the message, not suppressed) from a bounce. A recipient tried three
 * times before it expired counts three bounces (two deferrals and the expiry), as the seeds count.
 *
 * The CLI (`rebound report bounces`) and the admin API both call this module; see docs/reports.md.
 */

export type GroupBy = 'from-domain' | 'ip' | 'recipient-domain' | 'category' | 'tag';
export type BounceTypeFilter = 'soft' | 'hard' | 'all';

export const GROUP_BYS: readonly GroupBy[] = ['from-domain', 'ip', 'recipient-domain', 'category', 'tag'];
export const BOUNCE_TYPE_FILTERS: readonly BounceTypeFilter[] = ['soft', 'hard', 'all'];

export interface BouncesReportQuery {
  /** Start of the period, included. */
  since: Date;
  /** End of the period, left out. */
  until: Date;
  /** One campaign (the campaign header's value), or null for all mail, with or without a campaign. */
  campaign: string | null;
  /** Only mail with this tag (X-Mailgun-Tag, lower case), or null for all mail. */
  tag: string | null;
  groupBy: GroupBy;
  type: BounceTypeFilter;
}

export interface BouncesReportRow {
  /** The group's value: a From domain, a sending IP, a recipient domain or a category; "(none)" when unknown. */
  group: string;
  /** The bounce text: the reply as stored in events.detail, the recipient's own address replaced by {recipient}. */
  text: string;
  /** How many bounces (events), not how many recipients or messages. */
  amount: number;
  /** hard or soft. */
  bounceType: string;
  /** One of the 17 bounce categories. */
  category: string;
  /**
   * What became of the recipient: `bounced`, `blocked` (a hard failure about the sender or the
   * message, not suppressed: see suppression.categories), `expired`, or `deferred` for a
   * temporary failure that was retried.
   */
  reason: string;
  /** The first and the last bounce of the row in the period (ISO-8601 UTC). */
  firstAt: string;
  lastAt: string;
}

/** Bad input to the report (a date, a group, a type): the message names the input, as the caller calls it, and the fix. */
export class ReportQueryError extends OperatorError {
  override name = 'ReportQueryError';
}

/** What the group value and the bounce text show when the store has nothing for them. */
export const NONE = '(none)';
/** The reason column of a temporary failure (a temporary_fail event has no reason of its own). */
export const DEFERRED = 'deferred';
/** What the recipient's own address becomes in the bounce text. */
export const RECIPIENT_PLACEHOLDER = '{recipient}';

export interface BouncesQueryInput {
  since?: string | undefined;
  until?: string | undefined;
  campaign?: string | undefined;
  tag?: string | undefined;
  groupBy?: string | undefined;
  type?: string | undefined;
}

const DATE_HELP = 'use ISO 8601 like 2026-11-01 or 2026-11-01T12:00:00Z';

/**
 * Checks and completes a report request. `since` is required; `until` defaults to `now`;
 * `groupBy` to from-domain; `type` to soft (the seeds' default for this report); no campaign
 * means all campaigns. Dates and times without an offset are UTC, as the store keeps them.
 */
/** How a caller names the report's inputs in its errors: the CLI's flags or the API's query parameters. */
export interface InputNames {
  name(input: keyof BouncesQueryInput): string;
  /** The input given a value, as the caller would write it: `--since 2026-11-01`, `since=2026-11-01`. */
  withValue(input: keyof BouncesQueryInput, value: string): string;
}

const FLAGS: Record<keyof BouncesQueryInput, string> = { since: '--since', until: '--until', campaign: '--campaign', tag: '--tag', groupBy: '--group-by', type: '--type' };
const PARAMETERS: Record<keyof BouncesQueryInput, string> = { since: 'since', until: 'until', campaign: 'campaign', tag: 'tag', groupBy: 'group_by', type: 'type' };

export const CLI_FLAGS: InputNames = { name: (input) => FLAGS[input], withValue: (input, value) => `${FLAGS[input]} ${value}` };
export const QUERY_PARAMETERS: InputNames = { name: (input) => PARAMETERS[input], withValue: (input, value) => `${PARAMETERS[input]}=${value}` };

export function parseBouncesQuery(input: BouncesQueryInput, now: Date = new Date(), names: InputNames = CLI_FLAGS): BouncesReportQuery {
  const { name, withValue } = names;
  if (input.since === undefined || input.since.trim() === '') {
    throw new ReportQueryError(`${name('since')} is required: the start of the period, e.g. ${withValue('since', '2026-11-01')} (${DATE_HELP})`);
  }
  const since = parseDate(input.since, name('since'));
  const until = input.until === undefined ? now : parseDate(input.until, name('until'));
  if (since.getTime() >= until.getTime()) {
    throw new ReportQueryError(
      `${withValue('since', since.toISOString())} is not before ${withValue('until', until.toISOString())}${input.until === undefined ? ' (now)' : ''}; ` +
        `the period starts at ${name('since')} and ends just before ${name('until')}`,
    );
  }
  const groupBy = oneOf(input.groupBy, name('groupBy'), GROUP_BYS, 'from-domain');
  const type = oneOf(input.type, name('type'), BOUNCE_TYPE_FILTERS, 'soft');
  let campaign: string | null = null;
  if (input.campaign !== undefined) {
    campaign = input.campaign.trim();
    if (campaign === '') {
      throw new ReportQueryError(`${name('campaign')}: give a campaign id (the value of the campaign header), or leave ${name('campaign')} out for all campaigns`);
    }
  }
  return { since, until, campaign, tag: tagOf(input.tag, name('tag')), groupBy, type };
}

/** A tag as the store keeps it (submission/sender-controls.ts): lower case, printable ASCII, at most 128 characters. */
function tagOf(value: string | undefined, flag: string): string | null {
  if (value === undefined) return null;
  const tag = tagKey(value);
  const problem = tagProblem(tag);
  if (problem === 'empty') throw new ReportQueryError(`${flag}: give a tag (an X-Mailgun-Tag value), or leave ${flag} out for all mail`);
  if (problem !== null) {
    throw new ReportQueryError(`${flag}: no message can carry this tag; a tag is printable ASCII, at most ${MAX_TAG_LENGTH} characters`);
  }
  return tag;
}

function oneOf<T extends string>(value: string | undefined, flag: string, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  const wanted = value.trim().toLowerCase();
  if (!(allowed as readonly string[]).includes(wanted)) throw new ReportQueryError(`${flag}: "${value}" is not one of ${allowed.join(', ')}`);
  return wanted as T;
}

// 2026-11-01, 2026-11-01T12:00, 2026-11-01T12:00:00.5+01:00, 2026-11-01 12:00:00Z, ...
const ISO_8601 = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?)?$/;

/** An ISO 8601 calendar date or date-time; no offset means UTC. Impossible dates (02-30, 25:00) are refused. */
export function parseDate(value: string, flag: string): Date {
  const match = ISO_8601.exec(value.trim());
  const bad = (): ReportQueryError => new ReportQueryError(`${flag}: "${value}" is not a date; ${DATE_HELP}`);
  if (!match) throw bad();
  const [, y, mo, d, h = '0', mi = '0', s = '0', fraction = '', , sign, oh = '0', om = '0'] = match;
  const year = Number(y), month = Number(mo), day = Number(d), hour = Number(h), minute = Number(mi), second = Number(s);
  const offsetHours = Number(oh), offsetMinutes = Number(om);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) throw bad();
  if (hour > 23 || minute > 59 || second > 59 || offsetHours > 23 || offsetMinutes > 59) throw bad();
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  date.setUTCHours(hour, minute, second, Number(fraction.padEnd(3, '0').slice(0, 3)));
  const offset = (sign === '-' ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000;
  const result = new Date(date.getTime() - (sign ? offset : 0));
  // The store compares times as text: only years 0000-9999 keep the ISO form that sorts.
  if (!/^\d{4}-/.test(result.toISOString())) throw bad();
  return result;
}

function daysInMonth(year: number, month: number): number {
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
}

/** v_bounces columns the groups read: the only text that goes into the SQL besides fixed fragments. */
const GROUP_COLUMNS: Record<GroupBy, string> = {
  'from-domain': 'from_domain',
  ip: 'local_ip',
  'recipient-domain': 'recipient_domain',
  category: 'category',
  // A message of this node has its tags in message_tags; another node's bounce carries them (other_tags).
  tag: 'coalesce(t.tag, ot.value)',
};

interface RawRow {
  grp: string;
  bounce_text: string;
  bounce_type: string;
  category: string;
  reason: string;
  amount: number;
  first_at: string;
  last_at: string;
}

/** The SQL for one shape of query (group column, with or without campaign and type filters). */
export function bouncesSql(groupBy: GroupBy, withCampaign: boolean, withType: boolean, withTag = false): string {
  const column = Object.hasOwn(GROUP_COLUMNS, groupBy) ? GROUP_COLUMNS[groupBy] : undefined;
  if (column === undefined) throw new ReportQueryError(`--group-by: "${String(groupBy)}" is not one of ${GROUP_BYS.join(', ')}`);
  return `
    SELECT coalesce(nullif(${column}, ''), '${NONE}') AS grp,
           coalesce(nullif(replace(text, address, '${RECIPIENT_PLACEHOLDER}'), ''), '${NONE}') AS bounce_text,
           coalesce(bounce_type, '${NONE}') AS bounce_type,
           coalesce(category, '${NONE}') AS category,
           coalesce(reason, '${DEFERRED}') AS reason,
           count(*) AS amount,
           min(at) AS first_at,
           max(at) AS last_at
      FROM v_bounces b${groupBy === 'tag' ? '\n      LEFT JOIN message_tags t ON t.message_id = b.message_id\n      LEFT JOIN json_each(b.other_tags) ot' : ''}
     WHERE at >= @since AND at < @until${withCampaign ? '\n       AND campaign_id = @campaign' : ''}${withType ? '\n       AND bounce_type = @type' : ''}${
       withTag
         ? '\n       AND (b.message_id IN (SELECT message_id FROM message_tags WHERE tag = @tag)' +
           '\n            OR (b.other_tags IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(b.other_tags) WHERE value = @tag)))'
         : ''
     }
     GROUP BY 1, 2, 3, 4, 5
     ORDER BY amount DESC, grp, bounce_text, category, reason`;
}

const statements = new WeakMap<Database, Map<string, Statement>>();

function statementFor(db: Database, query: BouncesReportQuery): Statement {
  const withCampaign = query.campaign !== null;
  const withType = query.type !== 'all';
  const withTag = query.tag !== null;
  const key = `${query.groupBy}|${withCampaign}|${withType}|${withTag}`;
  let cache = statements.get(db);
  if (!cache) {
    cache = new Map();
    statements.set(db, cache);
  }
  let statement = cache.get(key);
  if (!statement) {
    statement = db.prepare(bouncesSql(query.groupBy, withCampaign, withType, withTag));
    cache.set(key, statement);
  }
  return statement;
}

/** The report's rows, most bounces first (then by group and text). */
export function bouncesReport(db: Database, query: BouncesReportQuery): BouncesReportRow[] {
  if (!BOUNCE_TYPE_FILTERS.includes(query.type)) throw new ReportQueryError(`--type: "${String(query.type)}" is not one of ${BOUNCE_TYPE_FILTERS.join(', ')}`);
  const params: Record<string, string> = { since: query.since.toISOString(), until: query.until.toISOString() };
  if (query.campaign !== null) params.campaign = query.campaign;
  if (query.tag !== null) params.tag = query.tag;
  if (query.type !== 'all') params.type = query.type;
  const rows = statementFor(db, query).all(params) as RawRow[];
  return rows.map((row) => ({
    group: row.grp,
    text: row.bounce_text,
    amount: row.amount,
    bounceType: row.bounce_type,
    category: row.category,
    reason: row.reason,
    firstAt: row.first_at,
    lastAt: row.last_at,
  }));
}

const campaignStatements = new WeakMap<Database, Statement>();

/**
 * The campaigns that bounced in a period, in order, at most `limit`: the choices of a campaign
 * filter. Read from the failures in the period (events_failures_by_at), as the report itself is,
 * not from every message ever stored, which has no index on its campaign and would be read whole.
 */
export function bouncesCampaigns(db: Database, since: Date, until: Date, limit: number): string[] {
  let statement = campaignStatements.get(db);
  if (!statement) {
    statement = db
      .prepare(
        `SELECT DISTINCT campaign_id FROM v_bounces
          WHERE at >= @since AND at < @until AND campaign_id IS NOT NULL AND campaign_id <> ''
          ORDER BY campaign_id LIMIT @limit`,
      )
      .pluck();
    campaignStatements.set(db, statement);
  }
  return statement.all({ since: since.toISOString(), until: until.toISOString(), limit }) as string[];
}

export {
  bouncesColumns,
  bouncesCsv,
  bouncesFile,
  bouncesTable,
  bouncesTableColumns,
  bouncesTotal,
  bouncesXlsx,
  describeBouncesQuery,
  type BouncesColumn,
  type BouncesFile,
  type BouncesFileFormat,
} from './bounces-export.js';
