import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import nodemailer from 'nodemailer';
import { generate } from 'selfsigned';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../src/submission/passwords.js';
import { countRows, startTestRelay, type TestRelay } from './support/relay.js';
import { SmtpDialog } from './support/smtp-dialog.js';
import { makeTempDir } from './support/temp-dir.js';

const run = promisify(execFile);

describe('submission over STARTTLS and from a second real client (Python smtplib)', () => {
  let relay: TestRelay;
  let certDir: ReturnType<typeof makeTempDir>;

  beforeAll(async () => {
    certDir = makeTempDir('rebound-cert-');
    const pems = await generate([{ name: 'commonName', value: 'relay.test' }], { notAfterDate: new Date(Date.now() + 86_400_000), keySize: 2048, algorithm: 'sha256' });
    const key = join(certDir.dir, 'key.pem');
    const cert = join(certDir.dir, 'cert.pem');
    writeFileSync(key, pems.private);
    writeFileSync(cert, pems.cert);
    relay = await startTestRelay({
      submission: {
        tls: { key, cert },
        auth: { users: [{ username: 'app', passwordHash: await hashPassword('tls-pass') }] },
        allowNetworks: ['127.0.0.1/32'],
        plaintextAuthNetworks: [],
      },
    });
  });

  afterAll(async () => {
    await relay?.stop();
    certDir?.remove();
  });

  it('offers STARTTLS, refuses AUTH before it, and queues authenticated mail after it (ESMTPSA)', async () => {
    const dialog = await SmtpDialog.start(relay.port, { localAddress: '127.0.0.2' });
    const credentials = Buffer.from('\0app\0tls-pass').toString('base64');
    expect((await dialog.command(`AUTH PLAIN ${credentials}`)).code).toBe(538);
    await dialog.quit();

    const info = await nodemailer
      .createTransport({
        host: '127.0.0.1',
        port: relay.port,
        secure: false,
        requireTLS: true,
        localAddress: '127.0.0.2',
        tls: { rejectUnauthorized: false },
        auth: { user: 'app', pass: 'tls-pass' },
      })
      .sendMail({ from: 'a@shop.example', to: 'tls@example.net', subject: 'over TLS', text: 'secret' });
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as /);
    const queueId = info.response.split(' ').pop();
    expect(relay.db.prepare('SELECT auth_user, protocol FROM messages WHERE queue_id = ?').get(queueId)).toEqual({
      auth_user: 'app',
      protocol: 'ESMTPSA',
    });
  });

  it('queues mail that Python smtplib sends with STARTTLS and AUTH, to two recipients', async () => {
    const script = `
import smtplib, ssl, sys
from email.message import EmailMessage
msg = EmailMessage()
msg["From"] = "Py <py@shop.example>"
msg["To"] = "p1@example.net, p2@example.net"
msg["Subject"] = "from smtplib"
msg["Message-ID"] = "<py-1@shop.example>"
msg.set_content("hello from python")
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="py.client.test", source_address=("127.0.0.2", 0)) as smtp:
    smtp.starttls(context=context)
    smtp.login("app", "tls-pass")
    refused = smtp.send_message(msg)
    code, text = smtp.noop()
    print("refused", refused, "noop", code)
`;
    const before = countRows(relay.db, 'messages');
    const { stdout } = await run('python3', ['-c', script, String(relay.port)]);
    expect(stdout.trim()).toBe('refused {} noop 250');
    expect(countRows(relay.db, 'messages')).toBe(before + 1);
    const message = relay.db
      .prepare("SELECT id, client_helo, protocol, from_domain FROM messages WHERE message_id_header = 'py-1@shop.example'")
      .get() as { id: number; client_helo: string; protocol: string; from_domain: string };
    expect(message).toMatchObject({ client_helo: 'py.client.test', protocol: 'ESMTPSA', from_domain: 'shop.example' });
    expect(relay.db.prepare('SELECT address FROM recipients WHERE message_id = ? ORDER BY id').all(message.id)).toEqual([
      { address: 'p1@example.net' },
      { address: 'p2@example.net' },
    ]);
  });

  it('refuses Python smtplib without AUTH from outside allowNetworks (530)', async () => {
    const script = `
import smtplib, sys
try:
    with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), source_address=("127.0.0.2", 0)) as smtp:
        smtp.sendmail("a@shop.example", ["x@example.net"], "Subject: no\\r\\n\\r\\nno\\r\\n")
    print("sent")
except smtplib.SMTPSenderRefused as e:
    print("refused", e.smtp_code, e.smtp_error.decode())
`;
    const before = countRows(relay.db, 'messages');
    const { stdout } = await run('python3', ['-c', script, String(relay.port)]);
    expect(stdout.trim()).toBe('refused 530 5.7.0 Authentication required');
    expect(countRows(relay.db, 'messages')).toBe(before);
  });
});
