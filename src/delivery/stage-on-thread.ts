import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import type { VerpSettings } from '../bounces/verp.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../logger.js';
import { threadScript } from './thread-script.js';
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

export type ToStageThread = { type: 'wake' } | { type: 'stop'; timeoutMs: number };

export type FromStageThread =
  | { type: 'started' }
  | { type: 'log'; line: string }
  | { type: 'dns'; status: ResolverStatus }
  | { type: 'stopped'; error?: string };

export interface ThreadedDeliveryStage extends DeliveryStage {
  /** The delivery resolver's health as the thread last reported it (after each check, and every second). */
  dnsStatus(): ResolverStatus;
  /** The thread running the stage now (a new one after a crash): for diagnostics and tests. */
  thread(): Worker;
}

/** A thread that dies is replaced after this long; what it had claimed is queued again at its start. */
const RESTART_DELAY_MS = 1_000;
/** Past the stop's own timeout, how long the thread gets to close its store before it is ended. */
const STOP_GRACE_MS = 10_000;

/**
 * Runs the delivery stage on its own thread (delivery.stageThread). With one connection per
 * message, the main thread's event loop was the limit (measured 95-98% busy at ~940 msg/s with
 * 10 clients), and a third of its time went to delivery: claims, outcome commits, the SMTP client.
 * On a thread of its own, with its own store connection, delivery runs beside the submission
 * server instead of between its replies. The two threads' write transactions take turns through
 * a shared WriteLock (store/write-lock.ts), and begin IMMEDIATE (store/database.ts).
 *
 * Resolves once the thread has opened the store and started; rejects if it cannot.
 */
export async function startDeliveryThread(
  config: Config,
  verp: VerpSettings,
  unsubscribe: UnsubscribeSettings,
  writeLock: WriteLock,
  logger: Logger,
): Promise<ThreadedDeliveryStage> {
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
  let dnsStatus: ResolverStatus | null = null;
  let stopping = false;
  /** Between a thread's exit and its replacement's start there is none to stop. */
  let alive = false;
  let stopped: (() => void) | null = null;

  function start(): Promise<void> {
    const thread = new Worker(threadScript('stage-thread.js', 'delivery.stageThread'), { workerData: data });
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
            resolve();
            return;
          case 'stopped':
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
        if (stopping) return stopped?.();
        if (!started) return reject(new Error(`the delivery thread exited while starting (code ${code})`));
        log.error({ code }, 'the delivery thread exited; a new one starts in a second and queues again what it had claimed');
        setTimeout(() => {
          if (stopping) return stopped?.();
          start().catch((error: Error) => log.error({ err: error }, 'the delivery thread could not be restarted; delivery stays stopped until the relay restarts'));
        }, RESTART_DELAY_MS).unref();
      });
    });
  }

  await start();
  // The thread sends its resolver's status before it says it started.
  const firstStatus = dnsStatus as ResolverStatus | null;
  if (!firstStatus) throw new Error('the delivery thread started without reporting its resolver status');
  log.info({ thread: 'delivery stage' }, 'delivery runs on its own thread');
  return {
    wake: () => {
      if (!stopping) worker.postMessage({ type: 'wake' } satisfies ToStageThread);
    },
    dnsStatus: () => dnsStatus ?? firstStatus,
    thread: () => worker,
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
