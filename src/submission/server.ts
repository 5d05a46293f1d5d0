import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerSession } from 'smtp-server';
import { normalizeAddress } from '../address.js';
import type { Config } from '../config/load.js';
import type { Logger } from '../logger.js';
import { newQueueId } from '../store/queue-id.js';
import type { MessageSpool } from '../store/spool.js';
import { AuthGuard } from './auth-guard.js';
import { ByteBudget } from '../byte-budget.js';
import { findAmbiguousDotLine, findOverlongLine } from './framing.js';
import { summarizeMessage } from './message-headers.js';
import { receivedHeader } from './received-header.js';
import { senderControls } from './sender-controls.js';
import { NetworkList } from './relay-policy.js';
import { useQueuedReplyCode } from './reply-codes.js';
import { needsSmtpUtf8, SMTPUTF8_REQUIRED, watchNonAsciiAddresses } from './smtputf8.js';
import { listenSmtp, smtpReply } from '../smtp-listener.js';
import { setGreetingPause } from '../smtp-greeting.js';
import { limitSessions } from '../smtp-session-limits.js';
import { cacheTlsSessions } from '../smtp-tls-sessions.js';

export interface SubmissionServer {
  listen(): Promise<AddressInfo>;
  /** Stops accepting, lets DATA in progress finish (up to shutdownTimeoutSeconds), closes the rest. */
  close(): Promise<void>;
  /** Counters of the limits, for metrics and tests. */
  stats(): SubmissionStats;
}

export interface SubmissionStats {
  /** Password checks (scrypt) run so far, and the most that ran at once. */
  authVerifications: number;
  peakConcurrentAuthVerifications: number;
  /** Bytes of message content held in memory now (submission.maxBytesInFlight). */
  bytesInFlight: number;
  /** Connections open now from a client address (submission.maxClientsPerIp). */
  clientsFrom(address: string): number;
}

interface AuthenticatedUser {
  username: string;
}

function authUserOf(session: SMTPServerSession): string | null {
  const user = session.user as AuthenticatedUser | undefined;
  return user?.username ?? null;
}

