import { describe, expect, it } from 'vitest';
import { mxMatchesPolicy, parseStsPolicy, stsRecordId } from '../src/delivery/mta-sts/policy-text.js';

describe('MTA-STS policy text (RFC 8461 3.2)', () => {
  it('reads the RFC example, CRLF or LF, with extension keys ignored', () => {
    const policy = parseStsPolicy('version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\nfuture_key: x\r\n');
    expect(policy).toEqual({ mode: 'enforce', mx: ['mail.example.com', '*.example.net', 'backupmx.example.com'], maxAgeSeconds: 604800 });
    expect(parseStsPolicy('version: STSv1\nmode: testing\nmx: MX.Example.COM\nmax_age: 86400')).toMatchObject({ mode: 'testing', mx: ['mx.example.com'] });
    expect(parseStsPolicy('version: STSv1\nmode: none\nmax_age: 86400\n')).toMatchObject({ mode: 'none', mx: [] });
  });

  it.each([
    ['no version first', 'mode: enforce\nversion: STSv1\nmx: a.example\nmax_age: 1\n', 'version'],
    ['another version', 'version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n', 'version'],
    ['an unknown mode', 'version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n', 'mode "strict"'],
    ['two modes', 'version: STSv1\nmode: enforce\nmode: testing\nmx: a.example\nmax_age: 1\n', 'mode lines'],
    ['no max_age', 'version: STSv1\nmode: enforce\nmx: a.example\n', 'max_age lines'],
    ['max_age over a year', 'version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 31557601\n', 'max_age'],
    ['a negative max_age', 'version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -5\n', 'max_age'],
    ['enforce without mx', 'version: STSv1\nmode: enforce\nmax_age: 100\n', 'no mx'],
    ['a wildcard inside a name', 'version: STSv1\nmode: enforce\nmx: mx.*.example\nmax_age: 100\n', 'mx "mx.*.example"'],
    ['a bare wildcard', 'version: STSv1\nmode: enforce\nmx: *\nmax_age: 100\n', 'mx "*"'],
    ['an HTML page', '<html><body>hello</body></html>', 'line 1'],
    ['an empty body', '', 'version'],
  ])('refuses %s', (_what, text, reason) => {
    const parsed = parseStsPolicy(text);
    expect(typeof parsed).toBe('string');
    expect(parsed).toContain(reason);
  });

  it('matches MX names, a wildcard standing for exactly one leftmost label (RFC 8461 4.1)', () => {
    const patterns = ['mail.example.com', '*.example.net'];
    expect(mxMatchesPolicy('mail.example.com', patterns)).toBe(true);
    expect(mxMatchesPolicy('MAIL.example.com.', patterns)).toBe(true);
    expect(mxMatchesPolicy('mx1.example.net', patterns)).toBe(true);
    expect(mxMatchesPolicy('example.net', patterns)).toBe(false);
    expect(mxMatchesPolicy('a.b.example.net', patterns)).toBe(false);
    expect(mxMatchesPolicy('evil-mail.example.com', patterns)).toBe(false);
    expect(mxMatchesPolicy('mail.example.com.evil.test', patterns)).toBe(false);
  });

  it('reads the id of the one _mta-sts TXT record, and ignores the rest', () => {
    expect(stsRecordId([['v=STSv1; id=20160831085700Z;']])).toBe('20160831085700Z');
    expect(stsRecordId([['v=STSv1; ', 'id=abc123']])).toBe('abc123');
    expect(stsRecordId([['v=spf1 -all'], ['v=STSv1; id=x1']])).toBe('x1');
    // Two STS records, a missing or overlong id, another version: no policy (RFC 8461 3.1).
    expect(stsRecordId([['v=STSv1; id=a'], ['v=STSv1; id=b']])).toBeNull();
    expect(stsRecordId([['v=STSv1;']])).toBeNull();
    expect(stsRecordId([['v=STSv1; id=' + 'a'.repeat(33)]])).toBeNull();
    expect(stsRecordId([['v=STSv2; id=a']])).toBeNull();
    expect(stsRecordId([])).toBeNull();
  });
});
