import { Option, type Command } from 'commander';
import type { Config } from '../config/load.js';
import type { DkimKeyInfo, DkimKeyStore } from '../dkim/key-store.js';
import type { DkimAlgorithm, DkimRecord } from '../dkim/key-pair.js';
import { OperatorError } from '../errors.js';
import { configFrom, configOption, openExistingStore } from './common.js';

const ALGORITHMS: readonly DkimAlgorithm[] = ['rsa-2048', 'ed25519'];

function algorithmOf(value: string | undefined): DkimAlgorithm | null {
  if (value === undefined) return null;
  if (!ALGORITHMS.includes(value as DkimAlgorithm)) throw new OperatorError(`--algorithm: "${value}" is not one of ${ALGORITHMS.join(', ')}`);
  return value as DkimAlgorithm;
}

/** Runs `work` on the key table of the configured store, and closes the store after. */
async function withKeys<T>(config: Config, work: (keys: DkimKeyStore) => T | Promise<T>): Promise<T> {
  const { DkimKeyStore } = await import('../dkim/key-store.js');
  const db = await openExistingStore(config);
  try {
    return await work(new DkimKeyStore(db));
  } finally {
    db.close();
  }
}

async function names(domainInput: string, selectorInput?: string): Promise<{ domain: string; selector: string | null }> {
  const { selectorOrThrow, signingDomainOrThrow } = await import('../dkim/names.js');
  const domain = signingDomainOrThrow(domainInput);
  return { domain, selector: selectorInput === undefined ? null : selectorOrThrow(selectorInput, domain) };
}

/**
 * The record to publish, first line exactly `NAME TXT "…"` (cut into strings of at most 255
 * bytes, as a TXT record needs), then zone-file comments on what to do with it.
 */
function printRecord(record: DkimRecord): void {
  console.log(record.line);
  if (record.strings.length > 1) {
    console.log(`; the text is longer than 255 bytes, so it is cut into ${record.strings.length} strings, as a TXT record needs (RFC 1035 3.3.14);`);
    console.log('; a zone file and most DNS providers take them quoted and apart as above (receivers join them); a web form that');
    console.log(`; splits long text itself wants it whole: ${record.text}`);
  }
  console.log(`; in a zone file, write the name with a final dot (${record.name}.) or relative to the zone's origin.`);
}

function keyLine(key: DkimKeyInfo | FileKeyInfo): string {
  const since = 'file' in key ? `file ${key.file}` : key.state === 'retired' ? `retired ${key.retiredAt}` : key.state === 'active' ? `signing since ${key.activatedAt}` : `created ${key.createdAt}`;
  return `${key.domain}  ${key.selector}  ${key.algorithm}  ${key.state}  ${since}`;
}

interface FileKeyInfo {
  domain: string;
  selector: string;
  algorithm: DkimAlgorithm;
  state: 'active';
  file: string;
  record: DkimRecord;
}

/** The dkim.keys entries of the config, described like store keys (their record included); a broken entry stops here with its name. */
async function fileKeys(config: Config): Promise<FileKeyInfo[]> {
  if (config.dkim.keys.length === 0) return [];
  const { readKeyFiles } = await import('../dkim/key-files.js');
  const { dkimRecord, publicKeyValueOfPrivate } = await import('../dkim/key-pair.js');
  return readKeyFiles(config.dkim).map((key) => ({
    domain: key.domain,
    selector: key.selector,
    algorithm: key.algorithm,
    state: 'active' as const,
    file: key.file,
    record: dkimRecord(key.domain, key.selector, key.algorithm, publicKeyValueOfPrivate(key.privateKey)),
  }));
}

function reloadNote(config: Config): string {
  return `the running relay reads the change within dkim.reloadSeconds (${config.dkim.reloadSeconds} s)`;
}

