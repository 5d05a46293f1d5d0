import { parseBouncesQuery, parseDate, ReportQueryError, type BouncesQueryInput, type BouncesReportQuery, type InputNames } from '../../reports/bounces.js';

/**
 * The bounces report's form on the panel and its query string: a period of whole days (UTC), From
 * and To both included, then the same campaign, tag, group-by and type as `rebound report bounces`.
 * The days become the CLI's --since (From at 00:00) and --until (the day after To, left out), and
 * everything goes through parseBouncesQuery, so a page, its downloads and the CLI read one query.
 */

/** The query string's parameters, as the form names its fields (group_by and type as the API has them). */
export const REPORT_PARAMETERS = ['from', 'to', 'campaign', 'tag', 'group_by', 'type'] as const;
type ReportParameter = (typeof REPORT_PARAMETERS)[number];

/** The form's fields as they were given, so a refused form comes back as the operator left it. */
export type ReportForm = Record<ReportParameter, string>;

export type ReportFormReading = { form: ReportForm; query: BouncesReportQuery; error: null } | { form: ReportForm; query: null; error: string };

/** The quick periods, each ending today (UTC). */
export const PERIOD_PRESETS = [
  { id: 'today', label: 'Today', days: 1 },
  { id: 'last-7-days', label: 'Last 7 days', days: 7 },
  { id: 'last-30-days', label: 'Last 30 days', days: 30 },
] as const;

/** What the page shows with nothing asked yet: the last 7 days, the CLI's defaults for the rest. */
const DEFAULT_DAYS = 7;

const DAY_MS = 24 * 60 * 60 * 1000;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** How the form's labels name the inputs in a message (parseBouncesQuery's words for the CLI's flags). */
const LABELS: Record<keyof BouncesQueryInput, string> = { since: 'From', until: 'To', campaign: 'Campaign', tag: 'Tag', groupBy: 'Group by', type: 'Type' };
const FORM_LABELS: InputNames = { name: (input) => LABELS[input], withValue: (input, value) => `${LABELS[input]} ${value}` };

function dayOf(date: Date): string {
  return date.toISOString().slice(0, 10);
}

/** The period of a quick choice, ending today (UTC), or null for an id that is not one. */
export function presetPeriod(id: string, now: Date): { from: string; to: string } | null {
  const preset = PERIOD_PRESETS.find((p) => p.id === id);
  if (!preset) return null;
  return { from: dayOf(new Date(now.getTime() - (preset.days - 1) * DAY_MS)), to: dayOf(now) };
}

/** The form with nothing asked yet. */
function defaultReportForm(now: Date): ReportForm {
  return { from: dayOf(new Date(now.getTime() - (DEFAULT_DAYS - 1) * DAY_MS)), to: dayOf(now), campaign: '', tag: '', group_by: 'from-domain', type: 'soft' };
}

/**
 * Reads the report's query string (fastify's parsed query: a repeated key is an array). An absent
 * field takes its default; a given one is checked, and every refusal names the field and the fix.
 */
export function readReportForm(raw: Record<string, unknown>, now: Date): ReportFormReading {
  const form = defaultReportForm(now);
  const problems: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (!(REPORT_PARAMETERS as readonly string[]).includes(key)) {
      problems.push(`"${key}" is not a field of this report; it takes ${REPORT_PARAMETERS.join(', ')}`);
      continue;
    }
    if (typeof value !== 'string') {
      problems.push(`give ${key} once, not ${Array.isArray(value) ? value.length : 'several'} times`);
      continue;
    }
    form[key as ReportParameter] = value;
  }
  if (problems.length > 0) return { form, query: null, error: problems.join('; ') };

  const from = checkDay(form.from, 'From', 'the first day of the period');
  const to = checkDay(form.to, 'To', 'the last day of the period');
  const dayError = [from, to].find((day): day is { error: string } => 'error' in day);
  if (dayError) return { form, query: null, error: dayError.error };
  const fromDate = (from as { date: Date }).date;
  const toDate = (to as { date: Date }).date;
  if (fromDate.getTime() > toDate.getTime()) {
    return { form, query: null, error: `From (${form.from.trim()}) is after To (${form.to.trim()}): the period runs from the From day to the To day, both included; swap them or pick another day` };
  }
  const until = untilDay(toDate);
  if (until === null) return { form, query: null, error: `To: ${form.to.trim()} is the last day there is; pick an earlier one` };

  try {
    const query = parseBouncesQuery(
      { since: dayOf(fromDate), until, campaign: form.campaign === '' ? undefined : form.campaign, tag: form.tag.trim() === '' ? undefined : form.tag, groupBy: form.group_by, type: form.type },
      now,
      FORM_LABELS,
    );
    return { form, query, error: null };
  } catch (error) {
    if (error instanceof ReportQueryError) return { form, query: null, error: error.message };
    throw error;
  }
}

function checkDay(value: string, label: string, what: string): { date: Date } | { error: string } {
  const day = value.trim();
  if (day === '') return { error: `${label}: pick ${what} (a day, YYYY-MM-DD)` };
  const refused = { error: `${label}: "${value}" is not a day; pick one in the calendar or write it as YYYY-MM-DD (UTC), e.g. 2026-11-01` };
  if (!DAY.test(day)) return refused;
  try {
    return { date: parseDate(day, label) };
  } catch (error) {
    if (error instanceof ReportQueryError) return refused;
    throw error;
  }
}

/** The CLI's --until for a To day: the next day, as YYYY-MM-DD; null past the last day the store can compare. */
function untilDay(to: Date): string | null {
  const next = dayOf(new Date(to.getTime() + DAY_MS));
  return DAY.test(next) ? next : null;
}

/** The query string of a report (for its download links and quick periods), in the form's order. */
export function reportSearch(query: BouncesReportQuery): string {
  const params = new URLSearchParams({ from: dayOf(query.since), to: dayOf(new Date(query.until.getTime() - DAY_MS)) });
  if (query.campaign !== null) params.set('campaign', query.campaign);
  if (query.tag !== null) params.set('tag', query.tag);
  params.set('group_by', query.groupBy);
  params.set('type', query.type);
  return params.toString();
}

/** `rebound report bounces` with the flags that give this report (read by the CLI exactly as the page was). */
export function reportCliArguments(query: BouncesReportQuery): string[] {
  const args = ['report', 'bounces', '--since', dayOf(query.since), '--until', dayOf(query.until)];
  // --campaign=ID in one word: an id that starts with a dash is still the flag's value.
  if (query.campaign !== null) args.push(`--campaign=${query.campaign}`);
  if (query.tag !== null) args.push(`--tag=${query.tag}`);
  args.push('--group-by', query.groupBy, '--type', query.type);
  return args;
}

/** The arguments as a POSIX shell line: a word with anything but safe characters goes in single quotes. */
export function shellLine(words: readonly string[]): string {
  return words.map((word) => (/^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`)).join(' ');
}
