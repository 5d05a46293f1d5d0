/**
 * The delivery stage's own thread (delivery.stageThread; started by stage-on-thread.ts). The
 * whole stage runs here: the scheduler, the claims and outcome commits on this thread's own store
 * connection (with its own WalSync), the DNS resolver and the SMTP client. The main thread keeps
 * the submission server and its commits, and only tells this thread when new mail was committed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { openStore } from '../store/database.js';
import { WalSync } from '../store/wal-sync.js';
import { useWriteLock, WriteLock } from '../store/write-lock.js';
import { deliveryDns, startDelivery } from './index.js';
import type { FromStageThread, StageThreadData, ToStageThread } from './stage-on-thread.js';

const port = parentPort;
if (!port) throw new Error('stage-thread.js runs as a worker thread of the relay, not on its own');
const data = workerData as StageThreadData;
const { config } = data;

function post(message: FromStageThread): void {
  port?.postMessage(message);
}

// Each line goes to the main thread, which writes it to the relay's own log destination, so the
// log stays one stream in one order whatever thread wrote a line.
const logger = pino(
  { level: data.logLevel, base: { service: 'rebound' }, timestamp: pino.stdTimeFunctions.isoTime },
  { write: (line: string) => post({ type: 'log', line }) },
);

const db = openStore(config.store.path, { synchronous: config.store.synchronous });
useWriteLock(db, new WriteLock(data.writeLock));
const walSync = config.store.synchronous === 'FULL' ? new WalSync(config.store.path) : null;
const dns = deliveryDns(config.delivery, logger);
const stage = startDelivery(config, db, data.verp, data.unsubscribe, logger, walSync, dns);

// The admin server shows the resolver's health; it reads the last status sent here, after every
// canary check (before the mail it deferred is recorded) and once a second.
const sendDnsStatus = (): void => post({ type: 'dns', status: dns.health.status() });
dns.health.onChecked(sendDnsStatus);
const dnsTimer = setInterval(sendDnsStatus, 1_000);
sendDnsStatus();
post({ type: 'started' });

port.on('message', (message: ToStageThread) => {
  if (message.type === 'wake') return stage.wake();
  clearInterval(dnsTimer);
  void stage
    .stop(message.timeoutMs)
    .then(async () => {
      await walSync?.close();
      db.close();
    })
    .then(
      () => post({ type: 'stopped' }),
      (error: Error) => post({ type: 'stopped', error: error.message }),
    )
    .finally(() => port.close());
});

