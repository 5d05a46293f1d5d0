import type { SpoolMessage } from '../../src/store/spool.js';
import { newQueueId } from '../../src/store/queue-id.js';

/** A message as the submission server hands it to the spool, to one address unless told otherwise. */
export function spoolMessage(address: string, fields: Partial<SpoolMessage> = {}): SpoolMessage {
  const subject = fields.subject ?? `to ${address}`;
  return {
    queueId: newQueueId(),
    receivedAt: new Date(Date.UTC(2026, 10, 22, 12)),
    mailFrom: 'app@shop.example',
    recipients: [{ address, domain: address.slice(address.lastIndexOf('@') + 1) }],
    clientIp: '127.0.0.1',
    clientHelo: 'client.test',
    authUser: null,
    protocol: 'ESMTP',
    messageIdHeader: null,
    fromDomain: 'shop.example',
    subject,
    campaignId: null,
    tags: [],
    variables: null,
    receivedHeader: 'Received: from client.test\r\n',
    raw: Buffer.from(`Subject: ${subject}\r\n\r\nhello\r\n`),
    ...fields,
  };
}
