import type { DeliveryConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';
import { ConnectionPool } from './connection-pool.js';
import type { SendingSource } from './ip-pools.js';
import type { NextHop } from './next-hop.js';
import { sendBatch, type BatchReport, type DeliveryBatch } from './send-batch.js';

/** Sends a batch over SMTP and reports what each host and recipient answered; no store access. */
export interface BatchSender {
  send(batch: DeliveryBatch, nextHop: NextHop, source: SendingSource): Promise<BatchReport>;
  /** Closes kept-open connections; transactions under way are cut off. */
  close(): Promise<void>;
}

/** The SMTP client on the calling thread. */
export class InlineSender implements BatchSender {
  private readonly connections: ConnectionPool;

  constructor(settings: DeliveryConfig, heloName: string, log: Logger) {
    this.connections = new ConnectionPool(settings, heloName, log);
  }

  send(batch: DeliveryBatch, nextHop: NextHop, source: SendingSource): Promise<BatchReport> {
    return sendBatch(batch, nextHop, this.connections, source);
  }

  close(): Promise<void> {
    this.connections.close();
    return Promise.resolve();
  }
}
