import type { FastifyInstance } from 'fastify';
import { Activity } from '../../reports/activity.js';
import { queueSummary } from '../../store/queue.js';
import type { PanelDeps } from './index.js';

const DAY_MS = 24 * 60 * 60 * 1000;
/** The chart's span: the last 24 hours, the current one included. */
const CHART_HOURS = 24;

/** `/`: today and the last 7 days in figures, the queue now, bounces per hour, the worst domains. */
export function overviewPage(panel: FastifyInstance, deps: PanelDeps): void {
  const activity = new Activity(deps.db);
  panel.get('/', { config: { panel: 'page' } }, (request, reply) => {
    const now = new Date();
    const midnight = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()));
    const weekAgo = new Date(now.getTime() - 7 * DAY_MS);
    const queue = queueSummary(deps.db, 0);
    return deps.render(request, reply, 'overview', 'Overview', {
      today: activity.countsSince(midnight),
      week: activity.countsSince(weekAgo),
      queue: queue.recipientsByStatus,
      // Read by panel.js, which draws it with Chart.js: JSON in a non-script block (no inline script).
      chart: JSON.stringify(activity.bouncesPerHour(now, CHART_HOURS)),
      topDomains: activity.topBouncingDomains(weekAgo, 10),
    });
  });
}