/** rebound dkim add|list|show|rotate|activate|remove. The private key never leaves the store: no command prints it. */
export function registerDkimCommands(program: Command): void {
  const dkim = program.command('dkim').description('DKIM keys per signing domain: relayed mail whose From domain (or a parent of it) has a key is signed');

  dkim
    .command('add')
    .description('make a key pair for DOMAIN, keep it in the store and sign its mail with it from now on; prints the DNS TXT record to publish')
    .argument('<domain>', 'the signing domain (d=): the domain of the From: addresses, or a parent of them')
    .option('--selector <selector>', 'the selector (s=); default rb + year + month, e.g. rb202612 (rb202612ed for ed25519)')
    .addOption(new Option('--algorithm <algorithm>', 'rsa-2048 (every receiver verifies it) or ed25519 (RFC 8463; add it beside an RSA key)').default('rsa-2048'))
    .addOption(configOption())
    .option('--json', 'print the key (without its private part) as JSON')
    .action(async (domainInput: string, options: { selector?: string; algorithm: string; config?: string; json?: boolean }) => {
      const algorithm = algorithmOf(options.algorithm) ?? 'rsa-2048';
      const { domain, selector } = await names(domainInput, options.selector);
      const config = await configFrom(options);
      const key = await withKeys(config, (keys) => keys.add(domain, selector, algorithm));
      if (options.json) return console.log(JSON.stringify(key, null, 2));
      printRecord(key.record);
      console.log(`; ${domain} mail is signed with ${key.selector} (${algorithm}) from now on; ${reloadNote(config)}.`);
      console.log('; publish the record now: until receivers find it they count the signature as failed, which is no worse than none.');
      if (algorithm === 'ed25519') console.log(`; many receivers do not verify Ed25519 yet: sign with an RSA key too (rebound dkim add ${domain}).`);
      if (!config.dkim.enabled) console.log('; dkim.enabled is false in the configuration: nothing is signed until it is true.');
    });

  dkim
    .command('list')
    .description('every key: domain, selector, algorithm, state (active signs, pending waits for activate, retired is kept until removed)')
    .addOption(configOption())
    .option('--json', 'print JSON')
    .action(async (options: { config?: string; json?: boolean }) => {
      const config = await configFrom(options);
      const stored = await withKeys(config, (keys) => keys.list());
      const files = await fileKeys(config);
      if (options.json) return console.log(JSON.stringify([...stored, ...files], null, 2));
      for (const key of [...stored, ...files]) console.log(keyLine(key));
      console.log(`${stored.length + files.length} key(s)${files.length > 0 ? `, ${files.length} of them from dkim.keys files` : ''}`);
    });

  dkim
    .command('show')
    .description("a domain's keys with the TXT record each needs in DNS")
    .argument('<domain>')
    .addOption(configOption())
    .option('--json', 'print JSON')
    .action(async (domainInput: string, options: { config?: string; json?: boolean }) => {
      const { domain } = await names(domainInput);
      const config = await configFrom(options);
      const keys = [...(await withKeys(config, (store) => store.list(domain))), ...(await fileKeys(config)).filter((key) => key.domain === domain)];
      if (keys.length === 0) throw new OperatorError(`${domain} has no DKIM key; add one: rebound dkim add ${domain}`);
      if (options.json) return console.log(JSON.stringify(keys, null, 2));
      for (const key of keys) {
        console.log(keyLine(key));
        printRecord(key.record);
        console.log('');
      }
    });

  dkim
    .command('rotate')
    .description('make a new key for DOMAIN, pending: the current key signs until `rebound dkim activate` (after the new record is in DNS)')
    .argument('<domain>')
    .option('--selector <selector>', 'the new selector; default rb + year + month (with -2, -3 … when taken)')
    .option('--algorithm <algorithm>', 'which key to rotate when the domain has both: rsa-2048 or ed25519')
    .addOption(configOption())
    .action(async (domainInput: string, options: { selector?: string; algorithm?: string; config?: string }) => {
      const algorithm = algorithmOf(options.algorithm);
      const { domain, selector } = await names(domainInput, options.selector);
      const config = await configFrom(options);
      const { key, replaces } = await withKeys(config, (keys) => keys.rotate(domain, selector, algorithm));
      printRecord(key.record);
      console.log(`; a new ${key.algorithm} key for ${domain}, selector ${key.selector}: pending, it does not sign yet${replaces ? `; ${replaces.selector} signs until you switch` : ''}.`);
      console.log(`; 1. publish the record above; 2. once it resolves (dig +short TXT ${key.record.name}), run:`);
      console.log(`;    rebound dkim activate ${domain} --selector ${key.selector}   (it checks the record in DNS first)`);
      if (replaces) console.log(`; 3. keep ${replaces.record.name} published a few days more, then: rebound dkim remove ${domain} --selector ${replaces.selector}`);
    });

  dkim
    .command('activate')
    .description('switch DOMAIN to the key SELECTOR (pending or retired) once its record is in DNS; the key it replaces is retired, kept until removed')
    .argument('<domain>')
    .requiredOption('--selector <selector>', 'the key to sign with')
    .option('--skip-dns-check', 'switch without looking the record up first (receivers fail the signature until they find it)')
    .addOption(configOption())
    .action(async (domainInput: string, options: { selector: string; skipDnsCheck?: boolean; config?: string }) => {
      const { domain, selector } = await names(domainInput, options.selector);
      const config = await configFrom(options);
      await withKeys(config, async (keys) => {
        const target = keys.list(domain).find((key) => key.selector === selector);
        if (target && target.state !== 'active' && !options.skipDnsCheck) {
          const { createResolver } = await import('../delivery/mail-hosts.js');
          const { checkPublished } = await import('../dkim/published-record.js');
          const check = await checkPublished(createResolver(config.delivery.dns.servers, config.delivery.dns.timeoutMs), target.record);
          if (!check.published) {
            const via = config.delivery.dns.servers.length > 0 ? config.delivery.dns.servers.join(', ') : "the system's resolver";
            throw new OperatorError(`${check.reason}, asked via ${via}; publish\n  ${target.record.line}\nand run this again once it resolves (--skip-dns-check switches without looking)`);
          }
        }
        const { key, retired } = keys.activate(domain, selector as string);
        console.log(`${key.record.name} (${key.algorithm}) signs ${domain} mail now; ${reloadNote(config)}.`);
        if (retired) console.log(`${retired.selector} is retired: keep ${retired.record.name} published a few days more, then: rebound dkim remove ${domain} --selector ${retired.selector}`);
      });
    });

  dkim
    .command('remove')
    .description("delete a key (the domain's only one, or the one --selector names); say which DNS record can go")
    .argument('<domain>')
    .option('--selector <selector>', 'the key to delete (needed when the domain has more than one)')
    .addOption(configOption())
    .action(async (domainInput: string, options: { selector?: string; config?: string }) => {
      const { domain, selector } = await names(domainInput, options.selector);
      const config = await configFrom(options);
      const removed = await withKeys(config, (keys) => keys.remove(domain, selector));
      console.log(`removed ${removed.record.name} (${removed.algorithm}, ${removed.state}); delete its TXT record from DNS.`);
      if (removed.state === 'active') console.log(`it was signing: ${domain} mail is no longer signed with ${removed.algorithm}; ${reloadNote(config)}.`);
    });
}
