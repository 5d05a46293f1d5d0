import ipaddr from 'ipaddr.js';

type Kind = 'ipv4' | 'ipv6';

/** Parses an address the way sockets report it, turning ::ffff:a.b.c.d back into IPv4. */
function parseAddress(address: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  try {
    return ipaddr.process(address);
  } catch {
    return null;
  }
}

/** The first `bits` bits of an address, as hex, the rest masked off: the key of its /bits network. */
function networkKey(bytes: readonly number[], bits: number): string {
  let key = '';
  for (let offset = 0; offset < bits; offset += 8) {
    const kept = Math.min(8, bits - offset);
    const byte = (bytes[offset / 8] as number) & ((0xff << (8 - kept)) & 0xff);
    key += byte.toString(16).padStart(2, '0');
  }
  return key;
}

/** The networks of one address family and prefix length, by networkKey. */
interface PrefixGroup {
  kind: Kind;
  bits: number;
  keys: Set<string>;
}

/**
 * A list of CIDR networks, e.g. `submission.allowNetworks` (may relay without AUTH).
 *
 * It is asked on every connection and transaction, so a lookup must not cost more with a longer
 * list: networks are grouped by prefix length, and an address is looked up once per distinct
 * length (at most 33 for IPv4, 129 for IPv6) instead of compared with every network.
 */
export class NetworkList {
  private readonly groups: PrefixGroup[] = [];

  constructor(cidrs: readonly string[]) {
    for (const cidr of cidrs) {
      const [network, bits] = ipaddr.parseCIDR(cidr);
      const kind = network.kind();
      let group = this.groups.find((candidate) => candidate.kind === kind && candidate.bits === bits);
      if (!group) {
        group = { kind, bits, keys: new Set() };
        this.groups.push(group);
      }
      group.keys.add(networkKey(network.toByteArray(), bits));
    }
  }

  contains(address: string): boolean {
    const ip = parseAddress(address);
    if (!ip) return false;
    const kind = ip.kind();
    const bytes = ip.toByteArray();
    return this.groups.some((group) => group.kind === kind && group.keys.has(networkKey(bytes, group.bits)));
  }
}
