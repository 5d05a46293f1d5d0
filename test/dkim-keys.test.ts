import { runRebound as rebound } from './support/cli.js';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import nodemailer from 'nodemailer';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { fromDomainOf } from '../src/delivery/dkim-signing.js';
import { dataForWire, messageAsReceived } from '../src/delivery/wire-data.js';
import { relaxedBody, relaxedHeader, splitMessage } from '../src/dkim/canonicalization.js';
import { DkimKeyring } from '../src/dkim/keyring.js';
import { DkimKeyStore } from '../src/dkim/key-store.js';
import { dkimRecord } from '../src/dkim/key-pair.js';
import { signingDomainCandidates } from '../src/dkim/names.js';
import { signedFieldNames } from '../src/dkim/signature.js';
import { createLogger } from '../src/logger.js';
import { startRelay } from '../src/relay.js';
import { openStore } from '../src/store/database.js';
import { recordFromLine, verifyWithDkimpy } from './support/dkimpy.js';
import { startFakeMx } from './support/fake-mx.js';
import { FAST_DELIVERY, startTestRelay, writeTestConfig } from './support/relay.js';
import { makeTempDir } from './support/temp-dir.js';
import { waitFor } from './support/wait-for.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});



/** A config file and a store created the way the relay's first start creates it. */
function installation(override: Record<string, unknown> = {}): { dir: string; configFile: string; storePath: string } {
  const temp = makeTempDir();
  cleanups.push(() => temp.remove());
  const configFile = writeTestConfig(temp.dir, override);
  const storePath = join(temp.dir, 'rebound.sqlite');
  openStore(storePath).close();
  return { dir: temp.dir, configFile, storePath };
}

