import nodemailer, { type Transporter } from 'nodemailer';
import { isIP } from 'node:net';
import type { DeliveryConfig } from '../config/schema.js';
import type { Logger } from '../logger.js';
import type { NextHop } from './next-hop.js';

export interface Destination {
  hostName: string;
  ip: string;
  nextHop: NextHop;
  localIp: string | null;
  /** Opportunistic STARTTLS failed at this host before: talk plaintext, as Postfix's "may" level does. */
  plaintext: boolean;
}

const IDLE_CLOSE_MS = 60_000;

/**
 * One pooled nodemailer transport per destination (address, port, source address, TLS and AUTH
 * settings): connections are reused across messages to the same host, up to
 * delivery.maxConnectionsPerHost at once, and closed when idle.
 */
export class TransportPool {
  private readonly transports = new Map<string, { transport: Transporter; lastUsed: number }>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly settings: DeliveryConfig,
    private readonly heloName: string,
    private readonly log: Logger,
  ) {
    this.sweeper = setInterval(() => this.closeIdle(), IDLE_CLOSE_MS / 2).unref();
  }

  get(destination: Destination): Transporter {
    const { nextHop } = destination;
    const key = [destination.ip, nextHop.port, destination.localIp, destination.hostName, nextHop.secure, nextHop.requireTLS, nextHop.auth?.user, destination.plaintext].join('|');
    const existing = this.transports.get(key);
    if (existing) {
      existing.lastUsed = Date.now();
      return existing.transport;
    }
    const transport = nodemailer.createTransport({
      pool: true,
      host: destination.ip,
      port: nextHop.port,
      name: this.heloName,
      ...(destination.localIp ? { localAddress: destination.localIp } : {}),
      maxConnections: this.settings.maxConnectionsPerHost,
      maxMessages: this.settings.maxMessagesPerConnection,
      secure: nextHop.secure,
      requireTLS: nextHop.requireTLS,
      ignoreTLS: destination.plaintext,
      ...(nextHop.auth ? { auth: nextHop.auth } : {}),
      tls: {
        // Opportunistic TLS to an MX: encrypt when offered, whatever the certificate (RFC 7435).
        rejectUnauthorized: nextHop.verifyCertificate,
        ...(isIP(destination.hostName) ? {} : { servername: destination.hostName }),
      },
      connectionTimeout: this.settings.connectionTimeoutSeconds * 1000,
      greetingTimeout: this.settings.greetingTimeoutSeconds * 1000,
      socketTimeout: this.settings.socketTimeoutSeconds * 1000,
      disableFileAccess: true,
      disableUrlAccess: true,
      logger: false,
    });
    transport.on('error', (error: Error) => this.log.debug({ err: error.message, host: destination.hostName }, 'pooled connection error'));
    this.transports.set(key, { transport, lastUsed: Date.now() });
    return transport;
  }

  close(): void {
    clearInterval(this.sweeper);
    for (const { transport } of this.transports.values()) transport.close();
    this.transports.clear();
  }

  private closeIdle(): void {
    const cutoff = Date.now() - IDLE_CLOSE_MS;
    for (const [key, entry] of this.transports) {
      if (entry.lastUsed < cutoff) {
        entry.transport.close();
        this.transports.delete(key);
      }
    }
  }
}
