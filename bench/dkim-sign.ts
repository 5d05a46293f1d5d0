/**
 * CPU cost of DKIM-signing one message on the delivery path (src/delivery/dkim-signing.ts):
 * what DkimSigner.sign adds per message with an RSA-2048 key, an Ed25519 key, and both; "other
 * domain" is mail whose From domain has no key while another domain has one (the From is read).
 *
 *   npx tsx bench/dkim-sign.ts [--messages 5000] [--size 5120] [--concurrency 1]
 *
 * CPU is process.cpuUsage() (user + system, every thread: the signing itself runs on libuv's
 * pool), divided by the messages; a run without keys gives the cost of the check alone.
 * A measurement, not a test: it prints the figures and asserts nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DkimKeyring } from '../src/dkim/keyring.js';
import { DkimKeyStore } from '../src/dkim/key-store.js';
import { DkimSigner } from '../src/delivery/dkim-signing.js';
import { createLogger } from '../src/logger.js';
import { openStore } from '../src/store/database.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '5000' },
    size: { type: 'string', default: '5120' },
    concurrency: { type: 'string', default: '1' },
  },
});
const messages = Number(values.messages);
const size = Number(values.size);
const concurrency = Number(values.concurrency);

function message(n: number): Buffer {
  const head = [
    'From: Shop <news@shop.example>',
    `To: reader${n}@example.net`,
    `Subject: Your order ${n} has shipped`,
    'Date: Sun, 06 Dec 2026 10:00:00 +0000',
    `Message-ID: <${n}.bench@shop.example>`,
    'MIME-Version: 1.0',
    'Content-Type: text/plain; charset=utf-8',
    'Content-Transfer-Encoding: 8bit',
  ].join('\r\n');
  const line = 'The quick brown fox jumps over the lazy dog, and again the quick brown fox.\r\n';
  return Buffer.from(`${head}\r\n\r\n${line.repeat(Math.ceil(size / line.length))}`);
}

async function run(label: string, algorithms: Array<'rsa-2048' | 'ed25519'>, keyDomain = 'shop.example'): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'rebound-dkim-bench-'));
  const db = openStore(join(dir, 'bench.sqlite'), { synchronous: 'NORMAL' });
  const store = new DkimKeyStore(db);
  for (const algorithm of algorithms) await store.add(keyDomain, null, algorithm);
  const signer = new DkimSigner(new DkimKeyring(db, { enabled: true, reloadSeconds: 10, keys: [] }, createLogger('silent')), createLogger('silent'));
  const inputs = Array.from({ length: 64 }, (_, n) => message(n));
  for (let i = 0; i < 200; i++) await signer.sign(inputs[i % inputs.length] as Buffer, 'warm-up');
  const cpuBefore = process.cpuUsage();
  const started = process.hrtime.bigint();
  let next = 0;
  let added = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < messages) {
        const input = inputs[next++ % inputs.length] as Buffer;
        const signed = await signer.sign(input, 'bench');
        added += signed.length - input.length;
      }
    }),
  );
  const wallMs = Number(process.hrtime.bigint() - started) / 1e6;
  const cpu = process.cpuUsage(cpuBefore);
  const cpuMsPerMessage = (cpu.user + cpu.system) / 1000 / messages;
  console.log(
    `${label.padEnd(18)} ${cpuMsPerMessage.toFixed(3)} ms CPU/msg  ${((messages / wallMs) * 1000).toFixed(0).padStart(6)} msg/s  ${(added / messages).toFixed(0)} bytes of signature(s)/msg`,
  );
  db.close();
  rmSync(dir, { recursive: true, force: true });
}

console.log(`${messages} messages of ~${size} bytes, ${concurrency} at once, node ${process.version}`);
await run('no key', []);
await run('other domain', ['rsa-2048'], 'other.example');
await run('rsa-2048', ['rsa-2048']);
await run('ed25519', ['ed25519']);
await run('rsa-2048 + ed25519', ['rsa-2048', 'ed25519']);
