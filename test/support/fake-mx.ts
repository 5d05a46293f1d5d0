import { createServer, type AddressInfo, type Server } from 'node:net';
import { SMTPServer } from 'smtp-server';

/** A reply the fake MX gives instead of accepting: `{ code: 550, text: '5.1.1 User unknown' }`. */
export interface ScriptedReply {
  code: number;
  text: string;
}

export interface ReceivedMessage {
  from: string;
  to: string[];
  raw: Buffer;
  remoteAddress: string;
  helo: string;
  secure: boolean;
  authUser: string | null;
  /** MAIL FROM's BODY= parameter (RFC 6152), null when not given. */
  body: string | null;
  /** When the end of DATA was accepted (Date.now()). */
  at: number;
}

export interface FakeMxScript {
  host?: string;
  /** 0 (any free port) by default; MX hosts on different addresses share delivery.port. */
  port?: number;
  /** Refuse the connection with this greeting (e.g. 421). */
  greeting?: ScriptedReply;
  /** A reply for RCPT TO, or null to accept. `attempt` counts RCPTs for this address, from 1. */
  rcpt?: (address: string, attempt: number) => ScriptedReply | null;
  /** A reply at the end of DATA, or null to accept. `attempt` counts DATA commands, from 1; `from` is the client's address. */
  data?: (recipients: string[], attempt: number, from: string) => ScriptedReply | null;
  tls?: { key: string; cert: string };
  /** Require AUTH (PLAIN/LOGIN) with these credentials, as a smarthost does. */
  auth?: { user: string; pass: string };
  /** Wait this long before answering the end of DATA (a slow host). */
  dataDelayMs?: number;
  /** Announce this SIZE limit in EHLO (RFC 1870). */
  size?: number;
  /** The reply to MAIL FROM from the second transaction of a connection on (a 421 closes it). */
  mailFromOnReusedConnection?: ScriptedReply;
}

export interface FakeMx {
  host: string;
  port: number;
  received: ReceivedMessage[];
  /** Connections the relay opened (every one that got a greeting). */
  readonly connections: number;
  /** Connections open now. */
  readonly openConnections: number;
  /** When each connection was opened (Date.now()), in order. */
  readonly connectedAt: number[];
  close(): Promise<void>;
}

function bodyParameter(args: Record<string, string | true> | false): string | null {
  const body = args ? args.BODY : undefined;
  return typeof body === 'string' ? body : null;
}

function replyError(reply: ScriptedReply): Error & { responseCode: number } {
  return Object.assign(new Error(reply.text), { responseCode: reply.code });
}

