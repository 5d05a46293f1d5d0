import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import type { VerpSettings } from '../bounces/verp.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../logger.js';
import { threadScript } from './thread-script.js';
import type { MessageSpool, SpoolMessage } from '../store/spool.js';
import type { StoreHealth, StoreProblem } from '../store/store-health.js';
import type { WriteLock } from '../store/write-lock.js';
import type { UnsubscribeSettings } from '../unsubscribe/index.js';
import type { DeliveryStage } from './index.js';
import type { ResolverStatus } from './resolver-health.js';

export interface StageThreadData {
  config: Config;
  verp: VerpSettings;
  unsubscribe: UnsubscribeSettings;
  /** The main thread's WriteLock cell, shared so both threads' write transactions take turns. */
  writeLock: SharedArrayBuffer;
  logLevel: string;
}

export type ToStageThread = { type: 'enqueue'; id: number; message: SpoolMessage } | { type: 'stop'; timeoutMs: number };

export interface ThreadStoreStats {
  messages: number;
  commits: number;
  /** Always null: the thread's commits sync the WAL inside COMMIT (see stage-thread.ts), not through WalSync. */
  walSyncs: number | null;
}

export type FromStageThread =
  | { type: 'started' }
  | { type: 'log'; line: string }
  | { type: 'dns'; status: ResolverStatus }
  /** Enqueued messages now committed and synced; their 250s may go out. */
  | { type: 'committed'; ids: number[]; stats: ThreadStoreStats }
  | { type: 'refused'; id: number; error: string }
  /** The thread's StoreHealth changed its mind (a failing write, the store lost, or fine again). */
  | { type: 'store'; problem: StoreProblem | null }
  | { type: 'stopped'; error?: string; stats: ThreadStoreStats };

export interface ThreadedDeliveryStage extends DeliveryStage {
  /** The submission server's spool: each message is committed on the thread (see above). */
  spool: MessageSpool;
  /** The thread's spool commits so far (at stop, its final count). */
  storeStats(): ThreadStoreStats;
  /** The delivery resolver's health as the thread last reported it (after each check, and every second). */
  dnsStatus(): ResolverStatus;
  /** The thread that last started running the stage (a new one once it replaced a dead one): for diagnostics and tests. */
  thread(): Worker;
}

/** A thread that dies is replaced after this long; what it had claimed is queued again at its start. */
const RESTART_DELAY_MS = 1_000;
/** Past the stop's own timeout, how long the thread gets to close its store before it is ended. */
const STOP_GRACE_MS = 10_000;

export interface DeliveryThreadOptions {
  config: Config;
  verp: VerpSettings;
  unsubscribe: UnsubscribeSettings;
  /** The main thread's lock for its own write transactions (the admin API, inbound reports). */
  writeLock: WriteLock;
  /** The main connection's health: the thread's store problems are reported to it, for /healthz and MAIL FROM. */
  storeHealth: StoreHealth;
  logger: Logger;
}

/**
 * Runs the delivery stage on its own thread (delivery.stageThread), and the spool's commits with
 * it. With one connection per message, the main thread's event loop was the limit (measured
 * 95-98% busy at ~940 msg/s with 10 clients): a third of its time went to delivery (claims,
 * outcome commits, the SMTP client), and of the rest about a quarter to inserting and committing
 * each accepted message. On a thread of its own, with its own store connection, all of that runs
 * beside the SMTP dialogue instead of between its replies: the submission server hands each
 * message over (`spool` below) and answers 250 once the thread says it is committed and synced,
 * exactly the durability of the spool on the main thread; the thread then delivers it from
 * memory. The two threads' write transactions begin IMMEDIATE and take turns through a shared
 * WriteLock (store/write-lock.ts).
 *
 * Resolves once the thread has opened the store and started; rejects if it cannot.
 */
