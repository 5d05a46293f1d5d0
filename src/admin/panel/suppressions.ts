import fastifyMultipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { addressSearchOf, filterOf, type AddressSearch } from '../../suppressions/address-search.js';
import { linesAt, suppressionsCsv } from '../../suppressions/csv.js';
import { importSuppressionCsv } from '../../suppressions/csv-import.js';
import {
  addressOrThrow,
  allowValueOrThrow,
  SUPPRESSION_TYPES,
  SuppressionInputError,
  SuppressionLists,
  type AllowlistEntry,
  type SuppressionEntry,
  type SuppressionType,
} from '../../suppressions/lists.js';
import { sizeText } from '../api-errors.js';
import type { PanelDeps } from './index.js';

/** The page's tabs: the three suppression lists and the allowlist that overrides them. */
const TABS = [...SUPPRESSION_TYPES, 'allowlist'] as const;
type Tab = (typeof TABS)[number];
const TAB_TITLES: Record<Tab, string> = { bounces: 'Bounces', complaints: 'Complaints', unsubscribes: 'Unsubscribes', allowlist: 'Allowlist' };

const ROWS_PER_PAGE = 50;
/** Longer than any address (RFC 5321: 254) or domain: a search or an address past this is a mistake. */
const MAX_ADDRESS_CHARS = 320;
const MAX_REASON_CHARS = 500;
/** An import's error report shows this many refused lines; the count says how many more there were. */
const MAX_ERRORS_SHOWN = 200;
/** A refused line is shown up to this many characters. */
const MAX_LINE_CHARS = 200;

/** A page's worth of what the tab holds, as the template shows it. */
interface Listing {
  tab: Tab;
  search: AddressSearch;
  /** The search was a bare domain that matched nothing, so it was searched for as text instead. */
  widened: boolean;
  q: string;
  page: number;
  pageCount: number;
  total: number;
  first: number;
  last: number;
  entries: SuppressionEntry[];
  allowlist: AllowlistEntry[];
}

interface ImportReport {
  fileName: string;
  list: SuppressionType | null;
  added: number;
  refused: number;
  errors: Array<{ line: number; text: string; message: string }>;
}

interface AddForm {
  address: string;
  list: Tab;
  reason: string;
}

/** What a POST left to say on the page it answers with. */
interface Outcome {
  notice?: string;
  error?: string;
  addForm?: AddForm;
  addError?: string;
  importReport?: ImportReport;
  importError?: string;
}

type FormBody = Record<string, unknown> | undefined;

function field(body: FormBody, name: string): string {
  const value = body?.[name];
  return typeof value === 'string' ? value : '';
}

function tabOf(value: string | undefined): Tab | null {
  if (value === undefined || value === '') return 'bounces';
  return (TABS as readonly string[]).includes(value) ? (value as Tab) : null;
}

/** The query string of the tab, search and page a link or a redirect goes back to. */
function hrefOf(tab: Tab, q: string, page = 1): string {
  const params = new URLSearchParams({ list: tab });
  if (q !== '') params.set('q', q);
  if (page > 1) params.set('page', String(page));
  return `/suppressions?${params.toString()}`;
}

/**
 * /suppressions: the lists (tabs Bounces, Complaints, Unsubscribes, Allowlist) with their evidence,
 * searched by address or domain, a page at a time; Remove, Add and Import for admins, through the
 * same SuppressionLists and CSV import as the CLI and the API (audit actor `panel:<token name>`);
 * Export for everyone, in the format of `rebound suppressions export`.
 */