/** A real SMTP server on 127.0.0.1 that answers as scripted and keeps what it accepted. */
export async function startFakeMx(script: FakeMxScript = {}): Promise<FakeMx> {
  const host = script.host ?? '127.0.0.1';
  const received: ReceivedMessage[] = [];
  const rcptAttempts = new Map<string, number>();
  let dataAttempts = 0;
  let connections = 0;
  const connectedAt: number[] = [];
  let openConnections = 0;
  const server = new SMTPServer({
    logger: false,
    disableReverseLookup: true,
    authOptional: !script.auth,
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth: true,
    onAuth(auth, _session, callback) {
      if (script.auth && auth.username === script.auth.user && auth.password === script.auth.pass) return callback(null, { user: auth.username });
      callback(Object.assign(new Error('5.7.8 Authentication credentials invalid'), { responseCode: 535 }));
    },
    // Scripted replies carry their own enhanced codes, exactly as a real MX words them.
    hideENHANCEDSTATUSCODES: true,
    ...(script.size ? { size: script.size } : {}),
    ...(script.tls ? { key: script.tls.key, cert: script.tls.cert } : { disabledCommands: ['STARTTLS'] }),
    onClose() {
      openConnections--;
    },
    onConnect(_session, callback) {
      connections++;
      connectedAt.push(Date.now());
      openConnections++;
      callback(script.greeting ? replyError(script.greeting) : undefined);
    },
    onMailFrom(_address, session, callback) {
      const reused = session.transaction > 1;
      callback(reused && script.mailFromOnReusedConnection ? replyError(script.mailFromOnReusedConnection) : undefined);
    },
    onRcptTo(address, _session, callback) {
      const attempt = (rcptAttempts.get(address.address) ?? 0) + 1;
      rcptAttempts.set(address.address, attempt);
      const reply = script.rcpt?.(address.address, attempt);
      callback(reply ? replyError(reply) : undefined);
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', async () => {
        if (script.dataDelayMs) await new Promise((resolve) => setTimeout(resolve, script.dataDelayMs));
        const to = session.envelope.rcptTo.map((r) => r.address);
        const reply = script.data?.(to, ++dataAttempts, session.remoteAddress);
        if (reply) return callback(replyError(reply));
        received.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to,
          raw: Buffer.concat(chunks),
          remoteAddress: session.remoteAddress,
          helo: session.hostNameAppearsAs,
          secure: session.secure,
          authUser: (session.user as string | undefined) ?? null,
          body: bodyParameter(session.envelope.mailFrom ? session.envelope.mailFrom.args : false),
          at: Date.now(),
        });
        callback(null, 'Ok: queued on the fake MX');
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(script.port ?? 0, host, resolve));
  const { port } = server.server.address() as AddressInfo;
  return {
    host,
    port,
    received,
    get connections() {
      return connections;
    },
    get openConnections() {
      return openConnections;
    },
    connectedAt,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A TCP server that accepts connections and never says a word (the "no answer" MX). */
export async function startSilentServer(host = '127.0.0.1'): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<import('node:net').Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port on which nothing listens (connection refused). */
export async function closedPort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * An MX that offers STARTTLS and then breaks the handshake (it answers 220 and sends bytes that
 * are not TLS), but takes mail in plaintext: the opportunistic-TLS fallback's peer.
 */
export async function startBrokenTlsMx(host = '127.0.0.1'): Promise<{ port: number; received: Array<{ to: string[]; raw: string }>; connections: number; close(): Promise<void> }> {
  const received: Array<{ to: string[]; raw: string }> = [];
  const sockets = new Set<import('node:net').Socket>();
  const state = { connections: 0 };
  const server: Server = createServer((socket) => {
    state.connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    let buffered = '';
    let data: string | null = null;
    let to: string[] = [];
    const reply = (line: string): void => {
      socket.write(`${line}\r\n`);
    };
    reply('220 broken-tls.test ESMTP');
    socket.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('latin1');
      let end: number;
      while ((end = buffered.indexOf('\r\n')) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (data !== null) {
          if (line === '.') {
            received.push({ to, raw: data });
            data = null;
            to = [];
            reply('250 2.0.0 Ok: queued in plaintext');
          } else data += `${line}\r\n`;
          continue;
        }
        const command = line.toUpperCase();
        if (command.startsWith('EHLO')) reply('250-broken-tls.test\r\n250 STARTTLS');
        else if (command === 'STARTTLS') {
          reply('220 2.0.0 Ready to start TLS');
          socket.end('this is not a TLS server hello\r\n');
        } else if (command.startsWith('MAIL FROM')) reply('250 2.1.0 Ok');
        else if (command.startsWith('RCPT TO')) {
          to.push(line.slice(line.indexOf('<') + 1, line.lastIndexOf('>')));
          reply('250 2.1.5 Ok');
        } else if (command === 'DATA') {
          data = '';
          reply('354 End data with <CR><LF>.<CR><LF>');
        } else if (command === 'RSET') reply('250 2.0.0 Ok');
        else if (command === 'QUIT') {
          reply('221 2.0.0 Bye');
          socket.end();
        } else reply('502 5.5.2 Error: command not recognized');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return {
    port: (server.address() as AddressInfo).port,
    received,
    get connections() {
      return state.connections;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
