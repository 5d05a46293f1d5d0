import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import type { ClaimedBatch, ClaimResult, DeliveryState } from '../src/delivery/delivery-state.js';
import type { NextHopResolver } from '../src/delivery/next-hop.js';
import { DeliveryScheduler } from '../src/delivery/scheduler.js';
import type { BatchReport, DeliveryBatch } from '../src/delivery/send-batch.js';
import type { BatchSender } from '../src/delivery/sender.js';
import { createLogger } from '../src/logger.js';

function claimed(n: number): ClaimedBatch {
  return { messageId: n, queueId: `Q${n}`, domain: 'example.test', mailFrom: '', authUser: null, receivedAt: new Date(), recipients: [{ id: n, address: `r${n}@example.test`, attempts: 0 }] };
}

/** A store whose outcome commits wait until released: the scheduler must not wait on them to send. */
class SlowCommitState {
  readonly recorded: number[] = [];
  private readonly commits: Array<() => void> = [];
  private due: ClaimedBatch[];

  constructor(batches: ClaimedBatch[]) {
    this.due = batches;
  }

  recoverInFlight(): number {
    return 0;
  }

  storeProblem(): null {
    return null;
  }

  claimDue(): ClaimResult {
    const batches = this.due;
    this.due = [];
    return { batches, suppressed: 0, expired: 0 };
  }

  contentOf(): { received: Buffer; raw: Buffer } {
    return { received: Buffer.from('Received: test\r\n'), raw: Buffer.from('Subject: t\r\n\r\nbody\r\n') };
  }

  record(batch: DeliveryBatch): Promise<void> {
    return new Promise((resolve) =>
      this.commits.push(() => {
        this.recorded.push(batch.messageId);
        resolve();
      }),
    );
  }

  commitAll(): void {
    for (const commit of this.commits.splice(0)) commit();
  }
}

class CountingSender implements BatchSender {
  readonly sent: number[] = [];

  send(batch: DeliveryBatch): Promise<BatchReport> {
    this.sent.push(batch.messageId);
    const at = { startedAt: new Date(), durationMs: 0, mxHost: 'mx.example.test', mxIp: '127.0.0.1', localIp: null };
    return Promise.resolve({ failedHosts: [], outcomes: batch.recipients.map((r) => ({ recipientId: r.id, delivered: true as const, reply: '250 ok', at })) });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

const nextHops = { lookup: () => Promise.resolve({ nextHop: { hosts: [], port: 25, secure: false, requireTLS: false, verifyCertificate: false, auth: null } }) };
const verp = { domain: 'bounces.example.test', prefix: 'b', secret: 'secret', maxAgeDays: 30 };
const unsubscribe = { enabled: false, url: null, prefix: 'u', domain: 'example.test', secret: 'secret', maxAgeDays: 30 };

async function until(condition: () => boolean): Promise<void> {
  for (let n = 0; n < 200 && !condition(); n++) await new Promise((resolve) => setTimeout(resolve, 5));
}

describe('delivery scheduler', () => {
  it('sends the next batch of a domain while the last one\'s outcome is still being committed', async () => {
    const config = loadConfig({ env: {} });
    config.delivery.perDomainConcurrency = 1;
    const state = new SlowCommitState([claimed(1), claimed(2), claimed(3)]);
    const sender = new CountingSender();
    const scheduler = new DeliveryScheduler(config, state as unknown as DeliveryState, nextHops as unknown as NextHopResolver, sender, verp, unsubscribe, createLogger('silent'));
    scheduler.start();
    // One slot for the domain, and no commit done: all three go out one after the other anyway.
    await until(() => sender.sent.length === 3);
    expect(sender.sent).toEqual([1, 2, 3]);
    expect(state.recorded).toEqual([]);
    // stop waits for the outcomes of the transactions that ended.
    let stopped = false;
    const stopping = scheduler.stop(1000).then(() => {
      stopped = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(stopped).toBe(false);
    state.commitAll();
    await stopping;
    expect(state.recorded).toEqual([1, 2, 3]);
  });
});
