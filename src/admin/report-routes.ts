import type { FastifyInstance } from 'fastify';
import { bouncesFile, bouncesReport, bouncesTotal, parseBouncesQuery, QUERY_PARAMETERS, ReportQueryError } from '../reports/bounces.js';
import type { Database } from '../store/database.js';
import { badRequest } from './api-errors.js';
import { oneOf, queryOf } from './query-params.js';

/** GET /v1/reports/bounces: the same report as `rebound report bounces`, as JSON, CSV or XLSX. */
export function reportRoutes(app: FastifyInstance, db: Database): void {
  app.get('/v1/reports/bounces', async (request, reply) => {
    const query = queryOf(request, ['since', 'until', 'campaign', 'tag', 'group_by', 'type', 'format']);
    const format = oneOf(query.format, 'format', ['json', 'csv', 'xlsx'] as const, 'json');
    let report;
    try {
      report = parseBouncesQuery({ since: query.since, until: query.until, campaign: query.campaign, tag: query.tag, groupBy: query.group_by, type: query.type }, new Date(), QUERY_PARAMETERS);
    } catch (error) {
      if (error instanceof ReportQueryError) throw badRequest(error.message);
      throw error;
    }
    const rows = bouncesReport(db, report);
    if (format !== 'json') {
      const file = await bouncesFile(rows, report, format);
      return reply.type(file.contentType).header('content-disposition', `attachment; filename="${file.fileName}"`).send(file.content);
    }
    return reply.send({
      query: { since: report.since.toISOString(), until: report.until.toISOString(), campaign: report.campaign, tag: report.tag, groupBy: report.groupBy, type: report.type },
      rows,
      bounces: bouncesTotal(rows),
    });
  });
}
