import { createSocket, type RemoteInfo } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import * as dnsPacket from 'dns-packet';

export interface ZoneEntry {
  MX?: Array<{ preference: number; exchange: string }>;
  A?: string[];
  AAAA?: string[];
  /** TXT records, each as its strings (a long DKIM key is cut into strings of 255 bytes at most). */
  TXT?: string[][];
  /** Answer every query for the name with this error code. */
  rcode?: 'NXDOMAIN' | 'SERVFAIL';
  /** Never answer queries for the name (a timeout). */
  silent?: boolean;
}

export interface TestDnsServer {
  /** "127.0.0.1:PORT", for delivery.dns.servers. */
  address: string;
  queries: Array<{ name: string; type: string }>;
  /** Answers from this zone from now on (a resolver that breaks, or comes back). */
  setZone(zone: Record<string, ZoneEntry>): void;
  close(): Promise<void>;
}

/**
 * A real DNS server on UDP 127.0.0.1 that answers from a fixed zone: names it does not hold are
 * NXDOMAIN; names it holds without the asked type get an empty NOERROR answer (NODATA).
 */
export async function startDnsServer(zone: Record<string, ZoneEntry>): Promise<TestDnsServer> {
  const socket = createSocket('udp4');
  const queries: TestDnsServer['queries'] = [];
  const entriesOf = (from: Record<string, ZoneEntry>) => new Map(Object.entries(from).map(([name, entry]) => [name.toLowerCase(), entry]));
  let entries = entriesOf(zone);

  socket.on('message', (message: Buffer, peer: RemoteInfo) => {
    const query = dnsPacket.decode(message);
    const question = query.questions?.[0];
    if (!question) return;
    const name = question.name.toLowerCase();
    queries.push({ name, type: question.type });
    const entry = entries.get(name);
    if (entry?.silent) return;
    const answers: dnsPacket.Answer[] = [];
    let rcode: string = 'NOERROR';
    if (!entry) rcode = 'NXDOMAIN';
    else if (entry.rcode) rcode = entry.rcode;
    else if (question.type === 'MX') for (const mx of entry.MX ?? []) answers.push({ type: 'MX', name, ttl: 60, data: mx });
    else if (question.type === 'A') for (const ip of entry.A ?? []) answers.push({ type: 'A', name, ttl: 60, data: ip });
    else if (question.type === 'AAAA') for (const ip of entry.AAAA ?? []) answers.push({ type: 'AAAA', name, ttl: 60, data: ip });
    else if (question.type === 'TXT') for (const strings of entry.TXT ?? []) answers.push({ type: 'TXT', name, ttl: 60, data: strings });
    const response = dnsPacket.encode({
      type: 'response',
      id: query.id ?? 0,
      flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | rcodeFlag(rcode),
      questions: [question],
      answers,
    });
    socket.send(response, peer.port, peer.address);
  });

  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    queries,
    setZone: (next) => {
      entries = entriesOf(next);
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

function rcodeFlag(rcode: string): number {
  return { NOERROR: 0, SERVFAIL: 2, NXDOMAIN: 3 }[rcode] ?? 0;
}
