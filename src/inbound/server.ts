import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { readReturnPath, type VerpCheck, type VerpSettings } from '../bounces/verp.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../logger.js';
import { unsubscribeTokenOf } from '../unsubscribe/index.js';
import type { UnsubscribeHandling } from '../unsubscribe/forwarded.js';
import type { ReportStore } from './report-store.js';
import { listenSmtp, smtpReply } from '../smtp-listener.js';
import { setGreetingPause } from '../smtp-greeting.js';
import { limitSessions } from '../smtp-session-limits.js';
import { ByteBudget } from '../byte-budget.js';
import { ClientBudget } from './client-budget.js';
import type { KnownNodes } from '../shared/forwarded-reports.js';

/** RFC 5321 4.5.1 and RFC 2142: the role mailboxes a mail domain answers for. */
const ROLE_MAILBOXES = new Set(['postmaster', 'abuse']);


export interface InboundServer {
  listen(): Promise<AddressInfo>;
  /** Report bytes held in memory now, across all connections (inbound.maxBytesInFlight bounds them). */
  bytesInFlight(): number;
  close(): Promise<void>;
}

/**
 * The MX of the return-path domain: it takes reports for our signed return paths and for
 * postmaster@/abuse@, nothing else (no AUTH, no relaying), and commits each report whole before
 * its 250. Parsing happens after, so a report the parser cannot read is still kept.
 */