export function suppressionsPage(panel: FastifyInstance, deps: PanelDeps): void {
  const lists = new SuppressionLists(deps.db);

  /** The rows of one page; a page past the last shows the last (after a Remove emptied it, say) and says so in `clamped`. */
  const listingOf = (tab: Tab, q: string, requestedPage: number): { listing: Listing; clamped: string | null } => {
    let clamped: string | null = null;
    let search = addressSearchOf(q);
    const pageAt = (page: number) => {
      const filter = filterOf(search);
      const window = { limit: ROWS_PER_PAGE, offset: (page - 1) * ROWS_PER_PAGE, ...filter };
      if (tab === 'allowlist') {
        const { total, entries } = lists.allowlist(window);
        return { total, entries: [] as SuppressionEntry[], allowlist: entries };
      }
      const { total, entries } = lists.list({ type: tab, ...window });
      return { total, entries, allowlist: [] as AllowlistEntry[] };
    };
    let page = requestedPage;
    let rows = pageAt(page);
    let widened = false;
    if (rows.total === 0 && search.kind === 'domain' && search.bare) {
      // `john.smith` reads as a domain but may be part of an address: look for the text instead.
      search = { kind: 'text', text: q.trim() };
      widened = true;
      rows = pageAt(page);
    }
    const pages = Math.max(1, Math.ceil(rows.total / ROWS_PER_PAGE));
    if (page > pages) {
      clamped = `There is no page ${page}: ${rows.total} row${rows.total === 1 ? '' : 's'} make${rows.total === 1 ? 's' : ''} ${pages} page${pages === 1 ? '' : 's'}. This is page ${pages}.`;
      page = pages;
      rows = pageAt(page);
    }
    const first = rows.total === 0 ? 0 : (page - 1) * ROWS_PER_PAGE + 1;
    const last = Math.min(rows.total, page * ROWS_PER_PAGE);
    return { listing: { tab, search, widened, q: q.trim(), page, pageCount: pages, total: rows.total, first, last, entries: rows.entries, allowlist: rows.allowlist }, clamped };
  };

  /**
   * The whole page for this tab, search and page, with what a POST left to say. `problems` are the
   * GET's (a bad page number); only the GET says a page past the last was asked for.
   */
  const show = (request: FastifyRequest, reply: FastifyReply, tab: Tab, q: string, page: number, outcome: Outcome, problems: string[] | null = null) => {
    const { listing, clamped } = listingOf(tab, q, page);
    return deps.render(request, reply, 'suppressions', 'Suppressions', {
      ...listing,
      ...outcome,
      problems: problems === null ? [] : [...problems, ...(clamped === null ? [] : [clamped])],
      tabs: TABS.map((t) => ({ tab: t, title: TAB_TITLES[t], href: hrefOf(t, listing.q) })),
      tabTitle: TAB_TITLES[tab],
      lists: SUPPRESSION_TYPES,
      listTitles: TAB_TITLES,
      canChange: request.panelHolder?.role === 'admin',
      addForm: outcome.addForm ?? { address: '', list: tab, reason: '' },
      prevHref: listing.page > 1 ? hrefOf(tab, listing.q, listing.page - 1) : null,
      nextHref: listing.page < listing.pageCount ? hrefOf(tab, listing.q, listing.page + 1) : null,
      exportHref: tab === 'allowlist' ? null : `/suppressions/export.csv?list=${tab}`,
      maxAddressChars: MAX_ADDRESS_CHARS,
      maxReasonChars: MAX_REASON_CHARS,
      styles: ['suppressions.css'],
      scripts: ['suppressions.js'],
    });
  };

  /** The tab, search and page a form came from (hidden fields), checked as the GET checks them. */
  const placeOf = (tabText: string, q: string, pageText: string): { tab: Tab; q: string; page: number; problems: string[] } => {
    const problems: string[] = [];
    let tab = tabOf(tabText);
    if (tab === null) {
      problems.push(`There is no list "${tabText}"; the lists are ${TABS.join(', ')}. This is the bounces list.`);
      tab = 'bounces';
    }
    let search = q;
    if (search.length > MAX_ADDRESS_CHARS) {
      problems.push(`The search is over ${MAX_ADDRESS_CHARS} characters; search for an address, @domain or part of one.`);
      search = '';
    }
    let page = 1;
    if (pageText !== '') {
      if (/^\d{1,9}$/.test(pageText.trim()) && Number(pageText) >= 1) page = Number(pageText);
      else problems.push(`The page "${pageText}" is not a page number (1, 2, ...). This is page 1.`);
    }
    return { tab, q: search, page, problems };
  };

  panel.get<{ Querystring: Record<string, string | string[] | undefined> }>('/suppressions', { config: { panel: 'page' } }, (request, reply) => {
    const query = request.query;
    const one = (name: string) => {
      const value = query[name];
      return Array.isArray(value) ? (value[0] ?? '') : (value ?? '');
    };
    const place = placeOf(one('list'), one('q'), one('page'));
    return show(request, reply, place.tab, place.q, place.page, {}, place.problems);
  });

  panel.get<{ Querystring: { list?: string } }>('/suppressions/export.csv', { config: { panel: 'page' } }, (request, reply) => {
    const wanted = request.query.list ?? 'all';
    if (wanted !== 'all' && !(SUPPRESSION_TYPES as readonly string[]).includes(wanted)) {
      return reply.code(400).type('text/plain; charset=utf-8').send(`There is no list "${wanted}" to export; export one of ${SUPPRESSION_TYPES.join(', ')}, or all.`);
    }
    const type = wanted === 'all' ? undefined : (wanted as SuppressionType);
    // The query `rebound suppressions export` makes: the whole list, newest first.
    const { entries } = lists.list({ ...(type ? { type } : {}), limit: Number.MAX_SAFE_INTEGER });
    return reply
      .type('text/csv; charset=utf-8')
      .header('content-disposition', `attachment; filename="suppressions-${wanted}.csv"`)
      .send(suppressionsCsv(entries));
  });

  panel.post<{ Body: FormBody }>('/suppressions/remove', { config: { panel: 'change' } }, (request, reply) => {
    const body = request.body;
    const place = placeOf(field(body, 'list'), field(body, 'q'), field(body, 'page'));
    const value = field(body, 'value');
    if (place.problems.length > 0) return show(request, reply.code(400), place.tab, place.q, place.page, { error: `Nothing removed. ${place.problems.join(' ')}` });
    try {
      if (place.tab === 'allowlist') {
        const allowed = allowValueOrThrow(value);
        const removed = lists.disallow(allowed, request.actor, null);
        return show(request, reply, place.tab, place.q, place.page, removed ? { notice: `Removed ${allowed} from the allowlist.` } : { error: `${allowed} was not on the allowlist (removed already?).` });
      }
      const address = addressOrThrow(value);
      const removed = lists.remove(address, place.tab, request.actor, null);
      return show(
        request,
        reply,
        place.tab,
        place.q,
        place.page,
        removed.length > 0 ? { notice: `Removed ${address} from the ${place.tab} list.` } : { error: `${address} was not on the ${place.tab} list (removed already?).` },
      );
    } catch (error) {
      if (!(error instanceof SuppressionInputError)) throw error;
      return show(request, reply.code(400), place.tab, place.q, place.page, { error: `Nothing removed: ${error.message}.` });
    }
  });

  panel.post<{ Body: FormBody }>('/suppressions/add', { config: { panel: 'change' } }, (request, reply) => {
    const body = request.body;
    const form: AddForm = { address: field(body, 'address').trim(), list: tabOf(field(body, 'list')) ?? 'bounces', reason: field(body, 'reason').trim() };
    const refuse = (message: string) => show(request, reply.code(400), form.list, '', 1, { addForm: form, addError: message });
    if (tabOf(field(body, 'list')) === null) return refuse(`There is no list "${field(body, 'list')}"; choose one of ${TABS.join(', ')}.`);
    if (form.address === '') return refuse(form.list === 'allowlist' ? 'Enter an address or a domain.' : 'Enter an address.');
    if (form.address.length > MAX_ADDRESS_CHARS) return refuse(`The address is over ${MAX_ADDRESS_CHARS} characters; no address is that long.`);
    if (form.reason.length > MAX_REASON_CHARS) return refuse(`The reason is over ${MAX_REASON_CHARS} characters; say it shorter.`);
    const reason = form.reason === '' ? null : form.reason;
    let added: string;
    try {
      if (form.list === 'allowlist') {
        added = lists.allow(form.address, request.actor, reason).value;
      } else {
        added = addressOrThrow(form.address);
        lists.addAll([{ address: added, type: form.list, source: 'manual', reason, actor: request.actor }]);
      }
    } catch (error) {
      if (!(error instanceof SuppressionInputError)) throw error;
      return refuse(`Nothing added: ${error.message}.`);
    }
    // The tab, searched for what was added: the new row is the confirmation, and a reload adds nothing.
    return reply.redirect(hrefOf(form.list, added), 303);
  });

  // The import takes a file (multipart/form-data), in a plugin of its own so the API's body parsers stay as they are.
  panel.register(async (uploads) => {
    await uploads.register(fastifyMultipart, { limits: { fileSize: deps.config.admin.maxImportBytes, files: 1, fields: 8, fieldSize: 1024, parts: 10 } });
    uploads.post('/suppressions/import', { config: { panel: 'change' } }, async (request, reply) => {
      const fields: Record<string, string> = {};
      let file: { name: string; bytes: Buffer } | null = null;
      const refuse = (status: number, message: string) =>
        show(request, reply.code(status), tabOf(fields.tab ?? '') ?? 'bounces', placeOf('', fields.q ?? '', '').q, 1, { importError: message });
      if (!request.isMultipart()) return refuse(400, 'Send the file as multipart/form-data, as the Import form does.');
      try {
        for await (const part of request.parts()) {
          if (part.type === 'file') file = { name: part.filename, bytes: await part.toBuffer() };
          else fields[part.fieldname] = String(part.value);
        }
      } catch (error) {
        const code = (error as { code?: string }).code;
        if (code === 'FST_REQ_FILE_TOO_LARGE') {
          return refuse(413, `Nothing imported: the file is over ${sizeText(deps.config.admin.maxImportBytes)} (admin.maxImportBytes). Split it, or raise admin.maxImportBytes.`);
        }
        if (typeof code === 'string' && code.startsWith('FST_')) return refuse(400, `Nothing imported: the upload was not one file and a list (${(error as Error).message}).`);
        throw error;
      }
      const chosen = fields.list ?? '';
      if (chosen !== 'file' && !(SUPPRESSION_TYPES as readonly string[]).includes(chosen)) {
        return refuse(400, `There is no list "${chosen}" to import into; choose ${SUPPRESSION_TYPES.join(', ')} or the file's type column.`);
      }
      const list = chosen === 'file' ? null : (chosen as SuppressionType);
      if (file === null || (file.name === '' && file.bytes.length === 0)) return refuse(400, 'Choose a CSV file to import.');
      if (file.bytes.includes(0)) return refuse(400, `Nothing imported: ${file.name} is not a text file (it holds NUL bytes). Import a CSV file with a header row naming an "address" column.`);
      const text = file.bytes.toString('utf8');
      const outcome = await importSuppressionCsv(lists, text, {
        list,
        actor: request.actor,
        reason: `imported from ${file.name}`,
        otherList: (rowType, chosen) => `the type column says ${rowType}, but the import is into ${chosen}: choose "the file's type column" to import rows into several lists`,
        log: request.log,
      });
      const shown = outcome.errors.slice(0, MAX_ERRORS_SHOWN);
      const texts = linesAt(text, new Set(shown.map((e) => e.line)));
      const report: ImportReport = {
        fileName: file.name,
        list,
        added: outcome.added,
        refused: outcome.errors.length,
        errors: shown.map((e) => {
          const line = texts.get(e.line) ?? '';
          return { line: e.line, text: line.length > MAX_LINE_CHARS ? `${line.slice(0, MAX_LINE_CHARS)}…` : line, message: e.message };
        }),
      };
      deps.log.info({ actor: request.actor, file: file.name, list: list ?? 'file', added: report.added, refused: report.refused }, 'panel suppression import');
      // The tab and search the form was on: the table below the form is refreshed in place (hx-select-oob).
      const place = placeOf(fields.tab ?? '', fields.q ?? '', '');
      return show(request, reply, place.tab, place.q, 1, { importReport: report });
    });
  });
}
