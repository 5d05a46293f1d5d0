import ipaddr from 'ipaddr.js';
import { describe, expect, it } from 'vitest';
import { normalizeAddress } from '../src/address.js';
import { newQueueId } from '../src/store/queue-id.js';
import { findAmbiguousDotLine } from '../src/submission/framing.js';
import { summarizeMessage } from '../src/submission/message-headers.js';
import { receivedHeader, rfc5322Date } from '../src/submission/received-header.js';
import { NetworkList } from '../src/submission/relay-policy.js';

describe('findAmbiguousDotLine', () => {
  it.each([
    ['', -1],
    ['Subject: x\r\n\r\nno dots at all\r\n', -1],
    ['a\r\n.\r\nb\r\n', -1], // an unstuffed "." line with CRLF on both sides is plain content
    ['.\r\nfirst line is a dot\r\n', -1],
    ['a.b\n.c\r\n', -1], // dots that do not stand alone
    ['a\n.\nb', 2],
    ['a\r\n.\nb', 3],
    ['a\n.\r\nb', 2],
    ['a\r.\r\nb', 2],
    ['.\nb', 0],
    ['a\r\nb\n.', 5],
  ])('%j -> %i', (data, offset) => {
    expect(findAmbiguousDotLine(Buffer.from(data))).toBe(offset);
  });
});

describe('summarizeMessage', () => {
  it('reads Message-ID, the From domain, an encoded Subject and the campaign header, unfolding lines', () => {
    const raw = Buffer.from(
      'Received: from x\r\n\tby y\r\nFrom: =?UTF-8?B?SsO8cmdlbg==?=\r\n <Juergen@Mail.Example.COM>\r\n' +
        'Subject: =?ISO-8859-1?Q?Caf=E9?=\r\n  menu\r\nmessage-id:   <abc@def>  \r\nX-Campaign-Id: c-42\r\n\r\nSubject: body, not a header\r\n',
    );
    expect(summarizeMessage(raw, 'X-Campaign-ID')).toEqual({
      messageIdHeader: 'abc@def',
      fromDomain: 'mail.example.com',
      subject: 'Café menu',
      campaignId: 'c-42',
      tagFields: [],
      variablesFields: [],
    });
  });

  it('copes with missing fields, bare LF line ends and a message without a body', () => {
    expect(summarizeMessage(Buffer.from('Subject: only\nX-Other: 1\n'), 'X-Campaign-ID')).toEqual({
      messageIdHeader: null,
      fromDomain: null,
      subject: 'only',
      campaignId: null,
      tagFields: [],
      variablesFields: [],
    });
    expect(summarizeMessage(Buffer.alloc(0), 'X-Campaign-ID')).toEqual({
      messageIdHeader: null,
      fromDomain: null,
      subject: null,
      campaignId: null,
      tagFields: [],
      variablesFields: [],
    });
  });

  it('reads every X-Mailgun-Tag and X-Mailgun-Variables field, folded or as encoded words, from the header section only', () => {
    const raw = Buffer.from(
      'X-Mailgun-Tag: one\r\nx-mailgun-tag: =?UTF-8?Q?two_words?=\r\nX-Mailgun-Variables: =?UTF-8?Q?=7B=22a=22=3A_1?=\r\n =?UTF-8?Q?=7D?=\r\n' +
        'X-Mailgun-Variables: {"b":\r\n 2}\r\n\r\nX-Mailgun-Tag: body\r\n',
    );
    expect(summarizeMessage(raw, 'X-Campaign-ID')).toMatchObject({ tagFields: ['one', 'two words'], variablesFields: ['{"a": 1}', '{"b": 2}'] });
  });

  it('takes the first of repeated fields and ignores a From without an address', () => {
    const raw = Buffer.from('From: undisclosed-recipients:;\r\nSubject: one\r\nSubject: two\r\n\r\n');
    expect(summarizeMessage(raw, 'X-Campaign-ID')).toMatchObject({ fromDomain: null, subject: 'one' });
  });
});

describe('normalizeAddress', () => {
  it.each([
    ['User@Example.COM', { address: 'User@example.com', domain: 'example.com' }],
    ['x@Bücher.Example', { address: 'x@xn--bcher-kva.example', domain: 'xn--bcher-kva.example' }],
    ['x@example.com.', { address: 'x@example.com', domain: 'example.com' }],
    ['x@[192.0.2.1]', { address: 'x@[192.0.2.1]', domain: '[192.0.2.1]' }],
    ['"quoted@local"@example.com', { address: '"quoted@local"@example.com', domain: 'example.com' }],
  ])('%s', (input, expected) => {
    expect(normalizeAddress(input)).toEqual(expected);
  });

  it.each(['', 'nodomain', '@example.com', 'x@'])('refuses %j', (input) => {
    expect(normalizeAddress(input)).toBeNull();
  });
});

