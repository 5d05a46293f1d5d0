/**
 * The delivery stage's own thread (delivery.stageThread; started by stage-on-thread.ts). The
 * spool's commits and the whole stage run here, on this thread's own store connection (with its
 * own WalSync): each message the submission server accepted is committed and synced, acknowledged
 * to the main thread (which then answers 250), and delivered from memory; then the claims, the
 * outcome commits, the DNS resolver and the SMTP client. The main thread keeps the SMTP dialogue.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { openStore } from '../store/database.js';
import { Spool, type SpoolMessage } from '../store/spool.js';
import { StoreHealth } from '../store/store-health.js';
import { WalSync } from '../store/wal-sync.js';
import { useWriteLock, WriteLock } from '../store/write-lock.js';
import { deliveryDns, startDelivery } from './index.js';
import type { FromStageThread, StageThreadData, ThreadStoreStats, ToStageThread } from './stage-on-thread.js';

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
// Checks the file before each commit and probes writes while they fail; the main thread's own
// watch rescues a lost store, so this one does not copy it a second time.
const storeHealth = new StoreHealth(db, config.store.path, logger.child({ stage: 'store', thread: 'delivery' }), undefined, false).watch();
const walSync = config.store.synchronous === 'FULL' ? new WalSync(config.store.path) : null;
const spool = new Spool(db, config.store.groupCommitMaxMessages, walSync);
const dns = deliveryDns(config.delivery, logger);
const stage = startDelivery(config, db, data.verp, data.unsubscribe, logger, walSync, dns);
spool.onCommitted(() => stage.wake());

const storeStats = (): ThreadStoreStats => ({ ...spool.stats, walSyncs: walSync?.syncs ?? 0 });

/** The main thread's /healthz and MAIL FROM read this thread's store problems too. */
let reportedProblem: string | null = null;
function reportStoreProblem(): void {
  const problem = storeHealth.problem();
  if ((problem?.cause ?? null) === reportedProblem) return;
  reportedProblem = problem?.cause ?? null;
  post({ type: 'store', problem });
}

// Every message of one commit is acknowledged in one message to the main thread.
let committed: number[] = [];
function acknowledge(id: number): void {
  committed.push(id);
  if (committed.length > 1) return;
  queueMicrotask(() => {
    post({ type: 'committed', ids: committed, stats: storeStats() });
    committed = [];
    reportStoreProblem();
  });
}

function enqueue(id: number, message: SpoolMessage): void {
  // A Buffer crosses threads as a plain Uint8Array.
  const raw = Buffer.from(message.raw.buffer, message.raw.byteOffset, message.raw.byteLength);
  spool.enqueue({ ...message, raw }).then(
    () => acknowledge(id),
    (error: Error) => {
      post({ type: 'refused', id, error: error.message });
      reportStoreProblem();
    },
  );
}

// The admin server shows the resolver's health; it reads the last status sent here, after every
// canary check (before the mail it deferred is recorded) and once a second.
const sendDnsStatus = (): void => post({ type: 'dns', status: dns.health.status() });
dns.health.onChecked(sendDnsStatus);
const dnsTimer = setInterval(() => {
  sendDnsStatus();
  // The watch's probe write may have found the disk writable again while no mail came.
  reportStoreProblem();
}, 1_000);
sendDnsStatus();
post({ type: 'started' });

port.on('message', (message: ToStageThread) => {
  if (message.type === 'enqueue') return enqueue(message.id, message.message);
  clearInterval(dnsTimer);
  // What the main thread sent before it stopped is committed (and acknowledged) first.
  spool.close();
  void stage
    .stop(message.timeoutMs)
    .then(async () => {
      await walSync?.close();
      storeHealth.stop();
      db.close();
    })
    .then(
      () => post({ type: 'stopped', stats: storeStats() }),
      (error: Error) => post({ type: 'stopped', error: error.message, stats: storeStats() }),
    )
    .finally(() => port.close());
});

