import nodemailer from 'nodemailer';
import type { TestRelay } from './relay.js';

/** The port of a test relay's inbound listener (the return-path MX). */
export function inboundPort(relay: TestRelay): number {
  const address = relay.relay.inbound;
  if (!address) throw new Error('inbound is not running');
  return address.port;
}

/** Sends a report to the inbound listener as a remote MTA would: MAIL FROM:<>, RCPT TO the return path. */
export async function sendReport(relay: TestRelay, to: string, raw: string): Promise<string> {
  const info = await nodemailer
    .createTransport({ host: '127.0.0.1', port: inboundPort(relay), ignoreTLS: true })
    .sendMail({ envelope: { from: '', to: [to] }, raw });
  return info.response;
}
