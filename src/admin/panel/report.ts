import type { FastifyInstance } from 'fastify';
import { bouncesCampaigns, bouncesFile, bouncesReport, bouncesTableColumns, bouncesTotal, describeBouncesQuery, GROUP_BYS, BOUNCE_TYPE_FILTERS, type BouncesFileFormat } from '../../reports/bounces.js';
import type { PanelDeps } from './index.js';
import { PERIOD_PRESETS, presetPeriod, readReportForm, reportCliArguments, reportSearch, shellLine } from './report-form.js';

/** Rows a page shows; the downloads have them all. A report has a row per group and text, rarely this many. */
const SHOWN_ROWS = 500;
/** Choices in the campaign list. */
const CAMPAIGN_CHOICES = 500;

type Query = Record<string, unknown>;

/**
 * `/report`: the bounces report as `rebound report bounces` makes it, for a period of days, a
 * campaign or all, grouped and filtered by type; `/report/bounces.csv` and `.xlsx` send the file
 * the CLI writes for the same query string. Everything here is a GET: a viewer may run it too.
 */
export function reportPage(panel: FastifyInstance, deps: PanelDeps): void {
  panel.get<{ Querystring: Query }>('/report', { config: { panel: 'page' } }, (request, reply) => {
    const now = new Date();
    const { preset, ...fields } = request.query;
    let reading = readReportForm(fields, now);
    if (preset !== undefined) {
      // A quick period is resolved here, into days, so the address that stays is the one the
      // downloads carry: "last 7 days" read tomorrow would be another report.
      const period = typeof preset === 'string' ? presetPeriod(preset, now) : null;
      if (period) {
        const search = new URLSearchParams({ ...reading.form, ...period });
        if (reading.form.campaign === '') search.delete('campaign');
        if (reading.form.tag === '') search.delete('tag');
        return reply.redirect(`/report?${search.toString()}`, 303);
      }
      reading = { form: reading.form, query: null, error: `"${String(preset)}" is not a quick period; pick ${PERIOD_PRESETS.map((p) => p.label).join(', ')}` };
    }
    const { form, query, error } = reading;

    let report = null;
    let campaigns: string[] = [];
    if (query) {
      const rows = bouncesReport(deps.db, query);
      const search = reportSearch(query);
      report = {
        title: describeBouncesQuery(query),
        columns: bouncesTableColumns(query.groupBy),
        rows: rows.slice(0, SHOWN_ROWS),
        rowCount: rows.length,
        total: bouncesTotal(rows),
        csv: `/report/bounces.csv?${search}`,
        xlsx: `/report/bounces.xlsx?${search}`,
        cli: shellLine(['rebound', ...reportCliArguments(query)]),
      };
      campaigns = bouncesCampaigns(deps.db, query.since, query.until, CAMPAIGN_CHOICES);
    }
    // The chosen campaign stays a choice when nothing of it bounced in the period (or the form was refused).
    const chosen = form.campaign.trim();
    if (chosen !== '' && !campaigns.includes(chosen)) campaigns = [chosen, ...campaigns];

    if (error) reply.code(400);
    return deps.render(request, reply, 'report', 'Bounces report', {
      form,
      error,
      report,
      campaigns,
      groupBys: GROUP_BYS,
      types: BOUNCE_TYPE_FILTERS,
      presets: PERIOD_PRESETS,
      shownRows: SHOWN_ROWS,
      styles: ['report.css'],
    });
  });

  const download = (format: BouncesFileFormat) =>
    panel.get<{ Querystring: Query }>(`/report/bounces.${format}`, { config: { panel: 'page' } }, async (request, reply) => {
      const { query, error } = readReportForm(request.query, new Date());
      if (!query) return reply.code(400).type('text/plain; charset=utf-8').send(`${error}\nOpen the report at /report to pick the period again.`);
      const file = await bouncesFile(bouncesReport(deps.db, query), query, format);
      return reply.type(file.contentType).header('content-disposition', `attachment; filename="${file.fileName}"`).send(file.content);
    });
  download('csv');
  download('xlsx');
}