export async function startDeliveryThread({ config, verp, unsubscribe, writeLock, storeHealth, logger }: DeliveryThreadOptions): Promise<ThreadedDeliveryStage> {
  const log = logger.child({ stage: 'delivery' });
  // The thread's log lines are written to the relay's own destination (stdout, or a test's stream).
  const destination = (logger as unknown as Record<symbol, { write(line: string): void } | undefined>)[pino.symbols.streamSym];
  const data: StageThreadData = {
    // The stage is off the main thread already: its SMTP client runs inline there.
    config: { ...config, delivery: { ...config.delivery, sendThread: false } },
    verp,
    unsubscribe,
    writeLock: writeLock.buffer,
    logLevel: logger.level,
  };
  let worker: Worker;
  /** The last thread that said it started. */
  let running: Worker | null = null;
  let dnsStatus: ResolverStatus | null = null;
  let stopping = false;
  /** Between a thread's exit and its replacement's start there is none to stop. */
  let alive = false;
  let stopped: (() => void) | null = null;
  /** Messages sent to the thread for their commit, by id, until it answers. */
  const enqueued = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();
  let nextEnqueueId = 1;
  let storeStats: ThreadStoreStats = { messages: 0, commits: 0, walSyncs: null };
  let spoolClosed = false;

  function start(): Promise<void> {
    // A young generation of 12 MiB instead of V8's default (up to 48): the thread's garbage is
    // short-lived message copies, and the relay's peak RSS at 2,000 msg/s fell by about 15 MiB
    // with no change in throughput (interleaved runs).
    const thread = new Worker(threadScript('stage-thread.js', 'delivery.stageThread'), { workerData: data, resourceLimits: { maxYoungGenerationSizeMb: 12 } });
    worker = thread;
    return new Promise((resolve, reject) => {
      let started = false;
      thread.on('message', (message: FromStageThread) => {
        switch (message.type) {
          case 'log':
            destination?.write(message.line);
            return;
          case 'dns':
            dnsStatus = message.status;
            return;
          case 'started':
            started = true;
            alive = true;
            running = thread;
            resolve();
            return;
          case 'committed':
            storeStats = message.stats;
            for (const id of message.ids) {
              enqueued.get(id)?.resolve();
              enqueued.delete(id);
            }
            return;
          case 'refused':
            enqueued.get(message.id)?.reject(new Error(message.error));
            enqueued.delete(message.id);
            return;
          case 'store':
            storeHealth.reportedElsewhere(message.problem);
            return;
          case 'stopped':
            storeStats = message.stats;
            if (message.error) log.error({ err: message.error }, 'the delivery thread could not close its store cleanly');
            return;
        }
      });
      thread.on('error', (error) => {
        if (!started) return reject(error);
        log.error({ err: error }, 'the delivery thread failed; a new one starts in a second and queues again what it had claimed');
      });
      thread.on('exit', (code) => {
        alive = false;
        // Committed or not, these were never acknowledged: their clients get a 451 and send again.
        for (const waiting of enqueued.values()) waiting.reject(new Error(`the delivery thread ended (code ${code}) before the message was committed`));
        enqueued.clear();
        if (stopping) return stopped?.();
        if (!started) return reject(new Error(`the delivery thread exited while starting (code ${code})`));
        log.error({ code }, 'the delivery thread exited; a new one starts in a second and queues again what it had claimed');
        setTimeout(() => {
          if (stopping) return stopped?.();
          // A lost store (deleted or replaced) is not reopened: the thread would find no file, or another one.
          const lost = storeHealth.lostNow();
          if (lost) return log.error({ store: config.store.path, problem: lost.cause }, 'the delivery thread is not restarted: the store is lost; restart the relay');
          start().catch((error: Error) => log.error({ err: error }, 'the delivery thread could not be restarted; delivery stays stopped until the relay restarts'));
        }, RESTART_DELAY_MS).unref();
      });
    });
  }

  await start();
  // The thread sends its resolver's status before it says it started, and it is never cleared.
  if (!dnsStatus) throw new Error('the delivery thread started without reporting its resolver status');
  log.info({ thread: 'delivery stage' }, 'delivery runs on its own thread');
  const spool: MessageSpool = {
    enqueue(message) {
      if (spoolClosed) return Promise.reject(new Error('the store is closed'));
      if (!alive) return Promise.reject(new Error('the delivery thread is restarting; the message was not stored'));
      const id = nextEnqueueId++;
      return new Promise((resolve, reject) => {
        enqueued.set(id, { resolve, reject });
        worker.postMessage({ type: 'enqueue', id, message } satisfies ToStageThread);
      });
    },
    storeProblem: () => storeHealth.problem(),
    // What was sent before is committed by the thread when it stops (its spool's close).
    close: () => {
      spoolClosed = true;
    },
    get stats() {
      return { messages: storeStats.messages, commits: storeStats.commits };
    },
  };
  return {
    spool,
    storeStats: () => storeStats,
    // The thread's spool wakes its scheduler after each commit itself.
    wake: () => undefined,
    dnsStatus: () => dnsStatus as ResolverStatus,
    thread: () => running ?? worker,
    stop: async (timeoutMs) => {
      stopping = true;
      if (!alive) return;
      const exited = new Promise<void>((resolve) => (stopped = resolve));
      worker.postMessage({ type: 'stop', timeoutMs } satisfies ToStageThread);
      const timer = setTimeout(() => {
        log.warn('the delivery thread did not stop in time; it is ended, and what it had claimed is queued again at the next start');
        void worker.terminate();
      }, timeoutMs + STOP_GRACE_MS);
      await exited;
      clearTimeout(timer);
    },
  };
}