export function createInboundServer(
  config: Config,
  verp: VerpSettings,
  reports: ReportStore,
  onStored: (reportId: number) => void,
  unsubscribe: UnsubscribeHandling,
  logger: Logger,
  /** The other nodes sharing the return-path domain (store.shared.url), null when not shared. */
  knownNodes: KnownNodes | null = null,
): InboundServer {
  const log = logger.child({ stage: 'inbound' });
  const settings = config.inbound;
  const tls = config.submission.tls.key !== null && config.submission.tls.cert !== null;
  const inMemory = new ByteBudget(settings.maxBytesInFlight);
  const budget = new ClientBudget({ maxReportsPerMinute: settings.maxReportsPerClientPerMinute, maxBytesPerHour: settings.maxBytesPerClientPerHour });

  /** The recipient row a RCPT TO address names, null for a role mailbox, undefined if refused. */
  function recipientFor(address: string): number | null | undefined {
    // RFC 5321 4.5.1: a bare <postmaster>, any case, without a domain, must be taken.
    if (address.toLowerCase() === 'postmaster') return null;
    const check = readReturnPath(verp, address);
    if (check.valid) return check.recipientId;
    const at = address.lastIndexOf('@');
    const local = address.slice(0, at).toLowerCase();
    if (check.reason === 'not-ours' && address.slice(at + 1).toLowerCase() === verp.domain.toLowerCase() && ROLE_MAILBOXES.has(local)) return null;
    return undefined;
  }

  /**
   * The node a RCPT TO address's token is tagged for, when that is another known node: this node
   * cannot check its MAC (another secret), that node does once the report is forwarded to it.
   */
  function otherNodeOf(address: string): string | null {
    if (knownNodes === null) return null;
    const check = readReturnPath(verp, address);
    if (check.valid || check.reason !== 'other-node') return null;
    return knownNodes.nameOf(check.nodeTag) ?? null;
  }

  /**
   * The tag of a well-formed, unexpired token for a node this node has not read from the shared
   * store yet (a node that joined since the last round, store.shared.catchUpSeconds), else null.
   * Such a report is deferred, not refused: the reporting MTA retries, by when the tag is known.
   * Without a shared store no round will ever teach a tag, so it stays refused.
   */
  function notKnownYet(check: VerpCheck): string | null {
    if (knownNodes === null || check.valid || check.reason !== 'other-node' || check.expired) return null;
    return knownNodes.nameOf(check.nodeTag) === undefined ? check.nodeTag : null;
  }

  /**
   * What a List-Unsubscribe mailto: address names: this node's recipient, another known node's
   * link (passed on to it), a link of a node not known here yet (the sender retries), or nothing.
   */
  function unsubscribeTarget(address: string): { recipientId: number } | { token: string; nodeTag: string } | { unknownTag: string } | null {
    const token = unsubscribeTokenOf(unsubscribe.settings, address);
    if (token === null) return null;
    const check = unsubscribe.unsubscriber.check(token);
    if (check.valid) return { recipientId: check.recipientId };
    if (check.reason !== 'other-node' || check.expired || unsubscribe.forwarded === null) return null;
    return unsubscribe.forwarded.nodeOf(check.nodeTag) === null ? { unknownTag: check.nodeTag } : { token, nodeTag: check.nodeTag };
  }
  const takesUnsubscribe = (address: string): boolean => {
    const target = unsubscribeTarget(address);
    return target !== null && !('unknownTag' in target);
  };

  const server = new SMTPServer({
    name: config.hostname,
    banner: 'Rebound',
    logger: false,
    disableReverseLookup: true,
    size: settings.maxMessageSize,
    rejectOversized: true,
    maxClients: settings.maxClients,
    hideDSN: true,
    hideENHANCEDSTATUSCODES: false,
    authOptional: true,
    disabledCommands: tls ? ['AUTH'] : ['AUTH', 'STARTTLS'],
    ...(tls ? { key: readFileSync(config.submission.tls.key as string), cert: readFileSync(config.submission.tls.cert as string) } : {}),

    onMailFrom(_from, session, callback) {
      const refused = budget.refusal(session.remoteAddress);
      if (refused === null) return callback();
      log.warn({ client: session.remoteAddress }, 'client over its report budget; told to retry later');
      callback(smtpReply(451, refused, '4.7.1'));
    },

    onRcptTo(to, session, callback) {
      const unsubscribing = unsubscribeTarget(to.address);
      if (unsubscribing !== null && 'unknownTag' in unsubscribing) {
        log.info({ client: session.remoteAddress, rcpt: to.address, nodeTag: unsubscribing.unknownTag }, 'unsubscribe for a node tag not known yet deferred at RCPT TO');
        return callback(smtpReply(451, `<${to.address}>: unknown node tag ${unsubscribing.unknownTag}, try again later`, '4.7.1'));
      }
      if (unsubscribing !== null) return callback();
      if (recipientFor(to.address) !== undefined || otherNodeOf(to.address) !== null) return callback();
      const check = readReturnPath(verp, to.address);
      const tag = notKnownYet(check);
      if (tag !== null) {
        log.info({ client: session.remoteAddress, rcpt: to.address, nodeTag: tag }, 'report for a node tag not known yet deferred at RCPT TO');
        return callback(smtpReply(451, `<${to.address}>: unknown node tag ${tag}, try again later`, '4.7.1'));
      }
      log.info({ client: session.remoteAddress, rcpt: to.address, reason: check.valid ? 'unknown' : check.reason }, 'report refused at RCPT TO');
      callback(smtpReply(550, `<${to.address}>: no such mailbox here`));
    },

    onData(stream: Readable & { sizeExceeded?: boolean }, session: SMTPServerSession, callback) {
      const rcptTo = session.envelope.rcptTo.map((rcpt) => rcpt.address);
      // Anyone may write to postmaster@; a real report without our token is small (a DSN quoting
      // headers), so only a token earns the full inbound.maxMessageSize.
      const tokened = rcptTo.some(
        (address) => typeof recipientFor(address) === 'number' || otherNodeOf(address) !== null || takesUnsubscribe(address),
      );
      const limit = tokened ? settings.maxMessageSize : Math.min(settings.maxMessageSize, settings.maxReportSizeWithoutToken);
      let chunks: Buffer[] = [];
      let length = 0;
      let overBudget = false;
      // Every byte held is taken from inbound.maxBytesInFlight and given back once the report is
      // stored or refused, or the sender goes away.
      let held = 0;
      const giveBack = (): void => {
        inMemory.giveBack(held);
        held = 0;
        chunks = [];
      };
      const finish: typeof callback = (error, message) => {
        giveBack();
        callback(error, message);
      };
      stream.on('data', (chunk: Buffer) => {
        length += chunk.length;
        if (stream.sizeExceeded || length > limit || overBudget) return;
        if (!inMemory.take(chunk.length)) {
          overBudget = true;
          giveBack();
          return;
        }
        held += chunk.length;
        chunks.push(chunk);
      });
      stream.once('error', (error: Error) => finish(error));
      stream.once('end', () => {
        if (stream.sizeExceeded) return finish(smtpReply(552, 'Report size exceeds fixed maximum message size'));
        if (overBudget) {
          log.warn({ client: session.remoteAddress, maxBytesInFlight: inMemory.limit }, 'report refused: inbound.maxBytesInFlight reached; the sender retries later');
          return finish(smtpReply(451, 'Insufficient system storage: too many reports in transfer, try again later', '4.3.1'));
        }
        if (length > limit) {
          log.info({ client: session.remoteAddress, rcptTo, bytes: length }, 'report without a token over inbound.maxReportSizeWithoutToken refused');
          return finish(smtpReply(552, `A report without a valid return-path token may be at most ${limit} bytes`, '5.3.4'));
        }
        // A mail to a List-Unsubscribe mailto: address is the request itself (RFC 2369): done now,
        // or passed on to the node whose link it is.
        const unsubscribing = rcptTo.map(unsubscribeTarget);
        if (unsubscribing.every((target) => target !== null && !('unknownTag' in target))) {
          try {
            for (const target of unsubscribing) {
              if (target === null || 'unknownTag' in target) continue;
              if ('recipientId' in target) {
                const result = unsubscribe.unsubscriber.byRecipient(target.recipientId, 'mailto');
                log.info({ client: session.remoteAddress, recipientId: target.recipientId, result }, 'unsubscribe by mail');
              } else {
                // Stored in the shared store, unchecked: counted like a report.
                const overClientBudget = budget.take(session.remoteAddress, length);
                if (overClientBudget !== null) return finish(smtpReply(451, overClientBudget, '4.7.1'));
                const raw = Buffer.concat(chunks, length);
                unsubscribe.forwarded?.forward(target.token, target.nodeTag, 'mailto', session.remoteAddress, { raw, mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '' });
              }
            }
            return finish(null, 'Ok: unsubscribed');
          } catch (error) {
            log.error({ err: error }, 'could not record an unsubscribe; the sender was told to retry');
            return finish(smtpReply(451, 'Local error in processing, try again later'));
          }
        }
        const overClientBudget = budget.take(session.remoteAddress, length);
        if (overClientBudget !== null) {
          log.warn({ client: session.remoteAddress, bytes: length }, 'client over its report budget; report refused, the sender retries later');
          return finish(smtpReply(451, overClientBudget, '4.7.1'));
        }
        const recipientId = rcptTo.map(recipientFor).find((id): id is number => typeof id === 'number') ?? null;
        // A token of this node's wins: the report is applied here. Else the first other node's is where it goes.
        const forwardTo = recipientId === null ? (rcptTo.map(otherNodeOf).find((name) => name !== null) ?? null) : null;
        reports
          .store({
            receivedAt: new Date(),
            clientIp: session.remoteAddress,
            clientHelo: session.hostNameAppearsAs || null,
            mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
            rcptTo,
            recipientId,
            raw: Buffer.concat(chunks, length),
            forwardTo,
          })
          .then(
            (reportId) => {
              log.info({ reportId, client: session.remoteAddress, rcptTo, recipientId, forwardTo, bytes: length }, forwardTo ? 'report stored; forwarded to its node' : 'report stored');
              finish(null, `Ok: report stored as ${reportId}`);
              onStored(reportId);
            },
            (error: Error) => {
              log.error({ err: error }, 'could not store a report; the sender was told to retry');
              finish(smtpReply(451, 'Local error in processing: the report could not be stored, try again later'));
            },
          );
      });
    },
  });
  // Per-address cap, session deadline and junk-command budget, as on submission (src/smtp-session-limits.ts).
  limitSessions(server, settings, log);
  // Off by default; a pause turns away clients that talk before the greeting (postscreen's greet wait).
  setGreetingPause(server, settings.greetPauseMs);
  server.on('error', (error: NodeJS.ErrnoException) => log.info({ err: error.message }, 'inbound connection error'));

  return {
    bytesInFlight: () => inMemory.inUse,
    listen: async () => {
      const address = await listenSmtp(server, settings.port, settings.host);
      log.info({ host: address.address, port: address.port, domain: verp.domain }, 'inbound listening');
      return address;
    },
    close: () => {
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      // Senders still connected are told to come back later; a report not yet stored (250) is
      // sent again by its MTA, so nothing is lost.
      for (const connection of server.connections) connection.send(421, `${config.hostname} Service shutting down, try again later`);
      return stopped;
    },
  };
}
