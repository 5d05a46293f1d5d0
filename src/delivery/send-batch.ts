import { classifyReply, type Classification, type SmtpStage } from '../bounces/classifier.js';
import { localFailure } from './failure.js';
import type { ConnectionPool, SmtpError } from './connection-pool.js';
import type { SendingSource } from './ip-pools.js';
import type { NextHop } from './next-hop.js';

/** Recipients of one message at one domain, sent in one SMTP transaction. */
export interface DeliveryBatch {
  messageId: number;
  queueId: string;
  domain: string;
  mailFrom: string;
  receivedAt: Date;
  /** attempts: dispatches made before this one. */
  recipients: Array<{ id: number; address: string; attempts: number }>;
  /** Received header + the message as received: the bytes to send. */
  content: Buffer;
}

/** One try at one host, as the attempts table keeps it. */
export interface HostTry {
  startedAt: Date;
  durationMs: number;
  mxHost: string | null;
  mxIp: string | null;
  localIp: string | null;
}

export type RecipientOutcome =
  | { recipientId: number; delivered: true; reply: string; at: HostTry }
  | {
      recipientId: number;
      delivered: false;
      failure: Classification;
      at: HostTry;
      retryInNewTransaction: boolean;
      /** Traffic shaping (shaper.ts): not tried before this, whatever the retry schedule says. */
      notBefore?: Date;
      /** Traffic shaping held it back unsent: no attempt is counted or written. */
      held?: boolean;
    };

export interface BatchReport {
  /** Hosts that failed before any recipient was answered (the batch moved on to the next host). */
  failedHosts: Array<{ at: HostTry; failure: Classification }>;
  outcomes: RecipientOutcome[];
}

/** Commands after which the host answered the transaction itself; before them, try the next host. */
const TRANSACTION_COMMANDS = new Set(['MAIL FROM', 'RCPT TO', 'DATA']);

/**
 * The SMTP stage of a reply, from the command nodemailer names on its error: a refusal at DATA came
 * after RCPT TO accepted the address, so the classifier reads it as about the message.
 */
export function stageOfCommand(command: string | undefined): SmtpStage | null {
  if (command === 'RCPT TO') return 'rcpt';
  if (command === 'DATA') return 'data';
  if (command === 'MAIL FROM') return 'mail';
  if (command === 'CONN' || command === 'EHLO' || command === 'HELO' || command === 'LHLO' || command === 'STARTTLS') return 'connection';
  return null;
}

/**
 * An SMTP error's reply, classified with the stage it answered and the MX host that gave it (a
 * provider's own codes, config/remote-host-rules.json, mean what that provider says).
 */
function classifyResponse(response: string, command: string | undefined, mxHost: string | null): Classification {
  return classifyReply({ text: response, stage: stageOfCommand(command), remoteHost: mxHost });
}

function isHostLevel(error: SmtpError): boolean {
  return !TRANSACTION_COMMANDS.has(error.command ?? '');
}

/** Names what went wrong with a host that never got to the transaction. */
function hostFailure(error: SmtpError, mxHost: string | null): Classification {
  if (error.response && error.responseCode) {
    // The host answered (a 421 greeting, a refused EHLO or AUTH): its words, but a host-level
    // refusal is never the recipient's fault, so it is retried rather than bounced.
    const classified = classifyResponse(error.response, error.command, mxHost);
    if (error.command?.startsWith('AUTH')) return { ...classified, severity: 'temporary', type: 'soft', category: 'bad-configuration' };
    return classified.severity === 'temporary' ? classified : { ...classified, severity: 'temporary' };
  }
  // The client refuses, before sending it, a message larger than the host's announced SIZE.
  if (error.code === 'EMESSAGE') return classifyReply(`552 5.3.4 ${error.message}`);
  const detail = `${error.code ?? 'error'}: ${error.message}`;
  if (error.code === 'ETIMEDOUT') return localFailure('temporary', 'no-answer-from-host', detail, null, '4.4.1');
  if (error.code === 'EAUTH') return localFailure('temporary', 'bad-configuration', detail, null, '4.7.0');
  return localFailure('temporary', 'bad-connection', detail, null, '4.4.1');
}

/** STARTTLS missing, refused or with a certificate that does not verify, where a TLS policy requires it. */
function requiredTlsFailure(error: SmtpError, mxHost: string, nextHop: NextHop, verified: boolean): Classification {
  const { level, source } = nextHop.tls;
  const reply = error.response ? ` (${error.response})` : '';
  const certificate = /certificate|self[- ]signed|CERT|altnames|issuer/i.test(`${error.message} ${(error as { reason?: string }).reason ?? ''}`);
  const what = verified && certificate ? `no certificate valid for ${mxHost}` : `no STARTTLS`;
  // X.7.10 "encryption needed" (RFC 5248); X.7.5 a cryptographic failure, for a certificate refused.
  const enhancedCode = verified && certificate ? '4.7.5' : '4.7.10';
  return localFailure('temporary', 'bad-connection', `TLS required (${level}, ${source}): ${what}: ${error.message}${reply}`, null, enhancedCode);
}

function elapsedSince(startedAt: Date): number {
  return Date.now() - startedAt.getTime();
}

