import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { isIP } from 'node:net';
import type { DeliveryConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { NextHop } from './next-hop.js';
import { trustedCertificates } from './tls-policy.js';
import { writeDataDirectly } from './wire-data.js';

export interface Destination {
  hostName: string;
  ip: string;
  nextHop: NextHop;
  localIp: string | null;
  /** The name in our EHLO from localIp (its IP pool's); null: delivery.heloName or the hostname. */
  heloName: string | null;
  /** Never STARTTLS: the "none" level, or opportunistic STARTTLS failed at this host before (Postfix's "may" does the same). */
  plaintext: boolean;
  /** STARTTLS or no transaction ("encrypt", "verify", MTA-STS enforce, a route's requireTLS). */
  requireTLS: boolean;
  /** The certificate must chain to a trusted CA and name hostName ("verify", MTA-STS enforce). */
  verifyCertificate: boolean;
}

/** What nodemailer's SMTP client attaches to the errors it hands back. */
export interface SmtpError extends Error {
  code?: string;
  command?: string;
  response?: string;
  responseCode?: number;
  rejected?: string[];
  rejectedErrors?: SmtpError[];
  recipient?: string;
}

export interface SentTransaction {
  /** The reply to the end of data. */
  response: string;
  /** Recipients refused at RCPT TO while others were taken. */
  rejectedErrors: SmtpError[];
}

/**
 * A connection kept open after a transaction is closed once idle this long. Postfix keeps them
 * 2 s by default; a little longer suits the bursts a relay sees, and stays far below the
 * 5-minute idle timeout RFC 5321 4.5.3.2.7 asks servers to allow.
 */
const IDLE_CLOSE_MS = 10_000;

/** Errors that say a kept-open connection was closed by the server while it sat idle. */
function isStaleConnection(error: SmtpError): boolean {
  return error.code === 'ECONNECTION' || error.code === 'ESOCKET' || error.responseCode === 421;
}

/** What a send gets once delivery is stopping: a connection-level failure, so the batch is deferred. */
function stoppingError(): SmtpError {
  return Object.assign(new Error('delivery is stopping'), { code: 'ECONNECTION', command: 'CONN' });
}

interface PooledConnection {
  connection: SMTPConnection;
  /** Transactions started on it. */
  transactions: number;
  idleSince: number;
  closed: boolean;
}

interface Lease {
  pooled: PooledConnection;
  reused: boolean;
}

/**
 * The connections to one destination (address, port, source address, TLS and AUTH settings): at
 * most `maxConnections` open, each carrying up to `maxTransactions` transactions one after the
 * other. Callers beyond the limit wait their turn in order.
 */
class DestinationConnections {
  private readonly idle: PooledConnection[] = [];
  /** Every open connection (connecting, idle or in a transaction): its size is what counts against the limit. */
  private readonly all = new Set<PooledConnection>();
  private readonly waiting: Array<() => void> = [];
  private closed = false;

  constructor(
    private readonly options: SMTPConnection.Options,
    private readonly auth: NextHop['auth'],
    private readonly maxConnections: number,
    private readonly maxTransactions: number,
    private readonly log: Logger,
  ) {}

  get isUnused(): boolean {
    return this.all.size === 0 && this.waiting.length === 0;
  }

  async acquire(): Promise<Lease> {
    for (;;) {
      if (this.closed) throw stoppingError();
      const pooled = this.idle.pop();
      if (pooled) return { pooled, reused: true };
      // connect() counts the new connection in `all` before it yields.
      if (this.all.size < this.maxConnections) return { pooled: await this.connect(), reused: false };
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    }
  }

  /** Hands the connection to the next caller, or keeps it idle; closes it when it has done its share. */
  release(pooled: PooledConnection): void {
    if (pooled.closed) return;
    if (pooled.transactions >= this.maxTransactions) {
      this.discard(pooled, true);
      return;
    }
    pooled.idleSince = Date.now();
    this.idle.push(pooled);
    this.waiting.shift()?.();
  }

  /** Closes the connection (with QUIT when it is still in a clean state) and frees its slot. */
  discard(pooled: PooledConnection, polite: boolean): void {
    if (pooled.closed) return;
    pooled.closed = true;
    this.all.delete(pooled);
    const at = this.idle.indexOf(pooled);
    if (at >= 0) this.idle.splice(at, 1);
    if (polite) pooled.connection.quit();
    else pooled.connection.close();
    this.waiting.shift()?.();
  }

  /** Kept-open connections idle since before `cutoff` (or all of them) are closed. */
  closeIdle(cutoff = Number.POSITIVE_INFINITY): void {
    for (const pooled of this.idle.filter((p) => p.idleSince < cutoff)) this.discard(pooled, true);
  }

  /** QUIT for idle connections; the ones still in a transaction are cut (it is sent again later). */
  close(): void {
    this.closed = true;
    this.closeIdle();
    for (const pooled of [...this.all]) this.discard(pooled, false);
    // Callers still waiting wake up to find the destination closed.
    for (const wake of this.waiting.splice(0)) wake();
  }

  private connect(): Promise<PooledConnection> {
    const connection = new SMTPConnection(this.options);
    writeDataDirectly(connection);
    const pooled: PooledConnection = { connection, transactions: 0, idleSince: Date.now(), closed: false };
    this.all.add(pooled);
    // A kept-open connection the server ends (idle timeout, shutdown) leaves the pool at once.
    connection.once('end', () => this.discard(pooled, false));
    connection.on('error', (error: SmtpError) => this.log.debug({ err: error.message, host: this.options.host }, 'delivery connection error'));
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (error: SmtpError): void => {
        if (settled) return;
        settled = true;
        // A handshake that breaks after STARTTLS comes back as a socket error (ESOCKET); it is a
        // TLS failure all the same, and the caller retries such a host in plaintext.
        if (connection.upgrading && error.code !== 'ETLS') error.code = 'ETLS';
        reject(error);
        // Closing emits 'end' at once: settled first, so this error is the one reported.
        this.discard(pooled, false);
      };
      const succeed = (): void => {
        if (settled) return;
        settled = true;
        connection.off('error', fail);
        connection.off('end', closedEarly);
        resolve(pooled);
      };
      // Refused, timed out, a 4xx/5xx greeting, a failed STARTTLS: the client reports these as
      // 'error' events, not through connect's callback.
      const closedEarly = (): void => fail(Object.assign(new Error('Connection closed before the session was set up'), { code: 'ECONNECTION', command: 'CONN' }));
      connection.once('error', fail);
      connection.once('end', closedEarly);
      connection.connect((error?: Error | null) => {
        if (error) return fail(error);
        if (!this.auth || !connection.allowsAuth) return succeed();
        connection.login(this.auth, (loginError?: Error | null) => (loginError ? fail(loginError) : succeed()));
      });
    });
  }
}

