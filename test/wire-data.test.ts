import { createServer, type AddressInfo, type Server } from 'node:net';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import { afterEach, describe, expect, it } from 'vitest';
import { canWriteDirectly, dataForWire, writeDataDirectly } from '../src/delivery/wire-data.js';

const servers: Server[] = [];
afterEach(() => {
  for (const server of servers.splice(0)) server.close();
});

/** A minimal SMTP server that keeps each transaction's DATA bytes exactly as they arrived (terminator included). */
async function recordingServer(): Promise<{ port: number; data: Buffer[] }> {
  const data: Buffer[] = [];
  const server = createServer((socket) => {
    let buffered = Buffer.alloc(0);
    let inData = false;
    socket.write('220 test ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      for (;;) {
        if (inData) {
          const end = buffered.indexOf('\r\n.\r\n');
          const atStart = buffered.subarray(0, 3).equals(Buffer.from('.\r\n'));
          if (end === -1 && !atStart) return;
          const length = atStart ? 3 : end + 5;
          data.push(Buffer.from(buffered.subarray(0, length)));
          buffered = buffered.subarray(length);
          inData = false;
          socket.write('250 2.0.0 queued\r\n');
          continue;
        }
        const eol = buffered.indexOf('\r\n');
        if (eol === -1) return;
        const line = buffered.subarray(0, eol).toString('latin1').toUpperCase();
        buffered = buffered.subarray(eol + 2);
        if (line.startsWith('EHLO')) socket.write('250-test\r\n250-PIPELINING\r\n250 8BITMIME\r\n');
        else if (line === 'DATA') {
          inData = true;
          socket.write('354 go on\r\n');
        } else if (line === 'QUIT') socket.end('221 bye\r\n');
        else socket.write('250 ok\r\n');
      }
    });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, data };
}

async function sendAll(port: number, messages: Buffer[], direct: boolean): Promise<void> {
  const connection = new SMTPConnection({ host: '127.0.0.1', port, ignoreTLS: true, logger: false });
  if (direct) writeDataDirectly(connection);
  await new Promise<void>((resolve, reject) => connection.connect((error) => (error ? reject(error) : resolve())));
  for (const message of messages) {
    await new Promise<void>((resolve, reject) =>
      connection.send({ from: 'a@example.test', to: ['b@example.test'] }, message, (error) => (error ? reject(error) : resolve())),
    );
  }
  connection.quit();
}

const samples = [
  'Subject: plain\r\n\r\nbody\r\n',
  '.starts with a dot\r\n\r\n.\r\n..two\r\n',
  'bare LF\nline\n.dot after bare LF\n',
  'bare CR\rline\r.dot after bare CR\r',
  'no final newline',
  'ends with CR\r',
  '\r\n.\r\n',
  'mixed\r\n\n\r\r\n.\r\n\r.',
  'eight bit: caf\xe9\r\n',
];

describe('DATA written directly', () => {
  it('sends the same bytes as nodemailer\'s own DATA stream, message after message on one connection', async () => {
    const random: string[] = [];
    for (let n = 0; n < 200; n++) {
      let text = '';
      for (let k = 0; k < 30; k++) text += ['a', '.', '\r', '\n', '\r\n', 'x'][Math.floor(Math.random() * 6)];
      random.push(text);
    }
    const messages = [...samples, ...random].map((text) => Buffer.from(text, 'latin1'));
    // The installed nodemailer still has the internals the direct write replaces.
    expect(canWriteDirectly).toBe(true);
    const own = await recordingServer();
    const direct = await recordingServer();
    await sendAll(own.port, messages, false);
    await sendAll(direct.port, messages, true);
    expect(direct.data.length).toBe(messages.length);
    direct.data.forEach((bytes, n) => expect(bytes.toString('latin1'), JSON.stringify(messages[n]?.toString('latin1'))).toBe(own.data[n]?.toString('latin1')));
  });

  it('stuffs leading dots and ends the data', () => {
    expect(dataForWire(Buffer.from('a\r\n.b\r\n')).toString()).toBe('a\r\n..b\r\n.\r\n');
    expect(dataForWire(Buffer.from('a\nb')).toString()).toBe('a\r\nb\r\n.\r\n');
  });
});
