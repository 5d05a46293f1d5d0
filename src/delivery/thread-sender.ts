import { Worker } from 'node:worker_threads';
import type { DeliveryConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';
import { threadScript } from './thread-script.js';
import type { BatchSender } from './sender.js';
import type { SendingSource } from './ip-pools.js';
import type { NextHop } from './next-hop.js';
import type { BatchReport, DeliveryBatch } from './send-batch.js';

export interface SenderThreadData {
  settings: DeliveryConfig;
  heloName: string;
  logLevel: string;
}

export type ToSenderThread = { type: 'send'; id: number; batch: DeliveryBatch; nextHop: NextHop; source: SendingSource } | { type: 'close' };

export type FromSenderThread = { type: 'report'; id: number; report: BatchReport } | { type: 'failed'; id: number; message: string } | { type: 'closed' };

interface InFlight {
  resolve: (report: BatchReport) => void;
  reject: (error: Error) => void;
}

const CLOSE_TIMEOUT_MS = 5_000;

/**
 * The SMTP client on its own thread. The relay's main thread runs the submission server and all
 * store work; with the SMTP client beside it, one busy thread was the end-to-end limit (measured:
 * main thread 83% busy at ~1,000 msg/s). Here the client's socket and protocol work runs in
 * parallel, and the main thread only hands each batch over and records its report.
 */
export class ThreadSender implements BatchSender {
  private worker: Worker | null = null;
  private readonly inFlight = new Map<number, InFlight>();
  private nextId = 1;
  private closing: Promise<void> | null = null;

  constructor(
    private readonly data: SenderThreadData,
    private readonly log: Logger,
  ) {
    this.worker = this.startWorker();
  }

  send(batch: DeliveryBatch, nextHop: NextHop, source: SendingSource): Promise<BatchReport> {
    if (this.closing) return Promise.reject(new Error('delivery is stopping'));
    // A thread that died is replaced for the next batch; the batches it had were deferred.
    this.worker ??= this.startWorker();
    const id = this.nextId++;
    const worker = this.worker;
    return new Promise((resolve, reject) => {
      this.inFlight.set(id, { resolve, reject });
      worker.postMessage({ type: 'send', id, batch, nextHop, source } satisfies ToSenderThread);
    });
  }

  close(): Promise<void> {
    this.closing ??= this.closeWorker();
    return this.closing;
  }

  private async closeWorker(): Promise<void> {
    const worker = this.worker;
    if (!worker) return;
    const closed = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
      worker.on('message', (message: FromSenderThread) => {
        if (message.type === 'closed') {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    worker.postMessage({ type: 'close' } satisfies ToSenderThread);
    await closed;
    await worker.terminate();
    this.failAll(new Error('delivery stopped before the transaction ended'));
  }

  private startWorker(): Worker {
    const worker = new Worker(threadScript('sender-thread.js', 'delivery.sendThread'), { workerData: this.data });
    worker.on('message', (message: FromSenderThread) => {
      if (message.type === 'closed') return;
      const waiting = this.inFlight.get(message.id);
      if (!waiting) return;
      this.inFlight.delete(message.id);
      if (message.type === 'report') waiting.resolve(message.report);
      else waiting.reject(new Error(message.message));
    });
    worker.on('error', (error) => this.log.error({ err: error }, 'the delivery sender thread failed; its batches are deferred and a new thread takes the next ones'));
    worker.on('exit', (code) => {
      if (this.worker === worker) this.worker = null;
      if (!this.closing) this.log.warn({ code }, 'the delivery sender thread exited');
      this.failAll(new Error(`the delivery sender thread exited (code ${code})`));
    });
    return worker;
  }

  private failAll(error: Error): void {
    for (const waiting of this.inFlight.values()) waiting.reject(error);
    this.inFlight.clear();
  }
}
