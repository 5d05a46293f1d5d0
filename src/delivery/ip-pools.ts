import type { DeliveryConfig } from '../config/schema.js';
import { firstFieldValues } from '../header-fields.js';

/** Where a transaction comes from: the address we connect from and the name we give in EHLO. */
export interface SendingSource {
  /** null: the operating system picks (no delivery.localAddresses, no pool). */
  localIp: string | null;
  /** null: delivery.heloName, or the relay's hostname. */
  heloName: string | null;
}

/** What the rules look at: the envelope sender and the AUTH user, as the claim carries them. */
export interface PoolSelectable {
  /** The sender the app gave at MAIL FROM ('' for the null sender), not our VERP return path. */
  mailFrom: string;
  authUser: string | null;
}

interface PoolTurns {
  sources: SendingSource[];
  turn: number;
}

type CompiledRule =
  | { kind: 'senderDomain'; domain: string; pool: PoolTurns }
  | { kind: 'authUser'; user: string; pool: PoolTurns }
  | { kind: 'header'; name: string; value: string; pool: PoolTurns };

/** A forged header section is read no further than this (the spool's own limit, message-headers.ts). */
const MAX_HEADER_BYTES = 256 * 1024;

/**
 * delivery.ipPools and delivery.ipPoolRules, resolved once: the first rule that matches a batch
 * picks its pool, used in turn; no rule matches: delivery.localAddresses in turn with the default
 * HELO name, as before pools existed.
 */
export class IpPools {
  private readonly rules: CompiledRule[];
  private readonly fallback: PoolTurns;
  /** Lower-cased names of the header fields the rules read: control headers, stripped before relaying. */
  readonly headerNames: ReadonlySet<string>;

  constructor(settings: Pick<DeliveryConfig, 'ipPools' | 'ipPoolRules' | 'localAddresses'>) {
    const pools = new Map<string, PoolTurns>();
    for (const [name, sources] of Object.entries(settings.ipPools)) {
      pools.set(name, { sources: sources.map((s) => ({ localIp: s.address, heloName: s.heloName })), turn: 0 });
    }
    this.rules = settings.ipPoolRules.map((rule): CompiledRule => {
      const pool = pools.get(rule.pool);
      // The schema refuses a rule naming an unknown pool; this guards a config built in code.
      if (!pool) throw new Error(`delivery.ipPoolRules: no IP pool named "${rule.pool}"`);
      if (rule.senderDomain !== undefined) return { kind: 'senderDomain', domain: rule.senderDomain.toLowerCase().replace(/\.$/, ''), pool };
      if (rule.authUser !== undefined) return { kind: 'authUser', user: rule.authUser, pool };
      return { kind: 'header', name: (rule.header ?? '').toLowerCase(), value: (rule.value ?? '').trim().toLowerCase(), pool };
    });
    this.fallback = { sources: settings.localAddresses.map((address) => ({ localIp: address, heloName: null })), turn: 0 };
    this.headerNames = new Set(this.rules.flatMap((rule) => (rule.kind === 'header' ? [rule.name] : [])));
  }

  /** The source for one transaction; `raw` (the stored message) is read only when a header rule is reached. */
  sourceFor(batch: PoolSelectable, raw: Buffer): SendingSource {
    return this.sourcesFor(batch, () => raw)[0] as SendingSource;
  }

  /**
   * Every source of the pool that the batch falls in, its turn first and the rest of the pool
   * after it: the scheduler takes the first one whose way to the destination is not paused or
   * at its limit, so one throttled address does not stop the pool. Never empty.
   */
  sourcesFor(batch: PoolSelectable, rawOf: () => Buffer): SendingSource[] {
    return inTurn(this.poolOf(batch, rawOf));
  }

  private poolOf(batch: PoolSelectable, rawOf: () => Buffer): PoolTurns {
    const senderDomain = domainOf(batch.mailFrom);
    let headers: Map<string, string> | null = null;
    for (const rule of this.rules) {
      let matched: boolean;
      if (rule.kind === 'senderDomain') matched = senderDomain === rule.domain;
      else if (rule.kind === 'authUser') matched = batch.authUser === rule.user;
      else {
        headers ??= firstFieldValuesOf(rawOf(), this.headerNames);
        matched = headers.get(rule.name)?.toLowerCase() === rule.value;
      }
      if (matched) return rule.pool;
    }
    return this.fallback;
  }
}

const NO_SOURCE: SendingSource[] = [{ localIp: null, heloName: null }];

/** The pool's sources from its turn on (the turn moves to the next), wrapping round. */
function inTurn(pool: PoolTurns): SendingSource[] {
  const { sources } = pool;
  if (sources.length === 0) return NO_SOURCE;
  const first = pool.turn % sources.length;
  pool.turn = (first + 1) % sources.length;
  return first === 0 ? sources : [...sources.slice(first), ...sources.slice(0, first)];
}

function domainOf(address: string): string | null {
  const at = address.lastIndexOf('@');
  return at === -1 ? null : address.slice(at + 1).toLowerCase();
}

/**
 * The first field of each name in `names`, trimmed, folded lines joined; only the header
 * section is read, so a line of the body is never taken for a field.
 */
export function firstFieldValuesOf(raw: Buffer, names: ReadonlySet<string>): Map<string, string> {
  // Only the first MAX_HEADER_BYTES are read: the loop is bounded whatever the message.
  return firstFieldValues(raw.subarray(0, Math.min(raw.length, MAX_HEADER_BYTES)).toString('latin1'), names);
}
