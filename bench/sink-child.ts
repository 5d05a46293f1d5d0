/**
 * The benchmark sink's own process (forked by SinkProcess in bench/sink.ts): runs an SmtpSink on
 * 127.0.0.1, port 0, and reports each received bench id and its receive time to the parent.
 * Receipts are sent in batches every few milliseconds: the times are taken as messages arrive,
 * so batching delays only when the parent hears of them, not what it measures.
 */
import { SmtpSink, type ParentToSink, type SinkToParent } from './sink.js';

const REPORT_EVERY_MS = 10;

if (!process.send) {
  console.error('bench/sink-child.ts is started by bench/sink.ts (SinkProcess), not by hand');
  process.exit(2);
}

let ids: number[] = [];
let at: number[] = [];
let reportTimer: NodeJS.Timeout | null = null;

function send(message: SinkToParent): void {
  if (process.connected) process.send?.(message);
}

function report(): void {
  if (reportTimer) clearTimeout(reportTimer);
  reportTimer = null;
  if (ids.length === 0) return;
  send({ type: 'received', ids, at });
  ids = [];
  at = [];
}

const sink = new SmtpSink((benchId, receivedAtMs) => {
  ids.push(benchId);
  at.push(receivedAtMs);
  reportTimer ??= setTimeout(report, REPORT_EVERY_MS);
});

process.on('message', (message: ParentToSink) => {
  if (message.type === 'stats') {
    report();
    send({ type: 'stats', stats: sink.stats });
  } else if (message.type === 'stop') {
    report();
    void sink.close().then(() => process.exit(0));
  }
});
// The parent is gone (it crashed or was killed): nobody will read what the sink counts.
process.on('disconnect', () => process.exit(0));

const port = await sink.listen(0);
send({ type: 'listening', port });
