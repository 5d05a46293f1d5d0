import { connect as connectTcp, type Socket } from 'node:net';
import { constants } from 'node:crypto';
import { connect as connectTls, type TLSSocket } from 'node:tls';

/**
 * A raw STARTTLS client that can offer a saved TLS session, which nodemailer cannot: it opens a
 * connection, says EHLO, upgrades, says EHLO again, and reports whether the server resumed the
 * session it was offered.
 */
export interface StartTlsResult {
  /** The server accepted the offered session: an abbreviated handshake, no certificate sent. */
  reused: boolean;
  /** The session (ticket) to offer next time; TLS 1.3 sends it after the handshake. */
  session: Buffer | undefined;
  /** From connect to the reply to the EHLO after the handshake. */
  elapsedMs: number;
}

/** Reads one complete (possibly multi-line) reply; rejects after timeoutMs. */
function readReply(socket: Socket | TLSSocket, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => done(new Error(`no SMTP reply within ${timeoutMs} ms; got ${JSON.stringify(text)}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      const lines = text.split('\r\n');
      const last = lines[lines.length - 2];
      if (lines.length >= 2 && last !== undefined && last[3] === ' ') done(null);
    };
    const onClose = (): void => done(new Error(`connection closed; got ${JSON.stringify(text)}`));
    const done = (error: Error | null): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (error) reject(error);
      else resolve(text);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

async function expectCode(socket: Socket | TLSSocket, code: number): Promise<void> {
  const reply = await readReply(socket);
  if (!reply.startsWith(String(code))) throw new Error(`expected ${code}, got ${JSON.stringify(reply)}`);
}

export async function startTlsOnce(
  port: number,
  options: {
    session?: Buffer | undefined;
    version?: 'TLSv1.2' | 'TLSv1.3';
    /** Ask for no ticket: resumption by session ID only (TLS 1.2). */
    noTicket?: boolean;
  } = {},
): Promise<StartTlsResult> {
  const started = performance.now();
  const tcp = connectTcp(port, '127.0.0.1');
  tcp.on('error', () => undefined);
  await expectCode(tcp, 220);
  tcp.write('EHLO client.test\r\n');
  await expectCode(tcp, 250);
  tcp.write('STARTTLS\r\n');
  await expectCode(tcp, 220);
  const tls = connectTls({
    socket: tcp,
    servername: 'relay.test',
    rejectUnauthorized: false,
    session: options.session,
    ...(options.noTicket ? { secureOptions: constants.SSL_OP_NO_TICKET } : {}),
    ...(options.version ? { minVersion: options.version, maxVersion: options.version } : {}),
  });
  let session: Buffer | undefined;
  tls.on('session', (ticket: Buffer) => (session = ticket));
  tls.on('error', () => undefined);
  await new Promise<void>((resolve, reject) => {
    tls.once('secureConnect', resolve);
    tls.once('error', reject);
  });
  tls.write('EHLO client.test\r\n');
  await expectCode(tls, 250);
  const elapsedMs = performance.now() - started;
  const reused = tls.isSessionReused();
  tls.write('QUIT\r\n');
  await expectCode(tls, 221);
  tls.destroy();
  return { reused, session: session ?? tls.getSession(), elapsedMs };
}