export function createSubmissionServer(config: Config, spool: MessageSpool, logger: Logger): SubmissionServer {
  useQueuedReplyCode();
  watchNonAsciiAddresses();
  const settings = config.submission;
  const log = logger.child({ stage: 'submission' });
  const relayNetworks = new NetworkList(settings.allowNetworks);
  const plaintextAuthNetworks = new NetworkList(settings.plaintextAuthNetworks);
  const passwordHashes = new Map(settings.auth.users.map((user) => [user.username, user.passwordHash]));
  const tls = settings.tls.key !== null && settings.tls.cert !== null;
  const authGuard = new AuthGuard(settings.auth);
  const budget = new ByteBudget(settings.maxBytesInFlight);

  let closing = false;
  let dataInProgress = 0;
  let dataFinished: (() => void) | null = null;

  const server = new SMTPServer({
    name: config.hostname,
    banner: 'Rebound',
    logger: false,
    disableReverseLookup: true,
    size: settings.maxMessageSize,
    rejectOversized: true,
    maxRecipients: settings.maxRecipients,
    maxClients: settings.maxClients,
    socketTimeout: settings.socketTimeoutSeconds * 1000,
    closeTimeout: settings.shutdownTimeoutSeconds * 1000,
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: true,
    // smtp-server can only allow or refuse plaintext AUTH for everyone; onAuth allows it only for
    // plaintextAuthNetworks (loopback by default), where no one can listen in.
    allowInsecureAuth: true,
    // Rebound does not yet honour NOTIFY/RET/ENVID, so it does not offer DSN.
    hideDSN: true,
    // RFC 3463 codes on every reply: our own bounce classifier is not the only one reading them.
    hideENHANCEDSTATUSCODES: false,
    disabledCommands: tls ? [] : ['STARTTLS'],
    ...(tls ? { key: readFileSync(settings.tls.key as string), cert: readFileSync(settings.tls.cert as string) } : {}),

    onConnect(_session, callback) {
      if (closing) return callback(smtpReply(421, `${config.hostname} Service shutting down, try again later`));
      callback();
    },

    onAuth(auth: SMTPServerAuthentication, session, callback) {
      if (!session.secure && !plaintextAuthNetworks.contains(session.remoteAddress)) {
        log.warn({ client: session.remoteAddress, username: auth.username }, 'AUTH refused on a plaintext connection');
        return callback(smtpReply(538, 'Encryption required for requested authentication mechanism; use STARTTLS first'));
      }
      const hash = auth.username ? passwordHashes.get(auth.username) : undefined;
      const username = auth.username ?? '';
      const password = auth.password ?? '';
      const lockout = authGuard.lockout(session.remoteAddress, username);
      if (lockout !== null) {
        // Refused before scrypt runs: a locked-out guesser costs no thread-pool time.
        log.warn({ client: session.remoteAddress, username, lockout }, 'AUTH refused: too many recent failures');
        const whose = lockout === 'client' ? 'from your address' : 'for this user';
        if (authGuard.refused(session)) return callback(tooManyFailures());
        return callback(smtpReply(454, `Too many failed authentication attempts ${whose}; try again later`, '4.7.0'));
      }
      // An unknown user still costs a hash check, so timing does not tell which usernames exist.
      const check = hash ? authGuard.verify(password, hash) : authGuard.verify(password, UNKNOWN_USER_HASH).then(() => false);
      check.then(
        (ok) => {
          if (!ok) {
            log.warn({ client: session.remoteAddress, username: auth.username }, 'AUTH failed');
            if (authGuard.failed(session, username)) return callback(tooManyFailures());
            return callback(smtpReply(535, 'Authentication credentials invalid'));
          }
          callback(null, { user: { username } satisfies AuthenticatedUser });
        },
        (error: Error) => callback(smtpReply(454, `Temporary authentication failure: ${error.message}`)),
      );
    },

    onMailFrom(from: SMTPServerAddress, session, callback) {
      if (closing) return callback(smtpReply(421, `${config.hostname} Service shutting down, try again later`));
      const storeProblem = spool.storeProblem();
      if (storeProblem) return callback(smtpReply(451, `Local error in processing: ${storeProblem.cause}; try again later`));
      if (!session.user && !relayNetworks.contains(session.remoteAddress)) {
        log.info({ client: session.remoteAddress }, 'relay refused: not authenticated and not in allowNetworks');
        return callback(smtpReply(530, 'Authentication required'));
      }
      if (needsSmtpUtf8(from, session)) return callback(smtpReply(553, SMTPUTF8_REQUIRED, '5.6.7'));
      if (from.address !== '' && normalizeAddress(from.address) === null) {
        return callback(smtpReply(553, `Sender address rejected: <${from.address}> is not a valid address`));
      }
      callback();
    },

    onRcptTo(to: SMTPServerAddress, session, callback) {
      if (needsSmtpUtf8(to, session)) return callback(smtpReply(553, SMTPUTF8_REQUIRED, '5.6.7'));
      if (normalizeAddress(to.address) === null) {
        return callback(
          smtpReply(553, `Recipient address rejected: <${to.address}> is not a valid address (Rebound has no local mailboxes)`),
        );
      }
      callback();
    },

    onData(stream: Readable & { sizeExceeded?: boolean }, session, callback) {
      dataInProgress++;
      const finish = (error: Error | null, message?: string): void => {
        dataInProgress--;
        if (dataInProgress === 0 && dataFinished) dataFinished();
        callback(error, message);
      };
      let chunks: Buffer[] = [];
      let length = 0;
      let overBudget = false;
      // Every byte held is taken from the budget; all of it is given back once the message is
      // stored or refused, or the client goes away.
      let held = 0;
      const giveBack = (): void => {
        budget.giveBack(held);
        held = 0;
      };
      stream.on('data', (chunk: Buffer) => {
        // Past the limit the rest is read and dropped; smtp-server answers 552 5.3.4 at the end.
        if (stream.sizeExceeded || overBudget) return;
        if (!budget.take(chunk.length)) {
          // Over the budget: what was held is dropped, the rest read and dropped, 451 at the end.
          overBudget = true;
          chunks = [];
          giveBack();
          return;
        }
        held += chunk.length;
        chunks.push(chunk);
        length += chunk.length;
      });
      stream.once('error', (error: Error) => {
        giveBack();
        log.info({ client: session.remoteAddress, err: error.message }, 'client went away during DATA; nothing stored');
        finish(error);
      });
      stream.once('end', () => {
        if (stream.sizeExceeded) {
          giveBack();
          log.info({ client: session.remoteAddress, bytes: length }, 'message over submission.maxMessageSize refused');
          return finish(smtpReply(552, 'Message size exceeds fixed maximum message size'));
        }
        if (overBudget) {
          log.warn({ client: session.remoteAddress, maxBytesInFlight: budget.limit }, 'message refused: submission.maxBytesInFlight reached; the client was told to retry');
          return finish(smtpReply(451, 'Insufficient system storage: too many messages in transfer, try again later', '4.3.1'));
        }
        const raw = Buffer.concat(chunks, length);
        chunks = [];
        accept(raw, session).then(
          (queueId) => {
            giveBack();
            finish(null, `Ok: queued as ${queueId}`);
          },
          (error: Error & { responseCode?: number }) => {
            giveBack();
            if (error.responseCode === undefined) {
              log.error({ err: error, client: session.remoteAddress }, 'could not store a message; the client was told to retry');
              return finish(smtpReply(451, 'Local error in processing: the message could not be stored, try again later'));
            }
            finish(error);
          },
        );
      });
    },
  });

  // Greeting at once: apps open one connection per message (src/smtp-greeting.ts).
  setGreetingPause(server, 0);
  // ... and each of those connections resumes its TLS session rather than redo the handshake.
  if (tls) cacheTlsSessions(server);
  const sessionLimits = limitSessions(
    server,
    {
      maxClientsPerIp: settings.maxClientsPerIp,
      // Clients that may relay without AUTH are the operator's own apps: a pool of 200
      // connections from one app server is normal there. maxClients still bounds them.
      isExemptFromClientCap: (address) => relayNetworks.contains(address),
      sessionTimeoutSeconds: settings.sessionTimeoutSeconds,
      maxJunkCommands: settings.maxJunkCommands,
      // Idle connections (a stuck app pool, a slowloris) must not hold the last slots for minutes.
      stressIdleTimeoutSeconds: settings.stressSocketTimeoutSeconds,
    },
    log,
  );

  server.on('error', (error: NodeJS.ErrnoException) => {
    // smtp-server reports a client's socket errors here too; a client that goes away is routine.
    if (error.code !== undefined && CLIENT_SOCKET_ERRORS.has(error.code)) {
      log.info({ err: error.message }, 'client connection ended abruptly');
      return;
    }
    log.error({ err: error }, 'submission server error');
  });

  async function accept(raw: Buffer, session: SMTPServerSession): Promise<string> {
    const dotOffset = findAmbiguousDotLine(raw);
    if (dotOffset !== -1) {
      log.warn({ client: session.remoteAddress, offset: dotOffset }, 'message refused: lone "." line with bare CR or LF (SMTP smuggling)');
      throw smtpReply(554, 'Message contains a lone "." line with a bare CR or LF; send CRLF line endings');
    }
    const lineOffset = settings.maxLineLength === 0 ? -1 : findOverlongLine(raw, settings.maxLineLength);
    if (lineOffset !== -1) {
      log.warn({ client: session.remoteAddress, offset: lineOffset, maxLineLength: settings.maxLineLength }, 'message refused: line too long');
      throw smtpReply(
        554,
        `Message has a line longer than ${settings.maxLineLength} octets plus CRLF (RFC 5321 4.5.3.1.6); wrap it or encode the part as quoted-printable or base64`,
        '5.6.0',
      );
    }
    const envelope = session.envelope;
    const mailFrom = envelope.mailFrom ? envelope.mailFrom.address : '';
    const recipients = envelope.rcptTo.map((rcpt) => normalizeAddress(rcpt.address)).filter((r) => r !== null);
    const receivedAt = new Date();
    const queueId = newQueueId(receivedAt.getTime());
    const helo = session.hostNameAppearsAs || null;
    const protocol = session.transmissionType;
    const { tagFields, variablesFields, ...summary } = summarizeMessage(raw, settings.campaignHeader);
    const controls = senderControls(tagFields, variablesFields);
    if (controls.problems.length > 0) {
      // Accepted all the same, as Mailgun accepts it: the app's mail matters more than its labels.
      log.warn({ queueId, client: session.remoteAddress, user: authUserOf(session), problems: controls.problems }, 'message accepted without some of its tags or variables');
    }
    await spool.enqueue({
      queueId,
      receivedAt,
      mailFrom: mailFrom === '' ? '' : (normalizeAddress(mailFrom)?.address ?? mailFrom),
      recipients,
      clientIp: session.remoteAddress,
      clientHelo: helo,
      authUser: authUserOf(session),
      protocol,
      ...summary,
      tags: controls.tags,
      variables: controls.variables,
      receivedHeader: receivedHeader({
        helo,
        clientIp: session.remoteAddress,
        hostname: config.hostname,
        protocol,
        queueId,
        recipients: recipients.map((r) => r.address),
        date: receivedAt,
      }),
      raw,
    });
    log.info(
      { queueId, client: session.remoteAddress, user: authUserOf(session), from: mailFrom, recipients: recipients.length, bytes: raw.length },
      'message queued',
    );
    return queueId;
  }

  return {
    listen: async () => {
      const address = await listenSmtp(server, settings.port, settings.host);
      log.info({ host: address.address, port: address.port, starttls: tls }, 'submission listening');
      return address;
    },

    close: async () => {
      closing = true;
      const stopped = new Promise<void>((resolve) => server.close(resolve));
      if (dataInProgress > 0) {
        log.info({ transactions: dataInProgress }, 'waiting for messages in DATA to finish');
        await Promise.race([
          new Promise<void>((resolve) => (dataFinished = resolve)),
          new Promise<void>((resolve) => setTimeout(resolve, settings.shutdownTimeoutSeconds * 1000).unref()),
        ]);
      }
      // Idle connections (pooled clients) would otherwise hold shutdown for the full timeout.
      for (const connection of server.connections) {
        connection.send(421, `${config.hostname} Service shutting down, try again later`);
      }
      await stopped;
      log.info('submission stopped');
    },

    stats: () => ({
      authVerifications: authGuard.stats.verifications,
      peakConcurrentAuthVerifications: authGuard.stats.peakConcurrentVerifications,
      bytesInFlight: budget.inUse,
      clientsFrom: sessionLimits.clientsFrom,
    }),
  };
}

function tooManyFailures(): Error {
  return smtpReply(421, 'Too many authentication failures; closing connection', '4.7.0');
}

const CLIENT_SOCKET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

// A real scrypt hash of a random password, so failed lookups take as long as failed passwords.
const UNKNOWN_USER_HASH =
  'scrypt$32768$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
