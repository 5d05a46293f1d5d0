/**
 * The delivery stage's own thread (delivery.stageThread; started by stage-on-thread.ts). The
 * spool's commits and the whole stage run here, on this thread's own store connection (its
 * commits sync inline, see below): each message the submission server accepted is committed and synced, acknowledged
 * to the main thread (which then answers 250), and delivered from memory; then the claims, the
 * outcome commits, the DNS resolver and the SMTP client. The main thread keeps the SMTP dialogue.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { pino } from 'pino';
import { openStore } from '../store/database.js';
import { Spool, type SpoolMessage } from '../store/spool.js';
import { StoreHealth } from '../store/store-health.js';
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

// The main thread opened (and created) the store; a thread restarted after the file was deleted
// must fail to start, not commit mail into a new empty file at the same path.
const db = openStore(config.store.path, { synchronous: config.store.synchronous, mustExist: true });
useWriteLock(db, new WriteLock(data.writeLock));
// Checks the file before each commit and probes writes while they fail; the main thread's own
// watch rescues a lost store, so this one does not copy it a second time.
const storeHealth = new StoreHealth(db, config.store.path, logger.child({ stage: 'store', thread: 'delivery' }), undefined, false).watch();
// No WalSync here: under FULL each commit syncs the WAL inside COMMIT, on this thread. WalSync
// keeps the main thread's event loop free of the disk, but it costs a stat and an fdatasync on
// libuv's pool and two returns through this thread's busy event loop (1.6 ms median from commit
// to synced, for an fdatasync of 0.17 ms here), and a spool commit made while a delivery
// commit's sync ran waited for the one after it. Measured in interleaved runs (smtp-source, one
// message per connection): end of DATA to 250 p50 from 2.7 to 1.7 ms; accepted from 1,560-1,600
// to 1,760-1,830 msg/s with 10 clients and from 2,510-2,520 to 2,670-2,710 with 50.
const spool = new Spool(db, config.store.groupCommitMaxMessages);
const dns = deliveryDns(config.delivery, logger);
const stage = startDelivery(config, db, data.verp, data.unsubscribe, logger, null, dns);
spool.onCommitted(() => stage.wake());

const storeStats = (): ThreadStoreStats => ({ ...spool.stats, walSyncs: null });

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
      storeHealth.stop();
      db.close();
    })
    .then(
      () => post({ type: 'stopped', stats: storeStats() }),
      (error: Error) => post({ type: 'stopped', error: error.message, stats: storeStats() }),
    )
    .finally(() => port.close());
});