/**
 * nodemailer's SMTP client (smtp-connection) with our own pooling: the stored bytes go out as
 * one Buffer, with PIPELINING, and no MIME composition on the way. Measured against a pooled
 * nodemailer transport with `raw` to the same sink: 0.09-0.14 ms of CPU per message against
 * 0.33-0.67 ms, because `sendMail` builds a MimeNode, a message id and a stream pipeline for
 * every message even when given the raw bytes.
 */
export class ConnectionPool {
  private readonly destinations = new Map<string, DestinationConnections>();
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;
  /** System CAs plus delivery.tls.caFile, read once; undefined: node's own list. */
  private readonly trusted: string[] | undefined;

  constructor(
    private readonly settings: DeliveryConfig,
    private readonly heloName: string,
    private readonly log: Logger,
  ) {
    this.trusted = trustedCertificates(settings.tls.caFile);
    this.sweeper = setInterval(() => this.closeIdle(), IDLE_CLOSE_MS / 2).unref();
  }

  /**
   * One transaction: MAIL FROM, RCPT TO for each recipient, DATA with `content` (dot-stuffed and
   * CRLF-normalised on the way, see wire-data.ts). Resolves with the final reply; rejects with the error of the
   * stage that failed, carrying the reply, the command and any per-recipient refusals.
   */
  async send(destination: Destination, envelope: { from: string; to: string[] }, content: Buffer): Promise<SentTransaction> {
    if (this.closed) throw stoppingError();
    const connections = this.connectionsTo(destination);
    const first = await connections.acquire();
    try {
      return await this.transact(connections, first, envelope, content);
    } catch (caught) {
      const error = caught as SmtpError;
      if (!first.reused || !isStaleConnection(error)) throw error;
      // The server dropped a kept-open connection as we used it; the others kept as long are
      // likely gone too. One more try on a new connection, so an idle timeout is not a failure.
      connections.closeIdle();
      this.log.debug({ host: destination.hostName, err: error.message }, 'kept-open connection was closed by the server; trying a new one');
      return this.transact(connections, await connections.acquire(), envelope, content);
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    for (const connections of this.destinations.values()) connections.close();
    this.destinations.clear();
  }

  private transact(
    connections: DestinationConnections,
    { pooled }: Lease,
    envelope: { from: string; to: string[] },
    content: Buffer,
  ): Promise<SentTransaction> {
    pooled.transactions++;
    // A new object each time: the client keeps its transaction state (replies, errors) on it.
    const smtpEnvelope = { from: envelope.from, to: envelope.to, size: content.length, use8BitMime: hasEightBitBytes(content) };
    return new Promise((resolve, reject) => {
      pooled.connection.send(smtpEnvelope, content, (error, info) => {
        if (!error && info) {
          connections.release(pooled);
          resolve({ response: info.response, rejectedErrors: (info.rejectedErrors ?? []) as SmtpError[] });
          return;
        }
        const failure = (error ?? new Error('no reply')) as SmtpError;
        reject(failure);
        // A refusal inside a sound session (not 421) leaves the connection usable after RSET.
        if ((failure.code === 'EENVELOPE' || failure.code === 'EMESSAGE') && failure.responseCode !== 421 && !pooled.closed) {
          pooled.connection.reset((resetError) => (resetError ? connections.discard(pooled, false) : connections.release(pooled)));
        } else {
          connections.discard(pooled, false);
        }
      });
    });
  }

  private connectionsTo(destination: Destination): DestinationConnections {
    const { nextHop } = destination;
    const maxTransactions = nextHop.maxMessagesPerConnection ?? this.settings.maxMessagesPerConnection;
    // The TLS settings are part of the key: a connection opened under one requirement never
    // carries mail that needs a stricter one (a plaintext connection for an MTA-STS domain).
    const key = [destination.ip, nextHop.port, destination.localIp, destination.heloName, destination.hostName, nextHop.secure, destination.requireTLS, destination.verifyCertificate, nextHop.auth?.user, destination.plaintext, maxTransactions].join('|');
    let connections = this.destinations.get(key);
    if (!connections) {
      const options: SMTPConnection.Options = {
        host: destination.ip,
        port: nextHop.port,
        name: destination.heloName ?? this.heloName,
        ...(destination.localIp ? { localAddress: destination.localIp } : {}),
        secure: nextHop.secure,
        requireTLS: destination.requireTLS,
        ignoreTLS: destination.plaintext && !destination.requireTLS,
        tls: {
          // Opportunistic TLS to an MX: encrypt when offered, whatever the certificate (RFC 7435).
          rejectUnauthorized: destination.verifyCertificate,
          ...(destination.verifyCertificate && this.trusted ? { ca: this.trusted } : {}),
          ...(isIP(destination.hostName) ? {} : { servername: destination.hostName }),
        },
        connectionTimeout: this.settings.connectionTimeoutSeconds * 1000,
        greetingTimeout: this.settings.greetingTimeoutSeconds * 1000,
        socketTimeout: this.settings.socketTimeoutSeconds * 1000,
        logger: false,
      };
      connections = new DestinationConnections(options, nextHop.auth, this.settings.maxConnectionsPerHost, maxTransactions, this.log);
      this.destinations.set(key, connections);
    }
    return connections;
  }

  private closeIdle(): void {
    const cutoff = Date.now() - IDLE_CLOSE_MS;
    for (const [key, connections] of this.destinations) {
      connections.closeIdle(cutoff);
      if (connections.isUnused) this.destinations.delete(key);
    }
  }
}

/** 8-bit bytes ask for BODY=8BITMIME where the server offers it (RFC 6152). */
function hasEightBitBytes(content: Buffer): boolean {
  for (let k = 0; k < content.length; k++) if ((content[k] ?? 0) > 0x7f) return true;
  return false;
}
