/**
 * The delivery SMTP client's thread (see thread-sender.ts): it receives batches with their next
 * hop, sends them with its own connection pool and posts each report back. It never touches the
 * store: every read and write of recipient state stays on the main thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createLogger } from '../logger.js';
import { InlineSender } from './sender.js';
import type { SenderThreadData, ToSenderThread, FromSenderThread } from './thread-sender.js';

const port = parentPort;
if (!port) throw new Error('sender-thread.js runs as a worker thread of the relay, not on its own');
const data = workerData as SenderThreadData;
const log = createLogger(data.logLevel).child({ stage: 'delivery', thread: 'sender' });
const sender = new InlineSender(data.settings, data.heloName, log);

function reply(message: FromSenderThread): void {
  port?.postMessage(message);
}

port.on('message', (message: ToSenderThread) => {
  if (message.type === 'close') {
    void sender.close().then(() => reply({ type: 'closed' }));
    return;
  }
  const { id, batch, nextHop, source } = message;
  // A Buffer crosses threads as a plain Uint8Array.
  const content = Buffer.from(batch.content.buffer, batch.content.byteOffset, batch.content.byteLength);
  sender.send({ ...batch, content }, nextHop, source).then(
    (report) => reply({ type: 'report', id, report }),
    (error: unknown) => reply({ type: 'failed', id, message: (error as Error).message }),
  );
});
