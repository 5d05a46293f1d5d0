import type { FastifyInstance } from 'fastify';
import { bouncesCsv, bouncesReport, bouncesXlsx, parseBouncesQuery, QUERY_PARAMETERS, ReportQueryError } from '../reports/bounces.js';
import type { Database } from '../store/database.js';
import { badRequest } from './api-errors.js';
import { oneOf, queryOf } from './query-params.js';

const XLSX = 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet';

/** GET /v1/reports/bounces: the same report as `rebound report bounces`, as JSON, CSV or XLSX. */
export function reportRoutes(app: FastifyInstance, db: Database): void {
  app.get('/v1/reports/bounces', async (request, reply) => {
    const query = queryOf(request, ['since', 'until', 'campaign', 'group_by', 'type', 'format']);
    const format = oneOf(query.format, 'format', ['json', 'csv', 'xlsx'] as const, 'json');
    let report;
    try {
      report = parseBouncesQuery({ since: query.since, until: query.until, campaign: query.campaign, groupBy: query.group_by, type: query.type }, new Date(), QUERY_PARAMETERS);
    } catch (error) {
      if (error instanceof ReportQueryError) throw badRequest(error.message);
      throw error;
    }
    const rows = bouncesReport(db, report);
    const name = `bounces-${report.since.toISOString().slice(0, 10)}-${report.until.toISOString().slice(0, 10)}`;
    if (format === 'csv') {
      return reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="${name}.csv"`).send(bouncesCsv(rows, report));
    }
    if (format === 'xlsx') {
      const workbook = await bouncesXlsx(rows, report);
      return reply.type(XLSX).header('content-disposition', `attachment; filename="${name}.xlsx"`).send(workbook);
    }
    return reply.send({
      query: { since: report.since.toISOString(), until: report.until.toISOString(), campaign: report.campaign, groupBy: report.groupBy, type: report.type },
      rows,
      bounces: rows.reduce((sum, row) => sum + row.amount, 0),
    });
  });
}
