import ipaddr from 'ipaddr.js';

/**
 * The SSRF rule: a webhook may only be POSTed to a public unicast address. Anything else —
 * loopback, RFC 1918 and unique-local (fc00::/7) private networks, link-local (169.254/16, home
 * of the 169.254.169.254 cloud metadata service, and fe80::/10), CGNAT (100.64/10), unspecified,
 * multicast, broadcast, documentation and other reserved ranges — is refused unless `webhooks.allowPrivateTargets` is true. IPv6 forms that
 * embed an IPv4 address (IPv4-mapped ::ffff:a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d, NAT64
 * 64:ff9b::/96, 6to4 2002::/16) are judged by the IPv4 address inside.
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
  teredo: 'a Teredo tunnel address',
  reserved: 'a reserved address (documentation or future use)',
};

/** Why the address may not be a webhook target, in words; null when it is a public unicast address. */
export function forbiddenTargetReason(address: string): string | null {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(address);
  } catch {
    return 'not an IP address';
  }
  if (parsed.kind() === 'ipv4') return ipv4Reason(parsed as ipaddr.IPv4);
  const v6 = parsed as ipaddr.IPv6;
  const range = v6.range();
  const parts = v6.parts;
  const embedded = (high: number, low: number): ipaddr.IPv4 => new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
  switch (range) {
    case 'unicast':
      return null;
    case 'ipv4Mapped':
    case 'rfc6145':
    case 'rfc6052':
      return embeddedReason(embedded(parts[6] ?? 0, parts[7] ?? 0));
    case '6to4':
      return embeddedReason(embedded(parts[1] ?? 0, parts[2] ?? 0));
    default:
      return V6_WORDS[range] ?? `an address in the special range "${range}"`;
  }
}

function ipv4Reason(address: ipaddr.IPv4): string | null {
  const range = address.range();
  if (range === 'unicast') return null;
  return V4_WORDS[range] ?? `an address in the special range "${range}"`;
}

function embeddedReason(inner: ipaddr.IPv4): string | null {
  const reason = ipv4Reason(inner);
  return reason === null ? null : `${reason}, as ${inner.toString()} embedded in IPv6`;
}
