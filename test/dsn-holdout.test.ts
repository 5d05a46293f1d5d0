import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { familyOf, patternsWithout, readHoldoutSources, rulesWithout, scoreHoldoutByFamily } from '../bench/dsn-holdout.js';
import { makeTempDir } from './support/temp-dir.js';

/** An RFC 3464 report for one recipient whose remote reply is `diagnostic` (no enhanced code: the words decide). */
function report(recipient: string, diagnostic: string): string {
  return [
    'From: MAILER-DAEMON@mx.example.net',
    'To: rb+x@bounces.rebound.example',
    'Subject: Undelivered Mail Returned to Sender',
    'MIME-Version: 1.0',
    'Content-Type: multipart/report; report-type=delivery-status; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain',
    '',
    'Your message could not be delivered.',
    '',
    '--b',
    'Content-Type: message/delivery-status',
    '',
    'Reporting-MTA: dns; mx.example.net',
    '',
    `Final-Recipient: rfc822; ${recipient}`,
    'Action: failed',
    'Status: 5.0.0',
    `Diagnostic-Code: smtp; 550 ${diagnostic}`,
    '',
    '--b--',
    '',
  ].join('\r\n');
}

const expectedRow = (category: string) => ({
  kind: 'bounce',
  reason: category,
  status: '5.0.0',
  status_pseudo: false,
  severity: 'permanent',
  categories_ok: [category],
  spec_type: 'bounce',
});

/** Two files, one from family "alpha" (lhost-alpha) and one from "beta" (rhost-beta). */
function writeCorpus(dir: string): void {
  mkdirSync(join(dir, 'maildir/bsd'), { recursive: true });
  writeFileSync(join(dir, 'maildir/bsd/lhost-alpha-01.eml'), report('ana@example.net', 'frobnicated recipient'));
  writeFileSync(join(dir, 'maildir/bsd/rhost-beta-01.eml'), report('bo@example.org', 'storage allotment exhausted'));
  const entries = [
    { path: 'maildir/bsd/lhost-alpha-01.eml', group: 'lhost-alpha', format: 'rfc3464', kind: 'bounce', recipients: [expectedRow('bad-mailbox')] },
    { path: 'maildir/bsd/rhost-beta-01.eml', group: 'rhost-beta', format: 'rfc3464', kind: 'bounce', recipients: [expectedRow('quota-issues')] },
  ];
  writeFileSync(join(dir, 'manifest.json'), JSON.stringify({ entries }));
}

/** Rules that know each file's wording; `alphaTag` tags the first as learnt from family alpha. */
function rules(alphaTag: boolean): unknown {
  return {
    defaults: { permanent: 'other', temporary: 'other' },
    rules: [
      { id: 'alpha-frobnicated', pattern: 'frobnicated', category: 'bad-mailbox', why: 'test', ...(alphaTag ? { mta: 'alpha' } : {}) },
      { id: 'beta-allotment', pattern: 'allotment exhausted', category: 'quota-issues', why: 'test' },
    ],
  };
}

describe('eval:dsn --holdout-by family (bench/dsn-holdout.ts)', () => {
  let corpus: { dir: string; remove: () => void };
  beforeEach(() => {
    corpus = makeTempDir('rebound-holdout-');
    writeCorpus(corpus.dir);
  });
  afterEach(() => corpus.remove());

  it('names a family by its corpus group without lhost-/rhost-', () => {
    expect(['lhost-exim', 'rhost-google', 'arf', 'lhost-exchange2003'].map(familyOf)).toEqual(['exim', 'google', 'arf', 'exchange2003']);
  });

  it('with no rule tagged "mta", the held-out score is the usual one', async () => {
    const { patterns } = readHoldoutSources();
    const score = await scoreHoldoutByFamily(corpus.dir, { rules: rules(false), patterns });
    expect(score.normal.categoryAgree).toBe(2);
    expect(score.heldOut.categoryAgree).toBe(2);
    expect(score.families.map((f) => [f.family, f.files, f.heldOutRules, f.heldOutPatterns])).toEqual([
      ['alpha', 1, [], false],
      ['beta', 1, [], false],
    ]);
  });

  it('scores each family without the rules tagged with it, and adds the families up', async () => {
    const { patterns } = readHoldoutSources();
    const score = await scoreHoldoutByFamily(corpus.dir, { rules: rules(true), patterns });
    // Usual: every rule for every file. Held out: alpha's file without alpha's rule falls to the default.
    expect([score.normal.expectedRecipients, score.normal.foundRecipients, score.normal.severityAgree, score.normal.categoryAgree]).toEqual([2, 2, 2, 2]);
    expect([score.heldOut.expectedRecipients, score.heldOut.foundRecipients, score.heldOut.severityAgree, score.heldOut.categoryAgree]).toEqual([2, 2, 2, 1]);
    const alpha = score.families.find((f) => f.family === 'alpha');
    expect(alpha?.heldOutRules).toEqual(['alpha-frobnicated']);
    expect(alpha?.heldOut.reports.get('maildir/bsd/lhost-alpha-01.eml')?.recipients[0]?.category).toBe('other');
    const beta = score.families.find((f) => f.family === 'beta');
    expect(beta?.heldOut.categoryAgree).toBe(1);
  });

  it('leaves out the provider rules (remote-host rules file) tagged with the family too', async () => {
    const { patterns } = readHoldoutSources();
    // beta's file names its Reporting-MTA mx.example.net; a provider rule for that host decides it.
    const remoteHostRules = {
      rules: [{ id: 'beta-host-allotment', mta: 'beta', remoteHost: 'example.net', pattern: 'allotment', category: 'inactive-mailbox', why: 'test' }],
    };
    const score = await scoreHoldoutByFamily(corpus.dir, { rules: rules(false), patterns, remoteHostRules });
    const beta = score.families.find((f) => f.family === 'beta');
    expect(beta?.heldOutRules).toEqual(['beta-host-allotment']);
    expect(beta?.normal.reports.get('maildir/bsd/rhost-beta-01.eml')?.recipients[0]?.category).toBe('inactive-mailbox');
    expect(beta?.heldOut.reports.get('maildir/bsd/rhost-beta-01.eml')?.recipients[0]?.category).toBe('quota-issues');
    expect(score.families.find((f) => f.family === 'alpha')?.heldOutRules).toEqual([]);
  });

  it('leaves out the NDR pattern family of the same name, and only it', () => {
    const { patterns } = readHoldoutSources();
    const ids = (data: unknown): string[] => (data as { families: Array<{ id: string }> }).families.map((f) => f.id);
    const without = patternsWithout(patterns, 'exim');
    expect(without.removed).toBe(true);
    expect(ids(without.data)).toEqual(ids(patterns).filter((id) => id !== 'exim'));
    expect(patternsWithout(patterns, 'alpha').removed).toBe(false);
  });

  it('takes the "mta" tag off the rules it keeps (the rules schema has no use for it)', () => {
    const { data, removed } = rulesWithout(rules(true), 'beta');
    expect(removed).toEqual([]);
    expect((data as { rules: object[] }).rules.every((rule) => !('mta' in rule))).toBe(true);
  });
});