describe('rebound dkim: bad input gets an error naming the fix (exit code 2)', () => {
  it('refuses what is not a signing domain, a selector or an algorithm, including attempts to inject tags', async () => {
    const { configFile } = installation();
    const cases: Array<[string[], string]> = [
      [['add', 'exa mple.com'], '"exa mple.com" is not a domain name; give the domain of the From: addresses to sign, e.g. example.com'],
      [['add', 'example.com; h=from'], 'is not a domain name'],
      [['add', 'user@example.com'], 'is not a domain name'],
      [['add', '../../etc/passwd'], 'is not a domain name'],
      [['add', 'bad-.example'], 'is not a domain name'],
      [['add', `${'a'.repeat(64)}.example`], 'is not a domain name'],
      [['add', 'com'], '"com" is a top-level domain; give the domain of the From: addresses to sign'],
      [['add', 'example.com', '--selector', 's1; t=y'], '"s1; t=y" is not a selector; use letters, digits and inner hyphens'],
      [['add', 'example.com', '--selector', 'under_score'], 'is not a selector'],
      [['add', 'example.com', '--selector', `${'s'.repeat(60)}.${'s'.repeat(60)}.${'s'.repeat(60)}.${'s'.repeat(60)}`], 'longer than a DNS name may be (253); use a shorter one'],
      [['add', 'example.com', '--algorithm', 'rsa-1024'], '--algorithm: "rsa-1024" is not one of rsa-2048, ed25519'],
      [['rotate', 'example.com', '--algorithm', 'ecdsa'], '--algorithm: "ecdsa" is not one of rsa-2048, ed25519'],
    ];
    for (const [args, message] of cases) {
      const result = await rebound(['dkim', ...args, '--config', configFile]);
      expect([args, result.code]).toEqual([args, 2]);
      expect(result.stderr).toContain(message);
    }
    expect((await rebound(['dkim', 'list', '--config', configFile])).stdout).toContain('0 key(s)');
  });

  it('names the fix for an unknown domain, a taken selector, a second active key, an ambiguous remove and a pending rotation', async () => {
    const { configFile } = installation();
    const run = (...args: string[]) => rebound(['dkim', ...args, '--config', configFile]);
    const expectError = async (args: string[], message: string) => {
      const result = await run(...args);
      expect([args, result.code]).toEqual([args, 2]);
      expect(result.stderr).toContain(message);
    };
    await expectError(['show', 'unknown.example'], 'unknown.example has no DKIM key; add one: rebound dkim add unknown.example');
    await expectError(['rotate', 'unknown.example'], 'unknown.example has no DKIM key to rotate; add one: rebound dkim add unknown.example');
    await expectError(['remove', 'unknown.example'], 'unknown.example has no DKIM key; rebound dkim list shows the domains that have one');
    await expectError(['activate', 'unknown.example', '--selector', 'x'], 'unknown.example has no DKIM key');

    expect((await run('add', 'Example.COM.', '--selector', 'S1')).stdout).toMatch(/^s1\._domainkey\.example\.com TXT "v=DKIM1; k=rsa; p=/);
    await expectError(['add', 'example.com', '--selector', 's1', '--algorithm', 'ed25519'], 'example.com already has a key with selector s1; pick another --selector, or remove that key first: rebound dkim remove example.com --selector s1');
    await expectError(['add', 'example.com'], 'example.com already signs with an active rsa-2048 key (selector s1); to replace it run: rebound dkim rotate example.com');
    await expectError(['activate', 'example.com', '--selector', 'nope'], 'example.com has no key with selector nope; its selectors: s1');
    await expectError(['activate', 'example.com', '--selector', 's1'], 's1._domainkey.example.com is already the active rsa-2048 key');
    await expectError(['rotate', 'example.com', '--selector', 's1'], 'already has a key with selector s1');
    expect((await run('rotate', 'example.com', '--selector', 's2')).code).toBe(0);
    await expectError(['rotate', 'example.com'], 'example.com already has a pending rsa-2048 key (selector s2); publish its record and run: rebound dkim activate example.com --selector s2');
    await expectError(['remove', 'example.com'], 'example.com has 2 keys (s1 active, s2 pending); say which with --selector');
    expect((await run('add', 'example.com', '--algorithm', 'ed25519', '--selector', 'e1')).code).toBe(0);
    await expectError(['rotate', 'example.com'], 'example.com signs with an rsa-2048 and an ed25519 key; say which to rotate: --algorithm rsa-2048 or --algorithm ed25519');

    // An international domain is kept, and published, as punycode.
    expect((await run('add', 'bücher.example', '--selector', 'b')).stdout).toMatch(/^b\._domainkey\.xn--bcher-kva\.example TXT /);
    const listed = JSON.parse((await run('list', '--json')).stdout) as Array<{ domain: string; selector: string; state: string }>;
    expect(listed.map((key) => `${key.domain} ${key.selector} ${key.state}`)).toEqual(['example.com s1 active', 'example.com s2 pending', 'example.com e1 active', 'xn--bcher-kva.example b active']);
    expect(JSON.stringify(listed)).not.toMatch(/private/i);
  });

  it('needs a store that exists: a mistyped store.path does not get a key nobody reads', async () => {
    const temp = makeTempDir();
    cleanups.push(() => temp.remove());
    const configFile = writeTestConfig(temp.dir);
    const result = await rebound(['dkim', 'add', 'example.com', '--config', configFile]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('start the relay once to create it');
  });
});

describe('dkim.keys: private keys in files named in the configuration', () => {
  it('signs with a key file (checked by dkimpy against the record `rebound dkim show` prints), and the file wins over a store key', async () => {
    const temp = makeTempDir();
    cleanups.push(() => temp.remove());
    const keyFile = join(temp.dir, 'shop.pem');
    writeFileSync(keyFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const mx = await startFakeMx();
    cleanups.push(() => mx.close());
    const relay = await startTestRelay({
      dkim: { reloadSeconds: 0.1, keys: [{ domain: 'Shop.Example', selector: 'file1', privateKeyFile: keyFile }] },
      delivery: { ...FAST_DELIVERY, routes: { '*': `127.0.0.1:${mx.port}` } },
    });
    cleanups.push(() => relay.stop());
    const configFile = join(relay.dir, 'config.json');
    // A store key of the same domain and algorithm is overridden by the file.
    expect((await rebound(['dkim', 'add', 'shop.example', '--algorithm', 'ed25519', '--selector', 'stored', '--config', configFile])).code).toBe(0);
    const listed = await rebound(['dkim', 'list', '--config', configFile]);
    expect(listed.stdout).toContain(`shop.example  file1  ed25519  active  file ${keyFile}`);
    const shown = await rebound(['dkim', 'show', 'shop.example', '--config', configFile]);
    const recordLine = shown.stdout.split('\n').find((line) => line.startsWith('file1._domainkey.')) ?? '';
    const record = recordFromLine(recordLine);
    await new Promise((resolve) => setTimeout(resolve, 250));

    await nodemailer.createTransport({ host: '127.0.0.1', port: relay.port, ignoreTLS: true }).sendMail({ from: 'news@shop.example', to: 'reader@example.net', subject: 'file key', text: 'hi' });
    const message = await waitFor('delivery', () => mx.received[0], (m) => m !== undefined);
    const { signatures } = await verifyWithDkimpy(message.raw, { [record.name]: record.text });
    expect(signatures).toMatchObject([{ valid: true, s: 'file1', a: 'ed25519-sha256' }]);
  });

  it('stops the start with exit code 2 and the entry named when a key file cannot sign', async () => {
    const temp = makeTempDir();
    cleanups.push(() => temp.remove());
    const file = (name: string, content: string) => {
      const path = join(temp.dir, name);
      writeFileSync(path, content);
      return path;
    };
    const p256 = file('p256.pem', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    const rsa1024 = file('rsa1024.pem', generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
    const garbage = file('garbage.pem', 'not a key at all');
    const cases: Array<[Record<string, string>, string]> = [
      [{ domain: 'shop.example', selector: 's', privateKeyFile: join(temp.dir, 'missing.pem') }, `dkim.keys[0].privateKeyFile: cannot read ${join(temp.dir, 'missing.pem')} (ENOENT)`],
      [{ domain: 'shop.example', selector: 's', privateKeyFile: p256 }, 'holds a key of type ec; DKIM here signs with RSA-2048 or Ed25519'],
      [{ domain: 'shop.example', selector: 's', privateKeyFile: rsa1024 }, 'holds a key of type rsa and 1024 bits'],
      [{ domain: 'shop.example', selector: 's', privateKeyFile: garbage }, 'is not a PEM private key'],
      [{ domain: 'shop example', selector: 's', privateKeyFile: garbage }, 'dkim.keys[0]: "shop example" is not a domain name'],
      [{ domain: 'shop.example', selector: 's;x', privateKeyFile: garbage }, 'dkim.keys[0]: "s;x" is not a selector'],
    ];
    for (const [entry, message] of cases) {
      const config = loadConfig({ file: writeTestConfig(temp.dir, { dkim: { keys: [entry] }, delivery: { enabled: true } }), env: {} });
      await expect(startRelay(config, createLogger('silent'))).rejects.toThrow(message);
    }
    const configFile = writeTestConfig(temp.dir, { dkim: { keys: [{ domain: 'shop.example', selector: 's', privateKeyFile: p256 }] }, delivery: { enabled: true } });
    const started = await rebound(['start', '--config', configFile]);
    expect(started.code).toBe(2);
    expect(started.stderr).toContain('dkim.keys[0].privateKeyFile');
    expect(started.stderr).not.toContain('PRIVATE KEY');
  });
});

describe('the keyring the delivery stage signs with', () => {
  it('skips a stored key that cannot be read, logs it without key material, and keeps signing the other domains', async () => {
    const temp = makeTempDir();
    cleanups.push(() => temp.remove());
    const db = openStore(join(temp.dir, 'store.sqlite'));
    cleanups.push(() => {
      db.close();
    });
    const store = new DkimKeyStore(db);
    await store.add('good.example', 'g', 'ed25519');
    await store.add('broken.example', 'b', 'ed25519');
    db.prepare("UPDATE dkim_keys SET private_key = '-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ1dC1icm9rZW4=\n-----END PRIVATE KEY-----\n' WHERE domain = 'broken.example'").run();
    const lines: string[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) }));
    const keyring = new DkimKeyring(db, { enabled: true, reloadSeconds: 60, keys: [] }, log);
    expect(keyring.keysFor('good.example').map((key) => key.selector)).toEqual(['g']);
    expect(keyring.keysFor('news.good.example').map((key) => key.selector)).toEqual(['g']);
    expect(keyring.keysFor('broken.example')).toEqual([]);
    expect(keyring.keysFor('notgood.example')).toEqual([]);
    const text = lines.join('');
    expect(text).toContain('a stored DKIM key cannot be read');
    expect(text).not.toContain('c2VjcmV0LWJ1dC1icm9rZW4');
    // Read again only when the reload time has passed.
    db.prepare("DELETE FROM dkim_keys WHERE domain = 'good.example'").run();
    expect(keyring.keysFor('good.example', Date.now())).toHaveLength(1);
    expect(keyring.keysFor('good.example', Date.now() + 61_000)).toEqual([]);
  });
});

describe('DKIM canonicalisation (RFC 6376 3.4)', () => {
  it('gives the relaxed forms of the RFC 6376 3.4.6 example', () => {
    const message = messageAsReceived(Buffer.from('A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n'));
    const { fields, body } = splitMessage(message);
    expect(fields.map((field) => relaxedHeader(field.key, field.value)).join('')).toBe('a:X\r\nb:Y Z\r\n');
    expect(relaxedBody(body).toString()).toBe(' C\r\nD E\r\n');
    expect(relaxedBody(Buffer.from('\r\n\r\n')).length).toBe(0);
    expect(relaxedBody(Buffer.alloc(0)).length).toBe(0);
  });

  it('takes hostile bodies in time linear in their size (no regex backtracking)', () => {
    const started = performance.now();
    for (const body of [' '.repeat(4_000_000), `${' \t'.repeat(2_000_000)}x`, '\r\n'.repeat(2_000_000), `${' '.repeat(2_000_000)}\r\n`]) relaxedBody(Buffer.from(body));
    expect(performance.now() - started).toBeLessThan(3_000);
    expect(relaxedBody(Buffer.from(`${' '.repeat(1_000_000)}\r\n`)).length).toBe(0);
  });

  it('signs what the receiver reads: messageAsReceived is dataForWire with the dots unstuffed and the final dot gone', () => {
    const inputs = ['plain\r\nlines\r\n', 'bare LF\nline\n.dot after bare LF\n', 'bare CR\rhere\r', 'no end', '.first dot\r\n..two\r\n', 'mixed\r\n\n\r\r\n', ''];
    for (const input of inputs) {
      const wire = dataForWire(Buffer.from(input)).toString('latin1');
      const unstuffed = wire.slice(0, -3).replace(/(^|\r\n)\./g, '$1');
      expect([input, messageAsReceived(Buffer.from(input)).toString('latin1')]).toEqual([input, unstuffed]);
    }
  });

  it('lists each signed field once per occurrence, From once more; finds the From domain; walks up to parent domains', () => {
    const fields = splitMessage(Buffer.from('To: a@x\r\nTo: b@x\r\nFrom: c@y\r\nX-Other: 1\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n\r\n')).fields;
    expect(signedFieldNames(fields)).toEqual(['From', 'From', 'To', 'To', 'List-Unsubscribe-Post']);
    expect(signedFieldNames([])).toEqual(['From']);
    const from = (value: string) => fromDomainOf(splitMessage(Buffer.from(`From: ${value}\r\n\r\n`, 'latin1')).fields);
    expect(from('"Shop, Inc." <News@Shop.Example>')).toBe('shop.example');
    expect(from(Buffer.from('Zoë <zoe@bücher.example>').toString('latin1'))).toBe('xn--bcher-kva.example');
    expect(from('first@one.example, second@two.example')).toBe('one.example');
    expect(from('undisclosed-recipients:;')).toBeNull();
    expect(from(`${'<'.repeat(50_000)}@@@`)).toBeNull();
    expect(fromDomainOf(splitMessage(Buffer.from('To: a@x\r\n\r\n')).fields)).toBeNull();
    expect(signingDomainCandidates('a.b.example.com')).toEqual(['a.b.example.com', 'b.example.com', 'example.com']);
    expect(signingDomainCandidates('localhost')).toEqual([]);
  });

  it('cuts a long record into strings of at most 255 bytes that join back to the text', () => {
    const record = dkimRecord('example.com', 's', 'rsa-2048', 'A'.repeat(392));
    expect(record.strings.map((s) => s.length)).toEqual([255, 155]);
    expect(record.strings.join('')).toBe(record.text);
    expect(record.line).toBe(`s._domainkey.example.com TXT "${record.strings[0]}" "${record.strings[1]}"`);
    expect(dkimRecord('example.com', 's', 'ed25519', 'k'.repeat(44)).strings).toHaveLength(1);
  });
});