/**
 * Sends one batch to its next hop: each host in order (and each of its addresses) until one
 * answers the transaction. A host that refuses the connection, times out, greets with an error
 * or fails TLS is skipped (RFC 5321 5.1); once a host answers MAIL/RCPT/DATA, its replies are
 * the outcome, recipient by recipient.
 */
export async function sendBatch(batch: DeliveryBatch, nextHop: NextHop, connections: ConnectionPool, source: SendingSource): Promise<BatchReport> {
  const { localIp, heloName } = source;
  const failedHosts: BatchReport['failedHosts'] = [];
  const { level } = nextHop.tls;
  const requireTLS = nextHop.requireTLS || level === 'encrypt' || level === 'verify';
  const verifyCertificate = nextHop.verifyCertificate || level === 'verify';
  for (const host of nextHop.hosts) {
    for (const ip of host.addresses) {
      let plaintext = level === 'none' && !nextHop.secure;
      for (;;) {
        const at: HostTry = { startedAt: new Date(), durationMs: 0, mxHost: host.name, mxIp: ip, localIp };
        try {
          const envelope = { from: batch.mailFrom, to: batch.recipients.map((r) => r.address) };
          const sent = await connections.send({ hostName: host.name, ip, nextHop, localIp, heloName, plaintext, requireTLS, verifyCertificate }, envelope, batch.content);
          at.durationMs = elapsedSince(at.startedAt);
          return { failedHosts, outcomes: transactionOutcomes(batch, at, sent.response, sent.rejectedErrors, null) };
        } catch (caught) {
          const error = caught as SmtpError;
          at.durationMs = elapsedSince(at.startedAt);
          // Opportunistic STARTTLS that fails is retried in plaintext once, as Postfix does.
          if (error.code === 'ETLS' && !plaintext && !requireTLS && !nextHop.secure) {
            failedHosts.push({ at, failure: hostFailure(error, host.name) });
            plaintext = true;
            continue;
          }
          // TLS that a policy asks for never falls back to plaintext: the host is skipped, and
          // the reason names the policy so the operator sees why mail waits.
          if (error.code === 'ETLS' && requireTLS && nextHop.tls.level !== 'may') {
            failedHosts.push({ at, failure: requiredTlsFailure(error, host.name, nextHop, verifyCertificate) });
            break;
          }
          if (isHostLevel(error)) {
            failedHosts.push({ at, failure: hostFailure(error, host.name) });
            break;
          }
          return { failedHosts, outcomes: transactionOutcomes(batch, at, null, error.rejectedErrors ?? [], error) };
        }
      }
    }
  }
  // Every host failed before the transaction: the last failure speaks for the batch.
  const last = failedHosts[failedHosts.length - 1];
  const failure = last?.failure ?? localFailure('temporary', 'routing-errors', 'no host to try', null, '4.4.0');
  const at = last?.at ?? { startedAt: new Date(), durationMs: 0, mxHost: null, mxIp: null, localIp };
  return {
    failedHosts: failedHosts.slice(0, -1),
    outcomes: batch.recipients.map((r) => ({ recipientId: r.id, delivered: false, failure, at, retryInNewTransaction: false })),
  };
}

/**
 * Per-recipient outcomes of a transaction: a recipient refused at RCPT TO has its own reply; a
 * failure at MAIL FROM or DATA applies to every recipient that RCPT TO accepted.
 */
function transactionOutcomes(
  batch: DeliveryBatch,
  at: HostTry,
  deliveredReply: string | null,
  rejectedErrors: SmtpError[],
  transactionError: SmtpError | null,
): RecipientOutcome[] {
  const refusedAtRcpt = new Map<string, SmtpError>();
  for (const rejection of rejectedErrors) {
    if (rejection.recipient) refusedAtRcpt.set(rejection.recipient.toLowerCase(), rejection);
  }
  const someoneAccepted = refusedAtRcpt.size < batch.recipients.length;
  const transactionFailure = transactionError && transactionError.command !== 'RCPT TO' ? classifyError(transactionError, at.mxHost) : null;
  return batch.recipients.map((recipient): RecipientOutcome => {
    const refusal = refusedAtRcpt.get(recipient.address.toLowerCase());
    if (refusal) {
      const failure = classifyError(refusal, at.mxHost);
      return {
        recipientId: recipient.id,
        delivered: false,
        failure,
        at,
        // RFC 5321 4.5.3.1.10: the rest go in a new transaction, unless the host took nobody.
        retryInNewTransaction: (failure.retryInNewTransaction ?? false) && someoneAccepted,
      };
    }
    if (transactionFailure) return { recipientId: recipient.id, delivered: false, failure: transactionFailure, at, retryInNewTransaction: false };
    if (deliveredReply !== null) return { recipientId: recipient.id, delivered: true, reply: deliveredReply, at };
    // All recipients refused, and this one missing from the list: take the transaction's reply.
    const failure = transactionError ? classifyError(transactionError, at.mxHost) : localFailure('temporary', 'other', 'no reply for this recipient');
    return { recipientId: recipient.id, delivered: false, failure, at, retryInNewTransaction: false };
  });
}

function classifyError(error: SmtpError, mxHost: string | null): Classification {
  if (error.response) return classifyResponse(error.response, error.command, mxHost);
  return hostFailure(error, mxHost);
}
