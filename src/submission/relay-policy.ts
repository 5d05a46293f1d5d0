import ipaddr from 'ipaddr.js';

type Network = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Parses an address the way sockets report it, turning ::ffff:a.b.c.d back into IPv4. */
function parseAddress(address: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  try {
    return ipaddr.process(address);
  } catch {
    return null;
  }
}

/** A list of CIDR networks, e.g. `submission.allowNetworks` (may relay without AUTH). */
export class NetworkList {
  private readonly networks: Network[];

  constructor(cidrs: readonly string[]) {
    this.networks = cidrs.map((cidr) => ipaddr.parseCIDR(cidr));
  }

  contains(address: string): boolean {
    const ip = parseAddress(address);
    if (!ip) return false;
    return this.networks.some(([network, bits]) => network.kind() === ip.kind() && ip.match(network, bits));
  }
}