describe('newQueueId', () => {
  it('is 18 Crockford base32 characters that sort by time', () => {
    const early = newQueueId(Date.UTC(2026, 0, 1));
    const late = newQueueId(Date.UTC(2026, 0, 1, 0, 0, 0, 1));
    expect(early).toMatch(/^[0-9A-HJKMNP-TV-Z]{18}$/);
    expect(early < late).toBe(true);
    const many = new Set(Array.from({ length: 1_000 }, () => newQueueId(0)));
    expect(many.size).toBe(1_000);
  });
});

describe('receivedHeader', () => {
  it('follows RFC 5321 4.4 and names a single recipient', () => {
    const date = new Date(Date.UTC(2026, 10, 22, 8, 5, 9));
    expect(rfc5322Date(date)).toBe('Sun, 22 Nov 2026 08:05:09 +0000');
    expect(
      receivedHeader({ helo: 'app\r\nInjected: yes', clientIp: '::ffff:192.0.2.7', hostname: 'relay.test', protocol: 'ESMTPSA', queueId: 'Q1', recipients: ['a@b.example'], date }),
    ).toBe(
      'Received: from appInjected:yes ([192.0.2.7])\r\n\tby relay.test (Rebound) with ESMTPSA id Q1\r\n\tfor <a@b.example>;\r\n\tSun, 22 Nov 2026 08:05:09 +0000\r\n',
    );
    expect(
      receivedHeader({ helo: null, clientIp: '2001:db8::1', hostname: 'relay.test', protocol: 'ESMTP', queueId: 'Q2', recipients: ['a@b', 'c@d'], date }),
    ).toBe('Received: from IPv6:2001:db8::1 ([IPv6:2001:db8::1])\r\n\tby relay.test (Rebound) with ESMTP id Q2;\r\n\tSun, 22 Nov 2026 08:05:09 +0000\r\n');
  });
});

describe('NetworkList', () => {
  const list = new NetworkList(['127.0.0.1/32', '10.0.0.0/8', '2001:db8::/32']);
  it.each([
    ['127.0.0.1', true],
    ['::ffff:127.0.0.1', true],
    ['127.0.0.2', false],
    ['10.200.3.4', true],
    ['2001:db8:1::5', true],
    ['::1', false],
    ['not an ip', false],
  ])('%s -> %s', (address, expected) => {
    expect(list.contains(address)).toBe(expected);
  });

  it('masks host bits written in a network, and /0 matches its whole family only', () => {
    const odd = new NetworkList(['10.1.2.3/8', '192.0.2.77/25', '0.0.0.0/0']);
    expect(odd.contains('10.255.0.1')).toBe(true);
    expect(odd.contains('8.8.8.8')).toBe(true);
    expect(odd.contains('2001:db8::1')).toBe(false);
    const v6 = new NetworkList(['2001:db8::ff/127', '::/0']);
    expect(v6.contains('2001:db8::fe')).toBe(true);
    expect(v6.contains('fe80::1')).toBe(true);
    expect(v6.contains('192.0.2.1')).toBe(false);
  });

  it('agrees with a network-by-network match on random networks and addresses', () => {
    // A fixed-seed generator (mulberry32), so a failure can be replayed.
    let seed = 0x5eed;
    const random = (): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const kinds = ['v4', 'v6'] as const;
    const randomAddress = (kind: 'v4' | 'v6'): ipaddr.IPv4 | ipaddr.IPv6 => {
      const bytes = Array.from({ length: kind === 'v4' ? 4 : 16 }, () => Math.floor(random() * 256));
      return ipaddr.fromByteArray(bytes);
    };
    const cidrs = Array.from({ length: 400 }, (_, i) => {
      const kind = kinds[i % 2]!;
      // No prefix shorter than /8 (/16 for IPv6): one such network would hold nearly every address.
      const [shortest, longest] = kind === 'v4' ? [8, 32] : [16, 128];
      return `${randomAddress(kind).toString()}/${shortest + Math.floor(random() * (longest - shortest + 1))}`;
    });
    const networks = cidrs.map((cidr) => ipaddr.parseCIDR(cidr));
    const slow = (address: string): boolean => {
      const ip = ipaddr.process(address);
      return networks.some(([network, bits]) => network.kind() === ip.kind() && ip.match(network, bits));
    };
    const list = new NetworkList(cidrs);
    const outcomes = new Set<string>();
    for (let i = 0; i < 4000; i++) {
      // Half the addresses: a network's own address with one bit flipped, inside or just outside it.
      const [network] = networks[Math.floor(random() * networks.length)]!;
      const bytes = network.toByteArray();
      const bit = Math.floor(random() * bytes.length * 8);
      bytes[bit >> 3] ^= 0x80 >> (bit & 7);
      const address = i % 2 ? ipaddr.fromByteArray(bytes).toString() : randomAddress(kinds[(i >> 1) % 2]!).toString();
      const expected = slow(address);
      expect(list.contains(address), address).toBe(expected);
      outcomes.add(`${address.includes(':') ? 'v6' : 'v4'} ${expected}`);
    }
    expect(outcomes.size).toBe(4); // inside and outside, for both families
  });
});
