import ipaddr from 'ipaddr.js';

/**
 * The SSRF rule: a webhook may only be POSTed to a public unicast address. Anything else —
 * loopback, RFC 1918 and unique-local (fc00::/7) private networks, link-local (169.254/16, home
 * of the 169.254.169.254 cloud metadata service, and fe80::/10), CGNAT (100.64/10), unspecified,
 * multicast, broadcast, documentation and other reserved ranges — is refused unless
 * `webhooks.allowPrivateTargets` is true. The check reads the address as parsed (the URL parser
 * rewrites `[::127.0.0.1]` to `[::7f00:1]`), and IPv6 forms that carry an IPv4 address are
 * judged by the IPv4 address inside: IPv4-mapped ::ffff:a.b.c.d, IPv4-translated
 * ::ffff:0:a.b.c.d, NAT64 64:ff9b::/96, 6to4 2002::/16 and Teredo 2001::/32 (server and client,
 * the client's XORed). The deprecated IPv4-compatible ::a.b.c.d and the local-use NAT64 prefix
 * 64:ff9b:1::/48 (where the IPv4 sits at a place only the local network knows) are refused whole.
 */

const V4_WORDS: Record<string, string> = {
  unspecified: 'an unspecified address (0.0.0.0/8)',
  broadcast: 'the broadcast address',
  multicast: 'a multicast address',
  linkLocal: 'a link-local address (169.254.0.0/16, where cloud metadata services such as 169.254.169.254 answer)',
  loopback: 'a loopback address',
  carrierGradeNat: 'a shared carrier-grade NAT address (100.64.0.0/10)',
  private: 'a private address (RFC 1918)',
  reserved: 'a reserved address (documentation, benchmarking or future use)',
};

const V6_WORDS: Record<string, string> = {
  unspecified: 'the unspecified address (::)',
  linkLocal: 'a link-local address (fe80::/10)',
  multicast: 'a multicast address',
  loopback: 'a loopback address',
  uniqueLocal: 'a private unique-local address (fc00::/7, where fd00:ec2::254 metadata answers)',
  deprecatedSiteLocal: 'a site-local address (fec0::/10)',
  reserved: 'a reserved address (documentation or future use)',
};

const LOCAL_USE_NAT64 = ipaddr.parseCIDR('64:ff9b:1::/48');

/** Why the address may not be a webhook target, in words; null when it is a public unicast address. */
export function forbiddenTargetReason(address: string): string | null {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(canonical(address));
  } catch {
    return 'not an IP address';
  }
  if (parsed.kind() === 'ipv4') return ipv4Reason(parsed as ipaddr.IPv4);
  const v6 = parsed as ipaddr.IPv6;
  const range = v6.range();
  const parts = v6.parts;
  const word = (i: number): number => parts[i] ?? 0;
  switch (range) {
    case 'unicast':
      // ipaddr.js has no name for ::/96 other than :: and ::1: the IPv4-compatible form.
      if (parts.slice(0, 6).every((part) => part === 0)) {
        return `a deprecated IPv4-compatible address (::/96, here ${embedded(word(6), word(7)).toString()} embedded in IPv6)`;
      }
      return null;
    case 'ipv4Mapped':
    case 'rfc6145':
      return embeddedReason(embedded(word(6), word(7)));
    case 'rfc6052':
      if (v6.match(LOCAL_USE_NAT64)) return 'a local-use NAT64 address (64:ff9b:1::/48)';
      return embeddedReason(embedded(word(6), word(7)));
    case '6to4':
      return embeddedReason(embedded(word(1), word(2)));
    case 'teredo':
      // 2001:0:<server IPv4>:<flags>:<port XOR ffff>:<client IPv4 XOR ffffffff>
      return embeddedReason(embedded(word(2), word(3)), 'as the Teredo server') ?? embeddedReason(embedded(word(6) ^ 0xffff, word(7) ^ 0xffff), 'as the Teredo client');
    default:
      return V6_WORDS[range] ?? `an address in the special range "${range}"`;
  }
}

/**
 * IPv6 text as the connection will read it. ipaddr.js reads a trailing dotted quad as IPv4-mapped
 * (`::8.8.8.8` as ::ffff:808:808) where the socket reads IPv4-compatible (::808:808); the WHATWG
 * URL parser reads it as the socket does and writes it in hex.
 */
function canonical(address: string): string {
  if (!address.includes(':') || !address.includes('.')) return address;
  try {
    return new URL(`http://[${address}]`).hostname.slice(1, -1);
  } catch {
    return address;
  }
}

function embedded(high: number, low: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
}

function ipv4Reason(address: ipaddr.IPv4): string | null {
  const range = address.range();
  if (range === 'unicast') return null;
  return V4_WORDS[range] ?? `an address in the special range "${range}"`;
}

function embeddedReason(inner: ipaddr.IPv4, role = ''): string | null {
  const reason = ipv4Reason(inner);
  return reason === null ? null : `${reason}, as ${inner.toString()} embedded in IPv6${role ? ` ${role}` : ''}`;
}
